/**
 * One better-sqlite3 connection per process. WAL lets readers (GraphiQL, dashboards) run while
 * a mutation writes; synchronous=NORMAL is durable across process crashes in WAL mode (only an
 * OS crash or power loss can lose the last transactions), which is the trade-off Helios ships.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

export type Db = Database.Database;

export function openDatabase(file: string): Db {
  if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('foreign_keys = ON');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  return db;
}
