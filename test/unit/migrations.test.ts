/**
 * The two dialects' migrations describe one schema: the same versions, and after applying
 * them the same tables with the same columns (what the one Kysely store relies on). PostgreSQL's
 * half runs when the server answers, in a database of its own; applying twice changes nothing
 * and nodes migrating at once apply each file once (the advisory lock).
 */
import { sql } from '../../src/db/kysely.js';
import { describe, expect, it } from 'vitest';
import {
  migrateDatabase, migrationsDir, openPostgresDatabase, openSqliteDatabase, readMigrations, type Database,
} from '../../src/db/database.js';
import { packageRoot } from '../../src/paths.js';
import { createTestPostgres, postgresAvailable } from '../support/postgres.js';

const sqliteMigrations = readMigrations(migrationsDir(packageRoot(), 'sqlite'));
const postgresMigrations = readMigrations(migrationsDir(packageRoot(), 'postgres'));

async function columns(database: Database): Promise<Record<string, string[]>> {
  const tables: Record<string, string[]> = {};
  if (database.dialect === 'sqlite') {
    const names = database.sqlite!.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all();
    for (const { name } of names) {
      tables[name] = database.sqlite!.prepare<[], { name: string }>(`PRAGMA table_info(${name})`).all().map((c) => c.name).sort();
    }
  } else {
    const rows = await sql<{ table_name: string; column_name: string }>`
      SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'`.execute(database.kysely);
    for (const row of rows.rows) (tables[row.table_name] ??= []).push(row.column_name);
    for (const list of Object.values(tables)) list.sort();
  }
  return Object.fromEntries(Object.entries(tables).sort(([a], [b]) => a.localeCompare(b)));
}

describe('migrations for both dialects', () => {
  it('have the same versions and names', () => {
    expect(postgresMigrations.map((m) => `${m.version}_${m.name}`)).toEqual(sqliteMigrations.map((m) => `${m.version}_${m.name}`));
  });

  it.skipIf(!postgresAvailable())('create the same tables and columns on SQLite and PostgreSQL; concurrent migrators apply each file once', async () => {
    const lite = openSqliteDatabase(':memory:');
    const pgdb = await createTestPostgres('migrations');
    const nodes = [openPostgresDatabase(pgdb.url, { poolSize: 2 }), openPostgresDatabase(pgdb.url, { poolSize: 2 }), openPostgresDatabase(pgdb.url, { poolSize: 2 })];
    try {
      expect(await migrateDatabase(lite, sqliteMigrations)).toEqual(sqliteMigrations.map((m) => m.version));
      const applied = await Promise.all(nodes.map((n) => migrateDatabase(n, postgresMigrations)));
      // One of the three applied everything, the others found it done.
      expect(applied.flat().sort((a, b) => a - b)).toEqual(postgresMigrations.map((m) => m.version));
      expect(await migrateDatabase(nodes[0]!, postgresMigrations)).toEqual([]);
      expect(await columns(nodes[0]!)).toEqual(await columns(lite));
    } finally {
      await lite.close();
      await Promise.all(nodes.map((n) => n.close()));
      await pgdb.drop();
    }
  });
});
