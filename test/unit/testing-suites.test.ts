import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import type { ModuleType } from '../../src/modules/contract.js';
import {
  InMemoryModuleHost,
  loadModuleVersion,
  type LoadedModuleVersion,
  type ModuleIsolation,
} from '../../src/modules/runtime/index.js';
import { runTestRun, type TestBudgets, type TestRunEvent, type TestRunOutcome } from '../../src/testing/engine.js';
import { builtInSuite } from '../../src/testing/suites.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/modules/testing/', import.meta.url));
const EXAMPLES = fileURLToPath(new URL('../../examples/modules/', import.meta.url));

const loaded: LoadedModuleVersion[] = [];
afterAll(async () => {
  await Promise.all(loaded.map((v) => v.terminate()));
});

interface Target {
  absolutePath: string;
  isolation?: ModuleIsolation;
  dependencyNames?: string[];
}

function load(clock: ManualClock, host: InMemoryModuleHost, target: Target, signal?: AbortSignal): Promise<LoadedModuleVersion> {
  return loadModuleVersion({
    name: path.basename(target.absolutePath, '.js'),
    version: '1.0.0',
    absolutePath: target.absolutePath,
    isolation: target.isolation ?? 'INLINE',
    dependencyNames: target.dependencyNames ?? [],
    host,
    clock,
    ...(signal ? { signal } : {}),
  }).then((version) => {
    loaded.push(version);
    return version;
  });
}

interface RunArgs extends Target {
  moduleType: ModuleType;
  budgets?: TestBudgets;
  /** Sets dependencies up on the host before the run. */
  wire?: (clock: ManualClock, host: InMemoryModuleHost) => Promise<void>;
  /** Called one macrotask after the named test started. */
  onStart?: Record<string, (clock: ManualClock, host: InMemoryModuleHost) => void>;
}

async function run(args: RunArgs): Promise<{ outcome: TestRunOutcome; events: TestRunEvent[]; staged: LoadedModuleVersion }> {
  const clock = new ManualClock();
  const host = new InMemoryModuleHost(clock);
  await args.wire?.(clock, host);
  const events: TestRunEvent[] = [];
  let staged: LoadedModuleVersion | null = null;
  const outcome = await runTestRun({
    moduleType: args.moduleType,
    clock,
    ...(args.budgets ? { budgets: args.budgets } : {}),
    stage: async (signal) => (staged = await load(clock, host, args, signal)),
    onEvent(event) {
      events.push(event);
      const hook = event.type === 'TEST_STARTED' ? args.onStart?.[event.name] : undefined;
      if (hook) setImmediate(() => hook(clock, host));
    },
  });
  if (!staged) throw new Error('nothing was staged');
  return { outcome, events, staged };
}

const example = (file: string) => path.join(EXAMPLES, file);
const fixture = (file: string) => path.join(FIXTURES, file);

/** Wires a dependency to a freshly loaded INLINE example module. */
function dependsOn(name: string, file: string) {
  return async (clock: ManualClock, host: InMemoryModuleHost) => {
    host.setDependency(name, await load(clock, host, { absolutePath: example(file) }));
  };
}

function statuses(outcome: TestRunOutcome): Record<string, string> {
  return Object.fromEntries(outcome.results.map((r) => [r.name, r.status]));
}

function errorOf(outcome: TestRunOutcome, name: string): string | null {
  return outcome.results.find((r) => r.name === name)?.error ?? null;
}

describe('builtInSuite', () => {
  it('lists the GENERIC tests first, the type checks next and dispose last', () => {
    const names = (type: ModuleType) => builtInSuite(type).map((c) => c.name);
    expect(names('GENERIC')).toEqual(['creates', 'health check', 'answers within timeout', 'disposes cleanly']);
    expect(names('ML')).toEqual([
      'creates',
      'health check',
      'answers within timeout',
      'has predict',
      'prediction with confidence',
      'deterministic',
      'latency within budget',
      'disposes cleanly',
    ]);
    expect(names('TRADING')).toEqual(['creates', 'health check', 'answers within timeout', 'has placeOrder', 'places a valid order', 'rejects an invalid order', 'disposes cleanly']);
    expect(names('DATA_PIPELINE')).toEqual(['creates', 'health check', 'answers within timeout', 'has process', 'one result per item', 'empty batch', 'disposes cleanly']);
    for (const type of ['GENERIC', 'ML', 'TRADING', 'DATA_PIPELINE'] as const) {
      expect(builtInSuite(type).every((c) => c.required && c.timeoutMs > 0)).toBe(true);
    }
  });

  it('gives the latency test room to tell slow from hung', () => {
    const latency = (ms: number) => builtInSuite('ML', { latencyMs: ms }).find((c) => c.name === 'latency within budget')?.timeoutMs;
    expect(latency(500)).toBe(5_000);
    expect(latency(4_000)).toBe(8_000);
  });
});

