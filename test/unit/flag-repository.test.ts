/** FlagRepository on a real, migrated SQLite database: what a save writes. */
import { afterEach, describe, expect, it } from 'vitest';
import type { FlagDefinition } from '../../src/flags/engine.js';
import { FlagRepository, FlagRowExistsError } from '../../src/flags/repository.js';
import { openTestDatabase, type TestDatabase } from '../support/database.js';

let opened: TestDatabase | null = null;

afterEach(async () => {
  await opened?.close();
  opened = null;
});

async function setup() {
  opened = await openTestDatabase();
  const { database, uow } = opened;
  const repo = new FlagRepository(uow);
  // Rows written so far on the connection (SQLite's count, which the store cannot fake).
  const changes = () => (database.sqlite!.prepare('SELECT total_changes() AS n').get() as { n: number }).n;
  return { uow, repo, changes };
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
  it('leaves the whitelist rows alone when the stored flag has the same whitelist', async () => {
    const { repo, changes } = await setup();
    await repo.save(flag);
    const stored = (await repo.get('checkout'))!;
    const before = changes();
    await repo.save({ ...stored, percentage: 25, updatedAt: 2_000 }, stored);
    // One row changed: the flag's own (the upsert), no whitelist delete and re-insert.
    expect(changes() - before).toBe(1);
    expect(await repo.get('checkout')).toEqual({ ...flag, percentage: 25, updatedAt: 2_000 });
  });

  it('rewrites the whitelist when it differs from the stored one, or when nothing stored is given', async () => {
    const { repo, changes } = await setup();
    await repo.save(flag);
    const stored = (await repo.get('checkout'))!;
    const whitelist = [{ attribute: 'userId', values: ['bob', 'alice'] }];
    await repo.save({ ...stored, whitelist }, stored);
    expect((await repo.get('checkout'))!.whitelist).toEqual(whitelist);
    const before = changes();
    await repo.save({ ...stored, whitelist });
    // Upsert, two deletes, two inserts: without the stored flag nothing can be assumed.
    expect(changes() - before).toBe(5);
    expect((await repo.get('checkout'))!.whitelist).toEqual(whitelist);
  });

  it('updates only the columns that differ from the stored row, and still refuses a row that is gone', async () => {
    const { repo } = await setup();
    const db = opened!.database.sqlite!;
    await repo.save(flag);
    // A trigger "AFTER UPDATE OF c" fires when an UPDATE names c, whether or not the value moves.
    db.exec('CREATE TEMP TABLE touched (col TEXT NOT NULL)');
    for (const col of ['description', 'enabled', 'strategy', 'percentage', 'stickiness', 'updated_at']) {
      db.exec(`CREATE TEMP TRIGGER touched_${col} AFTER UPDATE OF ${col} ON feature_flags BEGIN INSERT INTO touched VALUES ('${col}'); END`);
    }
    const touched = () => {
      const cols = (db.prepare('SELECT col FROM touched').pluck().all() as string[]).sort();
      db.exec('DELETE FROM touched');
      return cols;
    };
    const stored = (await repo.get('checkout'))!;
    await repo.save({ ...stored, percentage: 25, updatedAt: 2_000 }, stored);
    expect(touched()).toEqual(['percentage', 'updated_at']);
    const second = (await repo.get('checkout'))!;
    await repo.save({ ...second, enabled: false, strategy: 'ALL_ON', updatedAt: 3_000 }, second);
    expect(touched()).toEqual(['enabled', 'strategy', 'updated_at']);
    expect(await repo.get('checkout')).toEqual({ ...flag, percentage: 25, enabled: false, strategy: 'ALL_ON', updatedAt: 3_000 });
    // Only the whitelist differs: no UPDATE at all.
    const third = (await repo.get('checkout'))!;
    await repo.save({ ...third, whitelist: [] }, third);
    expect(touched()).toEqual([]);
    expect((await repo.get('checkout'))!.whitelist).toEqual([]);
    db.exec("DELETE FROM feature_flags WHERE name = 'checkout'");
    await expect(repo.save({ ...third, percentage: 40 }, third)).rejects.toThrow(/to update is missing/);
    await expect(repo.save({ ...third, whitelist: [] }, third)).rejects.toThrow(/to update is missing/);
  });

  it('keeps created_at on an update and writes the whitelist in its order', async () => {
    const { repo } = await setup();
    await repo.save(flag);
    const stored = (await repo.get('checkout'))!;
    await repo.save({ ...stored, createdAt: 5_000, updatedAt: 6_000 }, stored);
    expect(await repo.get('checkout')).toEqual({ ...flag, updatedAt: 6_000 });
    expect((await repo.all()).map((f) => f.name)).toEqual(['checkout']);
  });
});

describe('FlagRepository.insert', () => {
  it('writes a new flag with its whitelist, and refuses one that exists with FlagRowExistsError', async () => {
    const { repo, changes } = await setup();
    await repo.insert(flag);
    expect(await repo.get('checkout')).toEqual(flag);
    const before = changes();
    const failed = await repo.insert({ ...flag, percentage: 99 }).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(FlagRowExistsError);
    expect((failed as FlagRowExistsError).flag).toBe('checkout');
    expect(changes() - before).toBe(0);
    expect(await repo.get('checkout')).toEqual(flag);
  });

  it('writes a whitelist larger than one INSERT batch, in order', async () => {
    const { repo } = await setup();
    const values = Array.from({ length: 1_234 }, (_, i) => `user-${i}`);
    await repo.insert({ ...flag, whitelist: [{ attribute: 'userId', values }] });
    expect((await repo.get('checkout'))!.whitelist).toEqual([{ attribute: 'userId', values }]);
  });
});

describe('FlagRepository.getMany and delete', () => {
  it('answers only the stored flags among the names, with their whitelists', async () => {
    const { repo } = await setup();
    await repo.insert(flag);
    await repo.insert({ ...flag, name: 'other', whitelist: [] });
    const found = await repo.getMany(['missing', 'checkout']);
    expect(found).toEqual([flag]);
    expect(await repo.getMany([])).toEqual([]);
  });

  it('deletes the flag and its whitelist rows, and says whether it deleted one', async () => {
    const { repo, changes } = await setup();
    await repo.insert(flag);
    const before = changes();
    expect(await repo.delete('checkout')).toBe(true);
    // The flag and its three whitelist rows (ON DELETE CASCADE).
    expect(changes() - before).toBe(4);
    expect(await repo.get('checkout')).toBeNull();
    expect(await repo.delete('checkout')).toBe(false);
  });
});
