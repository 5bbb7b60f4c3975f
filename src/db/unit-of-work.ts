/**
 * One unit of work per change, shared by every service (as Unleash's `withTransactional` and
 * Hive's stores pass one transaction along): `run(fn)` opens a SQLite transaction, or joins the
 * caller's when one is already open, and `afterCommit(cb)` queues what must only happen once
 * the change is durable: memory updates and bus publishes.
 *
 * Semantics, deliberately:
 * - The outermost `run` is a transaction; a nested `run` is a savepoint (better-sqlite3 nests
 *   `db.transaction` that way). Its `afterCommit` callbacks belong to the savepoint: if the
 *   inner `run` throws, its writes roll back and its callbacks are dropped, even when the caller
 *   catches the error and commits the rest. If it succeeds, its callbacks join the enclosing
 *   unit and wait for the outermost commit.
 * - After the outermost commit, callbacks run in the order they were queued (so events are
 *   published in the order the changes were made). A callback that throws is logged and the
 *   rest still run: the change is committed and every other effect must still happen.
 * - When a unit rolls back, its `onRollback` callbacks run, newest first. They are for memory
 *   that cannot wait for the commit (the breaker engine changes its own state as it goes) and
 *   must be put back.
 * - `afterCommit` outside any `run` runs the callback at once: there is nothing to wait for.
 * - A transaction opened on the connection by other means (`db.transaction(...)` directly) has
 *   no after-commit hook, so a service cannot tell when it commits: `run` refuses to start inside
 *   one (UnitOfWorkError) rather than publish a change that may still roll back.
 * - `fn` must be synchronous (better-sqlite3 transactions cannot span an `await`; a promise
 *   returned from `fn` is refused and the transaction rolled back). Asynchronous operations
 *   (module lifecycle) called inside a unit start after it commits, and never if it rolls back.
 *
 * There is one unit of work per connection (`unitOfWorkFor(db)`), so every service holding the
 * same connection joins the same transaction. Unleash and Hive pass a `trx` argument because a
 * pooled client hands out many connections; better-sqlite3 has one synchronous connection whose
 * open transaction *is* the caller's, so the unit is found from the connection instead of being
 * threaded through every method (a store for another database would take it as an argument).
 */
import type { Db } from './connection.js';

type Callback = () => void;

/** A programming error: `run` inside a transaction that is not a unit of work's. */
export class UnitOfWorkError extends Error {
  override name = 'UnitOfWorkError';
}

interface Frame {
  afterCommit: Callback[];
  onRollback: Callback[];
}

export type UnitOfWorkErrorReporter = (message: string, error: unknown) => void;

export class UnitOfWork {
  private readonly frames: Frame[] = [];
  private report: UnitOfWorkErrorReporter = (message, error) => {
    console.error(message, error);
  };

  /**
   * One transaction wrapper for the connection, made once: `db.transaction()` builds a new
   * wrapper (four functions and their properties) each time it is called, which a CPU profile
   * of `setFlagPercentage` showed at a tenth of the whole call. The wrapper decides at each call
   * whether to BEGIN or to open a savepoint, so nesting works the same.
   */
  private readonly transaction: <T>(fn: () => T) => T;

  constructor(private readonly db: Db) {
    this.transaction = db.transaction(<T>(fn: () => T): T => fn()) as <T>(fn: () => T) => T;
  }

  /** Where errors thrown by after-commit and rollback callbacks go (the app's logger). */
  setErrorReporter(report: UnitOfWorkErrorReporter): void {
    this.report = report;
  }

  /** True while a `run` is open (on this connection). */
  get active(): boolean {
    return this.frames.length > 0;
  }

  /** Runs `fn` in a transaction, or in a savepoint of the one already open; see the file comment. */
  run<T>(fn: () => T): T {
    if (this.frames.length === 0 && this.db.inTransaction) {
      throw new UnitOfWorkError('A change was made inside a transaction opened with db.transaction(); open it with the unit of work (services.uow.run) so its effects wait for the commit');
    }
    const frame: Frame = { afterCommit: [], onRollback: [] };
    this.frames.push(frame);
    let result: T;
    try {
      result = this.transaction(fn);
    } catch (error) {
      this.frames.pop();
      for (const undo of frame.onRollback.reverse()) this.safely('a rollback callback failed', undo);
      throw error;
    }
    this.frames.pop();
    const parent = this.frames.at(-1);
    if (parent) {
      parent.afterCommit.push(...frame.afterCommit);
      parent.onRollback.push(...frame.onRollback);
    } else {
      for (const callback of frame.afterCommit) this.safely('an after-commit callback failed', callback);
    }
    return result;
  }

  /** Queues `callback` for after the outermost commit (dropped on rollback); at once outside a unit. */
  afterCommit(callback: Callback): void {
    const frame = this.frames.at(-1);
    if (frame) frame.afterCommit.push(callback);
    else this.safely('an after-commit callback failed', callback);
  }

  /** Registers `callback` to run if the current unit (or savepoint) rolls back; nothing outside a unit. */
  onRollback(callback: Callback): void {
    this.frames.at(-1)?.onRollback.push(callback);
  }

  private safely(message: string, callback: Callback): void {
    try {
      callback();
    } catch (error) {
      this.report(message, error);
    }
  }
}

const units = new WeakMap<Db, UnitOfWork>();

/** The unit of work of a connection, created on first use. */
export function unitOfWorkFor(db: Db): UnitOfWork {
  let unit = units.get(db);
  if (!unit) {
    unit = new UnitOfWork(db);
    units.set(db, unit);
  }
  return unit;
}
