/**
 * The breaker's vocabulary: states, transition reasons, counters, events and the persisted
 * snapshot. These names are the GraphQL enums and the columns the service persists, so they
 * are plain data (UPPER_CASE strings, epoch-millisecond numbers) with no behaviour attached.
 */
import type { BreakerConfig } from './config.js';

/**
 * `FORCED_OPEN` is an operator's open: no timer ever leaves it, only `reset()` (or `disable()`).
 * `DISABLED` lets every call through and keeps counting (resilience4j's METRICS_ONLY), so an
 * operator can watch a dependency without the breaker acting on it.
 */
export const BREAKER_STATES = ['CLOSED', 'OPEN', 'HALF_OPEN', 'FORCED_OPEN', 'DISABLED'] as const;
export type BreakerState = (typeof BREAKER_STATES)[number];

/**
 * Why a transition happened, one reason per edge of the transition table in engine.ts.
 * Slow calls and call timeouts count as failures, so they open a breaker under
 * FAILURE_THRESHOLD / FAILURE_RATE_THRESHOLD / TRIAL_FAILED; `metrics.lastError` says which.
 */
export const TRANSITION_REASONS = [
  /** CLOSED -> OPEN: `failureThreshold` consecutive failures. */
  'FAILURE_THRESHOLD',
  /** CLOSED -> OPEN: failure rate over the sliding window reached `failureRateThreshold`. */
  'FAILURE_RATE_THRESHOLD',
  /** OPEN -> HALF_OPEN: the OPEN wait (`resetTimeoutSeconds`, backed off) elapsed (timer, or the first call after it). */
  'RESET_TIMEOUT_ELAPSED',
  /** HALF_OPEN -> CLOSED: `successThreshold` trial calls succeeded. */
  'TRIAL_SUCCEEDED',
  /** HALF_OPEN -> OPEN: a trial call failed (error, timeout or slow call); the next wait backs off. */
  'TRIAL_FAILED',
  /** HALF_OPEN -> OPEN: no verdict within `halfOpenDeadlineSeconds` of the first trial call; the next wait backs off. */
  'HALF_OPEN_DEADLINE',
  /** any -> FORCED_OPEN: `breaker.open()`. */
  'MANUAL_OPEN',
  /** any -> CLOSED: `breaker.reset()`. */
  'MANUAL_RESET',
  /** any but DISABLED -> CLOSED: `registry.resetAll()`. */
  'RESET_ALL',
  /** any -> DISABLED: `breaker.disable()`. */
  'DISABLED',
  /** DISABLED -> CLOSED: `breaker.enable()`. */
  'ENABLED',
] as const;
export type TransitionReason = (typeof TRANSITION_REASONS)[number];

/** The reasons an operator's reset may carry. */
export type ManualResetReason = 'MANUAL_RESET' | 'RESET_ALL';

/**
 * Lifetime counters: never cleared by transitions or resets, so dashboards can diff them.
 * `calls` counts permitted calls (rejections are separate); `calls = successes + failures +
 * in flight`. `failures` includes timeouts and slow calls, which have their own counters too.
 * The consecutive counts are the breaker's working streaks: reset by the opposite outcome, and
 * cleared on entering CLOSED or DISABLED.
 */
export interface BreakerCounters {
  calls: number;
  successes: number;
  failures: number;
  rejections: number;
  timeouts: number;
  slowCalls: number;
  consecutiveFailures: number;
  consecutiveSuccesses: number;
  /** Epoch ms of the last failure, null when none. */
  lastFailureAt: number | null;
  /** Message of the last failure (truncated), null when none. */
  lastError: string | null;
}

export interface BreakerMetrics extends BreakerCounters {
  /**
   * Percent of failed calls over the sliding window when one is configured (the last N calls,
   * or the calls of the last N seconds), else over all settled calls; null while fewer than
   * `minimumCalls` calls back it.
   */
  failureRate: number | null;
}

/** Emitted synchronously, in order per breaker; a "transition" to the same state is never emitted. */
export interface BreakerTransition {
  name: string;
  from: BreakerState;
  to: BreakerState;
  reason: TransitionReason;
  /** Epoch ms. */
  at: number;
  /** When `to` is OPEN: the epoch ms it turns HALF_OPEN (backoff included); null otherwise. */
  openUntil: number | null;
  metrics: BreakerMetrics;
  /**
   * The node whose breaker moved (each node of a cluster has its own instance of every breaker).
   * The engine leaves it out; the service stamps its node's id on every transition it stores or
   * publishes, and transitions of other nodes arrive with theirs.
   */
  node?: string;
}

/** What a service persists and hands back to `registry.restore` after a restart. */
export interface BreakerSnapshot {
  name: string;
  state: BreakerState;
  stateChangedAt: number;
  openUntil: number | null;
  /**
   * The backoff step: consecutive re-openings from HALF_OPEN in the current OPEN/HALF_OPEN
   * episode (see `resetTimeoutMultiplier`). Optional because snapshots persisted before it
   * existed lack it; restoring one of those starts the backoff over (k = 0).
   */
  openAttempts?: number;
  config: BreakerConfig;
  counters: BreakerCounters;
}

/**
 * Lighter than a transition, for a service that persists counters (throttling is its job):
 * `metrics` fires on every outcome and rejection, so a listener should only mark dirty.
 */
export type BreakerChangeKind = 'created' | 'configured' | 'metrics' | 'state' | 'restored' | 'removed';

export function isBreakerState(value: unknown): value is BreakerState {
  return typeof value === 'string' && (BREAKER_STATES as readonly string[]).includes(value);
}
