/**
 * Failure-rate windows. `FailureRateWindow` is what the engine needs from one; this file holds
 * the count-based window of the last N call outcomes (time-window.ts holds the time-based
 * one). A ring of one byte per call with running totals: recording subtracts the evicted
 * outcome and adds the new one, so the failure path is O(1) and never scans the window.
 */
import type { SlidingWindowType } from './config.js';

export const OUTCOME_SUCCESS = 0;
export const OUTCOME_FAILURE = 1;
/** Combined with FAILURE: a slow call counts as a failure and is also tallied as slow. */
export const OUTCOME_SLOW = 2;

/** A bounded window of call outcomes with running totals; every operation is O(1) per call. */
export interface FailureRateWindow {
  readonly type: SlidingWindowType;
  /** Calls (COUNT) or seconds (TIME). */
  readonly size: number;
  /** Outcomes held now. */
  readonly count: number;
  readonly failures: number;
  readonly slowCalls: number;
  /** `now`: the injected clock's current time if the caller has just read it (a TIME window reads it otherwise). */
  record(outcome: number, now?: number): void;
  /**
   * True when the window holds at least `minimumCalls` outcomes and failures reach
   * `thresholdPercent`, as of the last `record` (it is the verdict on that outcome).
   */
  exceeds(minimumCalls: number, thresholdPercent: number): boolean;
  /** Percent of failures, or null below `minimumCalls`. */
  failureRate(minimumCalls: number): number | null;
  clear(): void;
  /** A window of the same type and `size` holding the most recent outcomes of this one (reconfiguration only). */
  resized(size: number): FailureRateWindow;
}

export class OutcomeWindow implements FailureRateWindow {
  readonly type = 'COUNT';
  private readonly ring: Uint8Array;
  private next = 0;
  private filled = 0;
  private failed = 0;
  private slowed = 0;

  constructor(readonly size: number) {
    this.ring = new Uint8Array(size);
  }

  get count(): number {
    return this.filled;
  }

  get failures(): number {
    return this.failed;
  }

  get slowCalls(): number {
    return this.slowed;
  }

  record(outcome: number): void {
    const at = this.next;
    if (this.filled === this.size) {
      const evicted = this.ring[at] ?? 0;
      this.failed -= evicted & OUTCOME_FAILURE;
      this.slowed -= (evicted & OUTCOME_SLOW) >> 1;
    } else {
      this.filled++;
    }
    this.ring[at] = outcome;
    this.failed += outcome & OUTCOME_FAILURE;
    this.slowed += (outcome & OUTCOME_SLOW) >> 1;
    this.next = at + 1 === this.size ? 0 : at + 1;
  }

  /** `minimumCalls` is capped at the window's size (resilience4j's rule): a full window always decides. */
  exceeds(minimumCalls: number, thresholdPercent: number): boolean {
    const n = this.filled;
    return n >= Math.min(minimumCalls, this.size) && n > 0 && this.failed * 100 >= thresholdPercent * n;
  }

  /** Capped like `exceeds`. */
  failureRate(minimumCalls: number): number | null {
    const n = this.filled;
    return n === 0 || n < Math.min(minimumCalls, this.size) ? null : (this.failed * 100) / n;
  }

  clear(): void {
    this.next = 0;
    this.filled = 0;
    this.failed = 0;
    this.slowed = 0;
  }

  resized(size: number): OutcomeWindow {
    const out = new OutcomeWindow(size);
    const keep = Math.min(size, this.filled);
    for (let i = keep; i > 0; i--) {
      const at = (this.next - i + this.size) % this.size;
      out.record(this.ring[at] ?? 0);
    }
    return out;
  }
}
