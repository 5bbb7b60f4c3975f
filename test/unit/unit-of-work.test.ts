/**
 * UnitOfWork on real databases, SQLite and PostgreSQL alike: transaction, savepoints,
 * after-commit, before-commit and rollback callbacks, and concurrent units.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Kysely } from 'kysely';
import { sql } from '../../src/db/kysely.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPostgresDatabase, openSqliteDatabase, type Database } from '../../src/db/database.js';
import type { Schema } from '../../src/db/schema.js';
import { statement } from '../../src/db/statement.js';
import { UnitOfWork, UnitOfWorkError } from '../../src/db/unit-of-work.js';
import { createTestPostgres, postgresAvailable, type TestPostgres } from '../support/postgres.js';

// The tests use `meta` (key, value) as their table: it exists in both dialects' first migration.
const TABLE = sql`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`;

const boom = (): never => {
  throw new Error('boom');
};

interface Harness {
  uow: UnitOfWork;
  log: string[];
  insert(v: string): Promise<void>;
  rows(): Promise<string[]>;
}

function harness(database: Database): Harness {
  const db: Kysely<Schema> = database.kysely;
  const uow = new UnitOfWork(database);
  const log: string[] = [];
  uow.setErrorReporter((message, error) => log.push(`${message}: ${(error as Error).message}`));
  let n = 0;
  return {
    uow,
    log,
    async insert(v) {
      await uow.db.insertInto('meta').values({ key: String(n++).padStart(4, '0'), value: v }).execute();
    },
    async rows() {
      const rows = await db.selectFrom('meta').select('value').orderBy('key').execute();
      return rows.map((r) => r.value);
    },
  };
}

function suite(name: string, open: () => Promise<Database>, enabled = true): void {
  describe.skipIf(!enabled)(`UnitOfWork on ${name}`, () => {
    let database: Database;
    beforeAll(async () => {
      database = await open();
    });
    afterAll(async () => {
      await database?.close();
    });
    const fresh = async (): Promise<Harness> => {
      await sql`DROP TABLE IF EXISTS meta`.execute(database.kysely);
      await TABLE.execute(database.kysely);
      return harness(database);
    };

    it('runs after-commit callbacks once, in order, only after the outermost commit', async () => {
      const { uow, insert, rows } = await fresh();
      const seen: string[] = [];
      const result = await uow.run(async () => {
        await insert('a');
        uow.afterCommit(() => seen.push(`1:active=${uow.active}`));
        await uow.run(async () => {
          await insert('b');
          uow.afterCommit(() => seen.push('2'));
        });
        // The inner unit committed its savepoint, but nothing happens before the outer commit.
        expect(seen).toEqual([]);
        uow.afterCommit(() => seen.push('3'));
        return 42;
      });
      expect(result).toBe(42);
      expect(seen).toEqual(['1:active=false', '2', '3']);
      expect(await rows()).toEqual(['a', 'b']);
      expect(uow.active).toBe(false);
    });

    it('holds no context between units: work a unit left behind joins no later unit', async () => {
      const { uow, insert, rows } = await fresh();
      // Node's own flag on the storage: off means no async_hooks run for the process's promises.
      const storageOn = () => (uow as unknown as { storage: { enabled: boolean } }).storage.enabled;
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let leftBehind: Promise<{ active: boolean; wrote: boolean }> | undefined;
      await uow.run(async () => {
        expect(storageOn()).toBe(true);
        await insert('a');
        // Started in the unit and not awaited: it resumes while the next unit is open.
        leftBehind = gate.then(async () => {
          const active = uow.active;
          await insert('late');
          return { active, wrote: true };
        });
      });
      expect(storageOn()).toBe(false);
      expect(uow.active).toBe(false);
      await uow.run(async () => {
        expect(storageOn()).toBe(true);
        expect(uow.active).toBe(true);
        await insert('b');
        release();
        await new Promise((resolve) => setImmediate(resolve));
        uow.onRollback(() => undefined);
        boom();
      }).catch(() => undefined);
      // The late task ran outside the second unit: its row survived that unit's rollback.
      expect(await leftBehind).toEqual({ active: false, wrote: true });
      expect(storageOn()).toBe(false);
      expect((await rows()).sort()).toEqual(['a', 'late']);
      // And the next unit works as ever.
      await uow.run(() => insert('c'));
      expect((await rows()).sort()).toEqual(['a', 'c', 'late']);
    });

    it('another connection sees nothing of a unit before it commits', async () => {
      const { uow, insert, rows } = await fresh();
      if (database.dialect === 'sqlite') return; // one connection: nothing else can read meanwhile
      let inside: string[] = ['not read'];
      await uow.run(async () => {
        await insert('a');
        inside = await rows(); // the pool's other connection
      });
      expect(inside).toEqual([]);
      expect(await rows()).toEqual(['a']);
    });

    it('drops every callback of a unit that rolls back, and runs its rollback callbacks newest first', async () => {
      const { uow, insert, rows } = await fresh();
      const seen: string[] = [];
      await expect(
        uow.run(async () => {
          await insert('a');
          uow.afterCommit(() => seen.push('commit-outer'));
          uow.onRollback(() => seen.push('undo-outer'));
          await uow.run(async () => {
            uow.afterCommit(() => seen.push('commit-inner'));
            uow.onRollback(() => seen.push('undo-inner'));
          });
          boom();
        }),
      ).rejects.toThrow('boom');
      expect(await rows()).toEqual([]);
      expect(seen).toEqual(['undo-inner', 'undo-outer']);
    });

    it('an inner failure caught by the caller rolls back only the inner writes and drops only its callbacks', async () => {
      const { uow, insert, rows } = await fresh();
      const seen: string[] = [];
      await uow.run(async () => {
        await insert('outer');
        uow.afterCommit(() => seen.push('outer'));
        try {
          await uow.run(async () => {
            await insert('inner');
            uow.afterCommit(() => seen.push('inner'));
            uow.onRollback(() => seen.push('undo-inner'));
            uow.beforeCommit(async () => {
              seen.push('before-inner');
            });
            boom();
          });
        } catch {
          // the caller decides to go on without the inner change
        }
        expect(seen).toEqual(['undo-inner']);
        await insert('after');
      });
      expect(await rows()).toEqual(['outer', 'after']);
      expect(seen).toEqual(['undo-inner', 'outer']);
    });

    it('runs before-commit callbacks inside the transaction: their writes commit with it, their failure rolls it back', async () => {
      const { uow, insert, rows } = await fresh();
      await uow.run(async () => {
        await insert('a');
        uow.beforeCommit(() => insert('appended'));
      });
      expect(await rows()).toEqual(['a', 'appended']);
      const seen: string[] = [];
      await expect(
        uow.run(async () => {
          await insert('b');
          uow.afterCommit(() => seen.push('commit'));
          uow.beforeCommit(async () => boom());
        }),
      ).rejects.toThrow('boom');
      expect(await rows()).toEqual(['a', 'appended']);
      expect(seen).toEqual([]);
      expect(() => uow.beforeCommit(async () => undefined)).toThrow(UnitOfWorkError);
    });

    it('runs a callback at once outside a unit; a failing callback is reported and the others still run', async () => {
      const { uow, log } = await fresh();
      const seen: string[] = [];
      uow.afterCommit(() => seen.push('now'));
      expect(seen).toEqual(['now']);
      await uow.run(async () => {
        uow.afterCommit(() => boom());
        uow.afterCommit(() => seen.push('after'));
      });
      expect(seen).toEqual(['now', 'after']);
      expect(log).toEqual(['an after-commit callback failed: boom']);
    });

    it('offers runSync on SQLite only: elsewhere canRunSync is false and runSync refuses', async () => {
      const { uow } = await fresh();
      expect(uow.canRunSync).toBe(database.dialect === 'sqlite');
      if (database.dialect !== 'sqlite') expect(() => uow.runSync(() => 1)).toThrow(UnitOfWorkError);
    });

    it('concurrent units do not lose updates (read-modify-write inside each unit)', async () => {
      const { uow } = await fresh();
      await database.kysely.insertInto('meta').values({ key: 'n', value: '0' }).execute();
      await Promise.all(
        Array.from({ length: 8 }, () =>
          uow.run(async () => {
            // FOR UPDATE on PostgreSQL: concurrent units wait for each other's row.
            const query = uow.db.selectFrom('meta').select('value').where('key', '=', 'n');
            const row = await (database.dialect === 'postgres' ? query.forUpdate() : query).executeTakeFirstOrThrow();
            await new Promise((resolve) => setTimeout(resolve, 2));
            await uow.db.updateTable('meta').set({ value: String(Number(row.value) + 1) }).where('key', '=', 'n').execute();
          }),
        ),
      );
      const row = await database.kysely.selectFrom('meta').select('value').where('key', '=', 'n').executeTakeFirstOrThrow();
      expect(row.value).toBe('8');
    });

    it('work a unit started and did not await queries the database, not the finished transaction', async () => {
      const { uow, rows } = await fresh();
      let later: Promise<unknown> = Promise.resolve();
      await uow.run(async () => {
        later = new Promise((resolve) => setTimeout(resolve, 1)).then(() =>
          uow.db.insertInto('meta').values({ key: 'late', value: 'late' }).execute(),
        );
      });
      await later;
      expect(uow.active).toBe(false);
      expect(await rows()).toEqual(['late']);
    });
  });
}

suite('SQLite', async () => openSqliteDatabase(':memory:'));

describe('UnitOfWork on SQLite with a second process on the same file', () => {
  it('holds the write lock from its start: a commit by the other connection cannot land between its read and its write', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'helios-uow-'));
    const file = path.join(dir, 'two.db');
    const ours = openSqliteDatabase(file);
    const theirs = openSqliteDatabase(file);
    const other = theirs.sqlite!;
    try {
      await TABLE.execute(ours.kysely);
      await ours.kysely.insertInto('meta').values({ key: 'n', value: '0' }).execute();
      other.pragma('busy_timeout = 0'); // refused at once instead of waiting (same thread)
      const uow = new UnitOfWork(ours);
      let refused = '';
      await uow.run(async () => {
        const read = await uow.db.selectFrom('meta').select('value').where('key', '=', 'n').executeTakeFirstOrThrow();
        try {
          other.prepare("UPDATE meta SET value = 'theirs' WHERE key = 'n'").run();
        } catch (error) {
          refused = (error as { code?: string }).code ?? String(error);
        }
        await uow.db.updateTable('meta').set({ value: String(Number(read.value) + 1) }).where('key', '=', 'n').execute();
      });
      expect(refused).toBe('SQLITE_BUSY');
      expect(other.prepare("SELECT value FROM meta WHERE key = 'n'").pluck().get()).toBe('1');
    } finally {
      await theirs.close();
      await ours.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('UnitOfWork.runSync on SQLite', () => {
  const INSERT = statement('insert into "meta" ("key", "value") values (?, ?)');
  const VALUES = statement('select "value" from "meta" order by "key"');
  let database: Database;
  let n = 0;
  beforeAll(async () => {
    database = openSqliteDatabase(':memory:');
  });
  afterAll(async () => {
    await database.close();
  });
  const fresh = async () => {
    await sql`DROP TABLE IF EXISTS meta`.execute(database.kysely);
    await TABLE.execute(database.kysely);
    const h = harness(database);
    // One key sequence for both kinds of insert, so rows() answers them in the order written.
    const key = () => String(n++).padStart(4, '0');
    const insert = async (v: string) => {
      await h.uow.db.insertInto('meta').values({ key: key(), value: v }).execute();
    };
    const insertSync = (v: string) => h.uow.writeSync(INSERT, [key(), v]);
    return { ...h, insert, insertSync };
  };

  it('commits a synchronous unit, then runs its after-commit callbacks in order, and answers what fn answered', async () => {
    const { uow, insertSync, rows } = await fresh();
    const seen: string[] = [];
    const answer = uow.runSync(() => {
      expect(uow.active).toBe(true);
      insertSync('a');
      uow.afterCommit(() => seen.push(`one:${database.sqlite!.inTransaction}`));
      uow.afterCommit(() => seen.push('two'));
      expect(seen).toEqual([]);
      return uow.querySync<{ value: string }>(VALUES, []).map((r) => r.value);
    });
    expect(answer).toEqual(['a']);
    expect(seen).toEqual(['one:false', 'two']);
    expect(uow.active).toBe(false);
    expect(await rows()).toEqual(['a']);
  });

  it('rolls back on a throw: writes undone, after-commit callbacks dropped, rollback callbacks newest first', async () => {
    const { uow, insertSync, rows } = await fresh();
    const seen: string[] = [];
    expect(() =>
      uow.runSync(() => {
        insertSync('a');
        uow.afterCommit(() => seen.push('commit'));
        uow.onRollback(() => seen.push('undo-1'));
        uow.onRollback(() => seen.push('undo-2'));
        boom();
      }),
    ).toThrow('boom');
    expect(seen).toEqual(['undo-2', 'undo-1']);
    expect(database.sqlite!.inTransaction).toBe(false);
    expect(await rows()).toEqual([]);
  });

  it('nests as a savepoint: an inner failure the caller catches takes only the inner writes and callbacks', async () => {
    const { uow, insertSync, rows } = await fresh();
    const seen: string[] = [];
    uow.runSync(() => {
      insertSync('outer');
      uow.afterCommit(() => seen.push('outer'));
      expect(() =>
        uow.runSync(() => {
          insertSync('inner');
          uow.afterCommit(() => seen.push('inner'));
          uow.onRollback(() => seen.push('undo-inner'));
          boom();
        }),
      ).toThrow('boom');
      uow.runSync(() => {
        insertSync('kept');
        uow.afterCommit(() => seen.push('kept'));
      });
      expect(seen).toEqual(['undo-inner']);
    });
    expect(await rows()).toEqual(['outer', 'kept']);
    expect(seen).toEqual(['undo-inner', 'outer', 'kept']);
  });

  it('inside an asynchronous unit it joins that unit: its callbacks wait for the outer commit, its writes roll back with it', async () => {
    const { uow, insert, insertSync, rows } = await fresh();
    const seen: string[] = [];
    await uow.run(async () => {
      await insert('outer');
      expect(uow.canRunSync).toBe(true);
      uow.runSync(() => {
        insertSync('inner');
        uow.afterCommit(() => seen.push('inner'));
      });
      expect(seen).toEqual([]);
      await insert('after');
    });
    expect(seen).toEqual(['inner']);
    expect(await rows()).toEqual(['outer', 'inner', 'after']);

    await expect(
      uow.run(async () => {
        uow.runSync(() => {
          insertSync('gone');
          uow.afterCommit(() => seen.push('gone'));
        });
        await Promise.resolve();
        boom();
      }),
    ).rejects.toThrow('boom');
    expect(seen).toEqual(['inner']);
    expect(await rows()).toEqual(['outer', 'inner', 'after']);
  });

  it('cannot run while another unit holds the connection, and refuses to then; run waits for its turn instead', async () => {
    const { uow, insert, insertSync, rows } = await fresh();
    let release!: () => void;
    const holding = uow.run(async () => {
      await insert('first');
      await new Promise<void>((resolve) => {
        release = resolve;
      });
    });
    await new Promise((resolve) => setTimeout(resolve, 1));
    expect(uow.canRunSync).toBe(false);
    expect(() => uow.runSync(() => insertSync('x'))).toThrow(UnitOfWorkError);
    const waiting = uow.run(() => {
      insertSync('second');
    });
    release();
    await Promise.all([holding, waiting]);
    expect(uow.canRunSync).toBe(true);
    expect(await rows()).toEqual(['first', 'second']);
  });

  it('refuses what would wait: run, beforeCommit, and a function that returns a promise (rolled back)', async () => {
    const { uow, insertSync, rows } = await fresh();
    let nested: Promise<unknown> | null = null;
    uow.runSync(() => {
      nested = uow.run(async () => undefined);
      expect(() => uow.beforeCommit(async () => undefined)).toThrow(UnitOfWorkError);
    });
    await expect(nested).rejects.toThrow(UnitOfWorkError);
    expect(() =>
      uow.runSync(() => {
        insertSync('a');
        return Promise.resolve(1);
      }),
    ).toThrow(/returned a promise/);
    expect(await rows()).toEqual([]);
    expect(() => uow.writeSync(INSERT, ['k', 'v'])).toThrow(UnitOfWorkError);
    expect(() => uow.querySync(VALUES, [])).toThrow(UnitOfWorkError);
  });
});

let pgDatabase: TestPostgres | null = null;
suite(
  'PostgreSQL',
  async () => {
    pgDatabase = await createTestPostgres('uow');
    const database = openPostgresDatabase(pgDatabase.url, { poolSize: 4 });
    return {
      ...database,
      async close() {
        await database.close();
        await pgDatabase?.drop();
      },
    };
  },
  postgresAvailable(),
);
