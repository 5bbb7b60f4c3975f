/**
 * The rollout service against fake modules and flags domains (the narrow interfaces it
 * declares), a real SQLite database (migrations, repository, audit log) and a manual clock.
 */
import { sql } from '../../src/db/kysely.js';
import { afterEach, describe, expect, it, it as vitestIt } from 'vitest';
import { AuditRepository, type NewAuditEntry } from '../../src/audit/repository.js';
import { ManualClock } from '../../src/clock.js';
import { UserError, UserErrors } from '../../src/errors.js';
import { createLogger } from '../../src/logger.js';
import type { RolloutProgressEvent } from '../../src/rollouts/events.js';
import { RolloutService } from '../../src/rollouts/service.js';
import { bothDialects, openTestDatabase, type TestDatabase } from '../support/database.js';
import { deferred, FakeFlags, FakeModules, flush } from '../support/rollouts.js';

const T0 = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;

const services: RolloutService[] = [];
const databases: TestDatabase[] = [];
afterEach(async () => {
  for (const s of services.splice(0)) await s.stop();
  for (const d of databases.splice(0)) await d.close();
});

interface Shared { test: TestDatabase; clock: ManualClock; log: string[]; modules: FakeModules; flags: FakeFlags }

async function setup(shared?: Shared, options: { failAudit?: () => boolean; open?: () => Promise<TestDatabase> } = {}) {
  const clock = shared?.clock ?? new ManualClock(T0);
  let test = shared?.test;
  if (!test) {
    test = await (options.open ?? openTestDatabase)();
    databases.push(test);
  }
  const { uow } = test;
  const log = shared?.log ?? [];
  const modules = shared?.modules ?? new FakeModules(log);
  const flags = shared?.flags ?? new FakeFlags(log);
  const published: RolloutProgressEvent[] = [];
  /** What the fakes had been asked to do, and the split's share, when each event was published. */
  const logAtPublish: string[][] = [];
  const shareAtPublish: (number | null)[] = [];
  const errors: string[] = [];
  const auditRepo = new AuditRepository(uow);
  const audit = {
    record: async (entry: NewAuditEntry) => {
      if (options.failAudit?.()) throw new Error('disk I/O error');
      await auditRepo.record(entry);
    },
  };
  const logger = createLogger('error', {}, (line) => errors.push((JSON.parse(line) as { msg: string }).msg));
  const service = new RolloutService({
    uow, audit, modules, flags, clock, logger,
    publish: (e) => {
      published.push(e);
      logAtPublish.push([...log]);
      shareAtPublish.push(flags.percentageOf(e.rollout.flag));
    },
    manualCheckIntervalMs: 60_000,
  });
  services.push(service);
  const auditRows = () => uow.db.selectFrom('audit_log').select(['actor', 'action', 'target_type', 'target']).orderBy('id').execute();
  const count = async (table: 'rollouts' | 'rollout_events' | 'audit_log') =>
    Number((await uow.db.selectFrom(table).select(sql<number>`COUNT(*)`.as('n')).executeTakeFirstOrThrow()).n);
  return {
    clock, uow, log, modules, flags, published, logAtPublish, shareAtPublish, errors, service, audit: auditRows, count,
    shared: { test, clock, log, modules, flags },
  };
}

type Setup = Awaited<ReturnType<typeof setup>>;

/** Moves the clock to the rollout's next judgement and lets the service act. */
async function toNextStep(t: Setup, module = 'pricing'): Promise<void> {
  const at = t.service.inProgress(module)!.nextStepAt!;
  t.clock.set(at);
  await flush();
}