describe('ML suite', () => {
  const predictor = (file: string, isolation: ModuleIsolation = 'INLINE'): RunArgs => ({
    moduleType: 'ML',
    absolutePath: example(file),
    isolation,
    dependencyNames: ['feature_extractor'],
    wire: dependsOn('feature_extractor', 'feature_extractor.js'),
  });

  it('passes examples/modules/ml/neural_predictor_v2.js, with its own test', async () => {
    const { outcome } = await run(predictor('ml/neural_predictor_v2.js'));
    expect(statuses(outcome)).toEqual({
      creates: 'PASSED',
      'health check': 'PASSED',
      'answers within timeout': 'PASSED',
      'has predict': 'PASSED',
      'prediction with confidence': 'PASSED',
      deterministic: 'PASSED',
      'latency within budget': 'PASSED',
      'same input, same prediction': 'PASSED',
      'disposes cleanly': 'PASSED',
    });
    expect(outcome.results.find((r) => r.name === 'same input, same prediction')?.source).toBe('MODULE');
    expect(outcome.status).toBe('PASSED');
  });

  it('passes neural_predictor_v2 in WORKER isolation', async () => {
    const { outcome, staged } = await run(predictor('ml/neural_predictor_v2.js', 'WORKER'));
    expect(staged.isolation).toBe('WORKER');
    expect(outcome.results.filter((r) => r.status !== 'PASSED')).toEqual([]);
    expect(outcome.status).toBe('PASSED');
    expect(staged.exit?.reason).toBe('DISPOSED');
  });

  it('passes neural_predictor v1', async () => {
    const { outcome } = await run(predictor('ml/neural_predictor.js'));
    expect(outcome.status).toBe('PASSED');
  });

  it('fails a confidence outside [0, 1]', async () => {
    const { outcome } = await run({ moduleType: 'ML', absolutePath: fixture('ml_overconfident.js') });
    expect(statuses(outcome)['prediction with confidence']).toBe('FAILED');
    expect(errorOf(outcome, 'prediction with confidence')).toBe('confidence must be a number in [0, 1], got 7');
    expect(statuses(outcome)['deterministic']).toBe('PASSED');
    expect(outcome.status).toBe('FAILED');
  });

  it('fails a prediction that changes for the same input', async () => {
    const { outcome } = await run({ moduleType: 'ML', absolutePath: fixture('ml_flaky.js') });
    expect(statuses(outcome)['deterministic']).toBe('FAILED');
    expect(errorOf(outcome, 'deterministic')).toContain('the same input gave');
    expect(outcome.status).toBe('FAILED');
  });

  it('measures latency by the clock against the budget', async () => {
    // Only the latency test's call is slow: the delay is armed while that test runs.
    const clock = new ManualClock();
    const host = new InMemoryModuleHost(clock);
    let armed = false;
    host.setDependency('delay', () => (armed ? new Promise((resolve) => clock.setTimer(800, () => resolve(null))) : null));
    const events: TestRunEvent[] = [];
    const runWith = (budgets?: TestBudgets) =>
      runTestRun({
        moduleType: 'ML',
        clock,
        ...(budgets ? { budgets } : {}),
        stage: (signal) => load(clock, host, { absolutePath: fixture('ml_slow.js'), dependencyNames: ['delay'] }, signal),
        onEvent(event) {
          events.push(event);
          if (event.type === 'TEST_STARTED' && event.name === 'latency within budget') {
            armed = true;
            setImmediate(() => clock.advance(800));
          }
          if (event.type === 'TEST_FINISHED' && event.result.name === 'latency within budget') armed = false;
        },
      });

    const overBudget = await runWith();
    expect(overBudget.results.find((r) => r.name === 'latency within budget')).toMatchObject({
      status: 'FAILED',
      durationMs: 800,
      error: 'predict took 800 ms, over the budget of 500 ms',
    });
    expect(overBudget.status).toBe('FAILED');

    const withinBudget = await runWith({ latencyMs: 1_000 });
    expect(withinBudget.results.find((r) => r.name === 'latency within budget')).toMatchObject({ status: 'PASSED', durationMs: 800 });
    expect(withinBudget.status).toBe('PASSED');
  });

  it('fails "has predict" once and skips the checks that need it', async () => {
    const { outcome } = await run({ moduleType: 'ML', absolutePath: fixture('generic_configurable.js') });
    expect(statuses(outcome)).toMatchObject({
      'has predict': 'FAILED',
      'prediction with confidence': 'SKIPPED',
      deterministic: 'SKIPPED',
      'latency within budget': 'SKIPPED',
      'disposes cleanly': 'PASSED',
    });
    expect(errorOf(outcome, 'deterministic')).toBe('"has predict" did not pass');
    expect(outcome.status).toBe('FAILED');
  });
});

