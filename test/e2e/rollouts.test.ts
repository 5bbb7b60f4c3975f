/**
 * Rollouts end to end over HTTP and graphql-ws, with real WORKER modules and an injected clock
 * (time is driven, never slept): promotion, aborts by gate and by breaker, restart, refusals,
 * bad input, the seeds' manual workflow and sticky users.
 */
import { cpSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parsePrometheusText, sampleValue } from '../support/prometheus-text.js';
import {
  CircuitBreakersDocument,
  AbortRolloutDocument,
  EnableFeatureFlagDocument,
  EvaluateFlagDocument,
  FeatureFlagDocument,
  InvokeModuleDocument,
  LoadModuleDocument,
  ModuleCanaryDocument,
  PromoteRolloutDocument,
  RegisterModuleDocument,
  RollbackModuleDocument,
  RolloutDocument,
  RolloutProgressDocument,
  RolloutsDocument,
  SetFlagPercentageDocument,
  StartRolloutDocument,
  SwapModuleDocument,
  UnloadModuleDocument,
  type StartRolloutMutationVariables,
} from '../gql/graphql.js';
import { ManualClock } from '../../src/clock.js';
import { serverPool } from '../support/pool.js';
import { subscribe, TEST_ADMIN_TOKEN, untilListening, type TestServer } from '../support/server.js';

const pool = serverPool();
const MODULE = 'pricing';

async function start(options: { clock: ManualClock; dir?: string; modulesDir?: string }) {
  const modulesDir = options.modulesDir ?? pool.modulesDir();
  if (!options.modulesDir) cpSync('test/fixtures/modules/rollout', path.join(modulesDir, 'rollout'), { recursive: true });
  const server = await pool.start({
    clock: options.clock,
    ...(options.dir ? { dir: options.dir } : {}),
    env: { HELIOS_MODULES_DIR: modulesDir, HELIOS_MODULE_INIT_TIMEOUT_MS: '3000' },
  });
  return Object.assign(server, { modulesDir });
}

/** A server with `pricing` 1.0.0 (rollout/stable.js, WORKER) registered and ACTIVE. */
async function startWithStable(clock = new ManualClock()) {
  const h = await start({ clock });
  const r = await h.query(RegisterModuleDocument, { name: MODULE, modulePath: 'rollout/stable.js', version: '1.0.0' });
  expect(r.registerModule.errors).toEqual([]);
  const l = await h.query(LoadModuleDocument, { name: MODULE });
  expect(l.loadModule.errors).toEqual([]);
  return Object.assign(h, { clock });
}

async function startRollout(h: TestServer, variables: Partial<StartRolloutMutationVariables> & { newVersionPath: string }) {
  return (await h.query(StartRolloutDocument, { module: MODULE, newVersion: '2.0.0', ...variables })).startRollout;
}

async function invoke(h: TestServer, userId: string | null, method = 'handle') {
  const r = await h.query(InvokeModuleDocument, { name: MODULE, method, args: userId, ...(userId ? { context: { userId } } : {}) });
  return r.invokeModule;
}

/** Calls for users u<from>..u<to-1>; returns who was served by which version. */
async function traffic(h: TestServer, from: number, to: number) {
  const servedBy = new Map<string, string>();
  for (let i = from; i < to; i++) {
    const r = await invoke(h, `u${i}`);
    expect(r.errors).toEqual([]);
    servedBy.set(`u${i}`, r.servedBy!);
  }
  return servedBy;
}

