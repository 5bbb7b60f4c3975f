/**
 * Time-based failure-rate window (resilience4j's TIME_BASED sliding window, opossum's rolling
 * buckets): the outcomes of the last N seconds of the injected clock, aggregated in a ring of
 * N per-second buckets with running totals.
 *
 * The newest bucket is the current clock second; the window is it and the N-1 seconds before
 * it. When the clock has moved on, the buckets of the seconds that passed are subtracted from
 * the totals and zeroed before anything is read or recorded: at most N buckets, however long
 * the gap and however many calls there were, so a call costs O(1) amortised and nothing ever
 * scans calls. A clock that steps back (a system clock adjusted) records into the newest
 * bucket rather than rewriting the past.
 */
import type { Clock } from '../clock.js';
import { OUTCOME_FAILURE, OUTCOME_SLOW, type FailureRateWindow } from './window.js';

const secondOf = (ms: number): number => Math.floor(ms / 1000);

export class TimeWindow implements FailureRateWindow {
  readonly type = 'TIME';
  private readonly calls: Uint32Array;
  private readonly failed: Uint32Array;
  private readonly slowed: Uint32Array;
  /** Clock second of the newest bucket, and its slot in the ring. */
  private headSecond: number;
  private head = 0;
  /** Epoch ms at which the newest bucket's second ends: the common case is one comparison. */
  private headEndsAt: number;
  private totalCalls = 0;
  private totalFailed = 0;
  private totalSlowed = 0;

  /** `size` in seconds. */
  constructor(
    readonly size: number,
    private readonly clock: Pick<Clock, 'now'>,
  ) {
    this.calls = new Uint32Array(size);
    this.failed = new Uint32Array(size);
    this.slowed = new Uint32Array(size);
    this.headSecond = secondOf(clock.now());
    this.headEndsAt = (this.headSecond + 1) * 1000;
  }

  get count(): number {
    this.advance();
    return this.totalCalls;
  }

  get failures(): number {
    this.advance();
    return this.totalFailed;
  }

  get slowCalls(): number {
    this.advance();
    return this.totalSlowed;
  }

  record(outcome: number, now?: number): void {
    const at = this.advance(now ?? this.clock.now());
    const failed = outcome & OUTCOME_FAILURE;
    const slowed = (outcome & OUTCOME_SLOW) >> 1;
    this.calls[at] = (this.calls[at] ?? 0) + 1;
    this.failed[at] = (this.failed[at] ?? 0) + failed;
    this.slowed[at] = (this.slowed[at] ?? 0) + slowed;
    this.totalCalls++;
    this.totalFailed += failed;
    this.totalSlowed += slowed;
  }

  /**
   * As of the last `record` (the engine judges right after recording, so this saves a clock
   * read per call); `minimumCalls` is not capped: a TIME window has no call count to cap it
   * at (as resilience4j).
   */
  exceeds(minimumCalls: number, thresholdPercent: number): boolean {
    const n = this.totalCalls;
    return n >= minimumCalls && n > 0 && this.totalFailed * 100 >= thresholdPercent * n;
  }

  failureRate(minimumCalls: number): number | null {
    this.advance();
    const n = this.totalCalls;
    return n === 0 || n < minimumCalls ? null : (this.totalFailed * 100) / n;
  }

  clear(): void {
    this.calls.fill(0);
    this.failed.fill(0);
    this.slowed.fill(0);
    this.totalCalls = 0;
    this.totalFailed = 0;
    this.totalSlowed = 0;
    this.head = 0;
    this.headSecond = secondOf(this.clock.now());
    this.headEndsAt = (this.headSecond + 1) * 1000;
  }

  /** The last min(size, this.size) seconds of this window, in a window of `size` seconds. */
  resized(size: number): TimeWindow {
    this.advance();
    const out = new TimeWindow(size, this.clock);
    out.headSecond = this.headSecond;
    out.headEndsAt = this.headEndsAt;
    const keep = Math.min(size, this.size);
    for (let age = 0; age < keep; age++) {
      const from = (this.head - age + this.size) % this.size;
      const to = (size - age) % size;
      const calls = this.calls[from] ?? 0;
      const failed = this.failed[from] ?? 0;
      const slowed = this.slowed[from] ?? 0;
      out.calls[to] = calls;
      out.failed[to] = failed;
      out.slowed[to] = slowed;
      out.totalCalls += calls;
      out.totalFailed += failed;
      out.totalSlowed += slowed;
    }
    return out;
  }

  /** Evicts the seconds that passed since the newest bucket; returns the current bucket's slot. */
  private advance(now = this.clock.now()): number {
    if (now < this.headEndsAt) return this.head;
    const second = secondOf(now);
    let passed = second - this.headSecond; // >= 1 past headEndsAt
    // A gap of a whole window or more clears every bucket once; more steps would revisit them.
    if (passed > this.size) passed = this.size;
    let at = this.head;
    for (let i = 0; i < passed; i++) {
      at = at + 1 === this.size ? 0 : at + 1;
      const calls = this.calls[at] ?? 0;
      if (calls !== 0) {
        this.totalCalls -= calls;
        this.totalFailed -= this.failed[at] ?? 0;
        this.totalSlowed -= this.slowed[at] ?? 0;
        this.calls[at] = 0;
        this.failed[at] = 0;
        this.slowed[at] = 0;
      }
    }
    this.head = at;
    this.headSecond = second;
    this.headEndsAt = (second + 1) * 1000;
    return at;
  }
}