describe('rollout service', () => {
  it('a healthy rollout steps through every percentage and promotes itself, audited as `rollout`', async () => {
    const t = await setup();
    await t.service.start();
    const started = await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js', newVersion: '2.0.0' });
    expect(started).toMatchObject({ status: 'RUNNING', percentage: 1, fromVersion: '1.0.0', toVersion: '2.0.0', flag: 'pricing', nextStepAt: T0 + HOUR });
    expect(t.log).toEqual(['flag pricing=0 by alice', 'stage pricing@2.0.0', 'flag pricing=1 by rollout']);
    const percentages: number[] = [1];
    for (let i = 0; i < 6; i++) {
      t.modules.traffic('pricing', { calls: 50 }, { calls: 50, ms: 5 });
      await toNextStep(t);
      const r = t.service.inProgress('pricing')!;
      percentages.push(r.percentage);
      // Each step's statistics start over.
      expect(t.service.stats('pricing')!.canary.calls).toBe(0);
    }
    expect(percentages).toEqual([1, 2, 5, 10, 25, 50, 100]);
    expect(t.flags.percentageOf('pricing')).toBe(100);
    t.modules.traffic('pricing', { calls: 50 });
    await toNextStep(t);
    expect(t.service.inProgress('pricing')).toBeNull();
    const done = (await t.service.current('pricing'))!;
    expect(done).toMatchObject({ status: 'PROMOTED', percentage: 100, finishedAt: T0 + 7 * HOUR });
    expect(t.modules.active.get('pricing')).toBe('2.0.0');
    expect(t.log.at(-1)).toBe('promote pricing');
    expect((await t.service.events(done.id)).map((e) => e.type)).toEqual(['STARTED', 'STEP', 'STEP', 'STEP', 'STEP', 'STEP', 'STEP', 'STEP', 'PROMOTED']);
    expect(t.published.map((e) => e.type)).toEqual(['STARTED', 'STEP', 'STEP', 'STEP', 'STEP', 'STEP', 'STEP', 'STEP', 'PROMOTED']);
    expect(t.published.at(-1)!.rollout.status).toBe('PROMOTED');
    const audit = await t.audit();
    expect(audit[0]).toEqual({ actor: 'alice', action: 'startRollout', target_type: 'ROLLOUT', target: 'pricing' });
    expect(audit.slice(1).every((a) => a.actor === 'rollout')).toBe(true);
    expect(audit.at(-1)!.action).toBe('rolloutPromote');
    // The module is free again.
    expect(() => t.service.assertNoRolloutInProgress('pricing', 'swap')).not.toThrow();
  });

  it('a failing canary is aborted at the end of its step, before the next one: split to 0 first, then drained', async () => {
    const t = await setup();
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js', gates: { maxFailureRate: 0.05 } });
    t.modules.traffic('pricing', { calls: 40, failures: 4 });
    t.log.length = 0;
    await toNextStep(t);
    const r = (await t.service.current('pricing'))!;
    expect(r).toMatchObject({ status: 'ABORTED', percentage: 0, stepIndex: 0, abort: { cause: 'FAILURE_RATE', limit: 0.05, value: 0.1 } });
    expect(r.abortReason).toContain('failure rate 0.1');
    expect(r.abort!.stats!.canary).toMatchObject({ calls: 40, failures: 4 });
    expect(t.log).toEqual(['flag pricing=0 by rollout', 'drop pricing']);
    // Whoever reacts to the ABORTED event finds the split at 0 and the canary's drop begun.
    expect(t.published.at(-1)!.type).toBe('ABORTED');
    expect(t.logAtPublish.at(-1)).toEqual(['flag pricing=0 by rollout', 'drop pricing']);
    expect(t.shareAtPublish.at(-1)).toBe(0);
    expect(t.modules.canaries.has('pricing')).toBe(false);
    expect(t.modules.active.get('pricing')).toBe('1.0.0');
    expect((await t.audit()).at(-1)).toMatchObject({ actor: 'rollout', action: 'rolloutAbort' });
    // Nothing further is scheduled for it.
    t.clock.advance(10 * HOUR);
    await flush();
    expect(t.log).toEqual(['flag pricing=0 by rollout', 'drop pricing']);
  });

  it('holds while the canary has fewer than minCalls calls, then steps once it has them', async () => {
    const t = await setup();
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js', gates: { minCalls: 20 } });
    t.modules.traffic('pricing', { calls: 12 });
    await toNextStep(t);
    let r = t.service.inProgress('pricing')!;
    expect(r).toMatchObject({ status: 'HOLDING', percentage: 1, nextStepAt: T0 + 2 * HOUR });
    expect(t.published.at(-1)).toMatchObject({ type: 'HOLDING', percentage: 1 });
    expect((await t.audit()).at(-1)).toMatchObject({ actor: 'rollout', action: 'rolloutHold' });
    // The held step keeps counting: 12 + 8 reaches minCalls.
    t.modules.traffic('pricing', { calls: 8 });
    await toNextStep(t);
    r = t.service.inProgress('pricing')!;
    expect(r).toMatchObject({ status: 'RUNNING', percentage: 2 });
  });

  it('aborts at once when the canary breaker opens, mid-step', async () => {
    const t = await setup();
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' });
    t.clock.advance(10 * 60_000);
    t.modules.traffic('pricing', { calls: 3, failures: 3 });
    t.log.length = 0;
    t.modules.openBreaker('pricing');
    await flush();
    const r = (await t.service.current('pricing'))!;
    expect(r).toMatchObject({ status: 'ABORTED', finishedAt: T0 + 10 * 60_000, abort: { cause: 'BREAKER_OPEN' } });
    expect(t.log).toEqual(['flag pricing=0 by rollout', 'drop pricing']);
  });

  it('judges the latency ratio against the stable version in the same step', async () => {
    const t = await setup();
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js', gates: { maxLatencyRatio: 2, minCalls: 10 } });
    t.modules.traffic('pricing', { calls: 20, ms: 30 }, { calls: 200, ms: 10 });
    await toNextStep(t);
    const r = (await t.service.current('pricing'))!;
    expect(r).toMatchObject({ status: 'ABORTED', abort: { cause: 'LATENCY_RATIO', limit: 2 } });
    expect(r.abort!.value).toBeCloseTo(3, 0);
  });

  it('aborts at judgement when the canary breaker is not CLOSED even if its opening was not reported', async () => {
    const t = await setup();
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' });
    t.modules.traffic('pricing', { calls: 100 });
    t.modules.breakers.set('pricing', 'HALF_OPEN');
    await toNextStep(t);
    expect(await t.service.current('pricing')).toMatchObject({ status: 'ABORTED', abort: { cause: 'BREAKER_OPEN' } });
  });

  it('pause keeps the time left, resume restores it; a paused rollout still aborts on its breaker', async () => {
    const t = await setup();
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' });
    t.clock.advance(15 * 60_000);
    const paused = await t.service.pause('bob', 'pricing');
    expect(paused).toMatchObject({ status: 'PAUSED', remainingMs: 45 * 60_000, nextStepAt: null });
    t.modules.traffic('pricing', { calls: 100 });
    t.clock.advance(5 * HOUR);
    await flush();
    expect(t.service.inProgress('pricing')).toMatchObject({ status: 'PAUSED', percentage: 1 });
    await expect(t.service.pause('bob', 'pricing')).rejects.toMatchObject({ code: 'INVALID_ROLLOUT_STATE' });
    const resumed = await t.service.resume('bob', 'pricing');
    expect(resumed).toMatchObject({ status: 'RUNNING', nextStepAt: t.clock.now() + 45 * 60_000 });
    t.clock.advance(45 * 60_000 - 1);
    await flush();
    expect(t.service.inProgress('pricing')!.percentage).toBe(1);
    t.clock.advance(1);
    await flush();
    expect(t.service.inProgress('pricing')!.percentage).toBe(2);
    expect((await t.audit()).map((a) => `${a.actor}:${a.action}`)).toEqual(expect.arrayContaining(['bob:pauseRollout', 'bob:resumeRollout']));

    await t.service.pause('bob', 'pricing');
    t.modules.openBreaker('pricing');
    await flush();
    expect((await t.service.current('pricing'))!.status).toBe('ABORTED');
  });

  it('after a restart mid-rollout loads the canary again, sets the split back and judges with the time left', async () => {
    const first = await setup();
    await first.service.start();
    await first.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js', newVersion: '2.0.0' });
    first.modules.traffic('pricing', { calls: 30 });
    await toNextStep(first); // 2%, next judgement at T0 + 2h
    first.clock.advance(40 * 60_000);
    // Crash: the process and everything in memory are gone (the fake modules lose the canary).
    await first.service.stop();
    first.modules.canaries.clear();
    first.flags.percentages.clear();
    first.log.length = 0;
    first.clock.advance(5 * 60_000);

    const second = await setup(first.shared);
    expect(await second.service.start()).toEqual({ resumed: 1, finished: 0 });
    expect(first.log).toEqual(['stage pricing@2.0.0', 'flag pricing=2 by rollout']);
    const r = second.service.inProgress('pricing')!;
    expect(r).toMatchObject({ status: 'RUNNING', percentage: 2, nextStepAt: T0 + 2 * HOUR });
    second.modules.traffic('pricing', { calls: 30 });
    second.clock.advance(15 * 60_000 - 1);
    await flush();
    expect(second.service.inProgress('pricing')!.percentage).toBe(2);
    second.clock.advance(1);
    await flush();
    expect(second.service.inProgress('pricing')!.percentage).toBe(5);
  });

  it('after a restart a paused rollout stays paused with its time left; a crash during promotion is recorded PROMOTED', async () => {
    const first = await setup();
    await first.service.start();
    await first.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js', newVersion: '2.0.0' });
    await first.service.startRollout('alice', { module: 'risk', newVersionPath: 'risk_v4.js', newVersion: '4.0.0' });
    first.clock.advance(10 * 60_000);
    await first.service.pause('bob', 'pricing');
    await first.service.stop();
    first.modules.canaries.clear();
    // risk's promotion reached the modules domain but the rollout row was not written.
    first.modules.active.set('risk', '4.0.0');
    first.clock.advance(HOUR);

    const second = await setup(first.shared);
    expect(await second.service.start()).toEqual({ resumed: 1, finished: 1 });
    expect(second.service.inProgress('pricing')).toMatchObject({ status: 'PAUSED', remainingMs: 50 * 60_000 });
    expect(await second.service.current('risk')).toMatchObject({ status: 'PROMOTED' });
    const resumed = await second.service.resume('bob', 'pricing');
    expect(resumed.nextStepAt).toBe(second.clock.now() + 50 * 60_000);
  });

  it('after a restart during TESTING stages and tests the new version again', async () => {
    const first = await setup();
    await first.service.start();
    first.modules.stageGate = deferred<void>();
    void first.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js', testWith: 'GENERIC' });
    await flush();
    await first.service.stop();
    first.log.length = 0;
    first.modules.stageGate = null;

    const second = await setup(first.shared);
    expect(await second.service.start()).toEqual({ resumed: 1, finished: 0 });
    await flush();
    expect(first.log).toEqual(['flag pricing=0 by rollout', 'stage pricing@pricing_v2 test GENERIC', 'flag pricing=1 by rollout']);
    expect(second.service.inProgress('pricing')).toMatchObject({ status: 'RUNNING', percentage: 1, testRunId: 'run-ok' });
  });

  it('after a restart aborts a rollout whose module no longer runs its fromVersion', async () => {
    const first = await setup();
    await first.service.start();
    await first.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' });
    await first.service.stop();
    first.modules.active.set('pricing', '0.9.0');
    const second = await setup(first.shared);
    expect(await second.service.start()).toEqual({ resumed: 0, finished: 1 });
    expect(await second.service.current('pricing')).toMatchObject({ status: 'ABORTED', abort: { cause: 'CANARY_FAILED' } });
    expect((await second.service.current('pricing'))!.abortReason).toContain('0.9.0');
  });

  it('bad input leaves nothing written, loaded or moved', async () => {
    const t = await setup();
    await t.service.start();
    const attempts: [Parameters<RolloutService['startRollout']>[1], string][] = [
      [{ module: 'nope', newVersionPath: 'x.js' }, 'MODULE_NOT_FOUND'],
      [{ module: 'pricing', newVersionPath: '../../etc/passwd' }, 'INVALID_MODULE_PATH'],
      [{ module: 'pricing', newVersionPath: 'p.js', steps: [10, 5, 100] }, 'INVALID_ROLLOUT_CONFIG'],
      [{ module: 'pricing', newVersionPath: 'p.js', steps: [10, 50] }, 'INVALID_ROLLOUT_CONFIG'],
      [{ module: 'pricing', newVersionPath: 'p.js', stepIntervalSeconds: 0 }, 'INVALID_ROLLOUT_CONFIG'],
      [{ module: 'pricing', newVersionPath: 'p.js', gates: { maxFailureRate: 2 } }, 'INVALID_ROLLOUT_CONFIG'],
      [{ module: 'bad name!', newVersionPath: 'p.js' }, 'INVALID_NAME'],
      [{ module: 'pricing', newVersionPath: 'p.js', flag: '' }, 'INVALID_NAME'],
    ];
    for (const [input, code] of attempts) {
      const error = await t.service.startRollout('alice', input).then(() => null, (e: unknown) => e);
      const codes = error instanceof UserErrors ? error.errors.map((e) => e.code) : [(error as UserError).code];
      expect(codes, JSON.stringify(input)).toContain(code);
    }
    expect(await t.count('rollouts')).toBe(0);
    expect(await t.count('rollout_events')).toBe(0);
    expect(await t.count('audit_log')).toBe(0);
    expect(t.log).toEqual([]);
    expect(t.published).toEqual([]);
  });

  it('refuses a second rollout of the module (ROLLOUT_IN_PROGRESS) and a flag split by another rollout (FLAG_IN_USE)', async () => {
    const t = await setup();
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' });
    const written = await t.count('rollouts');
    await expect(t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v3.js' })).rejects.toMatchObject({ code: 'ROLLOUT_IN_PROGRESS' });
    await expect(t.service.startRollout('alice', { module: 'risk', newVersionPath: 'risk_v4.js', flag: 'pricing' })).rejects.toMatchObject({ code: 'FLAG_IN_USE', field: 'flag' });
    expect(() => t.service.assertNoRolloutInProgress('pricing', 'swap')).toThrowError(expect.objectContaining({ code: 'ROLLOUT_IN_PROGRESS' }));
    expect(await t.count('rollouts')).toBe(written);
    await expect(t.service.advance('alice', 'risk')).rejects.toMatchObject({ code: 'ROLLOUT_NOT_FOUND' });
    // Once finished, the flag and the module are free again.
    await t.service.abort('alice', 'pricing', 'wrong build');
    await flush();
    const again = await t.service.startRollout('alice', { module: 'risk', newVersionPath: 'risk_v4.js', flag: 'pricing' });
    expect(again.status).toBe('RUNNING');
  });

  it('TESTING: a passing test run starts the first step; a failing one aborts with nothing ever routed', async () => {
    const t = await setup();
    await t.service.start();
    t.modules.stageGate = deferred<void>();
    const gate = t.modules.stageGate;
    const pending = t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js', testWith: 'GENERIC' });
    await flush();
    expect(t.service.inProgress('pricing')).toMatchObject({ status: 'TESTING', percentage: 0 });
    expect(t.published.map((e) => e.type)).toEqual(['STARTED']);
    gate.resolve();
    expect(await pending).toMatchObject({ status: 'RUNNING', percentage: 1, testRunId: 'run-ok' });

    const failed = await t.service.startRollout('alice', { module: 'risk', newVersionPath: 'risk_v4.js', testWith: 'TRADING' });
    expect(failed).toMatchObject({ status: 'ABORTED', testRunId: 'run-failed', abort: { cause: 'TESTS_FAILED' } });
    expect(failed.abortReason).toContain('2 of 5 tests failed');
    expect(t.log.filter((l) => l.startsWith('flag risk'))).toEqual(['flag risk=0 by alice']);
  });

  it('a new version that does not load is recorded ABORTED and the split never leaves 0', async () => {
    const t = await setup();
    await t.service.start();
    t.modules.failLoad = 'SyntaxError: Unexpected token';
    const r = await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' });
    expect(r).toMatchObject({ status: 'ABORTED', abort: { cause: 'CANARY_FAILED' } });
    expect(r.abortReason).toContain('Unexpected token');
    expect(t.log).toEqual(['flag pricing=0 by alice', 'stage pricing@pricing_v2']);
  });

  it('aborting while TESTING waits for the staging to finish, then unloads the canary', async () => {
    const t = await setup();
    await t.service.start();
    t.modules.stageGate = deferred<void>();
    const gate = t.modules.stageGate;
    const pending = t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js', testWith: 'GENERIC' });
    await flush();
    const aborted = await t.service.abort('bob', 'pricing', 'changed my mind');
    expect(aborted.status).toBe('ABORTED');
    await expect(t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v3.js' })).rejects.toMatchObject({ code: 'ROLLOUT_IN_PROGRESS' });
    gate.resolve();
    expect((await pending).status).toBe('ABORTED');
    await flush();
    expect(t.log.at(-1)).toBe('drop pricing');
    expect(t.modules.canaries.has('pricing')).toBe(false);
  });

  it('manual control: advance steps at once, promote now; manual steps follow the flag and the gates still abort', async () => {
    const t = await setup();
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' });
    expect(await t.service.advance('bob', 'pricing')).toMatchObject({ percentage: 2, status: 'RUNNING' });
    expect(t.flags.percentageOf('pricing')).toBe(2);
    const promoted = await t.service.promote('bob', 'pricing');
    expect(promoted).toMatchObject({ status: 'PROMOTED' });
    expect(t.modules.active.get('pricing')).toBe('pricing_v2');
    expect((await t.audit()).slice(-2).map((a) => `${a.actor}:${a.action}`)).toEqual(['bob:advanceRollout', 'bob:promoteRollout']);

    await t.service.startRollout('alice', { module: 'risk', newVersionPath: 'risk_v4.js', stepIntervalSeconds: null });
    expect(t.service.inProgress('risk')).toMatchObject({ nextStepAt: null, percentage: 1 });
    t.clock.advance(10 * HOUR);
    await flush();
    expect(t.service.inProgress('risk')!.percentage).toBe(1);
    // The seeds' workflow: the operator moves the flag by hand.
    await t.flags.setPercentage('risk', 10, 'carol');
    await flush();
    expect(t.service.inProgress('risk')).toMatchObject({ percentage: 10, stepIndex: 3 });
    expect(t.published.at(-1)).toMatchObject({ type: 'STEP', percentage: 10 });
    expect((await t.audit()).at(-1)).toMatchObject({ actor: 'carol', action: 'setFlagPercentage' });
    t.modules.traffic('risk', { calls: 50, failures: 20 });
    t.clock.advance(60_000);
    await flush();
    expect(await t.service.current('risk')).toMatchObject({ status: 'ABORTED', abort: { cause: 'FAILURE_RATE' } });
    expect(t.flags.percentageOf('risk')).toBe(0);
  });

  it('a failed promotion aborts the rollout and leaves the stable version serving', async () => {
    const t = await setup();
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' });
    t.modules.failPromote = 'exportState threw';
    const r = await t.service.promote('bob', 'pricing');
    expect(r).toMatchObject({ status: 'ABORTED', abort: { cause: 'CANARY_FAILED' } });
    expect(r.abortReason).toContain('exportState threw');
    expect(t.modules.active.get('pricing')).toBe('1.0.0');
    expect(t.log.slice(-2)).toEqual(['flag pricing=0 by rollout', 'drop pricing']);
  });

  it('a judgement and a command at the same moment run one after the other', async () => {
    const t = await setup();
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' });
    t.modules.traffic('pricing', { calls: 50 });
    // The timer fires (queuing the judgement) and an operator advances in the same turn.
    t.clock.set(t.service.inProgress('pricing')!.nextStepAt!);
    const advanced = await t.service.advance('bob', 'pricing');
    await flush();
    expect(advanced).toMatchObject({ percentage: 5, stepIndex: 2 });
    const r = (await t.service.current('pricing'))!;
    expect((await t.service.events(r.id)).map((e) => `${e.type}:${e.percentage}`)).toEqual(['STARTED:0', 'STEP:1', 'STEP:2', 'STEP:5']);
    expect(t.published.map((e) => `${e.type}:${e.percentage}`)).toEqual(['STARTED:0', 'STEP:1', 'STEP:2', 'STEP:5']);
    expect(t.flags.percentageOf('pricing')).toBe(5);
  });

  it('a judgement whose write fails is logged, changes nothing and is tried again a check interval later', async () => {
    let failing = false;
    const t = await setup(undefined, { failAudit: () => failing });
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' });
    t.modules.traffic('pricing', { calls: 50 });
    const before = await t.count('rollout_events');
    failing = true;
    await toNextStep(t);
    expect(t.errors).toEqual(['rollout: judging a step failed']);
    expect(t.service.inProgress('pricing')).toMatchObject({ status: 'RUNNING', percentage: 1 });
    expect(await t.count('rollout_events')).toBe(before);
    expect(t.flags.percentageOf('pricing')).toBe(1);
    failing = false;
    t.clock.advance(60_000 - 1);
    await flush();
    expect(t.service.inProgress('pricing')!.percentage).toBe(1);
    t.clock.advance(1);
    await flush();
    expect(t.service.inProgress('pricing')).toMatchObject({ status: 'RUNNING', percentage: 2 });
  });

  it('a breaker that opens inside another unit of work aborts the rollout once that unit commits, not if it rolls back', async () => {
    const t = await setup();
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' });
    const events = await t.count('rollout_events');
    await t.uow.run(async () => {
      t.modules.openBreaker('pricing');
      await flush();
      expect(t.service.inProgress('pricing')!.status).toBe('RUNNING');
      // Nothing of the rollout's was written inside the other domain's transaction.
      expect(await t.count('rollout_events')).toBe(events);
      throw new Error('the breaker change rolled back');
    }).catch(() => undefined);
    await flush();
    expect(t.service.inProgress('pricing')!.status).toBe('RUNNING');
    await t.uow.run(async () => {
      t.modules.openBreaker('pricing');
      await flush();
      expect(t.service.inProgress('pricing')!.status).toBe('RUNNING');
      expect(await t.count('rollout_events')).toBe(events);
    });
    await flush();
    expect(await t.service.current('pricing')).toMatchObject({ status: 'ABORTED', abort: { cause: 'BREAKER_OPEN' } });
  });

  it('the ABORTED event goes out once the split is at 0 and the drain has begun, without waiting for the drain', async () => {
    const t = await setup();
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' });
    t.modules.dropGate = deferred<void>();
    const drain = t.modules.dropGate;
    const aborting = t.service.abort('bob', 'pricing');
    await flush();
    expect(t.published.at(-1)).toMatchObject({ type: 'ABORTED', percentage: 0 });
    expect(t.shareAtPublish.at(-1)).toBe(0);
    expect(t.modules.canaries.has('pricing')).toBe(true); // still draining
    // A new rollout waits for the old canary to be gone.
    await expect(t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v3.js' })).rejects.toMatchObject({ code: 'ROLLOUT_IN_PROGRESS' });
    drain.resolve();
    expect((await aborting).status).toBe('ABORTED');
    expect(t.modules.canaries.has('pricing')).toBe(false);
  });

  it('stop waits for the operations already under way', async () => {
    const t = await setup();
    await t.service.start();
    await t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' });
    const aborting = t.service.abort('bob', 'pricing');
    await t.service.stop();
    expect(t.log.at(-1)).toBe('drop pricing');
    expect((await aborting).status).toBe('ABORTED');
    expect((await t.audit()).at(-1)).toMatchObject({ actor: 'bob', action: 'abortRollout' });
  });

  it('lists history newest first with paging, and replays the current rollout events for a late subscriber', async () => {
    const t = await setup();
    await t.service.start();
    for (let i = 0; i < 3; i++) {
      await t.service.startRollout('alice', { module: 'pricing', newVersionPath: `pricing_v${i + 2}.js` });
      if (i < 2) await t.service.abort('alice', 'pricing', `attempt ${i}`);
      await flush();
    }
    const page1 = await t.service.page('pricing', 2);
    expect(page1.rollouts.map((r) => r.toVersion)).toEqual(['pricing_v4', 'pricing_v3']);
    expect(page1.hasMore).toBe(true);
    const page2 = await t.service.page('pricing', 2, page1.rollouts[1]!.seq);
    expect(page2).toMatchObject({ hasMore: false });
    expect(page2.rollouts.map((r) => r.toVersion)).toEqual(['pricing_v2']);
    expect((await t.service.page(null, 10)).rollouts).toHaveLength(3);
    const replay = t.service.replay('pricing');
    expect(replay.map((e) => e.type)).toEqual(['STARTED', 'STEP']);
    expect(replay.every((e) => e.rollout.toVersion === 'pricing_v4')).toBe(true);
    await expect(t.service.page('pricing', 0)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

const stores = bothDialects('rollout_service');

// Units run one after the other on SQLite and in parallel on PostgreSQL: the races on both.
describe.each(stores)('rollout service on %s: concurrent starts', (_dialect, openStore, available) => {
  const it = available ? vitestIt : vitestIt.skip;

    it('two starts at once: the module (or flag) goes to one of them, and starts of different modules get their own seq', async () => {
      const t = await setup(undefined, { open: openStore });
      await t.service.start();
      const outcomes = await Promise.allSettled([
        t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' }),
        t.service.startRollout('bob', { module: 'pricing', newVersionPath: 'pricing_v3.js' }),
      ]);
      expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected']);
      expect(outcomes.find((o) => o.status === 'rejected')).toMatchObject({ reason: { code: 'ROLLOUT_IN_PROGRESS' } });
      expect(await t.count('rollouts')).toBe(1);
      expect(t.log.filter((l) => l.startsWith('stage'))).toHaveLength(1);

      const flagRace = await Promise.allSettled([
        t.service.startRollout('alice', { module: 'risk', newVersionPath: 'risk_v4.js', flag: 'shared' }),
        t.service.startRollout('alice', { module: 'other', newVersionPath: 'other_v2.js', flag: 'shared' }),
      ]);
      // `other` is not a module of the fakes: only a start that got past the flag check reaches planCanary's refusal.
      expect(flagRace.map((o) => (o.status === 'fulfilled' ? o.value.status : (o.reason as UserError).code)).sort())
        .toEqual(['MODULE_NOT_FOUND', 'RUNNING']);

      t.modules.active.set('other', '1.0.0');
      await t.service.abort('alice', 'pricing');
      await t.service.abort('alice', 'risk');
      await flush();
      const both = await Promise.all([
        t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v4.js' }),
        t.service.startRollout('alice', { module: 'other', newVersionPath: 'other_v2.js' }),
      ]);
      expect(both.map((r) => r.status)).toEqual(['RUNNING', 'RUNNING']);
      expect(new Set(both.map((r) => r.seq)).size).toBe(2);
      expect(t.errors).toEqual([]);
    });

    it('a rollout started elsewhere (the database has it, memory does not) refuses the module and the flag with the typed errors', async () => {
      const t = await setup(undefined, { open: openStore });
      await t.service.start();
      // Another node's rollout of `pricing` on flag `pricing`, written while this one was not looking.
      await t.uow.db.insertInto('rollouts').values({
        id: 'elsewhere', seq: 1, module: 'pricing', from_version: '1.0.0', to_version: '9.0.0', to_module_path: 'pricing_v9.js', flag: 'pricing',
        status: 'RUNNING', steps_json: '[1,100]', step_index: 0, percentage: 1, step_interval_seconds: 60, gates_json: '{}', auto_promote: 1,
        test_with: null, test_run_id: null, step_started_at: T0, next_step_at: T0 + 60_000, paused_at: null, remaining_ms: null,
        resume_status: null, awaiting_promotion: 0, actor: 'zoe', started_at: T0, updated_at: T0, finished_at: null, abort_reason: null, abort_json: null,
      }).execute();
      await expect(t.service.startRollout('alice', { module: 'pricing', newVersionPath: 'pricing_v2.js' }))
        .rejects.toMatchObject({ code: 'ROLLOUT_IN_PROGRESS', message: expect.stringContaining('1.0.0 -> 9.0.0 is RUNNING') });
      await expect(t.service.startRollout('alice', { module: 'risk', newVersionPath: 'risk_v4.js', flag: 'pricing' }))
        .rejects.toMatchObject({ code: 'FLAG_IN_USE', field: 'flag', message: expect.stringContaining('"pricing"') });
      // Nothing kept in memory, loaded or published for the refused starts.
      expect(t.service.inProgress('pricing')).toBeNull();
      expect(t.service.inProgress('risk')).toBeNull();
      expect(t.log.filter((l) => l.startsWith('stage'))).toEqual([]);
      expect(t.published).toEqual([]);
      expect(await t.count('rollouts')).toBe(1);
    });
});
