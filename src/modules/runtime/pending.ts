/**
 * Requests waiting for an answer, with their deadlines. One clock timer serves all of them:
 * it is armed for the earliest deadline and re-armed when it fires, so a call costs a map
 * entry and no timer of its own (calls with the same timeout expire in the order they were
 * made, and the timer rarely needs to move).
 */
import type { Clock, TimerHandle } from '../../clock.js';

export interface PendingEntry {
  readonly id: number;
  readonly op: string;
  /** The method or lifecycle operation, for messages. */
  readonly label: string;
  readonly startedAt: number;
  readonly deadline: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

export class PendingRequests {
  private readonly entries = new Map<number, PendingEntry>();
  private lastId = 0;
  private calls = 0;
  private timer: TimerHandle | null = null;
  private timerAt = Number.POSITIVE_INFINITY;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly clock: Clock,
    /** Called for each entry whose deadline passed; the entry is already removed and must be settled here. */
    private readonly onExpire: (entry: PendingEntry) => void,
  ) {}

  /** Requests of op 'call' still pending: what `drain` waits for. */
  get inFlightCalls(): number {
    return this.calls;
  }

  get size(): number {
    return this.entries.size;
  }

  nextId(): number {
    return ++this.lastId;
  }

  /** Whether `id` was ever handed out by `nextId` (a reply to any other id is forged). */
  issued(id: number): boolean {
    return Number.isInteger(id) && id >= 1 && id <= this.lastId;
  }

  /** Registers request `id`; `timeoutMs` of Infinity means no deadline. */
  add(id: number, op: string, label: string, timeoutMs: number): Promise<unknown> {
    const startedAt = this.clock.now();
    const deadline = startedAt + timeoutMs;
    return new Promise<unknown>((resolve, reject) => {
      this.entries.set(id, { id, op, label, startedAt, deadline, resolve, reject });
      if (op === 'call') this.calls++;
      if (deadline < this.timerAt) this.arm(deadline);
    });
  }

  has(id: number): boolean {
    return this.entries.has(id);
  }

  /** The entry, left pending. */
  get(id: number): PendingEntry | undefined {
    return this.entries.get(id);
  }

  /** False when the request is unknown (already timed out or settled). */
  resolve(id: number, value: unknown): boolean {
    const entry = this.take(id);
    if (!entry) return false;
    entry.resolve(value);
    return true;
  }

  reject(id: number, error: unknown): boolean {
    const entry = this.take(id);
    if (!entry) return false;
    entry.reject(error);
    return true;
  }

  /** The entry, removed, for callers that need its details to build the answer. */
  take(id: number): PendingEntry | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    this.entries.delete(id);
    if (entry.op === 'call' && --this.calls === 0) this.wakeIdle();
    return entry;
  }

  rejectAll(errorOf: (entry: PendingEntry) => unknown): void {
    const all = [...this.entries.values()];
    this.entries.clear();
    this.calls = 0;
    this.disarm();
    for (const entry of all) entry.reject(errorOf(entry));
    this.wakeIdle();
  }

  /** Resolves true once no call is pending, false after `timeoutMs`. */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.calls === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const waiter = () => {
        timer.cancel();
        resolve(true);
      };
      const timer = this.clock.setTimer(timeoutMs, () => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== waiter);
        resolve(false);
      });
      this.idleWaiters.push(waiter);
    });
  }

  private wakeIdle(): void {
    if (this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const waiter of waiters) waiter();
  }

  private arm(at: number): void {
    this.disarm();
    if (!Number.isFinite(at)) return;
    this.timerAt = at;
    this.timer = this.clock.setTimer(at - this.clock.now(), () => this.expire());
  }

  private disarm(): void {
    this.timer?.cancel();
    this.timer = null;
    this.timerAt = Number.POSITIVE_INFINITY;
  }

  private expire(): void {
    this.timer = null;
    this.timerAt = Number.POSITIVE_INFINITY;
    const now = this.clock.now();
    const expired: PendingEntry[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const entry of this.entries.values()) {
      if (entry.deadline <= now) expired.push(entry);
      else if (entry.deadline < next) next = entry.deadline;
    }
    for (const entry of expired) {
      this.take(entry.id);
      this.onExpire(entry);
    }
    // onExpire may have added requests (a ping) and armed the timer already.
    if (next < this.timerAt) this.arm(next);
  }
}
