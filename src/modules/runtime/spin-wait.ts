/**
 * Bounded spinning before sleeping, for the hand-off between the server's thread and a module
 * worker.
 *
 * A sequential call to a WORKER module is two hand-offs: the request wakes the worker, the
 * answer wakes the server's thread. A thread asleep in its event loop is woken by the kernel,
 * and when the two threads sit on different CPUs of a VM each wake-up costs tens of
 * microseconds of CPU (measured in bench/RESULTS.md: 2 voluntary context switches and ~100 us
 * of CPU per call, against ~3 us for the same call INLINE). A thread that instead waits a little
 * while awake, polling a shared counter the other side bumps after each message, takes the
 * message with `receiveMessageOnPort` without either thread sleeping.
 *
 * The wait is bounded three ways, so it never costs more than the sleep it may save:
 * - a budget per wait (default 50 us, `workerSpinMicros`; 0 turns spinning off), about one
 *   wake-up's cost: spinning for as long as blocking costs is at most twice the better choice
 *   (the classic spin-then-block bound);
 * - the thread's event loop still turns: after `MAX_STRETCH_MS` of hand-offs without the loop
 *   getting a turn, the next wait starts from a `setImmediate`, after the loop's timers and
 *   I/O, so these wait at most about a millisecond more than they would have;
 * - waits that time out on something that then takes far longer (`LATE_FACTOR` budgets: a slow
 *   method, a caller pausing between calls) back off: from the second in a row, the next 1, 3,
 *   7, ... up to `MAX_SKIP` - 1 waits are skipped, so such a caller costs almost nothing. A miss
 *   whose message comes soon after (the other side was asleep, a GC, a preempted thread) does
 *   not: backing off there would keep both sides asleep.
 * Erlang's schedulers make the same trade (busy wait before sleeping, `+sbwt`).
 */

/** Index of the counter the server's thread bumps after each message it posts to the worker. */
export const SIGNAL_TO_WORKER = 0;
/** Index of the counter the worker bumps after each message it posts to the server's thread. */
export const SIGNAL_TO_HOST = 1;
export const SIGNAL_WORDS = 2;

export const DEFAULT_SPIN_MICROS = 50;
/** The longest stretch of hand-offs without an event-loop turn; then a wait answers 'yield'. */
export const MAX_STRETCH_MS = 1;
/** A miss whose message comes later than this many budgets counts towards the back-off. */
export const LATE_FACTOR = 10;
/** Late arrivals in a row that cost nothing more: the next wait spins again. */
export const LATE_TOLERATED = 1;
/** After more late arrivals in a row, 1, 3, 7, ... up to MAX_SKIP - 1 waits are skipped. */
export const MAX_SKIP = 64;

export function createSignals(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(SIGNAL_WORDS * Int32Array.BYTES_PER_ELEMENT));
}

/** Posts happened on the other side that this side has not consumed yet (int32 counters, wrapping). */
export function unconsumed(signals: Int32Array, index: number, consumed: number): boolean {
  return ((Atomics.load(signals, index) - consumed) | 0) > 0;
}

export type SpinOutcome = 'arrived' | 'timedOut' | 'off' | 'yield';

export interface SpinWaitOptions {
  budgetMicros: number;
  /** Milliseconds, monotonic; injected by tests. */
  now?: () => number;
  /** Runs `callback` once the event loop turns; injected by tests. */
  onLoopTurn?: (callback: () => void) => void;
}

function afterLoopTurn(callback: () => void): void {
  setImmediate(callback).unref();
}

export class SpinWait {
  private readonly budgetMs: number;
  private readonly now: () => number;
  private readonly onLoopTurn: (callback: () => void) => void;
  /** When the current stretch without a loop turn began; -1 when the loop has turned since. */
  private stretchStart = -1;
  /** When the last wait that timed out began, until what it waited for arrives; -1 otherwise. */
  private missedSince = -1;
  private lateInARow = 0;
  private skip = 0;
  private hitCount = 0;
  private missCount = 0;

  constructor(options: SpinWaitOptions) {
    this.budgetMs = Math.max(0, options.budgetMicros) / 1000;
    this.now = options.now ?? performance.now.bind(performance);
    this.onLoopTurn = options.onLoopTurn ?? afterLoopTurn;
  }

  get enabled(): boolean {
    return this.budgetMs > 0;
  }

  /** Waits that ended with the other side's message taken / that timed out (for tests and the bench). */
  get hits(): number {
    return this.hitCount;
  }

  get misses(): number {
    return this.missCount;
  }

  /**
   * Spins until the counter at `index` moves past `consumed`: 'arrived' (the caller takes the
   * message(s) and calls `settled` once what it waited for is among them; a counter ahead of
   * what the port holds is the caller's to resynchronise), or the budget ran out: 'timedOut'
   * (the caller calls `arrivedLate` when it does come). 'off' when spinning is off or backing
   * off. 'yield' when the event loop is due a turn: the caller may wait again from a
   * `setImmediate`.
   */
  wait(signals: Int32Array, index: number, consumed: number): SpinOutcome {
    if (this.budgetMs === 0) return 'off';
    // Checked first, even with messages waiting: a side that keeps posting does not keep this
    // thread from its event loop either.
    const start = this.now();
    if (this.stretchStart < 0) {
      this.stretchStart = start;
      this.onLoopTurn(() => {
        this.stretchStart = -1;
      });
    } else if (start - this.stretchStart > MAX_STRETCH_MS) {
      return 'yield';
    }
    if (unconsumed(signals, index, consumed)) return 'arrived';
    if (this.skip > 0) {
      this.skip--;
      return 'off';
    }
    const deadline = start + this.budgetMs;
    while (!unconsumed(signals, index, consumed)) {
      if (this.now() >= deadline) {
        this.missCount++;
        this.missedSince = start;
        return 'timedOut';
      }
    }
    return 'arrived';
  }

  /** What was waited for arrived (the answer, or the next request): the back-off starts over. */
  settled(): void {
    this.hitCount++;
    this.missedSince = -1;
    this.lateInARow = 0;
    this.skip = 0;
  }

  /**
   * What the last wait timed out on arrived by the event loop. Only an arrival much later than
   * the budget (`LATE_FACTOR` times) says spinning for it is hopeless (a method that takes its
   * time, a caller that pauses between calls), and backs off; one soon after says the other side
   * was asleep or preempted, and the next wait spins again.
   */
  arrivedLate(): void {
    if (this.missedSince < 0) return;
    const late = this.now() - this.missedSince > this.budgetMs * LATE_FACTOR;
    this.missedSince = -1;
    if (!late) {
      this.lateInARow = 0;
      return;
    }
    this.lateInARow = Math.min(this.lateInARow + 1, LATE_TOLERATED + Math.log2(MAX_SKIP));
    this.skip = 2 ** Math.max(0, this.lateInARow - LATE_TOLERATED) - 1;
  }
}
