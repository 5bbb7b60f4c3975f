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

  it('rebuild the SQLite audit log without AUTOINCREMENT, keeping its rows and ids; new ids follow the largest', async () => {
    const lite = openSqliteDatabase(':memory:');
    try {
      const before = sqliteMigrations.filter((m) => m.version < 9);
      await migrateDatabase(lite, before);
      const db = lite.sqlite!;
      const insert = db.prepare("INSERT INTO audit_log (at, actor, action, target_type, target, before_json, after_json) VALUES (?, 'admin', 'setFlagPercentage', 'FEATURE_FLAG', ?, NULL, '{}')");
      for (let i = 1; i <= 5; i++) insert.run(i, `flag_${i}`);
      db.prepare('DELETE FROM audit_log WHERE id = 2').run();
      expect(db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'").get()).toEqual({ seq: 5 });
      expect(await migrateDatabase(lite, sqliteMigrations)).toEqual(sqliteMigrations.filter((m) => m.version >= 9).map((m) => m.version));
      expect(db.prepare('SELECT id, at, target FROM audit_log ORDER BY id').all()).toEqual([
        { id: 1, at: 1, target: 'flag_1' }, { id: 3, at: 3, target: 'flag_3' }, { id: 4, at: 4, target: 'flag_4' }, { id: 5, at: 5, target: 'flag_5' },
      ]);
      expect((db.prepare("SELECT sql FROM sqlite_master WHERE name = 'audit_log'").get() as { sql: string }).sql).not.toMatch(/AUTOINCREMENT/);
      expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'audit_log_target'").get()).toEqual({ name: 'audit_log_target' });
      insert.run(6, 'flag_6');
      expect(db.prepare('SELECT max(id) AS id FROM audit_log').get()).toEqual({ id: 6 });
      // Nothing keeps a sequence for it any more: an insert writes no second table.
      expect(db.prepare("SELECT count(*) AS n FROM sqlite_sequence WHERE name = 'audit_log'").get()).toEqual({ n: 0 });
    } finally {
      await lite.close();
    }
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
