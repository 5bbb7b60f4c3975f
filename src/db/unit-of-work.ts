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
 *
 * `runSync(fn)` is the same unit for a synchronous `fn`, on SQLite only (`canRunSync`): the
 * change runs from BEGIN to COMMIT in one synchronous step, so it needs no asynchronous context
 * (nothing else runs in between) and makes no promise. The flag service's changes take it (a CPU
 * profile of `setFlagPercentage` showed the async hooks switched on and off for each unit, and
 * the promises of its awaits, at a quarter of the call outside SQL). Inside `fn`, stores use
 * their synchronous statements (`querySync`, `writeSync`); `run` and `beforeCommit`, which wait,
 * are refused, and an `fn` that returns a promise is rolled back and refused.
 *
 * On PostgreSQL a unit is Kysely's controlled transaction on a connection of the pool. On SQLite
 * it holds the one connection's turn (src/db/sqlite-connection.ts) from BEGIN to COMMIT and runs
 * those, and its savepoints, as prepared statements; its stores' Kysely queries run on that
 * connection meanwhile, and nothing else does. `query`/`write` run the statements written per
 * dialect (src/db/statement.ts) on the unit's connection, or outside a unit as a query would.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { ControlledTransaction, Kysely } from 'kysely';
import { CompiledQuery } from './kysely.js';
import type { Database } from './database.js';
import type { Schema } from './schema.js';
import type { PreparedStatement, SqliteConnection } from './sqlite-connection.js';
import type { Statement } from './statement.js';
import type BetterSqlite3 from 'better-sqlite3';

type Callback = () => void;
type AsyncCallback = () => Promise<void>;

/** A programming error: the unit of work used in a way its semantics cannot honour. */
export class UnitOfWorkError extends Error {
  override name = 'UnitOfWorkError';
}

interface Frame {
  /** What the unit's stores query. */
  readonly db: Kysely<Schema>;
  /** Kysely's transaction (PostgreSQL); null on SQLite, where the unit runs its own BEGIN and COMMIT. */
  readonly trx: ControlledTransaction<Schema, string[]> | null;
  readonly afterCommit: Callback[];
  readonly onRollback: Callback[];
  readonly beforeCommit: AsyncCallback[];
  readonly depth: number;
  done: boolean;
  savepoints: number;
}

export type UnitOfWorkErrorReporter = (message: string, error: unknown) => void;

/** The SQLite connection and its transaction statements, prepared once. */
interface SqliteUnits {
  readonly connection: SqliteConnection;
  readonly begin: PreparedStatement;
  readonly commit: PreparedStatement;
  readonly rollback: PreparedStatement;
  readonly dataVersion: BetterSqlite3.Statement<[], number>;
}

const frameOf = (db: Kysely<Schema>, trx: Frame['trx'], depth: number): Frame => ({
  db, trx, afterCommit: [], onRollback: [], beforeCommit: [], depth, done: false, savepoints: 0,
});

/** The next savepoint's name under `parent` (numbered per depth, so nested ones never collide). */
function savepointName(parent: Frame): string {
  return `helios_sp_${parent.depth + 1}_${parent.savepoints++}`;
}

/** A savepoint that succeeded: its callbacks join the enclosing unit's and wait for its commit. */
function joinParent(parent: Frame, frame: Frame): void {
  parent.afterCommit.push(...frame.afterCommit);
  parent.onRollback.push(...frame.onRollback);
  parent.beforeCommit.push(...frame.beforeCommit);
}

export class UnitOfWork {
  private readonly storage = new AsyncLocalStorage<Frame>();
  /** Outermost units between their first statement and done (see `body`). */
  private openUnits = 0;
  /** The innermost unit `runSync` is running (it runs to its end before anything else runs). */
  private syncFrame: Frame | undefined = undefined;
  private readonly database: Kysely<Schema>;
  private readonly sqlite: SqliteUnits | null;
  private report: UnitOfWorkErrorReporter = (message, error) => {
    console.error(message, error);
  };

