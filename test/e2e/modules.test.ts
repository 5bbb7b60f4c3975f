/** Modules end to end: the seed's story, hot swap under load, rollback, failures, attacks, restart. */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  BreakerStateChangedDocument,
  InvokeModuleDocument,
  LoadModuleDocument,
  ModuleDocument,
  ModulesDocument,
  ModuleStateChangedDocument,
  ModuleStatusDocument,
  RegisterModuleDocument,
  RollbackModuleDocument,
  SwapModuleDocument,
  UnloadModuleDocument,
} from '../gql/graphql.js';
import { ManualClock } from '../../src/clock.js';
import { serverPool } from '../support/pool.js';
import { subscribe, untilListening, type TestServer } from '../support/server.js';

const pool = serverPool();

async function start(options: { dir?: string; modulesDir?: string; env?: Record<string, string>; clock?: ManualClock } = {}) {
  const modulesDir = options.modulesDir ?? pool.modulesDir();
  const server = await pool.start({
    ...(options.dir ? { dir: options.dir } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    env: { HELIOS_MODULES_DIR: modulesDir, HELIOS_MODULE_INIT_TIMEOUT_MS: '1500', HELIOS_MODULE_MAX_HEAP_MB: '32', ...options.env },
  });
  return Object.assign(server, { modulesDir });
}

async function registerStory(h: TestServer) {
  for (const [name, modulePath, dependencies, moduleType] of [
    ['market_simulator', 'market_simulator.js', [], 'GENERIC'],
    ['feature_extractor', 'feature_extractor', [], 'DATA_PIPELINE'],
    ['neural_predictor', 'ml.neural_predictor', ['feature_extractor'], 'ML'],
    ['paper_trading', 'trading/paper_trading.js', ['market_simulator'], 'TRADING'],
  ] as const) {
    const r = await h.query(RegisterModuleDocument, { name, modulePath, version: '1.0.0', dependencies: [...dependencies], moduleType });
    expect(r.registerModule.errors).toEqual([]);
  }
}

describe('the seed\'s module story', () => {
  it('loads dependencies first, serves calls, and reports everything on the module and the status', async () => {
    const h = await start();
    await registerStory(h);
    const feed = subscribe(h.wsClient(), ModuleStateChangedDocument, {});
    await untilListening(h, 'moduleStateChanged');

    const loaded = await h.query(LoadModuleDocument, { name: 'neural_predictor' });
    expect(loaded.loadModule.errors).toEqual([]);
    expect(loaded.loadModule.module).toMatchObject({
      state: 'ACTIVE', version: '1.0.0', modulePath: 'ml/neural_predictor.js', dependencies: ['feature_extractor'],
      methods: ['predict', 'stats'], breaker: { name: 'module:neural_predictor', state: 'CLOSED' }, isolation: 'WORKER', desiredState: 'ACTIVE',
    });
    const order = [];
    for (let i = 0; i < 4; i++) {
      const e = (await feed.next()).moduleStateChanged;
      order.push(`${e.name}:${e.to}`);
    }
    expect(order).toEqual(['feature_extractor:LOADING', 'feature_extractor:ACTIVE', 'neural_predictor:LOADING', 'neural_predictor:ACTIVE']);

    const prediction = await h.query(InvokeModuleDocument, { name: 'neural_predictor', method: 'predict', args: { prices: [1, 2, 3] } });
    expect(prediction.invokeModule).toMatchObject({ servedBy: '1.0.0', errors: [], result: { prediction: 'up', model: 'v1' } });

    const extractor = (await h.query(ModuleDocument, { name: 'feature_extractor' })).module!;
    expect(extractor.dependents).toEqual(['neural_predictor']);
    expect((await h.query(ModuleStatusDocument)).modularityStatus.modules).toMatchObject({ total: 4, active: 2, unloaded: 2, failed: 0 });

    const unknown = await h.query(InvokeModuleDocument, { name: 'neural_predictor', method: 'nope' });
    expect(unknown.invokeModule.errors[0]).toMatchObject({ code: 'UNKNOWN_METHOD', field: 'method' });
    const reserved = await h.query(InvokeModuleDocument, { name: 'neural_predictor', method: 'exportState' });
    expect(reserved.invokeModule.errors[0]).toMatchObject({ code: 'RESERVED_METHOD' });
    const notLoaded = await h.query(InvokeModuleDocument, { name: 'paper_trading', method: 'orders' });
    expect(notLoaded.invokeModule.errors[0]).toMatchObject({ code: 'INVALID_MODULE_STATE' });
    const missing = await h.query(InvokeModuleDocument, { name: 'ghost', method: 'x' });
    expect(missing.invokeModule.errors[0]).toMatchObject({ code: 'MODULE_NOT_FOUND' });
  });
});

describe('hot swap', () => {
  it('swaps under continuous concurrent invocations with zero failed calls, carrying state; rollback brings v1 back', async () => {
    const h = await start();
    await registerStory(h);
    expect((await h.query(LoadModuleDocument, { name: 'neural_predictor' })).loadModule.errors).toEqual([]);

    let running = true;
    let ok = 0;
    const failures: unknown[] = [];
    const servedBy = new Set<string>();
    const worker = async () => {
      while (running) {
        const r = await h.request(InvokeModuleDocument, { name: 'neural_predictor', method: 'predict', args: { prices: [3, 2, 1] } });
        if (r.errors || r.data?.invokeModule.errors.length) failures.push(r.errors ?? r.data?.invokeModule.errors);
        else {
          ok++;
          servedBy.add(r.data!.invokeModule.servedBy!);
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    while (ok < 50) await new Promise((r) => setTimeout(r, 5));

    const swapped = await h.query(SwapModuleDocument, { name: 'neural_predictor', newVersionPath: 'ml/neural_predictor_v2.js', newVersion: '2.0.0' });
    expect(swapped.swapModule.errors).toEqual([]);
    expect(swapped.swapModule.module).toMatchObject({ version: '2.0.0', previousVersion: '1.0.0', modulePath: 'ml/neural_predictor_v2.js', state: 'ACTIVE' });
    const atSwap = ok;
    while (ok < atSwap + 50) await new Promise((r) => setTimeout(r, 5));
    running = false;
    await Promise.all(workers);

    expect(failures).toEqual([]);
    expect(servedBy).toEqual(new Set(['1.0.0', '2.0.0']));
    // Every successful prediction was counted exactly once, across both versions.
    const stats = await h.query(InvokeModuleDocument, { name: 'neural_predictor', method: 'stats' });
    expect(stats.invokeModule.result).toEqual({ served: ok, version: '2.0.0' });

    const rolled = await h.query(RollbackModuleDocument, { name: 'neural_predictor' });
    expect(rolled.rollbackModule.errors).toEqual([]);
    expect(rolled.rollbackModule.module).toMatchObject({ version: '1.0.0', previousVersion: '2.0.0', modulePath: 'ml/neural_predictor.js' });
    const after = await h.query(InvokeModuleDocument, { name: 'neural_predictor', method: 'stats' });
    expect(after.invokeModule).toMatchObject({ servedBy: '1.0.0', result: { served: ok } });
  });

  it('leaves the old version serving when the new one is bad, and refuses what cannot be swapped', async () => {
    const h = await start();
    await registerStory(h);
    await h.query(LoadModuleDocument, { name: 'market_simulator' });
    const bad = await h.query(SwapModuleDocument, { name: 'market_simulator', newVersionPath: 'bad/throws_in_create.js', newVersion: '9.9.9' });
    expect(bad.swapModule.errors[0]).toMatchObject({ code: 'SWAP_FAILED' });
    expect(bad.swapModule.errors[0]!.message).toMatch(/1\.0\.0 keeps serving/);
    expect(bad.swapModule.module).toMatchObject({ version: '1.0.0', state: 'ACTIVE' });
    const quote = await h.query(InvokeModuleDocument, { name: 'market_simulator', method: 'quote', args: { symbol: 'BTCZAR' } });
    expect(quote.invokeModule).toMatchObject({ servedBy: '1.0.0', errors: [] });

    expect((await h.query(SwapModuleDocument, { name: 'paper_trading', newVersionPath: 'trading/paper_trading_v2.js' })).swapModule.errors[0]!.code).toBe('INVALID_MODULE_STATE');
    expect((await h.query(RollbackModuleDocument, { name: 'market_simulator' })).rollbackModule.errors[0]!.code).toBe('NO_PREVIOUS_VERSION');
    await h.query(RegisterModuleDocument, { name: 'pinned', modulePath: 'market_simulator.js', version: '1', hotReloadable: false });
    await h.query(LoadModuleDocument, { name: 'pinned' });
    expect((await h.query(SwapModuleDocument, { name: 'pinned', newVersionPath: 'market_simulator.js' })).swapModule.errors[0]!.code).toBe('NOT_HOT_RELOADABLE');
  });

  it('runs reload hooks after a swap (the seed\'s add_reload_hook)', async () => {
    const h = await start();
    await registerStory(h);
    await h.query(LoadModuleDocument, { name: 'neural_predictor' });
    const warmed: unknown[] = [];
    h.server.app.services.modules.onReload('neural_predictor', async (handle) => {
      warmed.push([handle.version, await handle.call('predict', { prices: [1, 2] })]);
    });
    await h.query(SwapModuleDocument, { name: 'neural_predictor', newVersionPath: 'ml/neural_predictor_v2.js', newVersion: '2.0.0' });
    for (let i = 0; i < 200 && warmed.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(warmed).toEqual([['2.0.0', expect.objectContaining({ model: 'v2' })]]);
  });
});

describe('dependencies', () => {
  it('refuses to unload a module with loaded dependents unless cascade, and rejects cycles and missing dependencies', async () => {
    const h = await start();
    await registerStory(h);
    await h.query(LoadModuleDocument, { name: 'neural_predictor' });
    const refused = await h.query(UnloadModuleDocument, { name: 'feature_extractor' });
    expect(refused.unloadModule.errors[0]).toMatchObject({ code: 'DEPENDENTS_LOADED', field: 'cascade' });
    expect((await h.query(ModuleDocument, { name: 'feature_extractor' })).module!.state).toBe('ACTIVE');
    const cascade = await h.query(UnloadModuleDocument, { name: 'feature_extractor', cascade: true });
    expect(cascade.unloadModule).toMatchObject({ errors: [], unloaded: ['neural_predictor', 'feature_extractor'] });
    expect((await h.query(ModulesDocument)).modules.every((m) => m.state === 'UNLOADED')).toBe(true);

    await h.query(RegisterModuleDocument, { name: 'a', modulePath: 'market_simulator.js', version: '1', dependencies: ['b'] });
    const cycle = await h.query(RegisterModuleDocument, { name: 'b', modulePath: 'market_simulator.js', version: '1', dependencies: ['a'] });
    expect(cycle.registerModule.errors[0]).toMatchObject({ code: 'DEPENDENCY_CYCLE', message: expect.stringContaining('b -> a -> b') });
    const self = await h.query(RegisterModuleDocument, { name: 'c', modulePath: 'market_simulator.js', version: '1', dependencies: ['c'] });
    expect(self.registerModule.errors[0]!.code).toBe('DEPENDENCY_CYCLE');
    const missing = await h.query(LoadModuleDocument, { name: 'a' });
    expect(missing.loadModule.errors[0]).toMatchObject({ code: 'DEPENDENCY_NOT_FOUND' });
    expect((await h.query(ModuleDocument, { name: 'b' })).module).toBeNull();
  });
});

describe('misbehaving modules', () => {
  it('end FAILED with their error while the server and other modules keep serving', async () => {
    const h = await start();
    await registerStory(h);
    await h.query(LoadModuleDocument, { name: 'market_simulator' });
    for (const [name, file, pattern] of [
      ['throws', 'bad/throws_in_create.js', /MODULE_INIT_FAILED/],
      ['loops', 'bad/loops_in_create.js', /MODULE_INIT_TIMEOUT/],
      ['syntax', 'bad/syntax_error.js', /MODULE_LOAD_FAILED/],
      ['hog', 'bad/runaway_memory.js', /MODULE_OUT_OF_MEMORY/],
    ] as const) {
      expect((await h.query(RegisterModuleDocument, { name, modulePath: file, version: '1' })).registerModule.errors).toEqual([]);
      const load = await h.query(LoadModuleDocument, { name });
      expect(load.loadModule.errors[0], name).toMatchObject({ code: 'MODULE_LOAD_FAILED' });
      expect(load.loadModule.module, name).toMatchObject({ state: 'FAILED' });
      expect(load.loadModule.module!.lastError, name).toMatch(pattern);
      expect((await fetch(h.url.replace('/graphql', '/health'))).status).toBe(200);
      const quote = await h.query(InvokeModuleDocument, { name: 'market_simulator', method: 'quote', args: { symbol: 'ETHZAR' } });
      expect(quote.invokeModule.errors).toEqual([]);
    }
    expect((await h.query(ModuleStatusDocument)).modularityStatus.modules).toMatchObject({ failed: 4, active: 1 });
  });

  it('a hanging call times out, and a module that keeps failing has its breaker opened and rejecting', async () => {
    const h = await start({ env: { HELIOS_MODULE_CALL_TIMEOUT_MS: '300' } });
    await h.query(RegisterModuleDocument, { name: 'counter', modulePath: 'counter.js', version: '1' });
    await h.query(RegisterModuleDocument, { name: 'flaky', modulePath: 'bad/misbehaves_in_call.js', version: '1' });
    await h.query(LoadModuleDocument, { name: 'counter' });
    await h.query(LoadModuleDocument, { name: 'flaky' });
    const hang = await h.query(InvokeModuleDocument, { name: 'flaky', method: 'hangAsync' });
    expect(hang.invokeModule.errors[0]).toMatchObject({ code: 'CALL_TIMEOUT' });
    expect((await h.query(InvokeModuleDocument, { name: 'flaky', method: 'ok' })).invokeModule.result).toBe('ok');

    const feed = subscribe(h.wsClient(), BreakerStateChangedDocument, { name: 'module:counter' });
    await untilListening(h, 'breakerStateChanged');
    for (let i = 0; i < 5; i++) {
      const r = await h.query(InvokeModuleDocument, { name: 'counter', method: 'fail', args: 'upstream down' });
      expect(r.invokeModule.errors[0]).toMatchObject({ code: 'CALL_FAILED', message: expect.stringContaining('upstream down') });
    }
    expect((await feed.next()).breakerStateChanged).toMatchObject({ to: 'OPEN', reason: 'FAILURE_THRESHOLD' });
    const rejected = await h.query(InvokeModuleDocument, { name: 'counter', method: 'get' });
    expect(rejected.invokeModule.errors[0]).toMatchObject({ code: 'CIRCUIT_OPEN' });
    expect((await h.query(ModuleDocument, { name: 'counter' })).module!.breaker).toEqual({ name: 'module:counter', state: 'OPEN' });

    // A version that runs out of memory mid-call is marked FAILED; the server carries on.
    const states = subscribe(h.wsClient(), ModuleStateChangedDocument, { name: 'flaky' });
    await untilListening(h, 'moduleStateChanged');
    const leak = await h.query(InvokeModuleDocument, { name: 'flaky', method: 'leak' });
    expect(leak.invokeModule.errors[0]?.code).toMatch(/MODULE_UNAVAILABLE|CALL_TIMEOUT/);
    expect((await states.next(10_000)).moduleStateChanged).toMatchObject({ from: 'ACTIVE', to: 'FAILED', action: 'crash' });
    const flaky = (await h.query(ModuleDocument, { name: 'flaky' })).module!;
    expect(flaky).toMatchObject({ state: 'FAILED', desiredState: 'ACTIVE' });
    expect(flaky.lastError).toMatch(/OUT_OF_MEMORY|UNRESPONSIVE/);
    expect((await fetch(h.url.replace('/graphql', '/health'))).status).toBe(200);
    // Loading it again brings it back.
    expect((await h.query(LoadModuleDocument, { name: 'flaky' })).loadModule.module!.state).toBe('ACTIVE');
  });
});

describe('supervision', () => {
  it('restarts a crashed module with growing delays, and gives up after too many restarts', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    const h = await start({ clock, env: { HELIOS_MODULE_MAX_RESTARTS: '2' } });
    await h.query(RegisterModuleDocument, { name: 'flaky', modulePath: 'bad/misbehaves_in_call.js', version: '1' });
    await h.query(LoadModuleDocument, { name: 'flaky' });
    const states = subscribe(h.wsClient(), ModuleStateChangedDocument, { name: 'flaky' });
    await untilListening(h, 'moduleStateChanged');
    const next = async () => (await states.next(15_000)).moduleStateChanged;

    for (const delay of [1000, 2000]) {
      await h.query(InvokeModuleDocument, { name: 'flaky', method: 'leak' });
      expect(await next()).toMatchObject({ from: 'ACTIVE', to: 'FAILED', action: 'crash' });
      clock.advance(delay - 1);
      expect((await h.query(ModuleDocument, { name: 'flaky' })).module!.state).toBe('FAILED');
      clock.advance(1);
      expect(await next()).toMatchObject({ from: 'FAILED', to: 'LOADING', action: 'restart' });
      expect(await next()).toMatchObject({ to: 'ACTIVE', action: 'restart' });
      expect((await h.query(InvokeModuleDocument, { name: 'flaky', method: 'ok' })).invokeModule.result).toBe('ok');
    }

    // A third crash within the minute exceeds the restart intensity (2): it stays FAILED.
    await h.query(InvokeModuleDocument, { name: 'flaky', method: 'leak' });
    expect(await next()).toMatchObject({ to: 'FAILED', action: 'crash' });
    expect(await next()).toMatchObject({ to: 'FAILED', action: 'restart', error: expect.stringContaining('gave up after 2 restarts') });
    clock.advance(120_000);
    expect((await h.query(ModuleDocument, { name: 'flaky' })).module).toMatchObject({ state: 'FAILED', desiredState: 'ACTIVE' });
    // An operator brings it back.
    expect((await h.query(LoadModuleDocument, { name: 'flaky' })).loadModule.module!.state).toBe('ACTIVE');
  });
});

describe('INLINE isolation', () => {
  it('serves dependency calls, ctx.flags and ctx.breakers on the server thread, and swaps like WORKER', async () => {
    const h = await start();
    await h.query(RegisterModuleDocument, { name: 'feature_extractor', modulePath: 'feature_extractor.js', version: '1', isolation: 'INLINE' });
    await h.query(RegisterModuleDocument, { name: 'predictor', modulePath: 'ml/neural_predictor.js', version: '1', isolation: 'INLINE', dependencies: ['feature_extractor'] });
    expect((await h.query(LoadModuleDocument, { name: 'predictor' })).loadModule.module).toMatchObject({ state: 'ACTIVE', isolation: 'INLINE' });
    await h.query(SwapModuleDocument, { name: 'predictor', newVersionPath: 'ml/neural_predictor_v2.js', newVersion: '2' });

    const flags = h.server.app.services.flags;
    await flags.setPercentage('test', 'neural_network_v2', 100);
    const boosted = await h.query(InvokeModuleDocument, { name: 'predictor', method: 'predict', args: { prices: [100, 110] }, context: { sessionId: 's1' } });
    await flags.disable('test', 'neural_network_v2');
    const plain = await h.query(InvokeModuleDocument, { name: 'predictor', method: 'predict', args: { prices: [100, 110] }, context: { sessionId: 's1' } });
    expect(boosted.invokeModule).toMatchObject({ servedBy: '2', errors: [], result: { model: 'v2', prediction: 'up' } });
    const confidence = (r: typeof boosted) => (r.invokeModule.result as { confidence: number }).confidence;
    expect(confidence(boosted)).toBeCloseTo(0.7);
    expect(confidence(plain)).toBeCloseTo(0.6);
    // The module's own breaker is a Helios breaker, visible to operators.
    expect(h.server.app.services.breakers.get('feature_extractor_calls')!.metrics.successes).toBe(2);
  });
});

describe('module paths', () => {
  it('refuses every path outside the modules folder', async () => {
    const h = await start();
    const outside = path.join(h.dir, 'outside');
    mkdirSync(outside);
    writeFileSync(path.join(outside, 'evil.js'), 'export default { create() { return {}; } };');
    symlinkSync(outside, path.join(h.modulesDir, 'escape'));
    symlinkSync(path.join(outside, 'evil.js'), path.join(h.modulesDir, 'evil_link.js'));
    for (const modulePath of ['../outside/evil.js', '/etc/passwd', '%2e%2e/evil.js', '..%2Fevil.js', 'ml/../../x.js', 'escape/evil.js', 'evil_link.js', 'ml\\..\\x.js', '..', '']) {
      const r = await h.query(RegisterModuleDocument, { name: 'evil', modulePath, version: '1' });
      expect(r.registerModule.errors[0]?.code, modulePath).toBe('INVALID_MODULE_PATH');
      expect(r.registerModule.errors[0]?.field).toBe('modulePath');
    }
    const missing = await h.query(RegisterModuleDocument, { name: 'evil', modulePath: 'ml/nope.js', version: '1' });
    expect(missing.registerModule.errors[0]?.code).toBe('MODULE_FILE_NOT_FOUND');
    expect((await h.query(ModulesDocument)).modules).toEqual([]);
    await h.query(RegisterModuleDocument, { name: 'ok', modulePath: 'market_simulator.js', version: '1' });
    await h.query(LoadModuleDocument, { name: 'ok' });
    const swap = await h.query(SwapModuleDocument, { name: 'ok', newVersionPath: '../outside/evil.js' });
    expect(swap.swapModule.errors[0]).toMatchObject({ code: 'INVALID_MODULE_PATH', field: 'newVersionPath' });
  });
});

describe('restart', () => {
  it('converges to the same active versions', async () => {
    const modulesDir = pool.modulesDir();
    const first = await start({ modulesDir });
    await registerStory(first);
    await first.query(LoadModuleDocument, { name: 'neural_predictor' });
    await first.query(LoadModuleDocument, { name: 'paper_trading' });
    await first.query(SwapModuleDocument, { name: 'paper_trading', newVersionPath: 'trading/paper_trading_v2.js', newVersion: '2.0.0' });
    await first.query(UnloadModuleDocument, { name: 'neural_predictor' });
    const before = (await first.query(ModulesDocument)).modules.map((m) => [m.name, m.state, m.version]);
    await pool.stop(first);

    const second = await start({ dir: first.dir, modulesDir });
    const after = (await second.query(ModulesDocument)).modules.map((m) => [m.name, m.state, m.version]);
    expect(after).toEqual(before);
    expect(after).toEqual([
      ['feature_extractor', 'ACTIVE', '1.0.0'],
      ['market_simulator', 'ACTIVE', '1.0.0'],
      ['neural_predictor', 'UNLOADED', '1.0.0'],
      ['paper_trading', 'ACTIVE', '2.0.0'],
    ]);
    const order = await second.query(InvokeModuleDocument, { name: 'paper_trading', method: 'placeOrder', args: { symbol: 'BTCZAR', side: 'buy', quantity: 2 } });
    expect(order.invokeModule).toMatchObject({ servedBy: '2.0.0', errors: [], result: { status: 'filled' } });
    expect((await second.query(ModuleDocument, { name: 'paper_trading' })).module!.previousVersion).toBe('1.0.0');
  });
});
