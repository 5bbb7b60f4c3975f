/**
 * The built-in test suites, one per module type, as declarative lists the runner in engine.ts
 * executes in order. Every suite starts with the GENERIC checks and ends with 'disposes
 * cleanly'; the runner puts the module's own tests just before that last one.
 *
 * GENERIC
 *   creates                 staging the version succeeds (`create(ctx)` included)
 *   health check            the instance's `healthCheck()` reports healthy; SKIPPED without one
 *   answers within timeout  one round trip to the instance answers in time. The probe is the
 *                           least intrusive request the instance offers: a `ping` method, else
 *                           its `healthCheck`, else `exportState` (read-only by contract), else
 *                           its first method (sorted) with no argument. The module throwing is
 *                           still an answer; only silence (a timeout) or a dead instance fails.
 *   disposes cleanly        `dispose()` finishes within its timeout and leaves the instance
 *                           DISPOSED (not already crashed or terminated)
 * ML             has predict; prediction with confidence (`predict(sample)` returns an object
 *                with a non-null `prediction` and a `confidence` number in [0, 1]);
 *                deterministic (two calls with the same input agree on `prediction` and
 *                `confidence`: counters, ids or timestamps beside them may change);
 *                latency within budget (one more call, timed by the run's clock).
 * TRADING        has placeOrder; places a valid order (a paper order comes back as an object
 *                with a non-empty string `status` that is not a rejection); rejects an invalid
 *                order (the module throws, or answers with a status starting with "reject";
 *                any other answer means it was accepted silently).
 * DATA_PIPELINE  has process; one result per item (`process(batch)` returns an array as long
 *                as the batch); empty batch (`process([])` returns an empty array).
 *
 * A type's checks need its "has <method>" test to pass; when it does not they are SKIPPED, so
 * one missing method reports one failure instead of four. Every built-in test is required.
 */
import { isDeepStrictEqual } from 'node:util';
import type { ModuleType } from '../modules/contract.js';
import type { LoadedModuleVersion } from '../modules/runtime/version.js';
import { isModuleCallError } from '../modules/runtime/errors.js';

/** The inputs the type checks send; a service may override them per run. */
export interface TestSamples {
  /** ML: the input of every `predict` call. */
  mlInput: unknown;
  /** TRADING: a paper order any trading module must accept. */
  validOrder: unknown;
  /** TRADING: an order every trading module must refuse. */
  invalidOrder: unknown;
  /** DATA_PIPELINE: a batch for `process`; the check expects as many results as items. */
  batch: unknown[];
}

export const DEFAULT_TEST_SAMPLES: Readonly<TestSamples> = Object.freeze({
  mlInput: { prices: [100, 101, 103, 102, 105], sessionId: 'helios-module-test' },
  validOrder: { symbol: 'BTCZAR', side: 'buy', quantity: 1 },
  // Symbol kept valid so a module that only checks the symbol is caught too.
  invalidOrder: { symbol: 'BTCZAR', side: 'sideways', quantity: -1 },
  batch: [
    { id: 1, value: 1, prices: [1, 2, 3] },
    { id: 2, value: 2, prices: [3, 2, 1] },
    { id: 3, value: 3, prices: [5, 5, 5] },
  ],
});

export const DEFAULT_LATENCY_BUDGET_MS = 500;

/** Timeouts of the built-in tests. */
export const BUILT_IN_TIMEOUTS_MS = Object.freeze({
  /** Above the runtime's default load (10 s) + init (5 s) limits, so those fire first and say which phase hung. */
  create: 20_000,
  /** Checks that only read the instance's description. */
  describe: 1_000,
  /** One or two calls to the instance (the runtime's default call timeout). */
  call: 5_000,
  /** The runtime's default dispose limit: a dispose it had to cut short ends TIMED_OUT. */
  dispose: 5_000,
});

