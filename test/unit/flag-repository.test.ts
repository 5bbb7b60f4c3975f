/** FlagRepository on a real, migrated SQLite connection: what a save writes. */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/connection.js';
import { migrate, readMigrations } from '../../src/db/migrate.js';
import type { FlagDefinition } from '../../src/flags/engine.js';
import { FlagRepository } from '../../src/flags/repository.js';
import { packageRoot } from '../../src/paths.js';

function setup() {
  const db = openDatabase(':memory:');
  migrate(db, readMigrations(path.join(packageRoot(), 'migrations')));
  const repo = new FlagRepository(db);
  const changes = () => (db.prepare('SELECT total_changes() AS n').get() as { n: number }).n;
  return { db, repo, changes };
}

const flag: FlagDefinition = {
  name: 'checkout',
  description: 'new checkout',
  enabled: true,
  strategy: 'PERCENTAGE',
  percentage: 10,
  stickiness: 'default',
  whitelist: [
    { attribute: 'userId', values: ['alice', 'bob'] },
    { attribute: 'symbol', values: ['BTCZAR'] },
  ],
  gradual: null,
  createdAt: 1_000,
  updatedAt: 1_000,
};

describe('FlagRepository.save', () => {
  it('leaves the whitelist rows alone when the stored flag has the same whitelist', () => {
    const { repo, changes } = setup();
    repo.save(flag);
    const stored = repo.get('checkout')!;
    const before = changes();
    repo.save({ ...stored, percentage: 25, updatedAt: 2_000 }, stored);
    // One row changed: the flag's own (the upsert), no whitelist delete and re-insert.
    expect(changes() - before).toBe(1);
    expect(repo.get('checkout')).toEqual({ ...flag, percentage: 25, updatedAt: 2_000 });
  });

  it('rewrites the whitelist when it differs from the stored one, or when nothing stored is given', () => {
    const { repo, changes } = setup();
    repo.save(flag);
    const stored = repo.get('checkout')!;
    const whitelist = [{ attribute: 'userId', values: ['bob', 'alice'] }];
    repo.save({ ...stored, whitelist }, stored);
    expect(repo.get('checkout')!.whitelist).toEqual(whitelist);
    const before = changes();
    repo.save({ ...stored, whitelist });
    // Upsert, two deletes, two inserts: without the stored flag nothing can be assumed.
    expect(changes() - before).toBe(5);
    expect(repo.get('checkout')!.whitelist).toEqual(whitelist);
  });
});
