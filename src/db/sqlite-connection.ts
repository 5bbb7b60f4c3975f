/**
 * The one better-sqlite3 connection as Kysely and the unit of work share it.
 *
 * - Kysely's queries outside a unit of work take the connection's turn (`ConnectionGate`) for
 *   each query, as Kysely's own SQLite driver does with its mutex; a unit of work takes the turn
 *   from BEGIN to COMMIT. So an `await` inside a unit never lets another unit's statements, or a
 *   read outside any unit, in between: nothing ever sees a transaction that is still open.
 * - Inside its turn the unit runs BEGIN, COMMIT and savepoints as prepared statements, and its
 *   stores' queries on `held` (a Kysely on the same connection that does not wait for the turn:
 *   the unit already has it). Statements written per dialect (src/db/statement.ts) run directly
 *   on the prepared statement, synchronously, without Kysely's query building and compilation.
 * - Prepared statements are kept (bounded): Kysely's driver prepares every query it runs, and a
 *   CPU profile of `setFlagPercentage` showed better-sqlite3's `prepare` at a quarter of the
 *   call. Kysely's queries have a fixed text per shape (values are parameters), so a few dozen
 *   statements serve every query Helios makes; the oldest is dropped first for the shapes that
 *   vary, such as multi-row inserts. Reusing a statement is safe here: better-sqlite3 runs one
 *   statement at a time on the one connection.
 */
import type { DatabaseConnection, Driver, SqliteDatabase, SqliteDialectConfig } from 'kysely';
import { Kysely, SqliteDialect, SqliteDriver } from './kysely.js';
import type BetterSqlite3 from 'better-sqlite3';
import type { Db } from './connection.js';
import type { Schema } from './schema.js';
import { setBounded } from '../bounded-cache.js';

/** How many prepared statements the connection keeps (one per distinct SQL text). */
const STATEMENT_CACHE_SIZE = 512;

/** A prepared statement, its values given as an array (positional parameters), as Kysely's driver passes them. */
export type PreparedStatement = BetterSqlite3.Statement<unknown[], unknown>;

/** Whose turn it is on the connection: one holder at a time, the others wait in order. */
export class ConnectionGate {
  private turn: Promise<void> | null = null;
  private done: (() => void) | null = null;

  get busy(): boolean {
    return this.turn !== null;
  }

  /** Takes the turn if it is free (true), without waiting. */
  tryTake(): boolean {
    if (this.turn !== null) return false;
    this.turn = new Promise((resolve) => {
      this.done = resolve;
    });
    return true;
  }

  async take(): Promise<void> {
    while (!this.tryTake()) await this.turn;
  }

  give(): void {
    const done = this.done;
    this.turn = null;
    this.done = null;
    done?.();
  }
}

export class SqliteConnection {
  readonly gate = new ConnectionGate();
  /** Kysely for queries outside a unit: each takes the gate's turn. */
  readonly kysely: Kysely<Schema>;
  /** Kysely for the holder of the turn (a unit of work): the same connection, no waiting. */
  readonly held: Kysely<Schema>;
  private readonly statements = new Map<string, PreparedStatement>();

  constructor(readonly db: Db) {
    const cached: SqliteDatabase = { close: () => db.close(), prepare: (text: string) => this.prepare(text) };
    this.kysely = new Kysely<Schema>({ dialect: new GatedSqliteDialect({ database: cached }, this.gate) });
    // Closing the connection is `kysely`'s to do (Database.close destroys it).
    this.held = new Kysely<Schema>({ dialect: new SqliteDialect({ database: { ...cached, close: () => undefined } }) });
  }

  /** The connection's prepared statement for `text`, kept for the next call. */
  prepare(text: string): PreparedStatement {
    let statement = this.statements.get(text);
    if (statement) return statement;
    statement = this.db.prepare<unknown[]>(text);
    setBounded(this.statements, text, statement, STATEMENT_CACHE_SIZE);
    return statement;
  }

  async close(): Promise<void> {
    await this.held.destroy();
    await this.kysely.destroy(); // closes the better-sqlite3 connection too
  }
}

/** Kysely's SQLite dialect whose driver takes the gate's turn for each connection it hands out. */
class GatedSqliteDialect extends SqliteDialect {
  constructor(
    private readonly config: SqliteDialectConfig,
    private readonly gate: ConnectionGate,
  ) {
    super(config);
  }

  override createDriver(): Driver {
    return new GatedSqliteDriver(this.config, this.gate);
  }
}

class GatedSqliteDriver extends SqliteDriver {
  constructor(
    config: SqliteDialectConfig,
    private readonly gate: ConnectionGate,
  ) {
    super(config);
  }

  override async acquireConnection(): Promise<DatabaseConnection> {
    await this.gate.take();
    try {
      return await super.acquireConnection();
    } catch (error) {
      this.gate.give();
      throw error;
    }
  }

  override async releaseConnection(): Promise<void> {
    await super.releaseConnection();
    this.gate.give();
  }
}
