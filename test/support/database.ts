/**
 * A migrated database and its unit of work for store and service tests: SQLite in memory by
 * default (what `npm start` runs on).
 */
import { migrateDatabase, migrationsDir, openSqliteDatabase, readMigrations, type Database } from '../../src/db/database.js';
import { UnitOfWork } from '../../src/db/unit-of-work.js';
import { packageRoot } from '../../src/paths.js';

export interface TestDatabase {
  database: Database;
  uow: UnitOfWork;
  close(): Promise<void>;
}

export async function openTestDatabase(file = ':memory:'): Promise<TestDatabase> {
  const database = openSqliteDatabase(file);
  await migrateDatabase(database, readMigrations(migrationsDir(packageRoot(), database.dialect)));
  const uow = new UnitOfWork(database.kysely);
  return { database, uow, close: () => database.close() };
}
