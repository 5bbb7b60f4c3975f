/**
 * The write path every flag change takes, on SQLite and PostgreSQL: the flag's read, its upsert
 * and its audit row are statements written per dialect (src/db/statement.ts) that the unit of
 * work runs on its own connection (on SQLite, straight on better-sqlite3 inside the unit's turn).
 * What they write is read back with Kysely from the tables, so a wrong column, a lost value or a
 * statement outside the unit's transaction fails here.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from '../../src/db/kysely.js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AuditRepository } from '../../src/audit/repository.js';
import { ManualClock } from '../../src/clock.js';
import { EventBus } from '../../src/events.js';
import type { FlagDefinition } from '../../src/flags/engine.js';
import type { FlagChangeEvent } from '../../src/flags/events.js';
import { FlagRepository } from '../../src/flags/repository.js';
import { FlagService } from '../../src/flags/service.js';
import { createLogger } from '../../src/logger.js';
import { bothDialects, openTestDatabase, type TestDatabase } from '../support/database.js';
import { openDatabase } from '../../src/db/connection.js';

const T0 = Date.UTC(2026, 0, 1);

/** A started flag service on `opened`, with the seed flags, on a manual clock at T0. */
async function startFlags({ database, uow }: TestDatabase): Promise<{ clock: ManualClock; flags: FlagService }> {
  const clock = new ManualClock(T0);
  const flags = new FlagService({
    uow, dialect: database.dialect, audit: new AuditRepository(uow), bus: new EventBus(), clock,
    logger: createLogger('silent'), flagsFile: 'config/feature_flags.json',
  });
  await flags.start();
  return { clock, flags };
}