/** What a check sees of the run: the staged instance and the test's own deadline. */
export interface SuiteContext {
  readonly version: LoadedModuleVersion;
  readonly latencyBudgetMs: number;
  readonly samples: Readonly<TestSamples>;
  /** Epoch ms by the run's clock. */
  now(): number;
  /** Milliseconds left before the test times out (at least 1). */
  remainingMs(): number;
  /**
   * Calls `method` with a structured clone of `arg` (an INLINE module must not be able to
   * change the samples) and the rest of the test's time as the runtime's call timeout.
   */
  call(method: string, arg?: unknown): Promise<unknown>;
}

/** Thrown by a check: the test FAILED with this message. */
export class TestFailure extends Error {
  override name = 'TestFailure';
}

/** Thrown by a check: the test does not apply to this instance; it ends SKIPPED with this reason. */
export class TestSkipped extends Error {
  override name = 'TestSkipped';
}

/** Thrown by a check when the runtime reported a timeout as a value (healthCheck does). */
export class CheckTimedOut extends Error {
  override name = 'CheckTimedOut';
}

interface TestCaseBase {
  /** Short and stable: results are stored and compared across runs by it. */
  name: string;
  required: boolean;
  timeoutMs: number;
  description: string;
}

/**
 * CREATE stages the instance, DISPOSE disposes it (both are run by the engine itself); CHECK
 * runs `check` against the staged instance and passes unless it throws.
 */
export type TestCase =
  | (TestCaseBase & { kind: 'CREATE' })
  | (TestCaseBase & { kind: 'CHECK'; needs?: string; check(ctx: SuiteContext): Promise<void> })
  | (TestCaseBase & { kind: 'DISPOSE' });

export type CheckTestCase = Extract<TestCase, { kind: 'CHECK' }>;

export interface SuiteOptions {
  /** ML latency budget for one `predict` call (default 500 ms). */
  latencyMs?: number;
}

/**
 * The built-in tests for `moduleType`, in run order. Fresh objects on every call: a run never
 * shares anything with another.
 */
export function builtInSuite(moduleType: ModuleType, options: SuiteOptions = {}): TestCase[] {
  const latencyMs = options.latencyMs ?? DEFAULT_LATENCY_BUDGET_MS;
  if (!(Number.isFinite(latencyMs) && latencyMs > 0)) throw new TypeError(`latencyMs must be a positive number, got ${String(latencyMs)}`);
  const typeChecks: Record<ModuleType, () => CheckTestCase[]> = {
    GENERIC: () => [],
    ML: () => mlChecks(latencyMs),
    TRADING: tradingChecks,
    DATA_PIPELINE: pipelineChecks,
  };
  return [
    {
      kind: 'CREATE',
      name: 'creates',
      required: true,
      timeoutMs: BUILT_IN_TIMEOUTS_MS.create,
      description: 'a staged instance of the version is created',
    },
    ...genericChecks(),
    ...typeChecks[moduleType](),
    {
      kind: 'DISPOSE',
      name: 'disposes cleanly',
      required: true,
      timeoutMs: BUILT_IN_TIMEOUTS_MS.dispose,
      description: 'dispose() finishes in time and the instance ends DISPOSED',
    },
  ];
}

