import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ManualClock, systemClock, type Clock } from '../../src/clock.js';
import {
  InMemoryModuleHost,
  ModuleCallError,
  ModuleLoadError,
  flagDefinition,
  loadModuleVersion,
  type LoadedModuleVersion,
  type LoadModuleVersionOptions,
  type ModuleCallErrorCode,
  type ModuleExitInfo,
  type ModuleIsolation,
  type ModuleLoadErrorCode,
} from '../../src/modules/runtime/index.js';
import { PendingRequests } from '../../src/modules/runtime/pending.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/modules/', import.meta.url));
const ISOLATIONS: ModuleIsolation[] = ['WORKER', 'INLINE'];
// Worker start-up under tsx is slow on a loaded 2-core CI machine; the limits are generous.
const SLOW = 30_000;

const loaded: LoadedModuleVersion[] = [];

afterAll(async () => {
  await Promise.all(loaded.map((v) => v.terminate()));
});

interface LoadArgs extends Partial<Omit<LoadModuleVersionOptions, 'absolutePath'>> {
  file: string;
  host: InMemoryModuleHost;
}

async function load(args: LoadArgs): Promise<LoadedModuleVersion> {
  const { file, ...rest } = args;
  const version = await loadModuleVersion({
    name: 'fixture',
    version: '1.0.0',
    dependencyNames: [],
    ...rest,
    absolutePath: path.join(FIXTURES, file),
  });
  loaded.push(version);
  return version;
}

async function loadFailure(args: LoadArgs): Promise<ModuleLoadError> {
  try {
    await load(args);
  } catch (error) {
    expect(error).toBeInstanceOf(ModuleLoadError);
    return error as ModuleLoadError;
  }
  throw new Error(`${args.file} loaded`);
}

async function callFailure(promise: Promise<unknown>, code: ModuleCallErrorCode): Promise<ModuleCallError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ModuleCallError);
    expect((error as ModuleCallError).code).toBe(code);
    return error as ModuleCallError;
  }
  throw new Error(`expected ${code}, the call succeeded`);
}

function exitOf(version: LoadedModuleVersion): Promise<ModuleExitInfo> {
  return new Promise((resolve) => version.onExit(resolve));
}