  constructor(database: Database) {
    this.database = database.kysely;
    const connection = database.sqliteConnection;
    this.sqlite = connection && {
      connection,
      // IMMEDIATE: the unit takes the database's write lock at its start, waiting (busy_timeout)
      // for another process's writer, such as the token CLI beside the server. A deferred BEGIN
      // would take it only at the unit's first write, and a commit by the other process between
      // the unit's read and that write fails the write at once (SQLITE_BUSY: a stale snapshot).
      begin: connection.db.prepare<unknown[]>('BEGIN IMMEDIATE'),
      commit: connection.db.prepare<unknown[]>('COMMIT'),
      rollback: connection.db.prepare<unknown[]>('ROLLBACK'),
      dataVersion: connection.db.prepare<[], number>('PRAGMA data_version').pluck(),
    };
  }

  /** Where errors thrown by after-commit and rollback callbacks go (the app's logger). */
  setErrorReporter(report: UnitOfWorkErrorReporter): void {
    this.report = report;
  }

  /** True while a `run` is open in this asynchronous context, or a `runSync` is running. */
  get active(): boolean {
    const frame = this.current();
    return frame !== undefined && !frame.done;
  }

  /** What stores query: the open unit's transaction, or the database outside one. */
  get db(): Kysely<Schema> {
    const frame = this.current();
    return frame && !frame.done ? frame.db : this.database;
  }

  /**
   * SQLite's `PRAGMA data_version`: it moves only when another connection (another process, such
   * as the token CLI) commits to the database file, never for this connection's own commits.
   * Null on PostgreSQL, where other nodes write and there is no such counter.
   */
  dataVersion(): number | null {
    return this.sqlite ? this.sqlite.dataVersion.get()! : null;
  }

  /** The rows of a statement written per dialect, in the open unit (or outside one, as a query). */
  query<R>(statement: Statement, parameters: readonly unknown[]): Promise<R[]> {
    if (this.sqlite) return this.onSqlite(statement, (prepared) => prepared.all(parameters) as R[]);
    return this.db.executeQuery<R>(CompiledQuery.raw(statement.postgres, [...parameters])).then((result) => result.rows);
  }

  /** Runs a statement written per dialect that returns no rows; resolves to the rows it changed. */
  write(statement: Statement, parameters: readonly unknown[]): Promise<number> {
    if (this.sqlite) return this.onSqlite(statement, (prepared) => prepared.run(parameters).changes);
    return this.db.executeQuery(CompiledQuery.raw(statement.postgres, [...parameters])).then((result) => Number(result.numAffectedRows ?? 0));
  }

