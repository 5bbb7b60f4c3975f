/**
 * The rollout's vocabulary: statuses, event types, gates, statistics and the stored rollout.
 * A leaf file (it imports no service and no other domain), so the event bus, the GraphQL layer
 * and the modules domain can all name these types without importing the rollout service.
 * Everything is plain data: UPPER_CASE strings, epoch-millisecond numbers.
 */

/**
 * TESTING: the new version is loaded beside the stable one and its test run (`testWith`) is
 * running; no traffic reaches it yet. RUNNING: the split flag routes `percentage` of calls to
 * the canary. HOLDING: the last judgement found fewer than `minCalls` canary calls, so the step
 * is judged again one interval later. PAUSED: no judgement and no step until resumed (the split
 * and the breaker watch stay). PROMOTED and ABORTED are final.
 */
export const ROLLOUT_STATUSES = ['TESTING', 'RUNNING', 'HOLDING', 'PAUSED', 'PROMOTED', 'ABORTED'] as const;
export type RolloutStatus = (typeof ROLLOUT_STATUSES)[number];

/** A rollout that still owns its module (a canary is, or is about to be, loaded). */
export const ACTIVE_ROLLOUT_STATUSES = ['TESTING', 'RUNNING', 'HOLDING', 'PAUSED'] as const satisfies readonly RolloutStatus[];
export type ActiveRolloutStatus = (typeof ACTIVE_ROLLOUT_STATUSES)[number];

export function isActiveRolloutStatus(status: RolloutStatus): status is ActiveRolloutStatus {
  return (ACTIVE_ROLLOUT_STATUSES as readonly RolloutStatus[]).includes(status);
}

export const ROLLOUT_EVENT_TYPES = ['STARTED', 'STEP', 'HOLDING', 'PAUSED', 'RESUMED', 'ABORTED', 'PROMOTED'] as const;
export type RolloutEventType = (typeof ROLLOUT_EVENT_TYPES)[number];

/** Which check ended a rollout. */
export const ROLLOUT_ABORT_CAUSES = [
  /** canary failure rate > maxFailureRate */
  'FAILURE_RATE',
  /** canary p99 > maxP99LatencyMs */
  'P99_LATENCY',
  /** canary p99 / stable p99 > maxLatencyRatio */
  'LATENCY_RATIO',
  /** the canary's breaker opened */
  'BREAKER_OPEN',
  /** the test run (`testWith`) failed */
  'TESTS_FAILED',
  /** the new version did not load, or promotion failed */
  'CANARY_FAILED',
  /** abortRollout */
  'MANUAL',
] as const;
export type RolloutAbortCause = (typeof ROLLOUT_ABORT_CAUSES)[number];

/** Judged on the canary's calls of the current step. */
export interface RolloutGates {
  /** Abort when the canary's failure rate (0..1) is above this. */
  maxFailureRate: number;
  /** Abort when the canary's p99 latency is above this; null: not judged. */
  maxP99LatencyMs: number | null;
  /** Abort when canary p99 / stable p99 is above this (stable with calls only); null: not judged. */
  maxLatencyRatio: number | null;
  /** Fewer canary calls than this in a step: HOLDING instead of a verdict. */
  minCalls: number;
}

/** One version's figures over the current step. Latencies are histogram estimates (within ~5%). */
export interface VersionStats {
  calls: number;
  failures: number;
  /** failures / calls, 0..1; null without calls. */
  failureRate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface RolloutStatsSnapshot {
  stable: VersionStats;
  canary: VersionStats;
}

/** What ended a rollout early, with the figures that were judged. */
export interface RolloutAbort {
  cause: RolloutAbortCause;
  /** The limit that was exceeded (gate causes only). */
  limit: number | null;
  /** The measured value that exceeded it (gate causes only). */
  value: number | null;
  stats: RolloutStatsSnapshot | null;
}

/** The stored rollout. `steps` are percentages; `percentage` is the canary's current share. */
export interface Rollout {
  id: string;
  /** Creation order, for newest-first pagination. */
  seq: number;
  module: string;
  fromVersion: string;
  toVersion: string;
  /** The new version's file, relative to the modules root (needed to load it again after a restart). */
  toModulePath: string;
  flag: string;
  status: RolloutStatus;
  steps: number[];
  stepIndex: number;
  percentage: number;
  /** null: manual steps (advanceRollout, or the flag moved by hand). */
  stepIntervalSeconds: number | null;
  gates: RolloutGates;
  autoPromote: boolean;
  testWith: string | null;
  testRunId: string | null;
  /** When the current step (its statistics window) began. */
  stepStartedAt: number | null;
  /** When the gates are next judged (automatic steps only; null while PAUSED or manual). */
  nextStepAt: number | null;
  pausedAt: number | null;
  /** Time that was left in the interval when paused; restored by resume. */
  remainingMs: number | null;
  /** The status a resume returns to (RUNNING or HOLDING). */
  resumeStatus: 'RUNNING' | 'HOLDING' | null;
  /** The last step passed its gates but autoPromote is off: waiting for promoteRollout. */
  awaitingPromotion: boolean;
  actor: string;
  startedAt: number;
  updatedAt: number;
  finishedAt: number | null;
  abortReason: string | null;
  abort: RolloutAbort | null;
}

/** One entry of a rollout's history, as stored. */
export interface RolloutHistoryEvent {
  type: RolloutEventType;
  at: number;
  /** The canary's share after the event. */
  percentage: number;
  detail: string | null;
}

/** Published on the `rolloutProgress` topic after the change is committed. */
export interface RolloutProgressEvent extends RolloutHistoryEvent {
  module: string;
  /** The rollout after the event. */
  rollout: Rollout;
}
