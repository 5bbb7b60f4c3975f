/**
 * Module test runs: one run tests ONE freshly staged instance of a module version (never the
 * one serving traffic) with the built-in suite of a module type (suites.ts) plus the tests the
 * module ships, and reports progress as events. No I/O here: the service persists and
 * publishes the events, and owns the run ids.
 *
 * Order: 'creates' (staging), the type's checks, the module's own tests (as declared, source
 * MODULE), 'disposes cleanly'. Staging comes first because the module's tests are only known
 * once it is loaded: RUN_STARTED (with the full list) is emitted right after it, then the
 * 'creates' TEST_STARTED/TEST_FINISHED pair; their `at` times are still the real ones.
 *
 * Events, synchronously and in this order: RUN_STARTED, then for every planned test exactly
 * one TEST_FINISHED in index order, preceded by TEST_STARTED when the test actually ran (a
 * SKIPPED test that never started has no TEST_STARTED), then RUN_FINISHED. A listener that
 * throws does not stop the run.
 *
 * Per test: PASSED; FAILED (a check failed, the module threw, the instance died); TIMED_OUT
 * (no result within the test's timeout by the run's clock, a runtime CALL_TIMEOUT or load/init
 * timeout, or a result that only arrived at or after the deadline: whichever timer fires, the
 * outcome is the same); SKIPPED (`error` says why: not staged, its prerequisite did not pass,
 * not applicable, cancelled). A timed-out test is abandoned and the run goes on.
 *
 * Run: PASSED when no required test FAILED or TIMED_OUT (SKIPPED never fails a run); FAILED
 * otherwise; CANCELLED when `signal` aborted before the last test ended: the running test ends
 * SKIPPED at once and so do the rest. INTERRUPTED is never produced here: the service marks
 * runs a crash left unfinished. The staged instance is always stopped before the promise
 * resolves and RUN_FINISHED is emitted: disposed when its dispose test did not run (bounded
 * by that test's timeout), terminated when dispose hung. A late instance from a staging that
 * timed out or was cancelled is disposed when it arrives.
 *
 * Runs share no mutable state; any number may go on at once.
 */
import type { Clock, TimerHandle } from '../clock.js';
import type { ModuleType } from '../modules/contract.js';
import { isModuleCallError, isModuleLoadError } from '../modules/runtime/errors.js';
import type { LoadedModuleVersion, ModuleExitInfo } from '../modules/runtime/version.js';
import {
  builtInSuite,
  CheckTimedOut,
  DEFAULT_LATENCY_BUDGET_MS,
  DEFAULT_TEST_SAMPLES,
  TestFailure,
  TestSkipped,
  type SuiteContext,
  type TestCase,
  type TestSamples,
} from './suites.js';

// The run's vocabulary lives in a leaf file so the bus can name it; re-exported for the engine's users.
export {
  RUN_STATUSES,
  TEST_SOURCES,
  TEST_STATUSES,
  type PlannedTest,
  type RunStatus,
  type TestCaseResult,
  type TestRunEvent,
  type TestRunSummary,
  type TestSource,
  type TestStatus,
} from './events.js';
import type { PlannedTest, RunStatus, TestCaseResult, TestRunEvent, TestRunSummary, TestSource, TestStatus } from './events.js';

export interface TestBudgets {
  /** ML: the most one `predict` call may take (default 500 ms). */
  latencyMs?: number;
}

export interface TestRunOptions {
  moduleType: ModuleType;
  /**
   * Loads a fresh instance of the version under test, isolated like any loaded version.
   * `signal` aborts when the run gives up on staging (timeout or cancel): pass it to
   * `loadModuleVersion`.
   */
  stage: (signal: AbortSignal) => Promise<LoadedModuleVersion>;
  /** Every timeout and duration of the run. */
  clock: Clock;
  /** Called synchronously, in order (see the file comment). */
  onEvent: (event: TestRunEvent) => void;
  /** Aborting cancels the run. */
  signal?: AbortSignal;
  budgets?: TestBudgets;
  /** Inputs of the type checks (see `DEFAULT_TEST_SAMPLES`). */
  samples?: Partial<TestSamples>;
}

