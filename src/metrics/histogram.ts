/**
 * Duration histograms for hot paths: fixed bucket bounds, plain typed arrays, no labels and no
 * allocation per observation. A scrape turns them into Prometheus histogram series
 * (prometheus.ts); the hot path only finds a bucket (a short linear scan) and adds.
 */

/** Upper bounds in seconds, as Prometheus clients' defaults plus the sub-millisecond range. */
export const DURATION_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
const BOUNDS_MS = DURATION_BUCKETS_SECONDS.map((s) => s * 1000);
/** Bucket slots per series: one per bound plus the +Inf bucket. */
export const BUCKET_SLOTS = BOUNDS_MS.length + 1;

/** `series` independent histograms side by side (one per call kind, say). */
export class DurationHistograms {
  /** counts[series * BUCKET_SLOTS + i]: observations in bucket i alone (not cumulative). */
  readonly counts: Float64Array;
  /** Sum of observed durations per series, in milliseconds. */
  readonly sumsMs: Float64Array;

  constructor(readonly series: number) {
    this.counts = new Float64Array(series * BUCKET_SLOTS);
    this.sumsMs = new Float64Array(series);
  }

  observe(series: number, durationMs: number): void {
    let i = 0;
    while (i < BOUNDS_MS.length && durationMs > BOUNDS_MS[i]!) i++;
    this.counts[series * BUCKET_SLOTS + i]!++;
    this.sumsMs[series]! += durationMs > 0 ? durationMs : 0;
  }

  count(series: number): number {
    let n = 0;
    const base = series * BUCKET_SLOTS;
    for (let i = 0; i < BUCKET_SLOTS; i++) n += this.counts[base + i]!;
    return n;
  }
}