describe.each(bothDialects('flagwrite', 4))('the flag write path on %s', (_dialect, open, available) => {
  let opened: TestDatabase | null = null;

  afterEach(async () => {
    await opened?.close();
    opened = null;
  });

  async function setup() {
    opened = await open();
    const { database, uow } = opened;
    const { clock, flags } = await startFlags(opened);
    const events: FlagChangeEvent[] = [];
    flags.onChange((event) => events.push(event));
    const db = database.kysely;
    const flagRow = (name: string) => db.selectFrom('feature_flags').selectAll().where('name', '=', name).executeTakeFirst();
    const auditRows = (name: string) => db.selectFrom('audit_log').selectAll().where('target', '=', name).orderBy('id').execute();
    return { database, uow, clock, flags, events, flagRow, auditRows, repo: new FlagRepository(uow, { dialect: database.dialect }) };
  }

  const percentageOf = (flag: FlagDefinition): FlagDefinition => ({ ...flag, enabled: true, strategy: 'PERCENTAGE' });

  it.skipIf(!available)('writes every column of the flag row and the audit row with the whole state before and after', async () => {
    const t = await setup();
    // A flag with a gradual schedule and a description: setPercentage must keep them.
    const before = (await t.flags.configureGradual('alice', 'paper_trading_v2', { startPercentage: 5, targetPercentage: 40, startAt: T0 - 1_000, durationSeconds: 600 }));
    const auditedBefore = (await t.auditRows('paper_trading_v2')).length;
    t.clock.advance(1_234);
    const after = await t.flags.setPercentage('bob', 'paper_trading_v2', 37.25);
    const expected = { ...percentageOf(before), percentage: 37.25, updatedAt: T0 + 1_234 };
    expect(after).toEqual(expected);
    expect(await t.flagRow('paper_trading_v2')).toEqual({
      name: 'paper_trading_v2',
      description: before.description,
      enabled: 1,
      strategy: 'PERCENTAGE',
      percentage: 37.25,
      stickiness: before.stickiness,
      gradual_start_percentage: 5,
      gradual_target_percentage: 40,
      gradual_start_at: T0 - 1_000,
      gradual_duration_seconds: 600,
      created_at: before.createdAt,
      updated_at: T0 + 1_234,
    });
    const rows = await t.auditRows('paper_trading_v2');
    expect(rows).toHaveLength(auditedBefore + 1);
    expect(rows.at(-1)).toMatchObject({
      at: T0 + 1_234, actor: 'bob', action: 'setFlagPercentage', target_type: 'FEATURE_FLAG', target: 'paper_trading_v2',
      before_json: JSON.stringify(before), after_json: JSON.stringify(expected),
    });
    // Read back through the store's own statement, whitelist included.
    expect(await t.repo.get('paper_trading_v2')).toEqual(expected);
    const whitelisted = await t.flags.setPercentage('bob', 'advanced_risk_engine', 12);
    expect(whitelisted.whitelist.length).toBeGreaterThan(0);
    expect(await t.repo.get('advanced_risk_engine')).toEqual(whitelisted);
  });

  it.skipIf(!available)('creates a missing flag with one audit row whose state before is null', async () => {
    const t = await setup();
    const created = await t.flags.setPercentage('bob', 'brand_new', 3.5);
    expect(await t.flagRow('brand_new')).toMatchObject({ enabled: 1, strategy: 'PERCENTAGE', percentage: 3.5, created_at: T0, updated_at: T0 });
    const rows = await t.auditRows('brand_new');
    expect(rows.map((r) => [r.before_json, r.after_json])).toEqual([[null, JSON.stringify(created)]]);
    expect(t.events.map((e) => [e.kind, e.flag?.percentage])).toEqual([['CREATED', 3.5]]);
  });

  it.skipIf(!available)('publishes the change only after the outermost commit, and nothing of a unit that rolls back', async () => {
    const t = await setup();
    const rowBefore = await t.flagRow('neural_network_v2');
    const auditBefore = await t.auditRows('neural_network_v2');
    const heard: number[] = [];
    await t.uow.run(async () => {
      await t.flags.setPercentage('bob', 'neural_network_v2', 61);
      heard.push(t.events.length);
      // Memory and subscribers still have the committed flag.
      expect(t.flags.get('neural_network_v2')!.percentage).toBe(rowBefore!.percentage);
    });
    expect(heard).toEqual([0]);
    expect(t.events.map((e) => e.flag?.percentage)).toEqual([61]);

    await expect(t.uow.run(async () => {
      await t.flags.setPercentage('bob', 'neural_network_v2', 77);
      throw new Error('boom');
    })).rejects.toThrow('boom');
    expect(t.events).toHaveLength(1);
    expect(await t.flagRow('neural_network_v2')).toEqual({ ...rowBefore, enabled: 1, strategy: 'PERCENTAGE', percentage: 61, updated_at: T0 });
    expect(await t.auditRows('neural_network_v2')).toHaveLength(auditBefore.length + 1);
    expect(t.flags.get('neural_network_v2')!.percentage).toBe(61);
  });

  it.skipIf(!available)('a savepoint that fails takes its flag and audit rows with it; the enclosing unit commits the rest', async () => {
    const t = await setup();
    const rowBefore = await t.flagRow('neural_network_v2');
    await t.uow.run(async () => {
      await t.flags.setPercentage('bob', 'llm_enhanced_decisions', 20);
      await t.uow.run(async () => {
        await t.flags.setPercentage('bob', 'neural_network_v2', 88);
        throw new Error('inner');
      }).catch(() => undefined);
    });
    expect(await t.flagRow('neural_network_v2')).toEqual(rowBefore);
    expect((await t.auditRows('neural_network_v2')).some((r) => r.action === 'setFlagPercentage')).toBe(false);
    expect((await t.flagRow('llm_enhanced_decisions'))!.percentage).toBe(20);
    expect(t.events.map((e) => e.name)).toEqual(['llm_enhanced_decisions']);
  });

  it.skipIf(!available)('an audit row that cannot be written leaves the flag row as it was and publishes nothing', async () => {
    const t = await setup();
    const rowBefore = await t.flagRow('neural_network_v2');
    const auditBefore = await t.auditRows('neural_network_v2');
    await sql`ALTER TABLE audit_log RENAME TO audit_log_away`.execute(t.database.kysely);
    try {
      await expect(t.flags.setPercentage('bob', 'neural_network_v2', 42)).rejects.toThrow(/audit_log/);
    } finally {
      await sql`ALTER TABLE audit_log_away RENAME TO audit_log`.execute(t.database.kysely);
    }
    expect(await t.flagRow('neural_network_v2')).toEqual(rowBefore);
    expect(await t.auditRows('neural_network_v2')).toEqual(auditBefore);
    expect(t.events).toEqual([]);
    expect(t.flags.get('neural_network_v2')!.percentage).toBe(rowBefore!.percentage);
    // The same statements work again once the table is back.
    await t.flags.setPercentage('bob', 'neural_network_v2', 42);
    expect((await t.flagRow('neural_network_v2'))!.percentage).toBe(42);
  });

  it.skipIf(!available)('changes that keep the whitelist run as one synchronous unit on SQLite; creating, deleting and whitelist edits as units that wait', async () => {
    const t = await setup();
    const run = vi.spyOn(t.uow, 'run');
    await t.flags.setPercentage('bob', 'neural_network_v2', 12);
    await t.flags.disable('bob', 'neural_network_v2');
    await t.flags.enable('bob', 'neural_network_v2');
    const inPlace = run.mock.calls.length;
    await t.flags.addToWhitelist('bob', 'neural_network_v2', 'userId', 'alice');
    await t.flags.setPercentage('bob', 'brand_new_flag', 5);
    await t.flags.delete('bob', 'brand_new_flag');
    expect(inPlace).toBe(_dialect === 'SQLite' ? 0 : 3);
    expect(run.mock.calls.length - inPlace).toBe(3);
    const audits = (await t.auditRows('neural_network_v2')).slice(-4);
    expect(audits.map((a) => a.action)).toEqual(['setFlagPercentage', 'disableFeatureFlag', 'enableFeatureFlag', 'addToWhitelist']);
    expect(audits.slice(1).map((a) => a.before_json)).toEqual(audits.slice(0, -1).map((a) => a.after_json));
    expect(JSON.parse(audits[3]!.after_json!)).toMatchObject({ enabled: true, percentage: 12, whitelist: [{ attribute: 'userId', values: ['alice'] }] });
    expect(t.flags.get('neural_network_v2')).toEqual(await t.repo.get('neural_network_v2'));
    expect(t.flags.get('brand_new_flag')).toBeNull();
    expect(t.events.map((e) => `${e.name}:${e.kind}`)).toEqual([
      'neural_network_v2:UPDATED', 'neural_network_v2:UPDATED', 'neural_network_v2:UPDATED', 'neural_network_v2:UPDATED',
      'brand_new_flag:CREATED', 'brand_new_flag:DELETED',
    ]);
  });

  it.skipIf(!available)('a change while another unit holds the flag waits for that unit and starts from what it committed', async () => {
    const t = await setup();
    const start = t.flags.get('neural_network_v2')!.percentage;
    let reached!: () => void;
    let release!: () => void;
    const holding = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const first = t.uow.run(async () => {
      await t.flags.setPercentage('alice', 'neural_network_v2', 30);
      reached();
      await new Promise<void>((resolve) => {
        release = resolve;
      });
    });
    await holding;
    let secondDone = false;
    const second = t.flags.setPercentage('bob', 'neural_network_v2', 31).then(() => {
      secondDone = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 5));
    // (Nothing reads the database here: on SQLite a read outside the unit waits for it too.)
    expect(secondDone).toBe(false);
    expect(t.flags.get('neural_network_v2')!.percentage).toBe(start);
    release();
    await Promise.all([first, second]);
    const audits = (await t.auditRows('neural_network_v2')).slice(-2);
    expect(audits.map((a) => [a.actor, JSON.parse(a.before_json!).percentage, JSON.parse(a.after_json!).percentage])).toEqual([
      ['alice', start, 30],
      ['bob', 30, 31],
    ]);
    expect(t.flags.get('neural_network_v2')!.percentage).toBe(31);
  });

  it.skipIf(!available)('a read outside the unit never sees the unit\'s uncommitted write', async () => {
    const t = await setup();
    const before = (await t.repo.get('neural_network_v2'))!;
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const unit = t.uow.run(async () => {
      await t.repo.save({ ...before, percentage: 99, updatedAt: T0 + 1 }, before);
      await held;
    });
    let seen: number | null = null;
    const read = t.repo.get('neural_network_v2').then((flag) => {
      seen = flag!.percentage;
    });
    if (t.database.dialect === 'postgres') {
      // Another connection of the pool answers the committed row while the unit is open.
      await read;
      expect(seen).toBe(before.percentage);
    } else {
      // The one connection is the unit's until it commits: the read waits for its turn.
      await new Promise((resolve) => setImmediate(resolve));
      expect(seen).toBeNull();
    }
    release();
    await unit;
    await read;
    expect(seen).toBe(t.database.dialect === 'postgres' ? before.percentage : 99);
  });
  // On SQLite a change reads its flag from the repository's map of stored rows (see
  // FlagRepository.known), on PostgreSQL from the database; either way the audit's `before` is
  // the row as the database holds it for the unit, and memory follows the commits only.
  it.skipIf(!available)('after an enclosing unit rolls back, the next change starts from the committed row', async () => {
    const t = await setup();
    await t.flags.setPercentage('bob', 'neural_network_v2', 10);
    const committed = (await t.repo.get('neural_network_v2'))!;
    await expect(t.uow.run(async () => {
      await t.flags.setPercentage('bob', 'neural_network_v2', 20);
      await t.flags.setPercentage('bob', 'neural_network_v2', 30);
      throw new Error('boom');
    })).rejects.toThrow('boom');
    expect(t.flags.get('neural_network_v2')!.percentage).toBe(10);
    t.clock.advance(5);
    const after = await t.flags.setPercentage('carol', 'neural_network_v2', 40);
    const last = (await t.auditRows('neural_network_v2')).at(-1)!;
    expect(last.before_json).toBe(JSON.stringify(committed));
    expect(last.after_json).toBe(JSON.stringify(after));
    expect(after).toEqual(await t.repo.get('neural_network_v2'));
    expect(t.flags.get('neural_network_v2')).toEqual(after);
  });

  it.skipIf(!available)('inside one unit each change\'s before is the unit\'s own last write, and a savepoint rolled back is forgotten', async () => {
    const t = await setup();
    const committed = (await t.repo.get('neural_network_v2'))!;
    await t.uow.run(async () => {
      const first = await t.flags.setPercentage('bob', 'neural_network_v2', 11);
      await t.uow.run(async () => {
        await t.flags.setPercentage('bob', 'neural_network_v2', 22);
        throw new Error('inner');
      }).catch(() => undefined);
      // A savepoint that commits joins the unit: the next change starts from it.
      const third = await t.uow.run(() => t.flags.setPercentage('bob', 'neural_network_v2', 33));
      const fourth = await t.flags.disable('bob', 'neural_network_v2');
      const rows = (await t.uow.db.selectFrom('audit_log').selectAll().where('target', '=', 'neural_network_v2').orderBy('id').execute()).slice(-3);
      expect(rows.map((r) => [r.before_json, r.after_json])).toEqual([
        [JSON.stringify(committed), JSON.stringify(first)],
        [JSON.stringify(first), JSON.stringify(third)],
        [JSON.stringify(third), JSON.stringify(fourth)],
      ]);
    });
    expect(t.flags.get('neural_network_v2')).toEqual(await t.repo.get('neural_network_v2'));
    expect(t.flags.get('neural_network_v2')).toMatchObject({ enabled: false, percentage: 33 });
  });

  it.skipIf(!available)('a change whose audit row fails is forgotten: the next change starts from the committed row', async () => {
    const t = await setup();
    await t.flags.setPercentage('bob', 'neural_network_v2', 10);
    const committed = (await t.repo.get('neural_network_v2'))!;
    await sql`ALTER TABLE audit_log RENAME TO audit_log_away`.execute(t.database.kysely);
    try {
      await expect(t.flags.setPercentage('bob', 'neural_network_v2', 42)).rejects.toThrow(/audit_log/);
    } finally {
      await sql`ALTER TABLE audit_log_away RENAME TO audit_log`.execute(t.database.kysely);
    }
    await t.flags.setPercentage('bob', 'neural_network_v2', 43);
    expect((await t.auditRows('neural_network_v2')).at(-1)!.before_json).toBe(JSON.stringify(committed));
  });

  it.skipIf(!available)('a flag deleted and created again in one unit starts from what the unit wrote', async () => {
    const t = await setup();
    await t.uow.run(async () => {
      await t.flags.delete('bob', 'neural_network_v2');
      const created = await t.flags.setPercentage('bob', 'neural_network_v2', 5);
      const changed = await t.flags.setPercentage('bob', 'neural_network_v2', 6);
      const rows = (await t.uow.db.selectFrom('audit_log').selectAll().where('target', '=', 'neural_network_v2').orderBy('id').execute()).slice(-2);
      expect(rows.map((r) => [r.before_json, r.after_json])).toEqual([[null, JSON.stringify(created)], [JSON.stringify(created), JSON.stringify(changed)]]);
    });
    expect(t.flags.get('neural_network_v2')).toEqual(await t.repo.get('neural_network_v2'));
  });
});

