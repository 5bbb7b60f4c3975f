/**
 * Per-step statistics of a rollout's two versions, recorded on the invocation hot path: O(1)
 * per call and a fixed footprint (no array grows with calls). Latencies go into a log-linear
 * histogram with 8 buckets per doubling from 1 µs to ~4.8 hours (273 buckets); a percentile
 * is the geometric middle of its bucket, so it is within ~4.4% of the exact value (and
 * clamped to the step's observed minimum and maximum). The rollout service resets both
 * versions at the start of each step, so the gates judge only the current split.
 */
import type { RolloutStatsSnapshot, VersionStats } from './events.js';

const BUCKETS_PER_DOUBLING = 8;
const MIN_MS = 0.001;
const DOUBLINGS = 34;
const BUCKET_COUNT = BUCKETS_PER_DOUBLING * DOUBLINGS + 1;
const LOG_SCALE = BUCKETS_PER_DOUBLING / Math.LN2;

/** Bucket i (i >= 1) holds [MIN_MS * 2^((i-1)/8), MIN_MS * 2^(i/8)); bucket 0 everything below MIN_MS. */
function bucketOf(ms: number): number {
  if (!(ms >= MIN_MS)) return 0;
  const i = Math.floor(Math.log(ms / MIN_MS) * LOG_SCALE) + 1;
  return i >= BUCKET_COUNT ? BUCKET_COUNT - 1 : i;
}

function bucketMiddle(i: number): number {
  if (i === 0) return MIN_MS / 2;
  return MIN_MS * 2 ** ((i - 0.5) / BUCKETS_PER_DOUBLING);
}

/** One version's window: calls, failures and a latency histogram. */
export class VersionStatsWindow {
  private readonly buckets = new Uint32Array(BUCKET_COUNT);
  private calls = 0;
  private failures = 0;
  private minMs = Infinity;
  private maxMs = -Infinity;

  /** One settled call: its duration and whether it failed (as its breaker counted it). */
  record(durationMs: number, failed: boolean): void {
    this.calls++;
    if (failed) this.failures++;
    const ms = Number.isFinite(durationMs) && durationMs > 0 ? durationMs : 0;
    this.buckets[bucketOf(ms)]!++;
    if (ms < this.minMs) this.minMs = ms;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  get callCount(): number {
    return this.calls;
  }

  reset(): void {
    this.buckets.fill(0);
    this.calls = 0;
    this.failures = 0;
    this.minMs = Infinity;
    this.maxMs = -Infinity;
  }

  /** The latency below which `q` (0..1) of the calls fall; null without calls. */
  quantile(q: number): number | null {
    if (this.calls === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.calls));
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += this.buckets[i]!;
      if (seen >= rank) {
        // The last bucket is open-ended: its middle would be meaningless.
        if (i === BUCKET_COUNT - 1) return this.maxMs;
        return Math.min(this.maxMs, Math.max(this.minMs, bucketMiddle(i)));
      }
    }
    return this.maxMs;
  }

  /** The window as plain data (sparse buckets), for another node to add up (rollout_node_stats). */
  toJSON(): VersionStatsData {
    const buckets: Array<[number, number]> = [];
    for (let i = 0; i < BUCKET_COUNT; i++) if (this.buckets[i]! > 0) buckets.push([i, this.buckets[i]!]);
    return { calls: this.calls, failures: this.failures, minMs: this.calls === 0 ? null : this.minMs, maxMs: this.calls === 0 ? null : this.maxMs, buckets };
  }

  /** Adds another window's figures (another node's, from `toJSON`) to this one. */
  add(data: VersionStatsData): void {
    if (!data || !(data.calls > 0)) return;
    this.calls += data.calls;
    this.failures += data.failures;
    for (const [i, n] of data.buckets) if (i >= 0 && i < BUCKET_COUNT) this.buckets[i]! += n;
    if (data.minMs !== null && data.minMs < this.minMs) this.minMs = data.minMs;
    if (data.maxMs !== null && data.maxMs > this.maxMs) this.maxMs = data.maxMs;
  }

  snapshot(): VersionStats {
    return {
      calls: this.calls,
      failures: this.failures,
      failureRate: this.calls === 0 ? null : this.failures / this.calls,
      p50Ms: this.quantile(0.5),
      p99Ms: this.quantile(0.99),
    };
  }
}

/** One version's window as plain data: what a node writes to rollout_node_stats. */
export interface VersionStatsData {
  calls: number;
  failures: number;
  minMs: number | null;
  maxMs: number | null;
  /** [bucket index, count] for the non-empty buckets. */
  buckets: Array<[number, number]>;
}

export interface RolloutStatsData {
  stable: VersionStatsData;
  canary: VersionStatsData;
}

/** Both versions of one rollout. The modules domain records into it; the rollout service reads and resets it. */
export class RolloutStats {
  readonly stable = new VersionStatsWindow();
  readonly canary = new VersionStatsWindow();

  reset(): void {
    this.stable.reset();
    this.canary.reset();
  }

  snapshot(): RolloutStatsSnapshot {
    return { stable: this.stable.snapshot(), canary: this.canary.snapshot() };
  }

  toJSON(): RolloutStatsData {
    return { stable: this.stable.toJSON(), canary: this.canary.toJSON() };
  }

  /** A copy with other nodes' figures added (the cluster's step, for the gates). */
  static sum(own: RolloutStats, others: readonly RolloutStatsData[]): RolloutStats {
    const total = new RolloutStats();
    total.stable.add(own.stable.toJSON());
    total.canary.add(own.canary.toJSON());
    for (const other of others) {
      total.stable.add(other.stable);
      total.canary.add(other.canary);
    }
    return total;
  }
}