describe('TRADING suite', () => {
  const paperTrading = (file: string): RunArgs => ({
    moduleType: 'TRADING',
    absolutePath: example(file),
    dependencyNames: ['market_simulator'],
    wire: dependsOn('market_simulator', 'market_simulator.js'),
  });

  it.each(['trading/paper_trading.js', 'trading/paper_trading_v2.js'])('passes examples/modules/%s', async (file) => {
    const { outcome } = await run(paperTrading(file));
    expect(statuses(outcome)).toEqual({
      creates: 'PASSED',
      'health check': 'SKIPPED',
      'answers within timeout': 'PASSED',
      'has placeOrder': 'PASSED',
      'places a valid order': 'PASSED',
      'rejects an invalid order': 'PASSED',
      'disposes cleanly': 'PASSED',
    });
    expect(outcome.status).toBe('PASSED');
  });

  it('fails a module that fills an invalid order', async () => {
    const { outcome } = await run({ moduleType: 'TRADING', absolutePath: fixture('trading_accepts_invalid.js') });
    expect(statuses(outcome)['places a valid order']).toBe('PASSED');
    expect(statuses(outcome)['rejects an invalid order']).toBe('FAILED');
    expect(errorOf(outcome, 'rejects an invalid order')).toContain('an invalid order was accepted');
    expect(errorOf(outcome, 'rejects an invalid order')).toContain('"status":"filled"');
    expect(outcome.status).toBe('FAILED');
  });

  it('accepts a rejection answered as a status', async () => {
    const { outcome } = await run({ moduleType: 'TRADING', absolutePath: fixture('trading_rejects_by_status.js') });
    expect(outcome.status).toBe('PASSED');
  });

  it('fails a module without a market to quote from (valid order throws)', async () => {
    // paper_trading needs market_simulator: unwired, placing the valid order fails, which is
    // not mistaken for a pass of the rejection check's counterpart.
    const { outcome } = await run({ ...paperTrading('trading/paper_trading.js'), wire: async () => {} });
    expect(statuses(outcome)['places a valid order']).toBe('FAILED');
    expect(errorOf(outcome, 'places a valid order')).toContain('market_simulator');
    expect(outcome.status).toBe('FAILED');
  });
});

describe('DATA_PIPELINE suite', () => {
  it('passes examples/modules/feature_extractor.js, with its own test', async () => {
    const { outcome } = await run({ moduleType: 'DATA_PIPELINE', absolutePath: example('feature_extractor.js') });
    expect(statuses(outcome)).toEqual({
      creates: 'PASSED',
      'health check': 'SKIPPED',
      'answers within timeout': 'PASSED',
      'has process': 'PASSED',
      'one result per item': 'PASSED',
      'empty batch': 'PASSED',
      'momentum of a rising series is positive': 'PASSED',
      'disposes cleanly': 'PASSED',
    });
    expect(outcome.status).toBe('PASSED');
  });

  it('fails a pipeline that returns the wrong number of results', async () => {
    const { outcome } = await run({ moduleType: 'DATA_PIPELINE', absolutePath: fixture('pipeline_wrong_count.js') });
    expect(statuses(outcome)['one result per item']).toBe('FAILED');
    expect(errorOf(outcome, 'one result per item')).toBe('process returned 2 results for 3 items');
    expect(statuses(outcome)['empty batch']).toBe('PASSED');
    expect(outcome.status).toBe('FAILED');
  });
});

describe('GENERIC suite', () => {
  it('passes examples/modules/market_simulator.js', async () => {
    const { outcome } = await run({ moduleType: 'GENERIC', absolutePath: example('market_simulator.js') });
    expect(outcome.status).toBe('PASSED');
  });
});