export interface TestRunOutcome {
  /** PASSED, FAILED or CANCELLED. */
  status: RunStatus;
  /** One per planned test, in index order. */
  results: TestCaseResult[];
  summary: TestRunSummary;
  startedAt: number;
  finishedAt: number;
}

export function summarizeResults(results: readonly Pick<TestCaseResult, 'status'>[], durationMs: number): TestRunSummary {
  const count = (status: TestStatus) => results.filter((r) => r.status === status).length;
  return {
    total: results.length,
    passed: count('PASSED'),
    failed: count('FAILED'),
    timedOut: count('TIMED_OUT'),
    skipped: count('SKIPPED'),
    durationMs,
  };
}

/** PASSED unless a required test FAILED or TIMED_OUT. */
export function runStatusOf(results: readonly Pick<TestCaseResult, 'required' | 'status'>[]): 'PASSED' | 'FAILED' {
  return results.some((r) => r.required && (r.status === 'FAILED' || r.status === 'TIMED_OUT')) ? 'FAILED' : 'PASSED';
}

type PlannedCase = TestCase | { kind: 'MODULE'; name: string; required: boolean; timeoutMs: number };

type Settled<T> = { kind: 'done'; value: T } | { kind: 'error'; error: unknown } | { kind: 'timeout' } | { kind: 'cancelled' };

const CANCELLED = 'cancelled';

/**
 * Runs `work` against a timer of `timeoutMs` on `clock` and `signal`. The timer is set before
 * `work` starts, so at a shared deadline it fires before any timer the work sets itself.
 * `work` is never interrupted: an abandoned promise is only observed, so it cannot surface as
 * an unhandled rejection.
 */
function settle<T>(clock: Clock, work: () => Promise<T>, timeoutMs: number, signal: AbortSignal | null): Promise<Settled<T>> {
  return new Promise((resolve) => {
    let settled = false;
    let timer: TimerHandle | null = null;
    const onAbort = () => finish({ kind: 'cancelled' });
    const finish = (outcome: Settled<T>) => {
      if (settled) return;
      settled = true;
      timer?.cancel();
      signal?.removeEventListener('abort', onAbort);
      resolve(outcome);
    };
    if (signal?.aborted) {
      finish({ kind: 'cancelled' });
      return;
    }
    timer = clock.setTimer(timeoutMs, () => finish({ kind: 'timeout' }));
    signal?.addEventListener('abort', onAbort, { once: true });
    let running: Promise<T>;
    try {
      running = work();
    } catch (error) {
      running = Promise.reject(error);
    }
    running.then(
      (value) => finish({ kind: 'done', value }),
      (error: unknown) => finish({ kind: 'error', error }),
    );
  });
}

interface Verdict {
  status: TestStatus;
  error: string | null;
}

