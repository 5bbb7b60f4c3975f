/**
 * The store's database, one Kysely instance for either dialect:
 * - SQLite (the embedded default, `HELIOS_DB_PATH`): Kysely's SQLite dialect over the one
 *   better-sqlite3 connection of `connection.ts`, one query or unit of work at a time on it, so
 *   an `await` inside a transaction never lets another unit's statements in between (see
 *   sqlite-connection.ts).
 * - PostgreSQL (`HELIOS_DATABASE_URL=postgres://...`): Kysely's PostgreSQL dialect over a
 *   `pg` pool. BIGINT columns (epoch milliseconds, ids) are parsed as numbers: every value Helios
 *   stores there is below 2^53.
 *
 * Migrations live per dialect in `migrations/<dialect>/NNNN_name.sql` and are applied here,
 * each with its `schema_migrations` row in one transaction; on PostgreSQL under a session
 * advisory lock, so nodes starting together apply each file once and wait for each other.
 */
import path from 'node:path';
import { openDatabase as openSqlite, type Db } from './connection.js';
import { migrate, readMigrations, type Migration } from './migrate.js';
import { Kysely, PostgresDialect, sql } from './kysely.js';
import { pgDriver } from './pg.js';
import { SqliteConnection } from './sqlite-connection.js';
import type { Schema } from './schema.js';

export type Dialect = 'sqlite' | 'postgres';

export interface Database {
  readonly dialect: Dialect;
  readonly kysely: Kysely<Schema>;
  /** The better-sqlite3 connection under Kysely (SQLite only): tests and the token CLI read it. */
  readonly sqlite: Db | null;
  /** That connection as Kysely and the unit of work share it (SQLite only; see sqlite-connection.ts). */
  readonly sqliteConnection: SqliteConnection | null;
  /** Where it is, without credentials: the SQLite file or `postgres://host:port/db`. */
  readonly location: string;
  close(): Promise<void>;
}

/** Key of the advisory lock held while migrations run (an arbitrary constant of Helios's). */
export const MIGRATION_LOCK_KEY = 0x4845_4c01;
/** Key of the advisory lock a node holds while its services load and seed their state. */
export const STARTUP_LOCK_KEY = 0x4845_4c04;

export function openSqliteDatabase(file: string): Database {
  const connection = new SqliteConnection(openSqlite(file));
  return {
    dialect: 'sqlite',
    kysely: connection.kysely,
    sqlite: connection.db,
    sqliteConnection: connection,
    location: file,
    close: () => connection.close(),
  };
}

export function openPostgresDatabase(url: string, options: { poolSize?: number; applicationName?: string } = {}): Database {
  const pool = new (pgDriver().Pool)({
    connectionString: url,
    max: options.poolSize ?? 10,
    application_name: options.applicationName ?? 'helios',
  });
  // An idle client losing its connection (the server restarted, pg_terminate_backend) must not
  // crash the process: the pool drops it and the next query opens a new one.
  pool.on('error', () => undefined);
  const kysely = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
  return {
    dialect: 'postgres',
    kysely,
    sqlite: null,
    sqliteConnection: null,
    location: redactUrl(url),
    async close() {
      await kysely.destroy();
    },
  };
}

/** `postgres://user:secret@host:5432/db?x=y` -> `postgres://host:5432/db`. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return 'postgres://(unparsable url)';
  }
}

export function migrationsDir(root: string, dialect: Dialect): string {
  return path.join(root, 'migrations', dialect);
}

/** Applies pending migrations of the database's dialect; returns the versions this call applied. */
export async function migrateDatabase(database: Database, migrations: readonly Migration[]): Promise<number[]> {
  const db = database.kysely;
  if (database.dialect === 'sqlite') {
    // Synchronous, as before: one connection, and the lock file keeps other processes out.
    return migrate(database.sqlite!, migrations);
  }
  return db.connection().execute(async (conn) => {
    await sql`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY})`.execute(conn);
    try {
      await sql`CREATE TABLE IF NOT EXISTS schema_migrations (
        version BIGINT PRIMARY KEY,
        name TEXT NOT NULL,
        applied_at TEXT NOT NULL
      )`.execute(conn);
      const rows = await conn.selectFrom('schema_migrations').select('version').execute();
      const applied = new Set(rows.map((r) => r.version));
      const done: number[] = [];
      for (const migration of migrations) {
        if (applied.has(migration.version)) continue;
        await conn.transaction().execute(async (trx) => {
          await sql.raw(migration.sql).execute(trx);
          await trx
            .insertInto('schema_migrations')
            .values({ version: migration.version, name: migration.name, applied_at: new Date().toISOString() })
            .execute();
        });
        done.push(migration.version);
      }
      return done;
    } finally {
      await sql`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY})`.execute(conn);
    }
  });
}

/**
 * Runs `fn` while holding the start-up lock (PostgreSQL; at once on SQLite): nodes starting
 * together load and seed their state one after the other, so two of them never both import
 * the default flags or both decide what an unfinished run means.
 */
export async function withStartupLock<T>(database: Database, fn: () => Promise<T>): Promise<T> {
  if (database.dialect === 'sqlite') return fn();
  return database.kysely.connection().execute(async (conn) => {
    await sql`SELECT pg_advisory_lock(${STARTUP_LOCK_KEY})`.execute(conn);
    try {
      return await fn();
    } finally {
      await sql`SELECT pg_advisory_unlock(${STARTUP_LOCK_KEY})`.execute(conn);
    }
  });
}

export { readMigrations };