/** Waits (polling, not for the interval: the clock is manual) until the rollout matches. */
async function until(h: TestServer, what: string, check: (r: NonNullable<Awaited<ReturnType<typeof rolloutOf>>>) => boolean) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await rolloutOf(h);
    if (r && check(r)) return r;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; rollout: ${JSON.stringify(r)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function rolloutOf(h: TestServer) {
  return (await h.query(RolloutDocument, { module: MODULE })).rollout;
}

const served = (m: Map<string, string>, version: string) => [...m.values()].filter((v) => v === version).length;


/** The breakers' names, once the dropped or promoted canary's breaker is gone (it is removed after its version is). */
async function breakersOnceCanaryGone(h: TestServer, canaryBreaker: string): Promise<string[]> {
  for (let i = 0; i < 100; i++) {
    const names = (await h.query(CircuitBreakersDocument)).circuitBreakers.map((b) => b.name);
    if (!names.includes(canaryBreaker)) return names;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${canaryBreaker} is still listed`);
}

describe('a healthy rollout', () => {
  it('moves step by step on the clock, keeps users sticky, streams its progress and promotes the canary', async () => {
    const h = await startWithStable();
    await traffic(h, 0, 7); // stable's state: count 7, imported by the canary
    const started = await startRollout(h, {
      newVersionPath: 'rollout/healthy.js', steps: [10, 50, 100], stepIntervalSeconds: 60, gates: { minCalls: 5 },
    });
    expect(started.errors).toEqual([]);
    expect(started.rollout).toMatchObject({ status: 'RUNNING', percentage: 10, stepIndex: 0, fromVersion: '1.0.0', toVersion: '2.0.0', flag: MODULE });
    const canary = (await h.query(ModuleCanaryDocument, { name: MODULE })).module!;
    expect(canary).toMatchObject({ version: '1.0.0', canary: { version: '2.0.0', percentage: 10, breaker: { name: 'module:pricing@2.0.0', state: 'CLOSED' } } });

    // A late subscriber first gets what already happened.
    const feed = subscribe(h.wsClient(), RolloutProgressDocument, { module: MODULE });
    expect((await feed.next()).rolloutProgress).toMatchObject({ type: 'STARTED', percentage: 0 });
    expect((await feed.next()).rolloutProgress).toMatchObject({ type: 'STEP', percentage: 10 });

    const at10 = await traffic(h, 0, 200);
    for (const [userId, version] of at10) {
      // The split is the documented flag evaluation of the call's context.
      const e = (await h.query(EvaluateFlagDocument, { name: MODULE, context: { userId } })).evaluateFlag;
      expect(version).toBe(e.enabled ? '2.0.0' : '1.0.0');
    }
    expect(served(at10, '2.0.0')).toBeGreaterThanOrEqual(5);
    expect(served(at10, '1.0.0')).toBeGreaterThan(150);
    // Sticky: the same user lands on the same version again.
    const again = await traffic(h, 0, 50);
    for (const [userId, version] of again) expect(version).toBe(at10.get(userId));
    const stats = (await rolloutOf(h))!;
    expect(stats.canary!.calls).toBe(served(at10, '2.0.0') + served(again, '2.0.0'));
    expect(stats.stable!.calls).toBe(served(at10, '1.0.0') + served(again, '1.0.0'));
    expect(stats.canary!.failures).toBe(0);
    // The canary started from the stable version's exported state (7 calls before it was staged).
    const canaryState = (await h.query(InvokeModuleDocument, { name: MODULE, method: 'get', context: { userId: [...at10].find(([, v]) => v === '2.0.0')![0] } })).invokeModule;
    expect(canaryState.servedBy).toBe('2.0.0');
    expect(canaryState.result).toMatchObject({ importedFrom: '1.0.0' });
    expect((canaryState.result as { count: number }).count % 10).toBe(7);

    h.clock.advance(60_000);
    await until(h, 'the second step', (r) => r.percentage === 50);
    expect((await feed.next()).rolloutProgress).toMatchObject({ type: 'STEP', percentage: 50 });
    // Prometheus sees the same step.
    const scraped = parsePrometheusText(await (await fetch(h.url.replace(/\/graphql$/, '/metrics'), { headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } })).text());
    expect(sampleValue(scraped, 'helios_rollout_percentage', { module: MODULE, flag: MODULE, to_version: '2.0.0' })).toBe(50);
    expect(sampleValue(scraped, 'helios_rollout_status', { module: MODULE, status: 'running' })).toBe(1);
    expect(sampleValue(scraped, 'helios_rollout_status', { module: MODULE, status: 'aborted' })).toBe(0);
    const at50 = await traffic(h, 0, 200);
    // Raising the percentage never moves a user back from canary to stable.
    for (const [userId, version] of at10) if (version === '2.0.0') expect(at50.get(userId)).toBe('2.0.0');
    expect(served(at50, '2.0.0')).toBeGreaterThan(served(at10, '2.0.0'));

    h.clock.advance(60_000);
    await until(h, 'the last step', (r) => r.percentage === 100);
    const at100 = await traffic(h, 0, 30);
    expect(served(at100, '2.0.0')).toBe(30);

    h.clock.advance(60_000);
    const promoted = await until(h, 'promotion', (r) => r.status === 'PROMOTED');
    expect(promoted.finishedAt).not.toBeNull();
    expect(promoted.events.map((e) => e.type)).toEqual(['STARTED', 'STEP', 'STEP', 'STEP', 'PROMOTED']);
    expect((await feed.next()).rolloutProgress).toMatchObject({ type: 'STEP', percentage: 100 });
    expect((await feed.next()).rolloutProgress).toMatchObject({ type: 'PROMOTED', rollout: { status: 'PROMOTED' } });
    const module = (await h.query(ModuleCanaryDocument, { name: MODULE })).module!;
    expect(module).toMatchObject({ version: '2.0.0', previousVersion: '1.0.0', state: 'ACTIVE', canary: null });
    const after = await traffic(h, 0, 20);
    expect(served(after, '2.0.0')).toBe(20);
    // Promoted, version 2.0.0 serves through module:pricing; its canary breaker is removed.
    expect(await breakersOnceCanaryGone(h, 'module:pricing@2.0.0')).toContain('module:pricing');
    // Without a canary the flag routes nothing: even a user the flag turns off gets the active version.
    await h.query(SetFlagPercentageDocument, { name: MODULE, percentage: 0 });
    expect((await invoke(h, 'u1')).servedBy).toBe('2.0.0');
  });
});

describe('a failing canary', () => {
  it('is aborted by the failure-rate gate before its next step; the stable version then serves every call', async () => {
    const h = await startWithStable();
    const started = await startRollout(h, {
      newVersionPath: 'rollout/flaky.js', steps: [50, 100], stepIntervalSeconds: 60, gates: { minCalls: 10, maxFailureRate: 0.05 },
    });
    expect(started.rollout?.status).toBe('RUNNING');
    let canaryCalls = 0;
    for (let i = 0; i < 80; i++) {
      const r = await invoke(h, `u${i}`);
      if (r.servedBy === '2.0.0' || r.errors.length > 0) canaryCalls++;
      // Only the canary's own failures fail a call: none comes from routing.
      if (r.errors.length > 0) expect(r.errors[0]!.code).toBe('CALL_FAILED');
    }
    expect(canaryCalls).toBeGreaterThanOrEqual(10);
    const before = (await rolloutOf(h))!;
    expect(before.status).toBe('RUNNING');
    expect(before.canary!.failures).toBeGreaterThan(0);

    h.clock.advance(60_000);
    const aborted = await until(h, 'the abort', (r) => r.status === 'ABORTED');
    expect(aborted.percentage).toBe(0);
    expect(aborted.abort).toMatchObject({ cause: 'FAILURE_RATE', limit: 0.05 });
    expect(aborted.abort!.value!).toBeGreaterThan(0.2);
    expect(aborted.events.map((e) => e.type)).toEqual(['STARTED', 'STEP', 'ABORTED']);
    expect((await h.query(FeatureFlagDocument, { name: MODULE })).featureFlag).toMatchObject({ percentage: 0 });
    expect((await h.query(ModuleCanaryDocument, { name: MODULE })).module).toMatchObject({ version: '1.0.0', canary: null, previousVersion: null });
    const later = await traffic(h, 0, 100);
    expect(served(later, '1.0.0')).toBe(100);
    // The aborted canary's breaker goes with it; the module's own stays.
    expect(await breakersOnceCanaryGone(h, 'module:pricing@2.0.0')).toContain('module:pricing');
  });

  it('is aborted the moment its breaker opens; calls routed to it meanwhile are served by the stable version', async () => {
    const h = await startWithStable();
    const feed = subscribe(h.wsClient(), RolloutProgressDocument, { module: MODULE });
    await untilListening(h, 'rolloutProgress');
    await startRollout(h, { newVersionPath: 'rollout/broken.js', steps: [50, 100], stepIntervalSeconds: 3600 });
    expect((await feed.next()).rolloutProgress.type).toBe('STARTED');
    expect((await feed.next()).rolloutProgress.type).toBe('STEP');
    const failed: string[] = [];
    let servedAfterAbort: string[] = [];
    let abortedSeen = false;
    for (let i = 0; i < 100; i++) {
      const r = await invoke(h, `u${i}`);
      if (r.errors.length > 0) failed.push(r.errors[0]!.code);
      if (abortedSeen) servedAfterAbort.push(r.servedBy!);
      abortedSeen ||= feed.events.length > 2;
    }
    // Five failures in a row open the canary's breaker (default threshold); no call failed after that.
    expect(failed).toEqual(['CALL_FAILED', 'CALL_FAILED', 'CALL_FAILED', 'CALL_FAILED', 'CALL_FAILED']);
    const aborted = (await feed.next()).rolloutProgress;
    expect(aborted).toMatchObject({ type: 'ABORTED', percentage: 0, rollout: { status: 'ABORTED' } });
    expect((await rolloutOf(h))!.abort).toMatchObject({ cause: 'BREAKER_OPEN' });
    expect(servedAfterAbort.every((v) => v === '1.0.0')).toBe(true);
    servedAfterAbort = [...(await traffic(h, 0, 50)).values()];
    expect(servedAfterAbort.every((v) => v === '1.0.0')).toBe(true);
    expect(await breakersOnceCanaryGone(h, 'module:pricing@2.0.0')).toContain('module:pricing');
  });

  it('whose tests fail ends ABORTED with TESTS_FAILED, never serving a call', async () => {
    const h = await startWithStable();
    const r = await startRollout(h, { newVersionPath: 'rollout/broken.js', testWith: 'GENERIC', stepIntervalSeconds: 60 });
    expect(r.rollout).toMatchObject({ status: 'ABORTED', abort: { cause: 'TESTS_FAILED' } });
    expect(r.rollout!.testRunId).not.toBeNull();
    expect(r.errors.map((e) => e.code)).toEqual(['TESTS_FAILED']);
    expect((await h.query(ModuleCanaryDocument, { name: MODULE })).module!.canary).toBeNull();
    expect(served(await traffic(h, 0, 30), '1.0.0')).toBe(30);
  });
});

describe('aborting', () => {
  it('fails no call: concurrent invokes during an abort all succeed, and none reaches the canary after ABORTED', async () => {
    const h = await startWithStable();
    await startRollout(h, { newVersionPath: 'rollout/healthy.js', steps: [50, 100], stepIntervalSeconds: 3600 });
    const feed = subscribe(h.wsClient(), RolloutProgressDocument, { module: MODULE });
    await feed.next();
    await feed.next();
    const calls = Array.from({ length: 60 }, (_, i) => invoke(h, `u${i}`, 'slow'));
    const abort = h.query(AbortRolloutDocument, { module: MODULE, reason: 'operator says no' });
    const more = Array.from({ length: 60 }, (_, i) => invoke(h, `v${i}`, 'slow'));
    const results = await Promise.all([...calls, ...more]);
    expect(results.flatMap((r) => r.errors)).toEqual([]);
    expect(results.some((r) => r.servedBy === '2.0.0')).toBe(true);
    const aborted = (await abort).abortRollout;
    expect(aborted.errors).toEqual([]);
    expect(aborted.rollout).toMatchObject({ status: 'ABORTED', percentage: 0, abortReason: expect.stringContaining('operator says no'), abort: { cause: 'MANUAL' } });
    expect((await feed.next()).rolloutProgress.type).toBe('ABORTED');
    expect(served(await traffic(h, 0, 60), '1.0.0')).toBe(60);
    expect((await h.query(ModuleCanaryDocument, { name: MODULE })).module!.canary).toBeNull();
  });
});

describe('a restart mid-rollout', () => {
  it('loads both versions again and resumes at its step with the time that was left', async () => {
    const clock = new ManualClock();
    const first = await startWithStable(clock);
    await startRollout(first, { newVersionPath: 'rollout/healthy.js', steps: [10, 50, 100], stepIntervalSeconds: 60, gates: { minCalls: 1 } });
    await traffic(first, 0, 100);
    clock.advance(60_000);
    const stepped = await until(first, 'the second step', (r) => r.percentage === 50);
    clock.advance(20_000);
    await pool.stop(first);

    const second = await start({ clock: new ManualClock(clock.now()), dir: first.dir, modulesDir: first.modulesDir });
    const resumed = (await rolloutOf(second))!;
    expect(resumed).toMatchObject({ id: stepped.id, status: 'RUNNING', percentage: 50, stepIndex: 1, nextStepAt: stepped.nextStepAt });
    expect((await second.query(ModuleCanaryDocument, { name: MODULE })).module).toMatchObject({
      version: '1.0.0', state: 'ACTIVE', canary: { version: '2.0.0', percentage: 50 },
    });
    const at50 = await traffic(second, 0, 100);
    expect(served(at50, '2.0.0')).toBeGreaterThan(20);
    expect(served(at50, '1.0.0')).toBeGreaterThan(20);
    // 40 s were left in the step.
    const clock2 = second.server.app.services.clock as ManualClock;
    clock2.advance(39_000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await rolloutOf(second))!.percentage).toBe(50);
    clock2.advance(1_000);
    await until(second, 'the last step', (r) => r.percentage === 100);
  });
});

describe('while a rollout runs', () => {
  it('refuses swapModule, rollbackModule, unloadModule and a second startRollout with ROLLOUT_IN_PROGRESS', async () => {
    const h = await startWithStable();
    await startRollout(h, { newVersionPath: 'rollout/healthy.js', stepIntervalSeconds: null });
    const swap = await h.query(SwapModuleDocument, { name: MODULE, newVersionPath: 'rollout/healthy.js', newVersion: '3.0.0' });
    const rollback = await h.query(RollbackModuleDocument, { name: MODULE });
    const unload = await h.query(UnloadModuleDocument, { name: MODULE });
    const second = await startRollout(h, { newVersionPath: 'rollout/flaky.js', newVersion: '3.0.0' });
    for (const errors of [swap.swapModule.errors, rollback.rollbackModule.errors, unload.unloadModule.errors, second.errors]) {
      expect(errors.map((e) => e.code)).toEqual(['ROLLOUT_IN_PROGRESS']);
    }
    expect((await h.query(ModuleCanaryDocument, { name: MODULE })).module).toMatchObject({ version: '1.0.0', state: 'ACTIVE', canary: { version: '2.0.0' } });
  });
});

describe('bad input', () => {
  it('is refused with typed errors, leaving nothing loaded and nothing written', async () => {
    const h = await startWithStable();
    const cases: Array<[Partial<StartRolloutMutationVariables> & { newVersionPath: string }, string, string]> = [
      [{ newVersionPath: '../outside.js' }, 'INVALID_MODULE_PATH', 'newVersionPath'],
      [{ newVersionPath: 'rollout/missing.js' }, 'MODULE_FILE_NOT_FOUND', 'newVersionPath'],
      [{ newVersionPath: 'rollout/healthy.js', steps: [50, 10, 100] }, 'INVALID_ROLLOUT_CONFIG', 'steps'],
      [{ newVersionPath: 'rollout/healthy.js', steps: [10, 50] }, 'INVALID_ROLLOUT_CONFIG', 'steps'],
      [{ newVersionPath: 'rollout/healthy.js', steps: [0, 100] }, 'INVALID_ROLLOUT_CONFIG', 'steps'],
      [{ newVersionPath: 'rollout/healthy.js', stepIntervalSeconds: 0 }, 'INVALID_ROLLOUT_CONFIG', 'stepIntervalSeconds'],
      [{ newVersionPath: 'rollout/healthy.js', gates: { maxFailureRate: 2 } }, 'INVALID_ROLLOUT_CONFIG', 'gates.maxFailureRate'],
      [{ newVersionPath: 'rollout/healthy.js', newVersion: '1.0.0' }, 'INVALID_ARGUMENT', 'newVersion'],
      [{ module: 'nope', newVersionPath: 'rollout/healthy.js' }, 'MODULE_NOT_FOUND', 'module'],
    ];
    for (const [variables, code, field] of cases) {
      const r = await startRollout(h, variables);
      expect(r.rollout, JSON.stringify(variables)).toBeNull();
      expect(r.errors.map((e) => e.code), JSON.stringify(variables)).toContain(code);
      expect(r.errors.map((e) => e.field), JSON.stringify(variables)).toContain(field);
    }
    expect((await h.query(RolloutsDocument, { module: MODULE })).rollouts.nodes).toEqual([]);
    expect((await h.query(FeatureFlagDocument, { name: MODULE })).featureFlag).toBeNull();
    expect((await h.query(ModuleCanaryDocument, { name: MODULE })).module).toMatchObject({ version: '1.0.0', canary: null });
  });
});

describe('the seeds\' manual workflow', () => {
  it('setFlagPercentage moves the split, enableFeatureFlag ALL_ON gives the canary everything, promoteRollout promotes', async () => {
    const h = await startWithStable();
    const started = await startRollout(h, { newVersionPath: 'rollout/healthy.js', stepIntervalSeconds: null });
    expect(started.rollout).toMatchObject({ status: 'RUNNING', percentage: 1, stepIntervalSeconds: null, nextStepAt: null });

    expect((await h.query(SetFlagPercentageDocument, { name: MODULE, percentage: 10 })).setFlagPercentage.errors).toEqual([]);
    await until(h, 'the split at 10%', (r) => r.percentage === 10);
    const at10 = await traffic(h, 0, 200);
    expect(served(at10, '2.0.0')).toBeGreaterThan(5);
    expect(served(at10, '2.0.0')).toBeLessThan(50);

    await h.query(SetFlagPercentageDocument, { name: MODULE, percentage: 50 });
    await until(h, 'the split at 50%', (r) => r.percentage === 50);
    const at50 = await traffic(h, 0, 200);
    for (const [userId, version] of at10) if (version === '2.0.0') expect(at50.get(userId)).toBe('2.0.0');
    expect(served(at50, '2.0.0')).toBeGreaterThan(60);

    expect((await h.query(EnableFeatureFlagDocument, { name: MODULE, strategy: 'ALL_ON' })).enableFeatureFlag.errors).toEqual([]);
    await until(h, 'the canary at 100%', (r) => r.percentage === 100);
    expect(served(await traffic(h, 0, 40), '2.0.0')).toBe(40);
    // No sticky value: still routed by the flag (ALL_ON: the canary).
    expect((await invoke(h, null)).servedBy).toBe('2.0.0');

    const promoted = (await h.query(PromoteRolloutDocument, { module: MODULE })).promoteRollout;
    expect(promoted.errors).toEqual([]);
    expect(promoted.rollout).toMatchObject({ status: 'PROMOTED' });
    expect((await h.query(ModuleCanaryDocument, { name: MODULE })).module).toMatchObject({ version: '2.0.0', previousVersion: '1.0.0', canary: null });
    const history = (await rolloutOf(h))!.events.map((e) => [e.type, e.percentage]);
    expect(history).toEqual([['STARTED', 0], ['STEP', 1], ['STEP', 10], ['STEP', 50], ['STEP', 100], ['PROMOTED', 100]]);
    // The old version is the rollback target.
    expect((await h.query(RollbackModuleDocument, { name: MODULE })).rollbackModule.errors).toEqual([]);
    expect((await invoke(h, 'u1')).servedBy).toBe('1.0.0');
  });
});
