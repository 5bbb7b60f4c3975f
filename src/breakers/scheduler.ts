/**
 * One scheduler drives every timed breaker transition and call timeout of a registry: an
 * indexed binary min-heap of deadlines with a single clock timer armed for the earliest one.
 * Entries know their heap slot, so cancelling a call's timeout when it settles is a true
 * O(log n) removal: the heap holds only live deadlines, never a backlog of cancelled ones.
 */
import type { Clock, TimerHandle } from '../clock.js';

/** Something with a deadline. The scheduler owns `heapIndex` and `seq`; start them at -1 and 0. */
export interface ScheduledDeadline {
  dueAt: number;
  heapIndex: number;
  seq: number;
  fire(): void;
}

/** setTimeout overflows to ~1 ms above 2^31-1 ms; longer deadlines re-arm on the way. */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

export class DeadlineScheduler {
  private readonly heap: ScheduledDeadline[] = [];
  private timer: TimerHandle | null = null;
  private armedAt = Infinity;
  private seq = 0;
  private firing = false;
  private disposed = false;
  private readonly onTimer = (): void => this.fireDue();

  constructor(
    private readonly clock: Clock,
    private readonly onError: (error: unknown) => void = () => undefined,
  ) {}

  /** Number of pending deadlines. */
  get size(): number {
    return this.heap.length;
  }

  /** Whether a clock timer is currently armed (at most one ever is). */
  get armed(): boolean {
    return this.timer !== null;
  }

  isScheduled(entry: ScheduledDeadline): boolean {
    return entry.heapIndex >= 0 && this.heap[entry.heapIndex] === entry;
  }

  /** Schedules `entry` at `dueAt`, moving it if it was already scheduled. A past `dueAt` fires on the next timer tick. */
  schedule(entry: ScheduledDeadline, dueAt: number): void {
    if (this.disposed) return;
    entry.dueAt = dueAt;
    entry.seq = this.seq++;
    if (this.isScheduled(entry)) {
      this.siftUp(entry.heapIndex);
      this.siftDown(entry.heapIndex);
    } else {
      entry.heapIndex = this.heap.length;
      this.heap.push(entry);
      this.siftUp(entry.heapIndex);
    }
    if (this.heap[0] === entry) this.arm();
  }

  cancel(entry: ScheduledDeadline): void {
    const i = entry.heapIndex;
    if (i < 0 || this.heap[i] !== entry) return;
    entry.heapIndex = -1;
    const last = this.heap.pop();
    if (last !== undefined && last !== entry) {
      this.heap[i] = last;
      last.heapIndex = i;
      this.siftUp(i);
      this.siftDown(last.heapIndex);
    }
    // The armed timer is left alone even when the heap empties: calls with a timeout come and
    // go far faster than their deadlines, and re-arming per call would cost a setTimeout each.
    // A timer that finds nothing due just re-arms for the next deadline, if any.
  }

  dispose(): void {
    this.disposed = true;
    this.disarm();
    for (const entry of this.heap) entry.heapIndex = -1;
    this.heap.length = 0;
  }

  private arm(): void {
    if (this.firing || this.disposed) return;
    const top = this.heap[0];
    if (top === undefined) {
      this.disarm();
      return;
    }
    if (this.timer !== null && this.armedAt <= top.dueAt) return;
    this.timer?.cancel();
    const now = this.clock.now();
    const delay = Math.min(MAX_TIMER_DELAY_MS, Math.max(0, top.dueAt - now));
    this.armedAt = now + delay;
    this.timer = this.clock.setTimer(delay, this.onTimer);
  }

  private disarm(): void {
    this.timer?.cancel();
    this.timer = null;
    this.armedAt = Infinity;
  }

  private fireDue(): void {
    this.timer = null;
    this.armedAt = Infinity;
    if (this.disposed) return;
    this.firing = true;
    try {
      const now = this.clock.now();
      for (let top = this.heap[0]; top !== undefined && top.dueAt <= now; top = this.heap[0]) {
        this.cancel(top);
        try {
          top.fire();
        } catch (error) {
          this.onError(error);
        }
      }
    } finally {
      this.firing = false;
    }
    this.arm();
  }

  private before(a: ScheduledDeadline, b: ScheduledDeadline): boolean {
    return a.dueAt < b.dueAt || (a.dueAt === b.dueAt && a.seq < b.seq);
  }

  private siftUp(start: number): void {
    const heap = this.heap;
    const entry = heap[start];
    if (entry === undefined) return;
    let i = start;
    while (i > 0) {
      const parentIndex = (i - 1) >> 1;
      const parent = heap[parentIndex];
      if (parent === undefined || !this.before(entry, parent)) break;
      heap[i] = parent;
      parent.heapIndex = i;
      i = parentIndex;
    }
    heap[i] = entry;
    entry.heapIndex = i;
  }

  private siftDown(start: number): void {
    const heap = this.heap;
    const entry = heap[start];
    if (entry === undefined) return;
    const n = heap.length;
    let i = start;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      let child = left;
      const l = heap[left];
      const r = heap[right];
      if (l === undefined) break;
      let smallest: ScheduledDeadline = l;
      if (r !== undefined && right < n && this.before(r, l)) {
        child = right;
        smallest = r;
      }
      if (!this.before(smallest, entry)) break;
      heap[i] = smallest;
      smallest.heapIndex = i;
      i = child;
    }
    heap[i] = entry;
    entry.heapIndex = i;
  }
}