function genericChecks(): CheckTestCase[] {
  return [
    {
      kind: 'CHECK',
      name: 'health check',
      required: true,
      timeoutMs: BUILT_IN_TIMEOUTS_MS.call,
      description: 'healthCheck() reports healthy (skipped when the instance has none)',
      async check(ctx) {
        if (!ctx.version.lifecycle.healthCheck) throw new TestSkipped('the instance has no healthCheck');
        const health = await ctx.version.healthCheck({ timeoutMs: ctx.remainingMs() });
        if (health.ok) return;
        const detail = health.detail;
        // The runtime reports its own timeout as an unhealthy answer; it is a timeout here.
        if (isRecord(detail) && detail['code'] === 'CALL_TIMEOUT') throw new CheckTimedOut(String(detail['error'] ?? 'healthCheck did not answer'));
        if (detail === undefined) throw new TestFailure('healthCheck reported unhealthy');
        const reason = isRecord(detail) && typeof detail['error'] === 'string' ? detail['error'] : describeValue(detail);
        throw new TestFailure(`healthCheck reported unhealthy: ${reason}`);
      },
    },
    {
      kind: 'CHECK',
      name: 'answers within timeout',
      required: true,
      timeoutMs: BUILT_IN_TIMEOUTS_MS.call,
      description: 'one round trip (ping, healthCheck, exportState or the first method) answers in time',
      async check(ctx) {
        const { version } = ctx;
        try {
          if (version.methods.includes('ping')) await ctx.call('ping');
          else if (version.lifecycle.healthCheck) await probeHealth(ctx);
          else if (version.lifecycle.exportState) await version.exportState({ timeoutMs: ctx.remainingMs() });
          else if (version.methods[0] !== undefined) await ctx.call(version.methods[0]);
          else throw new TestSkipped('the instance has no method to call');
        } catch (error) {
          // The module answering with an error (or with a value that cannot be cloned) is
          // still an answer; silence and a dead instance are not.
          if (isModuleCallError(error) && (error.code === 'CALL_FAILED' || error.code === 'NOT_CLONEABLE')) return;
          throw error;
        }
      },
    },
  ];
}

async function probeHealth(ctx: SuiteContext): Promise<void> {
  const health = await ctx.version.healthCheck({ timeoutMs: ctx.remainingMs() });
  const detail = health.detail;
  if (!health.ok && isRecord(detail) && detail['code'] === 'CALL_TIMEOUT') throw new CheckTimedOut(String(detail['error'] ?? 'healthCheck did not answer'));
}

function hasMethod(method: string): CheckTestCase {
  return {
    kind: 'CHECK',
    name: `has ${method}`,
    required: true,
    timeoutMs: BUILT_IN_TIMEOUTS_MS.describe,
    description: `the instance has a ${method} method`,
    async check(ctx) {
      if (!ctx.version.methods.includes(method)) {
        throw new TestFailure(`the instance has no "${method}" method (methods: ${ctx.version.methods.join(', ') || 'none'})`);
      }
    },
  };
}

function mlChecks(latencyMs: number): CheckTestCase[] {
  const needs = 'has predict';
  return [
    hasMethod('predict'),
    {
      kind: 'CHECK',
      name: 'prediction with confidence',
      required: true,
      needs,
      timeoutMs: BUILT_IN_TIMEOUTS_MS.call,
      description: 'predict(sample) returns { prediction, confidence } with confidence in [0, 1]',
      async check(ctx) {
        const answer = await ctx.call('predict', ctx.samples.mlInput);
        if (!isRecord(answer)) throw new TestFailure(`predict returned ${describeValue(answer)}, not an object`);
        if (answer['prediction'] === undefined || answer['prediction'] === null) {
          throw new TestFailure(`predict returned no prediction: ${describeValue(answer)}`);
        }
        const confidence = answer['confidence'];
        if (typeof confidence !== 'number' || !(confidence >= 0 && confidence <= 1)) {
          throw new TestFailure(`confidence must be a number in [0, 1], got ${describeValue(confidence)}`);
        }
      },
    },
    {
      kind: 'CHECK',
      name: 'deterministic',
      required: true,
      needs,
      timeoutMs: BUILT_IN_TIMEOUTS_MS.call,
      description: 'two predict calls with the same input agree on prediction and confidence',
      async check(ctx) {
        const first = await ctx.call('predict', ctx.samples.mlInput);
        const second = await ctx.call('predict', ctx.samples.mlInput);
        const a = predictionOf(first);
        const b = predictionOf(second);
        if (!isDeepStrictEqual(a, b)) throw new TestFailure(`the same input gave ${describeValue(a)}, then ${describeValue(b)}`);
      },
    },
    {
      kind: 'CHECK',
      name: 'latency within budget',
      required: true,
      needs,
      // Long enough to tell "slow" (FAILED, with the measured time) from "hung" (TIMED_OUT).
      timeoutMs: Math.max(BUILT_IN_TIMEOUTS_MS.call, 2 * latencyMs),
      description: `one predict call answers within the latency budget (${latencyMs} ms)`,
      async check(ctx) {
        const started = ctx.now();
        await ctx.call('predict', ctx.samples.mlInput);
        const took = ctx.now() - started;
        if (took > ctx.latencyBudgetMs) throw new TestFailure(`predict took ${took} ms, over the budget of ${ctx.latencyBudgetMs} ms`);
      },
    },
  ];
}

