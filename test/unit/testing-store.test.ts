/**
 * The test-run store and the service's persistence over the async unit of work (SQLite in
 * memory): rows, results in order, pagination, INTERRUPTED at start, and a run's progress
 * stored in order before it leaves memory.
 */
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditRepository } from '../../src/audit/repository.js';
import { BreakerRegistry } from '../../src/breakers/registry.js';
import type { BreakerService } from '../../src/breakers/service.js';
import { systemClock } from '../../src/clock.js';
import { EventBus, type EventMap } from '../../src/events.js';
import type { FlagService } from '../../src/flags/service.js';
import { createLogger } from '../../src/logger.js';
import { ModuleService } from '../../src/modules/service.js';
import type { TestCaseResult } from '../../src/testing/engine.js';
import { TestRunRepository, TestRunSeqTakenError } from '../../src/testing/repository.js';
import { TestRunService } from '../../src/testing/service.js';
import { openTestDatabase, type TestDatabase } from '../support/database.js';

const T0 = Date.UTC(2026, 0, 1);

const base = (id: string, seq: number, moduleName = 'fe') => ({
  id, seq, moduleName, moduleVersion: '1', modulePath: 'fe.js', moduleType: 'GENERIC' as const, trigger: 'testModule', actor: 'op', startedAt: T0 + seq,
});
const result = (name: string, overrides: Partial<TestCaseResult> = {}): TestCaseResult => ({
  name, required: true, source: 'BUILT_IN', status: 'PASSED', durationMs: 1.5, error: null, ...overrides,
});

describe('TestRunRepository', () => {
  let test: TestDatabase;
  let repo: TestRunRepository;
  beforeEach(async () => {
    test = await openTestDatabase();
    repo = new TestRunRepository(test.uow);
  });
  afterEach(async () => {
    await test.close();
  });

  it('stores a run, its results in position order and its summary', async () => {
    expect(await repo.nextSeq()).toBe(1);
    await repo.create(base('a', 1));
    expect(await repo.nextSeq()).toBe(2);
    await repo.setTotal('a', 3);
    await repo.addResult('a', 1, result('second', { status: 'FAILED', error: 'nope', required: false, source: 'MODULE' }));
    await repo.addResult('a', 0, result('first'));
    await repo.addResult('a', 2, result('third', { status: 'SKIPPED', error: 'cancelled' }));
    expect(await repo.get('a')).toMatchObject({ id: 'a', seq: 1, status: 'RUNNING', total: 3, finishedAt: null });
    await repo.finish('a', 'FAILED', T0 + 10, { total: 3, passed: 1, failed: 1, timedOut: 0, skipped: 1, durationMs: 9 });
    const run = await repo.get('a');
    expect(run).toMatchObject({ status: 'FAILED', finishedAt: T0 + 10, total: 3, passed: 1, failed: 1, timedOut: 0, skipped: 1, moduleType: 'GENERIC' });
    expect(run!.results).toEqual([
      result('first'),
      result('second', { status: 'FAILED', error: 'nope', required: false, source: 'MODULE' }),
      result('third', { status: 'SKIPPED', error: 'cancelled' }),
    ]);
    expect(await repo.get('missing')).toBeNull();
  });

  it('refuses a taken seq with TestRunSeqTakenError', async () => {
    await repo.create(base('a', 1));
    await expect(repo.create(base('b', 1))).rejects.toBeInstanceOf(TestRunSeqTakenError);
  });

  it('pages newest first, per module, with hasMore; counts per status; marks RUNNING runs INTERRUPTED', async () => {
    for (let seq = 1; seq <= 5; seq++) await repo.create(base(`r${seq}`, seq, seq % 2 === 0 ? 'other' : 'fe'));
    await repo.finish('r1', 'PASSED', T0, { total: 0, passed: 0, failed: 0, timedOut: 0, skipped: 0, durationMs: 0 });
    const first = await repo.page(null, 2);
    expect(first.runs.map((r) => r.id)).toEqual(['r5', 'r4']);
    expect(first.hasMore).toBe(true);
    const rest = await repo.page(null, 10, 4);
    expect(rest.runs.map((r) => r.id)).toEqual(['r3', 'r2', 'r1']);
    expect(rest.hasMore).toBe(false);
    expect((await repo.page('fe', 10)).runs.map((r) => r.id)).toEqual(['r5', 'r3', 'r1']);

    expect(await repo.interruptUnfinished(T0 + 100)).toBe(4);
    expect(await repo.get('r2')).toMatchObject({ status: 'INTERRUPTED', finishedAt: T0 + 100 });
    expect(await repo.get('r1')).toMatchObject({ status: 'PASSED', finishedAt: T0 });
    expect(await repo.countByStatus()).toEqual([{ status: 'INTERRUPTED', runs: 4 }, { status: 'PASSED', runs: 1 }]);
    expect(await repo.interruptUnfinished(T0 + 200)).toBe(0);
  });
});

