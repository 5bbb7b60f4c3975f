import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import {
  InMemoryModuleHost,
  loadModuleVersion,
  type LoadedModuleVersion,
  type ModuleIsolation,
  type ModuleLimits,
} from '../../src/modules/runtime/index.js';
import {
  runStatusOf,
  runTestRun,
  summarizeResults,
  type TestCaseResult,
  type TestRunEvent,
  type TestRunOptions,
  type TestRunOutcome,
} from '../../src/testing/engine.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/modules/testing/', import.meta.url));
const T0 = Date.UTC(2026, 0, 1);

const everyStaged: LoadedModuleVersion[] = [];
afterAll(async () => {
  await Promise.all(everyStaged.map((v) => v.terminate()));
});

interface StageArgs {
  file: string;
  isolation?: ModuleIsolation;
  config?: Record<string, unknown>;
  limits?: Partial<ModuleLimits>;
}

function setup() {
  const clock = new ManualClock(T0);
  const host = new InMemoryModuleHost(clock);
  const staged: LoadedModuleVersion[] = [];
  const stage =
    ({ file, isolation = 'INLINE', config, limits }: StageArgs) =>
    async (signal: AbortSignal): Promise<LoadedModuleVersion> => {
      const version = await loadModuleVersion({
        name: path.basename(file, '.js'),
        version: '1.0.0',
        absolutePath: path.join(FIXTURES, file),
        isolation,
        config: config ?? {},
        dependencyNames: [],
        host,
        clock,
        signal,
        limits: limits ?? {},
      });
      staged.push(version);
      everyStaged.push(version);
      return version;
    };
  return { clock, host, staged, stage };
}

interface Recorded {
  events: TestRunEvent[];
  outcome: TestRunOutcome;
}

/**
 * Runs and records the events. `onStart[name]` runs one macrotask after that test's
 * TEST_STARTED, when the test's timer is set and its work has reached the module.
 */
async function record(
  options: Omit<TestRunOptions, 'onEvent'>,
  onStart: Record<string, () => void> = {},
): Promise<Recorded> {
  const events: TestRunEvent[] = [];
  const outcome = await runTestRun({
    ...options,
    onEvent(event) {
      events.push(event);
      const hook = event.type === 'TEST_STARTED' ? onStart[event.name] : undefined;
      if (hook) setImmediate(hook);
    },
  });
  return { events, outcome };
}

function resultOf(outcome: TestRunOutcome, name: string): TestCaseResult {
  const result = outcome.results.find((r) => r.name === name);
  if (!result) throw new Error(`no result for "${name}" (have ${outcome.results.map((r) => r.name).join(', ')})`);
  return result;
}

function passed(name: string, required: boolean, source: 'BUILT_IN' | 'MODULE' = 'BUILT_IN'): TestCaseResult {
  return { name, required, source, status: 'PASSED', durationMs: 0, error: null };
}

/** Every planned test has exactly one TEST_FINISHED, in index order, after its TEST_STARTED if any. */
function expectWellFormed(events: TestRunEvent[]): void {
  const first = events[0];
  const last = events.at(-1);
  if (first?.type !== 'RUN_STARTED' || last?.type !== 'RUN_FINISHED') throw new Error('a run starts with RUN_STARTED and ends with RUN_FINISHED');
  const finished = events.filter((e) => e.type === 'TEST_FINISHED');
  expect(finished.map((e) => e.index)).toEqual(first.tests.map((_, i) => i));
  expect(finished.map((e) => e.result.name)).toEqual(first.tests.map((t) => t.name));
  for (const started of events.filter((e) => e.type === 'TEST_STARTED')) {
    const at = events.indexOf(started);
    expect(events[at + 1]).toMatchObject({ type: 'TEST_FINISHED', index: started.index });
  }
  expect(last.summary.total).toBe(first.total);
}