function predictionOf(answer: unknown): unknown {
  return isRecord(answer) ? { prediction: answer['prediction'], confidence: answer['confidence'] } : answer;
}

function tradingChecks(): CheckTestCase[] {
  const needs = 'has placeOrder';
  return [
    hasMethod('placeOrder'),
    {
      kind: 'CHECK',
      name: 'places a valid order',
      required: true,
      needs,
      timeoutMs: BUILT_IN_TIMEOUTS_MS.call,
      description: 'placeOrder(valid paper order) returns an object with a status that is not a rejection',
      async check(ctx) {
        const answer = await ctx.call('placeOrder', ctx.samples.validOrder);
        if (!isRecord(answer)) throw new TestFailure(`placeOrder returned ${describeValue(answer)}, not an object`);
        const status = answer['status'];
        if (typeof status !== 'string' || status === '') throw new TestFailure(`placeOrder returned no status: ${describeValue(answer)}`);
        if (isRejection(status)) throw new TestFailure(`a valid order was rejected: ${describeValue(answer)}`);
      },
    },
    {
      kind: 'CHECK',
      name: 'rejects an invalid order',
      required: true,
      needs,
      timeoutMs: BUILT_IN_TIMEOUTS_MS.call,
      description: 'placeOrder(invalid order) throws or answers with a rejected status',
      async check(ctx) {
        let answer: unknown;
        try {
          answer = await ctx.call('placeOrder', ctx.samples.invalidOrder);
        } catch (error) {
          // Only the module's own refusal counts; a timeout or a crash is not a rejection.
          if (isModuleCallError(error) && error.code === 'CALL_FAILED') return;
          throw error;
        }
        const status = isRecord(answer) ? answer['status'] : undefined;
        if (typeof status === 'string' && isRejection(status)) return;
        throw new TestFailure(`an invalid order was accepted: ${describeValue(answer)}`);
      },
    },
  ];
}

function isRejection(status: string): boolean {
  return /^reject/i.test(status);
}

function pipelineChecks(): CheckTestCase[] {
  const needs = 'has process';
  return [
    hasMethod('process'),
    {
      kind: 'CHECK',
      name: 'one result per item',
      required: true,
      needs,
      timeoutMs: BUILT_IN_TIMEOUTS_MS.call,
      description: 'process(batch) returns an array with one result per item',
      async check(ctx) {
        const batch = ctx.samples.batch;
        const answer = await ctx.call('process', batch);
        if (!Array.isArray(answer)) throw new TestFailure(`process returned ${describeValue(answer)}, not an array`);
        if (answer.length !== batch.length) throw new TestFailure(`process returned ${answer.length} results for ${batch.length} items`);
      },
    },
    {
      kind: 'CHECK',
      name: 'empty batch',
      required: true,
      needs,
      timeoutMs: BUILT_IN_TIMEOUTS_MS.call,
      description: 'process([]) returns an empty array',
      async check(ctx) {
        const answer = await ctx.call('process', []);
        if (!Array.isArray(answer)) throw new TestFailure(`process([]) returned ${describeValue(answer)}, not an array`);
        if (answer.length !== 0) throw new TestFailure(`process([]) returned ${answer.length} results`);
      },
    },
  ];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A short rendering of a module's answer for an error message. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'undefined';
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}