/**
 * SQLite: the repository's map of stored rows is emptied when another connection (another
 * process: the token CLI, a hand edit) commits to the file, which `PRAGMA data_version` shows.
 */
describe('the flag write path on a SQLite file another connection writes too', () => {
  let dir: string | null = null;
  let opened: TestDatabase | null = null;
  afterEach(async () => {
    await opened?.close();
    opened = null;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = null;
  });

  it('reads the flag again when another connection committed, so the audit\'s before is the database\'s row', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'helios-flagwrite-'));
    const file = path.join(dir, 'helios.db');
    opened = await openTestDatabase(file);
    const { database, uow } = opened;
    const { flags } = await startFlags(opened);
    await flags.setPercentage('bob', 'neural_network_v2', 10);
    const other = openDatabase(file);
    try {
      other.prepare(`UPDATE feature_flags SET description = 'edited elsewhere' WHERE name = 'neural_network_v2'`).run();
    } finally {
      other.close();
    }
    const after = await flags.setPercentage('bob', 'neural_network_v2', 12);
    expect(after.description).toBe('edited elsewhere');
    const last = (await database.kysely.selectFrom('audit_log').selectAll().where('target', '=', 'neural_network_v2').orderBy('id', 'desc').limit(1).executeTakeFirstOrThrow());
    expect(JSON.parse(last.before_json!)).toMatchObject({ description: 'edited elsewhere', percentage: 10 });
    expect(await new FlagRepository(uow).get('neural_network_v2')).toEqual(after);
  });
});
