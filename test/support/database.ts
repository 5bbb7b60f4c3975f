/**
 * A migrated database and its unit of work for store and service tests: SQLite in memory by
 * default (what `npm start` runs on), or a PostgreSQL database of its own, dropped on close.
 */
import {
  migrateDatabase, migrationsDir, openPostgresDatabase, openSqliteDatabase, readMigrations, type Database,
} from '../../src/db/database.js';
import { UnitOfWork } from '../../src/db/unit-of-work.js';
import { packageRoot } from '../../src/paths.js';
import { createTestPostgres, postgresAvailable } from './postgres.js';

export interface TestDatabase {
  database: Database;
  uow: UnitOfWork;
  close(): Promise<void>;
}

export async function openTestDatabase(file = ':memory:'): Promise<TestDatabase> {
  const database = openSqliteDatabase(file);
  await migrateDatabase(database, readMigrations(migrationsDir(packageRoot(), database.dialect)));
  const uow = new UnitOfWork(database);
  return { database, uow, close: () => database.close() };
}

/** A migrated PostgreSQL database `helios_test_<tag>_...` of its own; `close()` drops it. */
export async function openTestPostgresDatabase(tag: string, poolSize = 4): Promise<TestDatabase> {
  const pg = await createTestPostgres(tag);
  const database = openPostgresDatabase(pg.url, { poolSize });
  await migrateDatabase(database, readMigrations(migrationsDir(packageRoot(), database.dialect)));
  return {
    database,
    uow: new UnitOfWork(database),
    async close() {
      await database.close();
      await pg.drop();
    },
  };
}

/** For `describe.each`: [name, open, available] for SQLite and for PostgreSQL (when it answers). */
export function bothDialects(tag: string, poolSize = 4): Array<[string, () => Promise<TestDatabase>, boolean]> {
  return [
    ['SQLite', () => openTestDatabase(), true],
    ['PostgreSQL', () => openTestPostgresDatabase(tag, poolSize), postgresAvailable()],
  ];
}
