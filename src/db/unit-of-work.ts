/**
 * One unit of work per change, shared by every service (as Unleash's `withTransactional` and
 * Hive's stores pass one transaction along): `run(fn)` opens a transaction, or joins the
 * caller's when one is already open, and `afterCommit(cb)` queues what must only happen once
 * the change is durable: memory updates and bus publishes.
 *
 * Semantics, deliberately:
 * - The outermost `run` is a transaction; a nested `run` is a savepoint. Its `afterCommit`
 *   callbacks belong to the savepoint: if the inner `run` throws, its writes roll back and its
 *   callbacks are dropped, even when the caller catches the error and commits the rest. If it
 *   succeeds, its callbacks join the enclosing unit and wait for the outermost commit.
 * - After the outermost commit, callbacks run in the order they were queued (so events are
 *   published in the order the changes were made). A callback that throws is logged and the
 *   rest still run: the change is committed and every other effect must still happen.
 * - When a unit rolls back, its `onRollback` callbacks run, newest first. They are for memory
 *   that cannot wait for the commit (the breaker engine changes its own state as it goes) and
 *   must be put back.
 * - `afterCommit` outside any `run` runs the callback at once: there is nothing to wait for.
 * - `beforeCommit` callbacks run inside the outermost transaction, after `fn`, in order: the
 *   cluster's event log appends its rows there, so they commit with the change or not at all.
 *
 * The open unit is found from the asynchronous context (AsyncLocalStorage), so a service calls
 * another inside its unit without passing a transaction along, and every store reads
 * `uow.db`: the unit's transaction inside `run`, the database outside. Work a unit starts and
 * does not await (a timer, a fire-and-forget promise) still sees the unit after it finished;
 * `db` then answers the database, never a finished transaction.
 *
 * Inside one unit, statements run one after the other (a unit is one connection): run its
 * store calls in sequence, never in parallel (`Promise.all`) — two savepoints at once would
 * interleave on the one connection.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { ControlledTransaction, Kysely } from 'kysely';
import type { Schema } from './schema.js';

type Callback = () => void;
type AsyncCallback = () => Promise<void>;

/** A programming error: the unit of work used in a way its semantics cannot honour. */
export class UnitOfWorkError extends Error {
  override name = 'UnitOfWorkError';
}

interface Frame {
  readonly trx: ControlledTransaction<Schema, string[]>;
  readonly afterCommit: Callback[];
  readonly onRollback: Callback[];
  readonly beforeCommit: AsyncCallback[];
  readonly depth: number;
  done: boolean;
  savepoints: number;
}

export type UnitOfWorkErrorReporter = (message: string, error: unknown) => void;

export class UnitOfWork {
  private readonly storage = new AsyncLocalStorage<Frame>();
  private report: UnitOfWorkErrorReporter = (message, error) => {
    console.error(message, error);
  };

  constructor(private readonly database: Kysely<Schema>) {}

  /** Where errors thrown by after-commit and rollback callbacks go (the app's logger). */
  setErrorReporter(report: UnitOfWorkErrorReporter): void {
    this.report = report;
  }

  /** True while a `run` is open in this asynchronous context. */
  get active(): boolean {
    const frame = this.storage.getStore();
    return frame !== undefined && !frame.done;
  }

  /** What stores query: the open unit's transaction, or the database outside one. */
  get db(): Kysely<Schema> {
    const frame = this.storage.getStore();
    return frame && !frame.done ? frame.trx : this.database;
  }

  /** Runs `fn` in a transaction, or in a savepoint of the one already open; see the file comment. */
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    const parent = this.storage.getStore();
    if (parent && !parent.done) return this.nested(parent, fn);
    const trx = await this.database.startTransaction().execute();
    const frame: Frame = { trx, afterCommit: [], onRollback: [], beforeCommit: [], depth: 0, done: false, savepoints: 0 };
    let result: T;
    try {
      result = await this.storage.run(frame, fn);
      for (const callback of frame.beforeCommit) await this.storage.run(frame, callback);
      frame.done = true;
      await trx.commit().execute();
    } catch (error) {
      frame.done = true;
      if (!trx.isCommitted) {
        try {
          await trx.rollback().execute();
        } catch (rollbackError) {
          this.report('a rollback failed', rollbackError);
        }
      }
      for (const undo of frame.onRollback.reverse()) this.safely('a rollback callback failed', undo);
      throw error;
    }
    for (const callback of frame.afterCommit) this.safely('an after-commit callback failed', callback);
    return result;
  }

  private async nested<T>(parent: Frame, fn: () => Promise<T> | T): Promise<T> {
    const name = `helios_sp_${parent.depth + 1}_${parent.savepoints++}`;
    await parent.trx.savepoint(name).execute();
    const frame: Frame = {
      trx: parent.trx,
      afterCommit: [],
      onRollback: [],
      beforeCommit: [],
      depth: parent.depth + 1,
      done: false,
      savepoints: 0,
    };
    let result: T;
    try {
      result = await this.storage.run(frame, fn);
      frame.done = true;
      await parent.trx.releaseSavepoint(name).execute();
    } catch (error) {
      frame.done = true;
      try {
        await parent.trx.rollbackToSavepoint(name).execute();
        await parent.trx.releaseSavepoint(name).execute();
      } catch (rollbackError) {
        this.report('a rollback to a savepoint failed', rollbackError);
      }
      for (const undo of frame.onRollback.reverse()) this.safely('a rollback callback failed', undo);
      throw error;
    }
    parent.afterCommit.push(...frame.afterCommit);
    parent.onRollback.push(...frame.onRollback);
    parent.beforeCommit.push(...frame.beforeCommit);
    return result;
  }

  /** Queues `callback` for after the outermost commit (dropped on rollback); at once outside a unit. */
  afterCommit(callback: Callback): void {
    const frame = this.openFrame();
    if (frame) frame.afterCommit.push(callback);
    else this.safely('an after-commit callback failed', callback);
  }

  /** Registers `callback` to run if the current unit (or savepoint) rolls back; nothing outside a unit. */
  onRollback(callback: Callback): void {
    this.openFrame()?.onRollback.push(callback);
  }

  /**
   * Queues `callback` to run inside the outermost transaction just before it commits (its
   * statements commit with the unit; if it throws, the unit rolls back). Outside a unit it is
   * refused: there is no transaction for it to join.
   */
  beforeCommit(callback: AsyncCallback): void {
    const frame = this.openFrame();
    if (!frame) throw new UnitOfWorkError('beforeCommit needs an open unit of work');
    frame.beforeCommit.push(callback);
  }

  private openFrame(): Frame | undefined {
    const frame = this.storage.getStore();
    return frame && !frame.done ? frame : undefined;
  }

  private safely(message: string, callback: Callback): void {
    try {
      callback();
    } catch (error) {
      this.report(message, error);
    }
  }
}