describe('TestRunService persistence', () => {
  let test: TestDatabase;
  let bus: EventBus;
  let modules: ModuleService;
  let testing: TestRunService;
  let progress: EventMap['testProgress'][];

  beforeEach(async () => {
    test = await openTestDatabase();
    bus = new EventBus();
    progress = [];
    bus.on('testProgress', (event) => progress.push(event));
    const modulesDir = mkdtempSync(path.join(tmpdir(), 'helios-testing-store-'));
    cpSync('examples/modules', modulesDir, { recursive: true });
    const registry = new BreakerRegistry({ clock: systemClock });
    const breakers = {
      registry,
      getOrCreate: (name: string, config?: object) => registry.getOrCreate(name, config),
      get: (name: string) => registry.get(name) ?? null,
    } as unknown as BreakerService;
    const flags = { isEnabled: () => false, list: () => [], onChange: () => () => undefined } as unknown as FlagService;
    const logger = createLogger('silent');
    const audit = new AuditRepository(test.uow);
    modules = new ModuleService({ uow: test.uow, audit, bus, clock: systemClock, logger, flags, breakers, modulesDir });
    testing = new TestRunService({ uow: test.uow, audit, bus, clock: systemClock, logger, modules });
    // A run a crash left RUNNING.
    await new TestRunRepository(test.uow).create(base('crashed', 7));
    expect(await testing.start()).toEqual({ interrupted: 1 });
    await modules.start();
    await modules.register('op', { name: 'feature_extractor', modulePath: 'feature_extractor.js', version: '1.0.0' });
  });
  afterEach(async () => {
    await testing.stop();
    await modules.stop();
    await test.close();
  });

  it('stores every event of a run in order before the run leaves memory, and replays it from the store', async () => {
    expect(await testing.get('crashed')).toMatchObject({ status: 'INTERRUPTED' });
    const run = await testing.testModule('op', 'feature_extractor', 'DATA_PIPELINE');
    expect(run).toMatchObject({ status: 'RUNNING', seq: 8, moduleName: 'feature_extractor', trigger: 'testModule' });
    const live: string[] = [];
    for await (const event of await testing.progress(run.id)) live.push(`${event.type}${'index' in event ? event.index : ''}`);
    expect(live[0]).toBe('RUN_STARTED');
    expect(live.at(-1)).toBe('RUN_FINISHED');
    // The bus heard the same events, in the same order.
    expect(progress.map((e) => `${e.type}${'index' in e ? e.index : ''}`)).toEqual(live);

    // RUN_FINISHED is published once its write committed: the store already says so.
    const stored = (await testing.get(run.id))!;
    expect(stored).toMatchObject({ status: 'PASSED', total: 8, failed: 0 });
    expect(stored.results).toHaveLength(8);
    const replayed: string[] = [];
    for await (const event of await testing.progress(run.id)) replayed.push(event.type);
    expect(replayed.filter((t) => t === 'TEST_FINISHED')).toHaveLength(8);
    expect(replayed.at(-1)).toBe('RUN_FINISHED');

    expect(await testing.countByStatus()).toMatchObject({ PASSED: 1, INTERRUPTED: 1, RUNNING: 0 });
    expect((await testing.page('feature_extractor', 10)).runs.map((r) => r.id)).toEqual([run.id]);
    const audited = await test.database.kysely.selectFrom('audit_log').select('action').where('target_type', '=', 'TEST_RUN').execute();
    expect(audited.map((a) => a.action)).toEqual(['testModule']);
    await expect(testing.progress('nope')).rejects.toMatchObject({ code: 'TEST_RUN_NOT_FOUND' });
  });

  it('a cancelled run is stored CANCELLED once cancel resolves; a second cancel is refused', async () => {
    const run = await testing.testModule('op', 'feature_extractor', 'DATA_PIPELINE');
    const cancelling = testing.cancel('op', run.id);
    await expect(testing.cancel('op', run.id)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/already being cancelled/) });
    const cancelled = await cancelling;
    expect(['CANCELLED', 'PASSED']).toContain(cancelled.status);
    expect(cancelled.finishedAt).not.toBeNull();
    expect(await testing.get(run.id)).toEqual(cancelled);
    const audited = await test.database.kysely.selectFrom('audit_log').select('action').where('target_type', '=', 'TEST_RUN').orderBy('id').execute();
    expect(audited.map((a) => a.action)).toEqual(['testModule', 'cancelTestRun']);
  });
});
