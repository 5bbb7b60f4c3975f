/**
 * The test runs' vocabulary and what a run publishes as it goes (`testProgress` on the bus). A
 * leaf file (no imports), so the bus never reaches the engine or the service.
 */
export const TEST_STATUSES = ['PASSED', 'FAILED', 'TIMED_OUT', 'SKIPPED'] as const;
export type TestStatus = (typeof TEST_STATUSES)[number];

/** INTERRUPTED: left unfinished by a crash (set by the service at start-up, never by the engine). */
export const RUN_STATUSES = ['RUNNING', 'PASSED', 'FAILED', 'CANCELLED', 'INTERRUPTED'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const TEST_SOURCES = ['BUILT_IN', 'MODULE'] as const;
export type TestSource = (typeof TEST_SOURCES)[number];

export interface PlannedTest {
  name: string;
  required: boolean;
  source: TestSource;
  timeoutMs: number;
}

export interface TestCaseResult {
  name: string;
  required: boolean;
  source: TestSource;
  status: TestStatus;
  durationMs: number;
  /** Why it failed, timed out or was skipped; null when it passed. */
  error: string | null;
}

export interface TestRunSummary {
  total: number;
  passed: number;
  failed: number;
  timedOut: number;
  skipped: number;
  durationMs: number;
}

export type TestRunEvent =
  | { type: 'RUN_STARTED'; at: number; total: number; tests: PlannedTest[] }
  | { type: 'TEST_STARTED'; at: number; index: number; name: string }
  | { type: 'TEST_FINISHED'; at: number; index: number; result: TestCaseResult }
  | { type: 'RUN_FINISHED'; at: number; status: RunStatus; summary: TestRunSummary };


export type TestProgressEvent = TestRunEvent & { runId: string };