  /**
   * Inside a unit, which holds the connection's turn, the statement runs at once (not `async`:
   * the hot path makes one promise per statement, not three); outside, it takes the turn.
   */
  private onSqlite<T>(statement: Statement, execute: (prepared: PreparedStatement) => T): Promise<T> {
    try {
      const prepared = this.sqlite!.connection.prepare(statement.sqlite);
      return this.openFrame() ? Promise.resolve(execute(prepared)) : this.inTurn(prepared, execute);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private async inTurn<T>(prepared: PreparedStatement, execute: (prepared: PreparedStatement) => T): Promise<T> {
    const { gate } = this.sqlite!.connection;
    if (!gate.tryTake()) await gate.take();
    try {
      return execute(prepared);
    } finally {
      gate.give();
    }
  }

  /** `query` run at once, inside a unit on SQLite (`runSync`'s stores). */
  querySync<R>(statement: Statement, parameters: readonly unknown[]): R[] {
    return this.sqliteInUnit().connection.prepare(statement.sqlite).all(parameters) as R[];
  }

  /** `write` run at once, inside a unit on SQLite (`runSync`'s stores); the rows it changed. */
  writeSync(statement: Statement, parameters: readonly unknown[]): number {
    return this.sqliteInUnit().connection.prepare(statement.sqlite).run(parameters).changes;
  }

  private sqliteInUnit(): SqliteUnits {
    if (this.sqlite === null || this.openFrame() === undefined) {
      throw new UnitOfWorkError('a synchronous statement needs an open unit of work on SQLite');
    }
    return this.sqlite;
  }

  /**
   * Whether `runSync` can run now: on SQLite, inside an open unit (it becomes a savepoint of it)
   * or when no unit holds the connection. Otherwise (PostgreSQL, or the connection held by a
   * unit that is waiting for something) use `run`, which waits for its turn.
   */
  get canRunSync(): boolean {
    if (this.sqlite === null) return false;
    return this.openFrame() !== undefined || !this.sqlite.connection.gate.busy;
  }

  /**
   * `run` for a synchronous `fn` (see the file comment), with the same semantics: a transaction,
   * or a savepoint of the open unit; after-commit and rollback callbacks as `run` has them.
   * Throws UnitOfWorkError when `canRunSync` is false.
   */
  runSync<T>(fn: () => T): T {
    if (!this.canRunSync) throw new UnitOfWorkError('runSync needs SQLite and the connection free, or an open unit: use run');
    const parent = this.openFrame();
    return parent ? this.nestedSync(parent, fn) : this.runSyncOnSqlite(this.sqlite!, fn);
  }

  private runSyncOnSqlite<T>(sqlite: SqliteUnits, fn: () => T): T {
    // The gate is not taken: nothing else runs until this unit ends, so nobody can find it busy.
    sqlite.begin.run();
    const frame = frameOf(sqlite.connection.held, null, 0);
    let result: T;
    try {
      result = this.callSync(frame, fn);
      sqlite.commit.run();
    } catch (error) {
      this.rollBackOnSqlite(sqlite);
      this.rolledBack(frame);
      throw error;
    }
    this.committed(frame);
    return result;
  }

  private nestedSync<T>(parent: Frame, fn: () => T): T {
    const name = savepointName(parent);
    this.savepointOnSqlite('savepoint', name);
    const frame = frameOf(parent.db, null, parent.depth + 1);
    let result: T;
    try {
      result = this.callSync(frame, fn);
      this.savepointOnSqlite('release', name);
    } catch (error) {
      this.rollBackToSavepoint(name);
      this.rolledBack(frame);
      throw error;
    }
    joinParent(parent, frame);
    return result;
  }

  /** `fn` as the running synchronous unit `frame`, which is done after. */
  private callSync<T>(frame: Frame, fn: () => T): T {
    const outer = this.syncFrame;
    this.syncFrame = frame;
    try {
      const result = fn();
      if (typeof (result as { then?: unknown } | null)?.then === 'function') {
        throw new UnitOfWorkError('runSync needs a synchronous function: this one returned a promise (use run)');
      }
      return result;
    } finally {
      frame.done = true;
      this.syncFrame = outer;
    }
  }

  /** Runs `fn` in a transaction, or in a savepoint of the one already open; see the file comment. */
  run<T>(fn: () => Promise<T> | T): Promise<T> {
    // Not `async`: the promise of the path taken is the unit's (an async wrapper adds one more).
    if (this.syncFrame) return Promise.reject(new UnitOfWorkError('run inside runSync: a synchronous unit cannot wait for one'));
    const parent = this.storage.getStore();
    if (parent && !parent.done) return this.nested(parent, fn);
    return this.sqlite ? this.runOnSqlite(this.sqlite, fn) : this.runOnKysely(fn);
  }

  private async runOnKysely<T>(fn: () => Promise<T> | T): Promise<T> {
    const trx = await this.database.startTransaction().execute();
    const frame = frameOf(trx, trx, 0);
    let result: T;
    try {
      result = await this.body(frame, fn);
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
      this.rolledBack(frame);
      throw error;
    }
    this.committed(frame);
    return result;
  }

  private async runOnSqlite<T>(sqlite: SqliteUnits, fn: () => Promise<T> | T): Promise<T> {
    const { connection } = sqlite;
    if (!connection.gate.tryTake()) await connection.gate.take();
    try {
      sqlite.begin.run();
    } catch (error) {
      connection.gate.give();
      throw error;
    }
    const frame = frameOf(connection.held, null, 0);
    let result: T;
    try {
      result = await this.body(frame, fn);
      sqlite.commit.run();
    } catch (error) {
      frame.done = true;
      this.rollBackOnSqlite(sqlite);
      connection.gate.give();
      this.rolledBack(frame);
      throw error;
    }
    // The turn is given back and memory updated by the callbacks in one synchronous step: no
    // other unit or query runs between this commit and its after-commit callbacks.
    connection.gate.give();
    this.committed(frame);
    return result;
  }

  private rollBackOnSqlite(sqlite: SqliteUnits): void {
    // A failed COMMIT (a deferred constraint) leaves the transaction open; some errors end it.
    if (!sqlite.connection.db.inTransaction) return;
    try {
      sqlite.rollback.run();
    } catch (rollbackError) {
      this.report('a rollback failed', rollbackError);
    }
  }

  /**
   * `fn`, then the before-commit callbacks, in the unit's context; the frame is done after.
   *
   * When the last open unit is done, the storage is disabled until the next `run` enables it
   * again. While it is enabled, Node runs its async_hooks on every promise, timer and socket
   * write of the process, reads included (a few microseconds per HTTP request); between units
   * nothing needs a context. What code sees does not change: work a unit started and did not
   * await still finds no open unit (`getStore()` answers undefined where it answered the done
   * frame), and a resource made while no unit was open belongs to none.
   */
  private async body<T>(frame: Frame, fn: () => Promise<T> | T): Promise<T> {
    this.openUnits++;
    try {
      const result = await this.storage.run(frame, fn);
      for (const callback of frame.beforeCommit) await this.storage.run(frame, callback);
      return result;
    } finally {
      frame.done = true;
      if (--this.openUnits === 0) this.storage.disable();
    }
  }

  private rolledBack(frame: Frame): void {
    for (const undo of frame.onRollback.reverse()) this.safely('a rollback callback failed', undo);
  }

  private committed(frame: Frame): void {
    for (const callback of frame.afterCommit) this.safely('an after-commit callback failed', callback);
  }

  private async nested<T>(parent: Frame, fn: () => Promise<T> | T): Promise<T> {
    const name = savepointName(parent);
    await this.savepoint(parent, 'savepoint', name);
    const frame = frameOf(parent.db, parent.trx, parent.depth + 1);
    let result: T;
    try {
      result = await this.storage.run(frame, fn);
      frame.done = true;
      await this.savepoint(parent, 'release', name);
    } catch (error) {
      frame.done = true;
      try {
        await this.savepoint(parent, 'rollback to', name);
        await this.savepoint(parent, 'release', name);
      } catch (rollbackError) {
        this.report('a rollback to a savepoint failed', rollbackError);
      }
      this.rolledBack(frame);
      throw error;
    }
    joinParent(parent, frame);
    return result;
  }

  private async savepoint(parent: Frame, command: 'savepoint' | 'release' | 'rollback to', name: string): Promise<void> {
    const trx = parent.trx;
    if (trx === null) {
      this.savepointOnSqlite(command, name);
      return;
    }
    if (command === 'savepoint') await trx.savepoint(name).execute();
    else if (command === 'release') await trx.releaseSavepoint(name).execute();
    else await trx.rollbackToSavepoint(name).execute();
  }

  private savepointOnSqlite(command: 'savepoint' | 'release' | 'rollback to', name: string): void {
    // Not the connection's statement cache: savepoint names are numbered, each text is new.
    this.sqlite!.connection.db.prepare(`${command} "${name}"`).run();
  }

  private rollBackToSavepoint(name: string): void {
    try {
      this.savepointOnSqlite('rollback to', name);
      this.savepointOnSqlite('release', name);
    } catch (rollbackError) {
      this.report('a rollback to a savepoint failed', rollbackError);
    }
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
    if (this.syncFrame) throw new UnitOfWorkError('beforeCommit inside runSync: a synchronous unit cannot wait for its callbacks');
    frame.beforeCommit.push(callback);
  }

  private openFrame(): Frame | undefined {
    const frame = this.current();
    return frame && !frame.done ? frame : undefined;
  }

  /** The unit this code runs in: the synchronous one running now, else the asynchronous context's. */
  private current(): Frame | undefined {
    return this.syncFrame ?? this.storage.getStore();
  }

  private safely(message: string, callback: Callback): void {
    try {
      callback();
    } catch (error) {
      this.report(message, error);
    }
  }
}