function verdictOf(outcome: Settled<unknown>, durationMs: number, timeoutMs: number): Verdict {
  const deadlineMessage = `did not finish within ${timeoutMs} ms`;
  switch (outcome.kind) {
    case 'timeout':
      return { status: 'TIMED_OUT', error: deadlineMessage };
    case 'cancelled':
      return { status: 'SKIPPED', error: CANCELLED };
    case 'done':
      return durationMs >= timeoutMs ? { status: 'TIMED_OUT', error: deadlineMessage } : { status: 'PASSED', error: null };
    case 'error': {
      const { error } = outcome;
      if (error instanceof TestSkipped) return { status: 'SKIPPED', error: error.message };
      const timedOut =
        error instanceof CheckTimedOut ||
        (isModuleCallError(error) && error.code === 'CALL_TIMEOUT') ||
        (isModuleLoadError(error) && (error.code === 'MODULE_LOAD_TIMEOUT' || error.code === 'MODULE_INIT_TIMEOUT'));
      // At the deadline the message must not depend on which timer won.
      if (timedOut) return { status: 'TIMED_OUT', error: durationMs >= timeoutMs ? deadlineMessage : messageOf(error) };
      return { status: 'FAILED', error: messageOf(error) };
    }
  }
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

async function runModuleTest(version: LoadedModuleVersion, name: string, timeoutMs: number): Promise<void> {
  const result = await version.runTest(name, timeoutMs);
  if (result.status === 'PASSED') return;
  if (result.status === 'TIMED_OUT') throw new CheckTimedOut(result.error ?? `timed out after ${result.durationMs} ms`);
  throw new TestFailure(result.error ?? 'the test failed');
}

async function disposeInstance(version: LoadedModuleVersion): Promise<void> {
  const before = version.exit;
  await version.dispose();
  if (before) throw new TestFailure(`the instance had already stopped (${before.reason}): ${before.message}`);
  // Read again after the await: dispose is what sets it.
  const exit = exitOf(version);
  if (exit && exit.reason !== 'DISPOSED') throw new TestFailure(`the instance ended ${exit.reason}: ${exit.message}`);
}

function exitOf(version: LoadedModuleVersion): ModuleExitInfo | null {
  return version.exit;
}

const ignore = (): void => {};

/**
 * Runs the built-in suite of `moduleType` and the module's own tests against a staged
 * instance. Resolves (never rejects, except for invalid options) once the instance is stopped
 * and RUN_FINISHED was emitted.
 */
export async function runTestRun(options: TestRunOptions): Promise<TestRunOutcome> {
  const { clock, moduleType } = options;
  const signal = options.signal ?? null;
  const samples: TestSamples = { ...DEFAULT_TEST_SAMPLES, ...options.samples };
  const latencyBudgetMs = options.budgets?.latencyMs ?? DEFAULT_LATENCY_BUDGET_MS;
  const suite = builtInSuite(moduleType, { latencyMs: latencyBudgetMs });
  const emit = (event: TestRunEvent) => {
    try {
      options.onEvent(event);
    } catch {
      // The listener is the service's persistence and publishing; a failure there must not
      // leave a staged instance running or the run half done.
    }
  };

  const startedAt = clock.now();
  let cancelled = false;
  let version: LoadedModuleVersion | null = null;
  let disposeAttempted = false;
  const results: TestCaseResult[] = [];

  const createCase = suite.find((c) => c.kind === 'CREATE');
  const disposeCase = suite.find((c) => c.kind === 'DISPOSE');
  if (!createCase || !disposeCase) throw new Error(`the ${moduleType} suite lacks its create or dispose test`);

  // Staging: the 'creates' test, run before RUN_STARTED (see the file comment).
  let createVerdict: Verdict;
  let createRan = false;
  const createStartedAt = clock.now();
  if (signal?.aborted) {
    cancelled = true;
    createVerdict = { status: 'SKIPPED', error: CANCELLED };
  } else {
    createRan = true;
    const stageController = new AbortController();
    const staging: { promise: Promise<LoadedModuleVersion> | null } = { promise: null };
    const outcome = await settle(
      clock,
      () => (staging.promise = Promise.resolve().then(() => options.stage(stageController.signal))),
      createCase.timeoutMs,
      signal,
    );
    createVerdict = verdictOf(outcome, clock.now() - createStartedAt, createCase.timeoutMs);
    if (outcome.kind === 'done' && createVerdict.status === 'PASSED') {
      version = outcome.value;
    } else {
      if (outcome.kind === 'cancelled') cancelled = true;
      stageController.abort();
      // Whatever arrives after the run gave up on it is released.
      staging.promise?.then((late) => late.dispose(), ignore).catch(ignore);
    }
  }

  const plan: PlannedCase[] = [
    createCase,
    ...suite.filter((c) => c.kind === 'CHECK'),
    ...(version?.tests ?? []).map((t) => ({ kind: 'MODULE' as const, name: t.name, required: t.required, timeoutMs: t.timeoutMs })),
    disposeCase,
  ];
  const sourceOf = (c: PlannedCase): TestSource => (c.kind === 'MODULE' ? 'MODULE' : 'BUILT_IN');
  emit({
    type: 'RUN_STARTED',
    at: startedAt,
    total: plan.length,
    tests: plan.map((c) => ({ name: c.name, required: c.required, source: sourceOf(c), timeoutMs: c.timeoutMs })),
  });

  const finishTest = (index: number, c: PlannedCase, verdict: Verdict, durationMs: number) => {
    const result: TestCaseResult = { name: c.name, required: c.required, source: sourceOf(c), status: verdict.status, durationMs, error: verdict.error };
    results.push(result);
    emit({ type: 'TEST_FINISHED', at: clock.now(), index, result });
  };

  if (createRan) emit({ type: 'TEST_STARTED', at: createStartedAt, index: 0, name: createCase.name });
  finishTest(0, createCase, createVerdict, createRan ? clock.now() - createStartedAt : 0);

  try {
    for (let index = 1; index < plan.length; index++) {
      const c = plan[index]!;
      if (!cancelled && signal?.aborted) cancelled = true;
      let skipReason: string | null = null;
      if (cancelled) skipReason = CANCELLED;
      else if (!version) skipReason = 'the module was not staged';
      else if (c.kind === 'CHECK' && c.needs !== undefined && results.find((r) => r.name === c.needs)?.status !== 'PASSED') {
        skipReason = `"${c.needs}" did not pass`;
      }
      if (skipReason !== null || !version) {
        finishTest(index, c, { status: 'SKIPPED', error: skipReason }, 0);
        continue;
      }

      const staged: LoadedModuleVersion = version;
      const testStartedAt = clock.now();
      const deadline = testStartedAt + c.timeoutMs;
      emit({ type: 'TEST_STARTED', at: testStartedAt, index, name: c.name });
      const remainingMs = () => Math.max(1, deadline - clock.now());
      const ctx: SuiteContext = {
        version: staged,
        latencyBudgetMs,
        samples,
        now: () => clock.now(),
        remainingMs,
        call: (method, arg) => staged.call(method, arg === undefined ? undefined : structuredClone(arg), { timeoutMs: remainingMs() }),
      };
      let work: () => Promise<void>;
      switch (c.kind) {
        case 'CHECK':
          work = () => c.check(ctx);
          break;
        case 'MODULE':
          work = () => runModuleTest(staged, c.name, c.timeoutMs);
          break;
        case 'DISPOSE':
          disposeAttempted = true;
          work = () => disposeInstance(staged);
          break;
        case 'CREATE':
          throw new Error('the create test runs only first');
      }
      const outcome = await settle(clock, work, c.timeoutMs, signal);
      if (outcome.kind === 'cancelled') cancelled = true;
      const durationMs = clock.now() - testStartedAt;
      finishTest(index, c, verdictOf(outcome, durationMs, c.timeoutMs), durationMs);
    }
  } finally {
    if (version) await stopInstance(clock, version, disposeAttempted, disposeCase.timeoutMs);
  }

  const finishedAt = clock.now();
  const status: RunStatus = cancelled ? 'CANCELLED' : runStatusOf(results);
  const summary = summarizeResults(results, finishedAt - startedAt);
  emit({ type: 'RUN_FINISHED', at: finishedAt, status, summary });
  return { status, results, summary, startedAt, finishedAt };
}

/** Makes sure the staged instance is gone: a graceful dispose if none was tried, else (or if that hangs) terminate. */
async function stopInstance(clock: Clock, version: LoadedModuleVersion, disposeAttempted: boolean, timeoutMs: number): Promise<void> {
  if (version.exit !== null) return;
  if (!disposeAttempted) {
    const outcome = await settle(clock, () => version.dispose(), timeoutMs, null);
    if (outcome.kind === 'done' && version.exit !== null) return;
  }
  await version.terminate().catch(ignore);
}