describe.each(ISOLATIONS)('a good module, %s isolation', (isolation) => {
  const clock = new ManualClock();
  const host = new InMemoryModuleHost(clock);
  let counter: LoadedModuleVersion;
  let classy: LoadedModuleVersion;

  beforeAll(async () => {
    [counter, classy] = await Promise.all([
      load({ file: 'good/counter_v1.js', name: 'counter', isolation, host, clock, config: { start: 10 } }),
      load({ file: 'good/class_instance.js', name: 'greeter', isolation, host, clock, config: { greeting: 'hi' } }),
    ]);
  }, SLOW);

  it('describes the instance: methods, type, tests, lifecycle', () => {
    expect(counter.isolation).toBe(isolation);
    expect(counter.name).toBe('counter');
    expect(counter.version).toBe('1.0.0');
    expect(counter.type).toBe('GENERIC');
    expect(counter.methods).toEqual(['echo', 'fail', 'get', 'increment', 'returnsFunction', 'slowEcho', 'throwString']);
    expect(counter.tests).toEqual([
      { name: 'increments', required: true, timeoutMs: 1000 },
      { name: 'returns false', required: false, timeoutMs: 10_000 },
      { name: 'throws', required: true, timeoutMs: 10_000 },
      { name: 'hangs', required: true, timeoutMs: 100 },
    ]);
    expect(counter.lifecycle).toEqual({ healthCheck: true, exportState: true, importState: true, dispose: true });
    expect(counter.exit).toBeNull();
    expect(counter.memoryUsage !== undefined).toBe(isolation === 'WORKER');
  });

  it('finds prototype methods of a class instance without running getters; reads named exports', async () => {
    expect(classy.type).toBe('DATA_PIPELINE');
    expect(classy.methods).toEqual(['greet']);
    expect(classy.lifecycle.healthCheck).toBe(true);
    expect(await classy.call('greet', 'Ada')).toBe('hi, Ada');
    expect(await classy.healthCheck()).toEqual({ ok: false });
  });

  it('calls a method with one argument and passes the config', async () => {
    expect(await counter.call('increment', 5)).toEqual({ count: 15, version: '1.0.0' });
    const payload = { nested: { list: [1, 'two', null], flag: true }, when: '2026-01-01T00:00:00.000Z' };
    expect(await counter.call('echo', payload)).toEqual(payload);
    const state = (await counter.call('get')) as { count: number; config: unknown; importedFrom: unknown };
    expect(state.count).toBe(15);
    expect(state.config).toEqual({ start: 10 });
    expect(state.importedFrom).toBeNull();
    expect(counter.inFlight).toBe(0);
  });

  it("keeps the module's error message and code", async () => {
    const failed = await callFailure(counter.call('fail', 'order rejected'), 'CALL_FAILED');
    expect(failed.message).toBe('order rejected');
    expect(failed.remote).toMatchObject({ name: 'Error', message: 'order rejected', code: 'COUNTER_FAILED' });
    expect(failed.remoteCode).toBe('COUNTER_FAILED');
    expect(failed.method).toBe('fail');
    expect(failed.moduleName).toBe('counter');
    const thrownString = await callFailure(counter.call('throwString'), 'CALL_FAILED');
    expect(thrownString.message).toBe('a plain string');
  });

  it('refuses unknown methods and lifecycle names without reaching the module', async () => {
    for (const method of ['nope', '_secret', 'constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      const error = await callFailure(counter.call(method), 'UNKNOWN_METHOD');
      expect(error.message).toContain(`"${method}"`);
    }
    for (const method of ['create', 'healthCheck', 'dispose', 'exportState', 'importState']) {
      await callFailure(counter.call(method), 'RESERVED_METHOD');
    }
    expect(counter.exit).toBeNull();
  });

  it('reports health', async () => {
    expect(await counter.healthCheck()).toEqual({ ok: true, detail: { count: 15 } });
  });

  it("runs the module's own tests", async () => {
    expect(await counter.runTest('increments')).toMatchObject({ status: 'PASSED' });
    expect(await counter.runTest('returns false')).toMatchObject({ status: 'FAILED', error: 'the test returned false' });
    expect(await counter.runTest('throws')).toMatchObject({ status: 'FAILED', error: 'test exploded' });
    const hanging = counter.runTest('hangs');
    clock.advance(100);
    expect(await hanging).toEqual({ status: 'TIMED_OUT', durationMs: 100, error: 'timed out after 100 ms' });
    await callFailure(counter.runTest('missing'), 'UNKNOWN_TEST');
    // Still serving: a test that timed out does not make the version unusable.
    expect(await counter.call('echo', 'still here')).toBe('still here');
  });

  it('times out a call that does not answer, and keeps serving', async () => {
    const slow = counter.call('slowEcho', { ms: 300 }, { timeoutMs: 50 });
    expect(counter.inFlight).toBe(1);
    clock.advance(50);
    const error = await callFailure(slow, 'CALL_TIMEOUT');
    expect(error.message).toBe('counter@1.0.0: call to "slowEcho" did not answer within 50 ms');
    expect(counter.inFlight).toBe(0);
    expect(await counter.call('echo', 1)).toBe(1);
    expect(counter.exit).toBeNull();
  });

  it('drains in-flight calls, or gives up at the deadline', async () => {
    expect(await counter.drain(10)).toBe(true);
    const quick = counter.call('slowEcho', { ms: 5, value: 'a' });
    const drained = counter.drain(60_000);
    expect(counter.inFlight).toBe(1);
    expect(await drained).toBe(true);
    expect(await quick).toEqual({ ms: 5, value: 'a' });

    const slow = counter.call('slowEcho', { ms: 50, value: 'b' });
    const gaveUp = counter.drain(1000);
    clock.advance(1000);
    expect(await gaveUp).toBe(false);
    expect(counter.inFlight).toBe(1);
    expect(await slow).toEqual({ ms: 50, value: 'b' });
    expect(counter.inFlight).toBe(0);
  });

  it('sends module logs to the host with the module name', () => {
    expect(host.logs).toContainEqual({ level: 'info', module: 'counter', message: 'counter created', data: { count: 10 } });
  });

  it('disposes once: calls dispose(), fires onExit, refuses calls afterwards', async () => {
    const exits: ModuleExitInfo[] = [];
    counter.onExit((exit) => exits.push(exit));
    const first = counter.dispose();
    const second = counter.dispose();
    await Promise.all([first, second]);
    await counter.terminate();
    expect(exits).toHaveLength(1);
    expect(exits[0]).toMatchObject({ reason: 'DISPOSED', expected: true });
    expect(counter.exit?.reason).toBe('DISPOSED');
    expect(host.logs).toContainEqual({ level: 'info', module: 'counter', message: 'counter disposed', data: { count: 15 } });
    const refused = await callFailure(counter.call('echo', 1), 'MODULE_TERMINATED');
    expect(refused.message).toBe('counter@1.0.0: disposed');
    await callFailure(counter.healthCheck(), 'MODULE_TERMINATED');
    // A late listener still hears about the exit.
    expect((await exitOf(counter)).reason).toBe('DISPOSED');
  });
});

describe.each(ISOLATIONS)('state across versions, %s isolation', (isolation) => {
  const host = new InMemoryModuleHost();

  it('moves state with exportState -> previousState, or exportState -> importState', async () => {
    const v1 = await load({ file: 'good/counter_v1.js', name: 'counter', version: '1.0.0', isolation, host });
    await v1.call('increment', 5);
    const state = await v1.exportState();
    expect(state).toEqual({ count: 5 });
    // The export is a snapshot: changing it changes nothing in the module.
    (state as { count: number }).count = 999;
    expect(await v1.call('get')).toMatchObject({ count: 5 });

    const [viaContext, viaImport, again] = await Promise.all([
      load({ file: 'good/counter_v2.js', name: 'counter', version: '2.0.0', isolation, host, previousState: { state: { count: 5 }, fromVersion: '1.0.0' } }),
      load({ file: 'good/counter_v2.js', name: 'counter', version: '2.0.0', isolation, host }),
      load({ file: 'good/counter_v1.js', name: 'counter', version: '1.0.1', isolation, host }),
    ]);
    expect(await viaContext.call('get')).toEqual({ count: 5, version: '2.0.0', importedFrom: '1.0.0' });
    expect(await viaImport.call('get')).toEqual({ count: 0, version: '2.0.0', importedFrom: null });
    await viaImport.importState(await v1.exportState(), '1.0.0');
    expect(await viaImport.call('increment', 1)).toEqual({ count: 7, version: '2.0.0' });
    expect(await viaImport.call('get')).toMatchObject({ importedFrom: '1.0.0' });
    // Each load imports the file afresh, so module-level code runs again.
    const first = (await v1.call('get')) as { moduleId: number };
    const second = (await again.call('get')) as { moduleId: number };
    expect(second.moduleId).not.toBe(first.moduleId);
    await Promise.all([v1.dispose(), viaContext.dispose(), viaImport.dispose(), again.dispose()]);
  }, SLOW);
});

describe.each(ISOLATIONS)('dependencies, flags and breakers, %s isolation', (isolation) => {
  const host = new InMemoryModuleHost();
  let predictor: LoadedModuleVersion;
  let guarded: LoadedModuleVersion;

  beforeAll(async () => {
    host.setFlag(flagDefinition({ name: 'neural_network_v2', strategy: 'ALL_ON' }));
    host.setFlag(flagDefinition({ name: 'advanced_risk_engine', strategy: 'WHITELIST', whitelist: [{ attribute: 'userId', values: ['alice'] }] }));
    const extractor = await load({ file: 'deps/feature_extractor.js', name: 'feature_extractor', isolation: 'WORKER', host });
    host.setDependency('feature_extractor', extractor);
    [predictor, guarded] = await Promise.all([
      load({ file: 'deps/predictor.js', name: 'predictor', isolation, host, dependencyNames: ['feature_extractor'] }),
      load({ file: 'good/flags_breakers.js', name: 'guarded', isolation, host }),
    ]);
  }, SLOW);

  it('calls a dependency through the host, in create and in methods', async () => {
    expect(await predictor.call('predict', { values: [1, 2, 3] })).toEqual({ score: 2, warm: 1 });
    expect(host.dependencyCalls).toContainEqual({ fromModule: 'predictor', dependency: 'feature_extractor', method: 'extract', args: [{ values: [1, 2, 3] }] });
  });

  it("hands a dependency's error to the caller with its message", async () => {
    expect(await predictor.call('predictBroken')).toEqual({ caught: 'extractor exploded', code: 'CALL_FAILED' });
  });

  it('exposes only the declared dependencies', async () => {
    expect(await predictor.call('undeclared')).toEqual({ hasMarket: false, keys: ['feature_extractor'] });
  });

  it('answers ctx.flags.isEnabled synchronously and follows pushed changes', async () => {
    expect(await guarded.call('flag', { name: 'neural_network_v2' })).toBe(true);
    expect(await guarded.call('flag', { name: 'no_such_flag' })).toBe(false);
    expect(await guarded.call('flag', { name: 'advanced_risk_engine', context: { userId: 'alice' } })).toBe(true);
    expect(await guarded.call('flag', { name: 'advanced_risk_engine', context: { userId: 'bob' } })).toBe(false);

    host.setFlag(flagDefinition({ name: 'neural_network_v2', strategy: 'ALL_ON', enabled: false }));
    expect(await guarded.call('flag', { name: 'neural_network_v2' })).toBe(false);
    host.setFlag(flagDefinition({ name: 'brand_new', strategy: 'ALL_ON' }));
    expect(await guarded.call('flag', { name: 'brand_new' })).toBe(true);
    host.deleteFlag('brand_new');
    expect(await guarded.call('flag', { name: 'brand_new' })).toBe(false);
  });

  it('runs code through a host breaker, reports outcomes, and rejects with CIRCUIT_OPEN once open', async () => {
    expect(await guarded.call('guarded', { value: 21 })).toEqual({ value: 42 });
    expect(await guarded.call('guarded', { fail: true })).toEqual({ error: 'guarded work failed', code: null, breaker: null });
    expect(await guarded.call('guarded', { fail: true })).toEqual({ error: 'guarded work failed', code: null, breaker: null });
    expect(host.isBreakerOpen('fixture_guard')).toBe(true);
    expect(await guarded.call('guarded', { value: 1 })).toEqual({
      error: 'circuit breaker "fixture_guard" is open',
      code: 'CIRCUIT_OPEN',
      breaker: 'fixture_guard',
    });
    expect(host.completions.map((c) => [c.breaker, c.outcome, c.error ?? null])).toEqual([
      ['fixture_guard', 'success', null],
      ['fixture_guard', 'failure', 'guarded work failed'],
      ['fixture_guard', 'failure', 'guarded work failed'],
    ]);
    expect(host.completions.every((c) => c.durationMs >= 0)).toBe(true);
  });

  it('stops pushing flags to a disposed version', async () => {
    const before = host.flagSubscriberCount;
    await guarded.dispose();
    expect(host.flagSubscriberCount).toBe(isolation === 'WORKER' ? before - 1 : before);
  });
});

describe('breaker permits of a worker that stops', () => {
  it('are completed as failures, so the breaker does not keep a slot for a dead call', async () => {
    const host = new InMemoryModuleHost();
    const version = await load({ file: 'good/flags_breakers.js', name: 'holder', host });
    const held = version.call('holdPermit', undefined, { timeoutMs: 60_000 });
    await vi.waitFor(() => expect(host.logs.map((l) => l.message)).toContain('permit held'));
    expect(host.completions).toEqual([]);
    await version.terminate();
    await callFailure(held, 'MODULE_TERMINATED');
    expect(host.completions).toHaveLength(1);
    expect(host.completions[0]).toMatchObject({ breaker: 'held_guard', outcome: 'failure' });
    expect(host.completions[0]!.error).toMatch(/worker stopped \(TERMINATED\)/);
  }, SLOW);
});

describe('bad modules in a worker', () => {
  const host = new InMemoryModuleHost();

  it.each<[string, ModuleLoadErrorCode, RegExp]>([
    ['bad/throws_in_create.js', 'MODULE_INIT_FAILED', /create\(\) failed: cannot connect to the model store/],
    ['bad/syntax_error.js', 'MODULE_LOAD_FAILED', /importing the module file failed: SyntaxError: /],
    ['bad/no_create.js', 'MODULE_INVALID_DEFINITION', /create\(ctx\) function/],
    ['bad/loops_in_create.js', 'MODULE_INIT_TIMEOUT', /create\(\) did not finish within 300 ms; the worker was terminated/],
    ['bad/hangs_in_create.js', 'MODULE_INIT_TIMEOUT', /did not finish within 300 ms/],
    ['bad/runaway_memory.js', 'MODULE_OUT_OF_MEMORY', /ran out of memory \(heap limit 32 MB\)/],
    ['good/../bad/missing_file.js', 'MODULE_LOAD_FAILED', /Cannot find module/],
  ])(
    '%s -> %s',
    async (file, code, message) => {
      // Filling 32 MB can take longer than 300 ms on a busy machine: the OOM case gets more time.
      const initTimeoutMs = code === 'MODULE_OUT_OF_MEMORY' ? 20_000 : 300;
      const error = await loadFailure({ file, name: 'bad', host, limits: { initTimeoutMs, maxOldGenerationSizeMb: 32 } });
      expect(error.code).toBe(code);
      expect(error.message).toMatch(message);
      expect(error.moduleName).toBe('bad');
      expect(error.version).toBe('1.0.0');
    },
    SLOW,
  );

  it('keeps the error of create() whole', async () => {
    const error = await loadFailure({ file: 'bad/throws_in_create.js', host });
    expect(error.remote).toMatchObject({ name: 'Error', message: 'cannot connect to the model store', code: 'STORE_DOWN' });
  }, SLOW);

  it('leaves the host able to load and serve a good module', async () => {
    const good = await load({ file: 'good/counter_v1.js', host });
    expect(await good.call('increment', 2)).toMatchObject({ count: 2 });
    await good.dispose();
    expect(host.flagSubscriberCount).toBe(0);
  }, SLOW);

  it('aborts a load in progress', async () => {
    const controller = new AbortController();
    const pending = load({ file: 'bad/hangs_in_create.js', host, signal: controller.signal });
    controller.abort();
    const error = await pending.then(
      () => null,
      (e: unknown) => e as ModuleLoadError,
    );
    expect(error?.code).toBe('MODULE_LOAD_ABORTED');
  }, SLOW);

  it('refuses a config that cannot be cloned into a worker', async () => {
    const error = await loadFailure({ file: 'good/counter_v1.js', host, config: { callback: () => 1 } });
    expect(error.code).toBe('MODULE_LOAD_FAILED');
    expect(error.message).toMatch(/cannot start its worker/);
  });
});

describe('bad modules inline', () => {
  const host = new InMemoryModuleHost();

  it.each<[string, ModuleLoadErrorCode, RegExp]>([
    ['bad/throws_in_create.js', 'MODULE_INIT_FAILED', /create\(\) failed: cannot connect to the model store/],
    // Under vitest the inline import goes through Vite, whose parse error replaces Node's SyntaxError.
    ['bad/syntax_error.js', 'MODULE_LOAD_FAILED', /importing the module file failed: /],
    ['bad/no_create.js', 'MODULE_INVALID_DEFINITION', /create\(ctx\) function/],
    ['bad/hangs_in_create.js', 'MODULE_INIT_TIMEOUT', /create\(\) did not finish within 50 ms/],
  ])('%s -> %s', async (file, code, message) => {
    const error = await loadFailure({ file, host, isolation: 'INLINE', limits: { initTimeoutMs: 50 } });
    expect(error.code).toBe(code);
    expect(error.message).toMatch(message);
  });
});

describe('a worker that misbehaves after loading', () => {
  const clock = new ManualClock();
  const host = new InMemoryModuleHost(clock);
  const limits = { callTimeoutMs: 1000, unresponsiveTimeoutMs: 500, maxOldGenerationSizeMb: 32 };
  let hanging: LoadedModuleVersion;
  let leaking: LoadedModuleVersion;
  let crashing: LoadedModuleVersion;
  let counter: LoadedModuleVersion;

  beforeAll(async () => {
    [hanging, leaking, crashing, counter] = await Promise.all([
      load({ file: 'bad/misbehaves_in_call.js', name: 'hanging', host, clock, limits }),
      load({ file: 'bad/misbehaves_in_call.js', name: 'leaking', host, clock, limits }),
      load({ file: 'bad/misbehaves_in_call.js', name: 'crashing', host, clock, limits }),
      load({ file: 'good/counter_v1.js', name: 'counter', host, clock, limits }),
    ]);
  }, SLOW);

  it('survives a call that never settles: timeout, then the worker still answers', async () => {
    const call = hanging.call('hangAsync');
    clock.advance(1000);
    await callFailure(call, 'CALL_TIMEOUT');
    expect(await hanging.call('ok')).toBe('ok');
    expect(hanging.exit).toBeNull();
  });

  it('terminates a worker stuck in a synchronous loop and fails what was pending', async () => {
    const exited = exitOf(hanging);
    const spinning = hanging.call('spin');
    const queued = hanging.call('ok', undefined, { timeoutMs: 60_000 });
    clock.advance(1000);
    await callFailure(spinning, 'CALL_TIMEOUT');
    clock.advance(500);
    const exit = await exited;
    expect(exit).toMatchObject({ reason: 'UNRESPONSIVE', expected: false });
    expect(exit.message).toMatch(/stopped responding/);
    const failed = await callFailure(queued, 'MODULE_TERMINATED');
    expect(failed.message).toMatch(/stopped responding/);
    await callFailure(hanging.call('ok'), 'MODULE_TERMINATED');
  });

  it('reports a worker that runs out of memory during a call', async () => {
    const exited = exitOf(leaking);
    const error = await callFailure(leaking.call('leak', undefined, { timeoutMs: 60_000 }), 'MODULE_CRASHED');
    expect(error.message).toMatch(/ran out of memory \(heap limit 32 MB\)/);
    expect(await exited).toMatchObject({ reason: 'OUT_OF_MEMORY', expected: false });
  }, SLOW);

  it('reports a worker killed by an uncaught error', async () => {
    const exited = exitOf(crashing);
    expect(await crashing.call('crashLater')).toBe('scheduled');
    const exit = await exited;
    expect(exit).toMatchObject({ reason: 'CRASHED', expected: false });
    expect(exit.message).toMatch(/uncaught in a timer/);
    await callFailure(crashing.call('ok'), 'MODULE_CRASHED');
  });

  it('refuses values that cannot cross the thread boundary', async () => {
    await callFailure(counter.call('echo', { fn: () => 1 }), 'NOT_CLONEABLE');
    await callFailure(counter.call('returnsFunction'), 'NOT_CLONEABLE');
    expect(await counter.call('echo', 'fine')).toBe('fine');
  });

  it("reports the worker's heap", async () => {
    const memory = await counter.memoryUsage!();
    expect(memory.heapUsedBytes).toBeGreaterThan(0);
    expect(memory.heapLimitBytes).toBeGreaterThan(32 * 1024 * 1024);
    expect(memory.heapLimitBytes).toBeLessThan(256 * 1024 * 1024);
  });

  it('left the other modules serving', async () => {
    expect(await counter.call('increment', 1)).toMatchObject({ count: 1 });
    expect(counter.exit).toBeNull();
  });
});

describe('loadModuleVersion options', () => {
  const host = new InMemoryModuleHost();

  it('rejects invalid options with a TypeError', async () => {
    await expect(loadModuleVersion({ name: 'x', version: '1', absolutePath: 'relative.js', dependencyNames: [], host })).rejects.toThrow(TypeError);
    await expect(
      loadModuleVersion({ name: 'x', version: '1', absolutePath: '/x.js', dependencyNames: [], host, limits: { callTimeoutMs: -1 } }),
    ).rejects.toThrow(/callTimeoutMs/);
  });
});

describe('PendingRequests', () => {
  function setup(clock: Clock) {
    const expired: string[] = [];
    const pending = new PendingRequests(clock, (entry) => {
      expired.push(entry.label);
      entry.reject(new Error(`${entry.label} expired`));
    });
    return { pending, expired };
  }

  it('expires each request at its own deadline with one timer', async () => {
    const clock = new ManualClock();
    const { pending, expired } = setup(clock);
    const long = pending.add(pending.nextId(), 'call', 'long', 1000);
    const short = pending.add(pending.nextId(), 'call', 'short', 100);
    const answered = pending.add(pending.nextId(), 'call', 'answered', 100);
    long.catch(() => {});
    short.catch(() => {});
    expect(pending.inFlightCalls).toBe(3);
    expect(pending.resolve(3, 'yes')).toBe(true);
    expect(await answered).toBe('yes');
    expect(clock.pendingTimers).toBe(1);
    clock.advance(100);
    await expect(short).rejects.toThrow('short expired');
    expect(expired).toEqual(['short']);
    clock.advance(899);
    expect(expired).toEqual(['short']);
    clock.advance(1);
    await expect(long).rejects.toThrow('long expired');
    expect(pending.size).toBe(0);
    expect(pending.resolve(1, 'late')).toBe(false);
  });

  it('waits for calls to settle, up to a deadline', async () => {
    const clock = new ManualClock();
    const { pending } = setup(clock);
    const call = pending.add(pending.nextId(), 'call', 'c', Number.POSITIVE_INFINITY);
    pending.add(pending.nextId(), 'health', 'h', Number.POSITIVE_INFINITY).catch(() => {});
    const idle = pending.whenIdle(500);
    const late = pending.whenIdle(10);
    clock.advance(10);
    expect(await late).toBe(false);
    pending.resolve(1, 'done');
    expect(await call).toBe('done');
    expect(await idle).toBe(true);
    expect(pending.size).toBe(1);
    pending.rejectAll(() => new Error('stopped'));
    expect(pending.size).toBe(0);
  });

  it('uses the system clock by default without keeping timers per request', () => {
    const { pending } = setup(systemClock);
    const p = pending.add(pending.nextId(), 'call', 'x', 60_000);
    pending.resolve(1, null);
    return expect(p).resolves.toBeNull();
  });
});
