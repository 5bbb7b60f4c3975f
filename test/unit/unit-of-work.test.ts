/** UnitOfWork on a real SQLite connection: transaction, savepoints, after-commit and rollback callbacks. */
import { describe, expect, it } from 'vitest';
import { openDatabase, type Db } from '../../src/db/connection.js';
import { UnitOfWork, UnitOfWorkError, unitOfWorkFor } from '../../src/db/unit-of-work.js';

function setup(): { db: Db; uow: UnitOfWork; rows: () => string[]; insert: (v: string) => void; log: string[] } {
  const db = openDatabase(':memory:');
  db.exec('CREATE TABLE t (v TEXT NOT NULL)');
  const uow = new UnitOfWork(db);
  const log: string[] = [];
  uow.setErrorReporter((message, error) => log.push(`${message}: ${(error as Error).message}`));
  return {
    db,
    uow,
    log,
    rows: () => db.prepare<[], { v: string }>('SELECT v FROM t ORDER BY rowid').all().map((r) => r.v),
    insert: (v) => {
      db.prepare('INSERT INTO t (v) VALUES (?)').run(v);
    },
  };
}

const boom = (): never => {
  throw new Error('boom');
};

describe('UnitOfWork', () => {
  it('makes one transaction wrapper per connection, not one per run, and still nests as savepoints', () => {
    const db = openDatabase(':memory:');
    db.exec('CREATE TABLE t (v TEXT NOT NULL)');
    let made = 0;
    const transaction = db.transaction.bind(db);
    db.transaction = ((fn: (...args: never[]) => unknown) => {
      made++;
      return transaction(fn);
    }) as typeof db.transaction;
    const uow = new UnitOfWork(db);
    const insert = (v: string) => db.prepare('INSERT INTO t (v) VALUES (?)').run(v);
    for (let i = 0; i < 5; i++) uow.run(() => insert(`a${i}`));
    uow.run(() => {
      insert('b');
      expect(() => uow.run(() => {
        insert('c');
        boom();
      })).toThrow('boom');
    });
    expect(made).toBe(1);
    expect(db.prepare<[], { v: string }>('SELECT v FROM t ORDER BY rowid').all().map((r) => r.v)).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'b']);
  });

  it('runs after-commit callbacks once, in order, only after the outermost commit', () => {
    const { uow, insert, rows } = setup();
    const seen: string[] = [];
    const result = uow.run(() => {
      insert('a');
      uow.afterCommit(() => seen.push(`1:${rows().join(',')}`));
      uow.run(() => {
        insert('b');
        uow.afterCommit(() => seen.push('2'));
      });
      // The inner unit committed its savepoint, but nothing happens before the outer commit.
      expect(seen).toEqual([]);
      uow.afterCommit(() => seen.push('3'));
      return 42;
    });
    expect(result).toBe(42);
    expect(seen).toEqual(['1:a,b', '2', '3']);
    expect(uow.active).toBe(false);
  });

  it('drops every callback of a unit that rolls back, and runs its rollback callbacks newest first', () => {
    const { uow, insert, rows } = setup();
    const seen: string[] = [];
    expect(() =>
      uow.run(() => {
        insert('a');
        uow.afterCommit(() => seen.push('commit-outer'));
        uow.onRollback(() => seen.push('undo-outer'));
        uow.run(() => {
          uow.afterCommit(() => seen.push('commit-inner'));
          uow.onRollback(() => seen.push('undo-inner'));
        });
        boom();
      }),
    ).toThrow('boom');
    expect(rows()).toEqual([]);
    expect(seen).toEqual(['undo-inner', 'undo-outer']);
  });

  it('an inner failure caught by the caller rolls back only the inner writes and drops only its callbacks', () => {
    const { uow, insert, rows } = setup();
    const seen: string[] = [];
    uow.run(() => {
      insert('outer');
      uow.afterCommit(() => seen.push('outer'));
      try {
        uow.run(() => {
          insert('inner');
          uow.afterCommit(() => seen.push('inner'));
          uow.onRollback(() => seen.push('undo-inner'));
          boom();
        });
      } catch {
        // the caller decides to go on without the inner change
      }
      expect(seen).toEqual(['undo-inner']);
    });
    expect(rows()).toEqual(['outer']);
    expect(seen).toEqual(['undo-inner', 'outer']);
  });

  it('runs a callback at once outside a unit; a failing callback is reported and the others still run', () => {
    const { uow, log } = setup();
    const seen: string[] = [];
    uow.afterCommit(() => seen.push('now'));
    expect(seen).toEqual(['now']);
    uow.run(() => {
      uow.afterCommit(() => boom());
      uow.afterCommit(() => seen.push('after'));
    });
    expect(seen).toEqual(['now', 'after']);
    expect(log).toEqual(['an after-commit callback failed: boom']);
  });

  it('refuses an asynchronous function and rolls its writes back', () => {
    const { uow, insert, rows } = setup();
    const seen: string[] = [];
    expect(() =>
      uow.run((async () => {
        insert('a');
        uow.afterCommit(() => seen.push('x'));
      }) as () => unknown),
    ).toThrow(/promise/i);
    expect(rows()).toEqual([]);
    expect(seen).toEqual([]);
  });

  it('refuses to start inside a transaction it did not open (it could not tell when that commits)', () => {
    const { db, uow, insert, rows } = setup();
    const seen: string[] = [];
    expect(() =>
      db.transaction(() => {
        uow.run(() => {
          insert('a');
          uow.afterCommit(() => seen.push('x'));
        });
      })(),
    ).toThrow(UnitOfWorkError);
    expect(rows()).toEqual([]);
    expect(seen).toEqual([]);
  });

  it('is one per connection', () => {
    const a = openDatabase(':memory:');
    const b = openDatabase(':memory:');
    expect(unitOfWorkFor(a)).toBe(unitOfWorkFor(a));
    expect(unitOfWorkFor(a)).not.toBe(unitOfWorkFor(b));
  });
});