describe('runTestRun', () => {
  it('streams the full ordered event stream of a passing GENERIC run', async () => {
    const { clock, stage, staged } = setup();
    const { events, outcome } = await record({ moduleType: 'GENERIC', clock, stage: stage({ file: 'generic_configurable.js' }) });

    const tests = [
      { name: 'creates', required: true, source: 'BUILT_IN', timeoutMs: 20_000 },
      { name: 'health check', required: true, source: 'BUILT_IN', timeoutMs: 5_000 },
      { name: 'answers within timeout', required: true, source: 'BUILT_IN', timeoutMs: 5_000 },
      { name: 'echoes', required: true, source: 'MODULE', timeoutMs: 1_000 },
      { name: 'optional check', required: false, source: 'MODULE', timeoutMs: 3_000 },
      { name: 'fails when asked', required: true, source: 'MODULE', timeoutMs: 1_000 },
      { name: 'disposes cleanly', required: true, source: 'BUILT_IN', timeoutMs: 5_000 },
    ] as const;
    const expected: TestRunEvent[] = [{ type: 'RUN_STARTED', at: T0, total: 7, tests: tests.map((t) => ({ ...t })) }];
    tests.forEach((t, index) => {
      expected.push({ type: 'TEST_STARTED', at: T0, index, name: t.name });
      expected.push({ type: 'TEST_FINISHED', at: T0, index, result: passed(t.name, t.required, t.source) });
    });
    expected.push({
      type: 'RUN_FINISHED',
      at: T0,
      status: 'PASSED',
      summary: { total: 7, passed: 7, failed: 0, timedOut: 0, skipped: 0, durationMs: 0 },
    });
    expect(events).toEqual(expected);
    expect(outcome).toEqual({
      status: 'PASSED',
      results: tests.map((t) => passed(t.name, t.required, t.source)),
      summary: { total: 7, passed: 7, failed: 0, timedOut: 0, skipped: 0, durationMs: 0 },
      startedAt: T0,
      finishedAt: T0,
    });
    expect(staged[0]!.exit?.reason).toBe('DISPOSED');
  });

  it('times out an optional hanging test by the clock and still passes the run', async () => {
    const { clock, stage } = setup();
    const { events, outcome } = await record(
      { moduleType: 'GENERIC', clock, stage: stage({ file: 'generic_configurable.js', config: { hangOptional: true } }) },
      { 'optional check': () => clock.advance(3_000) },
    );
    expectWellFormed(events);
    expect(resultOf(outcome, 'optional check')).toEqual({
      name: 'optional check',
      required: false,
      source: 'MODULE',
      status: 'TIMED_OUT',
      durationMs: 3_000,
      error: 'did not finish within 3000 ms',
    });
    // The run went on after the timeout.
    expect(resultOf(outcome, 'fails when asked').status).toBe('PASSED');
    expect(resultOf(outcome, 'disposes cleanly').status).toBe('PASSED');
    expect(outcome.status).toBe('PASSED');
    expect(outcome.summary).toEqual({ total: 7, passed: 6, failed: 0, timedOut: 1, skipped: 0, durationMs: 3_000 });
    expect(events.at(-1)).toEqual({ type: 'RUN_FINISHED', at: T0 + 3_000, status: 'PASSED', summary: outcome.summary });
  });

  it('fails the run when a required test fails', async () => {
    const { clock, stage } = setup();
    const { outcome } = await record({ moduleType: 'GENERIC', clock, stage: stage({ file: 'generic_configurable.js', config: { failRequired: true } }) });
    expect(resultOf(outcome, 'fails when asked')).toMatchObject({ status: 'FAILED', required: true, error: 'the test returned false' });
    expect(resultOf(outcome, 'disposes cleanly').status).toBe('PASSED');
    expect(outcome.status).toBe('FAILED');
    expect(outcome.summary.failed).toBe(1);
  });

  it('times out a hanging built-in check and goes on', async () => {
    const { clock, stage } = setup();
    const { events, outcome } = await record(
      { moduleType: 'GENERIC', clock, stage: stage({ file: 'generic_configurable.js', config: { pingHangs: true } }) },
      { 'answers within timeout': () => clock.advance(5_000) },
    );
    expectWellFormed(events);
    expect(resultOf(outcome, 'answers within timeout')).toMatchObject({ status: 'TIMED_OUT', durationMs: 5_000, error: 'did not finish within 5000 ms' });
    expect(resultOf(outcome, 'echoes').status).toBe('PASSED');
    expect(outcome.status).toBe('FAILED');
  });

  it('fails the health check of an unhealthy instance and skips it when there is none', async () => {
    const { clock, stage } = setup();
    const unhealthy = await record({ moduleType: 'GENERIC', clock, stage: stage({ file: 'generic_configurable.js', config: { unhealthy: true } }) });
    expect(resultOf(unhealthy.outcome, 'health check')).toMatchObject({ status: 'FAILED' });
    expect(resultOf(unhealthy.outcome, 'health check').error).toContain('told to be unhealthy');
    expect(unhealthy.outcome.status).toBe('FAILED');

    const bare = await record({ moduleType: 'GENERIC', clock, stage: stage({ file: 'no_methods.js' }) });
    expect(bare.outcome.results.map((r) => [r.name, r.status, r.error])).toEqual([
      ['creates', 'PASSED', null],
      ['health check', 'SKIPPED', 'the instance has no healthCheck'],
      ['answers within timeout', 'SKIPPED', 'the instance has no method to call'],
      ['disposes cleanly', 'PASSED', null],
    ]);
    expect(bare.outcome.status).toBe('PASSED');
  });

  it('times out a hanging dispose and terminates the instance', async () => {
    const { clock, stage, staged } = setup();
    const { outcome } = await record(
      {
        moduleType: 'GENERIC',
        clock,
        stage: stage({ file: 'generic_configurable.js', config: { disposeHangs: true }, limits: { disposeTimeoutMs: 60_000 } }),
      },
      { 'disposes cleanly': () => clock.advance(5_000) },
    );
    expect(resultOf(outcome, 'disposes cleanly')).toMatchObject({ status: 'TIMED_OUT', durationMs: 5_000 });
    expect(outcome.status).toBe('FAILED');
    expect(staged[0]!.exit?.reason).toBe('TERMINATED');
  });

  it('fails "creates" and skips the rest when staging fails', async () => {
    const { clock, stage } = setup();
    const { events, outcome } = await record({ moduleType: 'ML', clock, stage: stage({ file: 'throws_in_create.js' }) });
    expectWellFormed(events);
    const runStarted = events[0];
    if (runStarted?.type !== 'RUN_STARTED') throw new Error('no RUN_STARTED');
    expect(runStarted.tests.map((t) => t.name)).toEqual([
      'creates',
      'health check',
      'answers within timeout',
      'has predict',
      'prediction with confidence',
      'deterministic',
      'latency within budget',
      'disposes cleanly',
    ]);
    expect(resultOf(outcome, 'creates').status).toBe('FAILED');
    expect(resultOf(outcome, 'creates').error).toContain('model file missing');
    expect(outcome.results.slice(1).every((r) => r.status === 'SKIPPED' && r.error === 'the module was not staged')).toBe(true);
    // Only 'creates' ran.
    expect(events.filter((e) => e.type === 'TEST_STARTED').map((e) => e.index)).toEqual([0]);
    expect(outcome.status).toBe('FAILED');
  });

  it('times out a staging that hangs and disposes the instance when it arrives late', async () => {
    const { clock, stage } = setup();
    let arrive: (version: LoadedModuleVersion) => void = () => {};
    let stageSignal: AbortSignal | null = null;
    const { outcome } = await record(
      {
        moduleType: 'GENERIC',
        clock,
        stage: (signal) => {
          stageSignal = signal;
          // Nothing is emitted before staging settles (the plan needs the module's tests).
          setImmediate(() => clock.advance(20_000));
          return new Promise((resolve) => {
            arrive = resolve;
          });
        },
      },
    );
    expect(resultOf(outcome, 'creates')).toMatchObject({ status: 'TIMED_OUT', durationMs: 20_000, error: 'did not finish within 20000 ms' });
    expect(outcome.status).toBe('FAILED');
    expect(stageSignal!.aborted).toBe(true);

    const late = await stage({ file: 'no_methods.js' })(new AbortController().signal);
    arrive(late);
    await new Promise((resolve) => late.onExit(resolve));
    expect(late.exit?.reason).toBe('DISPOSED');
  });

  it('cancels: the running test and the rest end SKIPPED, the run CANCELLED, the instance disposed', async () => {
    const { clock, stage, staged } = setup();
    const controller = new AbortController();
    const { events, outcome } = await record(
      { moduleType: 'GENERIC', clock, signal: controller.signal, stage: stage({ file: 'generic_configurable.js', config: { hangOptional: true } }) },
      { 'optional check': () => controller.abort() },
    );
    expectWellFormed(events);
    expect(outcome.results.map((r) => [r.name, r.status, r.error])).toEqual([
      ['creates', 'PASSED', null],
      ['health check', 'PASSED', null],
      ['answers within timeout', 'PASSED', null],
      ['echoes', 'PASSED', null],
      ['optional check', 'SKIPPED', 'cancelled'],
      ['fails when asked', 'SKIPPED', 'cancelled'],
      ['disposes cleanly', 'SKIPPED', 'cancelled'],
    ]);
    // The tests after the cancel never started.
    expect(events.filter((e) => e.type === 'TEST_STARTED').map((e) => e.index)).toEqual([0, 1, 2, 3, 4]);
    expect(outcome.status).toBe('CANCELLED');
    expect(events.at(-1)).toMatchObject({ type: 'RUN_FINISHED', status: 'CANCELLED' });
    expect(staged[0]!.exit?.reason).toBe('DISPOSED');
    // Disposing rejected the abandoned test's pending request, so no timer is left behind.
    expect(clock.pendingTimers).toBe(0);
  });

  it('does not stage at all when cancelled before it starts', async () => {
    const { clock } = setup();
    const controller = new AbortController();
    controller.abort();
    let staged = false;
    const { events, outcome } = await record({
      moduleType: 'TRADING',
      clock,
      signal: controller.signal,
      stage: () => {
        staged = true;
        return Promise.reject(new Error('not expected'));
      },
    });
    expectWellFormed(events);
    expect(staged).toBe(false);
    expect(events.some((e) => e.type === 'TEST_STARTED')).toBe(false);
    expect(outcome.results.every((r) => r.status === 'SKIPPED' && r.error === 'cancelled')).toBe(true);
    expect(outcome.status).toBe('CANCELLED');
  });

  it('cancels while staging: the stage is aborted and nothing else runs', async () => {
    const { clock } = setup();
    const controller = new AbortController();
    let stageSignal: AbortSignal | null = null;
    const { events, outcome } = await record({
      moduleType: 'GENERIC',
      clock,
      signal: controller.signal,
      stage: (signal) => {
        stageSignal = signal;
        setImmediate(() => controller.abort());
        return new Promise(() => {});
      },
    });
    expectWellFormed(events);
    expect(stageSignal!.aborted).toBe(true);
    expect(outcome.results.map((r) => [r.name, r.status, r.error])).toEqual([
      ['creates', 'SKIPPED', 'cancelled'],
      ['health check', 'SKIPPED', 'cancelled'],
      ['answers within timeout', 'SKIPPED', 'cancelled'],
      ['disposes cleanly', 'SKIPPED', 'cancelled'],
    ]);
    expect(outcome.status).toBe('CANCELLED');
    expect(clock.pendingTimers).toBe(0);
  });

  it('keeps the events of two concurrent runs apart', async () => {
    const { clock, stage } = setup();
    const hanging = record(
      { moduleType: 'GENERIC', clock, stage: stage({ file: 'generic_configurable.js', config: { hangOptional: true } }) },
      { 'optional check': () => clock.advance(3_000) },
    );
    const pipeline = record({ moduleType: 'DATA_PIPELINE', clock, stage: stage({ file: 'pipeline_wrong_count.js' }) });
    const [a, b] = await Promise.all([hanging, pipeline]);
    expectWellFormed(a.events);
    expectWellFormed(b.events);
    const namesOf = (events: TestRunEvent[]) => events.flatMap((e) => (e.type === 'TEST_FINISHED' ? [e.result.name] : []));
    expect(namesOf(a.events)).toEqual(['creates', 'health check', 'answers within timeout', 'echoes', 'optional check', 'fails when asked', 'disposes cleanly']);
    expect(namesOf(b.events)).toEqual(['creates', 'health check', 'answers within timeout', 'has process', 'one result per item', 'empty batch', 'disposes cleanly']);
    expect(a.outcome.status).toBe('PASSED');
    expect(b.outcome.status).toBe('FAILED');
  });

  it('goes on when the event listener throws', async () => {
    const { clock, stage, staged } = setup();
    let calls = 0;
    const outcome = await runTestRun({
      moduleType: 'GENERIC',
      clock,
      stage: stage({ file: 'no_methods.js' }),
      onEvent: () => {
        calls++;
        throw new Error('listener broke');
      },
    });
    expect(outcome.status).toBe('PASSED');
    expect(calls).toBe(2 + 2 * 4);
    expect(staged[0]!.exit?.reason).toBe('DISPOSED');
  });

  it('rejects an invalid latency budget before doing anything', async () => {
    const { clock } = setup();
    await expect(
      runTestRun({ moduleType: 'ML', clock, budgets: { latencyMs: 0 }, onEvent: () => {}, stage: () => Promise.reject(new Error('no')) }),
    ).rejects.toThrow(/latencyMs/);
  });

  it('runs one WORKER-isolated version', async () => {
    const { clock, stage, staged } = setup();
    const { events, outcome } = await record({ moduleType: 'GENERIC', clock, stage: stage({ file: 'generic_configurable.js', isolation: 'WORKER' }) });
    expectWellFormed(events);
    expect(outcome.results.map((r) => r.status)).toEqual(Array(7).fill('PASSED'));
    expect(staged[0]!.isolation).toBe('WORKER');
    expect(staged[0]!.exit?.reason).toBe('DISPOSED');
  });
});

describe('summaries', () => {
  it('counts statuses and fails a run only on required failures or timeouts', () => {
    const r = (status: TestCaseResult['status'], required: boolean) => ({ status, required });
    expect(summarizeResults([r('PASSED', true), r('FAILED', false), r('TIMED_OUT', false), r('SKIPPED', true)], 12)).toEqual({
      total: 4,
      passed: 1,
      failed: 1,
      timedOut: 1,
      skipped: 1,
      durationMs: 12,
    });
    expect(runStatusOf([r('PASSED', true), r('FAILED', false), r('TIMED_OUT', false), r('SKIPPED', true)])).toBe('PASSED');
    expect(runStatusOf([r('PASSED', true), r('TIMED_OUT', true)])).toBe('FAILED');
    expect(runStatusOf([r('FAILED', true)])).toBe('FAILED');
  });
});
