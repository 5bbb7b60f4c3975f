/**
 * One Helios process per database. A second one (`npm run dev` while `npm start` serves) would
 * otherwise run recovery on a live database (marking its running test runs INTERRUPTED) and load
 * every module before failing on the port, so `createApp` takes this lock before it opens the
 * database, and refuses with `DATABASE_IN_USE` when another process holds it.
 *
 * The mechanism: `<db>.lock`, a tiny SQLite file on which the holder keeps a write transaction
 * open (`BEGIN IMMEDIATE`, SQLite's RESERVED lock: one writer at a time, readers still allowed)
 * for as long as it runs. SQLite implements that lock with a POSIX advisory lock (fcntl), which
 * the kernel drops when the process exits however it exits, kill -9 included, so a stale lock
 * cannot exist and no pid-liveness guess is needed (pid files get that wrong when a pid is
 * reused). SQLite also tracks its locks per connection inside one process, so a second
 * `createApp` in the same process is refused too. The holder's pid, host, start time and command
 * are committed in the same file before the lock is held, and, because RESERVED still admits
 * readers, the refused process reads them for its message. The main database is not locked
 * itself: `npm run token` and other readers keep working beside the server.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';

export interface DatabaseLockHolder {
  pid: number;
  host: string;
  /** ISO-8601. */
  startedAt: string;
  command: string;
}

export class DatabaseInUseError extends Error {
  override name = 'DatabaseInUseError';
  readonly code = 'DATABASE_IN_USE' as const;
  constructor(
    readonly dbPath: string,
    readonly holder: DatabaseLockHolder | null,
  ) {
    const who = holder
      ? `another Helios process (pid ${holder.pid} on ${holder.host}, started ${holder.startedAt}: ${holder.command})`
      : 'another Helios process';
    super(
      `The database ${dbPath} is in use by ${who}. Stop that process first, or give this one its own database with HELIOS_DB_PATH.`,
    );
  }
}

export interface DatabaseLock {
  /** The lock file, `<database>.lock`. */
  readonly path: string;
  /** Clears the holder record and drops the lock. Idempotent. */
  release(): void;
}

const MAX_COMMAND_LENGTH = 200;

function isBusy(error: unknown): boolean {
  return typeof error === 'object' && error !== null && String((error as { code?: unknown }).code).startsWith('SQLITE_BUSY');
}

/**
 * Takes the lock of the database at `dbPath` or throws `DatabaseInUseError`. `:memory:` needs
 * no lock (null). `now` is the start time recorded for the message of a refused process.
 */
export function acquireDatabaseLock(dbPath: string, now: number): DatabaseLock | null {
  if (dbPath === ':memory:') return null;
  const absolute = path.resolve(dbPath);
  const lockPath = `${absolute}.lock`;
  mkdirSync(path.dirname(lockPath), { recursive: true });
  const lockDb = new Database(lockPath);
  try {
    // Never wait for the holder: a second process refuses at once.
    lockDb.pragma('busy_timeout = 0');
    const refuse = (): never => {
      throw new DatabaseInUseError(absolute, readHolder(lockDb));
    };
    const begin = () => {
      try {
        lockDb.exec('BEGIN IMMEDIATE');
      } catch (error) {
        if (isBusy(error)) refuse();
        throw error;
      }
    };
    begin();
    lockDb.exec(`CREATE TABLE IF NOT EXISTS holder (
      pid INTEGER NOT NULL, host TEXT NOT NULL, started_at TEXT NOT NULL, command TEXT NOT NULL
    ) STRICT`);
    lockDb.exec('DELETE FROM holder');
    lockDb
      .prepare('INSERT INTO holder (pid, host, started_at, command) VALUES (?, ?, ?, ?)')
      .run(process.pid, hostname(), new Date(now).toISOString(), process.argv.join(' ').slice(0, MAX_COMMAND_LENGTH));
    lockDb.exec('COMMIT');
    // Held from here on. Another process that took the lock between COMMIT and this BEGIN wins
    // (and has written its own record): this one is then refused like any later one.
    begin();
  } catch (error) {
    lockDb.close();
    throw error;
  }
  let released = false;
  return {
    path: lockPath,
    release() {
      if (released) return;
      released = true;
      try {
        lockDb.exec('DELETE FROM holder');
        lockDb.exec('COMMIT');
      } finally {
        lockDb.close();
      }
    },
  };
}

/**
 * The holder's record as last committed. The holder commits it a moment after taking the lock,
 * so a missing record, or one whose process is gone (left by a killed holder), is read again a
 * few times first.
 */
function readHolder(lockDb: Database.Database): DatabaseLockHolder | null {
  lockDb.pragma('busy_timeout = 1000');
  for (let attempt = 0; attempt < 5; attempt++) {
    let holder: DatabaseLockHolder | null = null;
    try {
      const row = lockDb
        .prepare<[], { pid: number; host: string; started_at: string; command: string }>('SELECT pid, host, started_at, command FROM holder LIMIT 1')
        .get();
      if (row) holder = { pid: row.pid, host: row.host, startedAt: row.started_at, command: row.command };
    } catch {
      // No table yet: the holder is still writing its first record.
    }
    if (holder && (holder.host !== hostname() || isAlive(holder.pid))) return holder;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
  // Still a dead process's record: naming it would mislead, so the message names no one.
  return null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
