/**
 * What the modules service counts for Prometheus, as plain numbers: invocations per module,
 * version and outcome, their durations per version (fixed-bucket histogram), and supervisor
 * restarts per module. The invocation path adds; a scrape reads (src/metrics/).
 */
import { DurationHistograms } from '../metrics/histogram.js';
import { isModuleCallError } from './runtime/index.js';

/**
 * success; failed (the module threw); timeout (callTimeoutMs); unavailable (its worker died);
 * rejected (the module's breaker refused the call); invalid (the caller's mistake: unknown or
 * reserved method, arguments that cannot be cloned).
 */
export const INVOCATION_OUTCOMES = ['success', 'failed', 'timeout', 'unavailable', 'rejected', 'invalid'] as const;
export type InvocationOutcome = (typeof INVOCATION_OUTCOMES)[number];
export const OUTCOME_SUCCESS = 0;
export const OUTCOME_REJECTED = 4;

export interface VersionInvocations {
  /** Per INVOCATION_OUTCOMES. */
  readonly outcomes: Float64Array;
  /** One series: the durations of calls that ran (not rejected ones). */
  readonly durations: DurationHistograms;
}

/** The INVOCATION_OUTCOMES index of a failed call's error. */
export function outcomeOfError(error: unknown): number {
  if (!isModuleCallError(error)) return 1;
  switch (error.code) {
    case 'UNKNOWN_METHOD':
    case 'RESERVED_METHOD':
    case 'NOT_CLONEABLE':
      return 5;
    case 'CALL_TIMEOUT':
      return 2;
    case 'MODULE_TERMINATED':
    case 'MODULE_CRASHED':
      return 3;
    default:
      return 1;
  }
}

export class ModuleCounters {
  /** module -> version -> counts. */
  readonly invocations = new Map<string, Map<string, VersionInvocations>>();
  /** Supervisor restarts attempted per module (after a crash). */
  readonly restarts = new Map<string, number>();

  /** `durationMs` < 0: the call never ran (rejected), no duration is observed. */
  invoked(module: string, version: string, outcome: number, durationMs: number): void {
    let versions = this.invocations.get(module);
    if (versions === undefined) {
      versions = new Map();
      this.invocations.set(module, versions);
    }
    let counts = versions.get(version);
    if (counts === undefined) {
      counts = { outcomes: new Float64Array(INVOCATION_OUTCOMES.length), durations: new DurationHistograms(1) };
      versions.set(version, counts);
    }
    counts.outcomes[outcome]!++;
    if (durationMs >= 0) counts.durations.observe(0, durationMs);
  }

  restarted(module: string): void {
    this.restarts.set(module, (this.restarts.get(module) ?? 0) + 1);
  }
}
