/**
 * The rollout state machine (pure: no I/O; time is the `now` it is given). Every function takes
 * the stored rollout and returns a decision: the rollout after it, the history events to append
 * and the effects the service must carry out (move the split flag, restart the step's
 * statistics, promote or drop the canary). Scheduling is therefore a function of the stored
 * rollout, the statistics and the clock, so tests drive time and a cluster can run the
 * scheduler on one node.
 *
 * Transition table (ROLLOUT_TRANSITIONS; any other edge is refused with INVALID_ROLLOUT_STATE):
 *
 *   from      command                                                   to
 *   (new)     start                                                     TESTING  (flag -> 0; the new version loads, tests run)
 *   TESTING   canaryReady (loaded, health check and tests passed)       RUNNING  (flag -> steps[0])
 *   TESTING   canaryFailed (load or test run failed)                    ABORTED
 *   RUNNING,
 *   HOLDING,
 *   PAUSED    canaryFailed (reload after a restart or promotion failed)  ABORTED
 *   RUNNING   judge: gates pass, steps left                             RUNNING  (next step)
 *   HOLDING   judge: gates pass, steps left                             RUNNING  (next step)
 *   RUNNING   judge: fewer than minCalls canary calls                   HOLDING  (judged again one interval later)
 *   HOLDING   judge: still fewer than minCalls                          HOLDING
 *   RUNNING,
 *   HOLDING   judge: last step passes, autoPromote                      PROMOTED
 *   RUNNING,
 *   HOLDING   judge: last step passes, no autoPromote                   RUNNING  (awaitingPromotion; gates keep watching)
 *   RUNNING,
 *   HOLDING   judge: a gate fails, or the canary's breaker has opened   ABORTED  (flag -> 0, canary dropped)
 *   RUNNING,
 *   HOLDING,
 *   PAUSED    breakerOpened (at any moment)                             ABORTED
 *   RUNNING,
 *   HOLDING   advance (operator)                                        RUNNING  (next step, at once)
 *   RUNNING,
 *   HOLDING   pause                                                     PAUSED   (time left in the interval kept)
 *   PAUSED    resume                                                    RUNNING or HOLDING (as before; time left restored)
 *   RUNNING,
 *   HOLDING,
 *   PAUSED    promote (operator)                                        PROMOTED
 *   TESTING,
 *   RUNNING,
 *   HOLDING,
 *   PAUSED    abort (operator)                                          ABORTED
 *
 * Changes within a status are not edges: the promotion wait's next check, and, with manual
 * steps, the split following the flag (`flagMoved`: setFlagPercentage or enableFeatureFlag on
 * the rollout's flag is a step, and the step's statistics start over).
 *
 * The service calls `judge` when `nextStepAt` is reached; called before, it only aborts. With manual steps
 * (`stepIntervalSeconds: null`) there is no `nextStepAt` and `judge` only aborts (a failing gate
 * over at least minCalls canary calls, or an opened breaker), never advances. The gates, in
 * order: the canary's breaker is not CLOSED (or DISABLED) -> abort; fewer than `minCalls`
 * canary calls -> hold; failure rate > maxFailureRate, p99 > maxP99LatencyMs, canary p99 /
 * stable p99 > maxLatencyRatio (only when the stable version had calls) -> abort.
 *
 * While PAUSED the split stays where it is (the canary keeps its share) and the breaker still
 * aborts; only judging and stepping stop. A restart keeps `nextStepAt`, so the step resumes
 * with the time that was left (a deadline that passed while Helios was down is judged at once).
 */
import type { BreakerState } from '../breakers/states.js';
import { UserError } from '../errors.js';
import {
  type Rollout,
  type RolloutAbort,
  type RolloutAbortCause,
  type RolloutEventType,
  type RolloutGates,
  type RolloutHistoryEvent,
  type RolloutStatsSnapshot,
  type RolloutStatus,
} from './events.js';
import type { RolloutPlan } from './validation.js';

export const ROLLOUT_TRANSITIONS: Readonly<Record<RolloutStatus, readonly RolloutStatus[]>> = {
  TESTING: ['RUNNING', 'ABORTED'],
  RUNNING: ['RUNNING', 'HOLDING', 'PAUSED', 'PROMOTED', 'ABORTED'],
  HOLDING: ['RUNNING', 'HOLDING', 'PAUSED', 'PROMOTED', 'ABORTED'],
  PAUSED: ['RUNNING', 'HOLDING', 'PROMOTED', 'ABORTED'],
  PROMOTED: [],
  ABORTED: [],
};

export const ROLLOUT_COMMANDS = [
  'canaryReady', 'canaryFailed', 'judge', 'breakerOpened', 'advance', 'pause', 'resume', 'promote', 'abort', 'flagMoved',
] as const;
export type RolloutCommand = (typeof ROLLOUT_COMMANDS)[number];

/** Which statuses accept each command (the rest are refused before any transition is tried). */
export const ROLLOUT_COMMAND_SOURCES: Readonly<Record<RolloutCommand, readonly RolloutStatus[]>> = {
  canaryReady: ['TESTING'],
  canaryFailed: ['TESTING', 'RUNNING', 'HOLDING', 'PAUSED'],
  judge: ['RUNNING', 'HOLDING'],
  breakerOpened: ['RUNNING', 'HOLDING', 'PAUSED'],
  advance: ['RUNNING', 'HOLDING'],
  pause: ['RUNNING', 'HOLDING'],
  resume: ['PAUSED'],
  promote: ['RUNNING', 'HOLDING', 'PAUSED'],
  abort: ['TESTING', 'RUNNING', 'HOLDING', 'PAUSED'],
  flagMoved: ['RUNNING', 'HOLDING', 'PAUSED'],
};

export function isLegalTransition(from: RolloutStatus, to: RolloutStatus): boolean {
  return ROLLOUT_TRANSITIONS[from].includes(to);
}

/** A refused edge or command: a business error (the operator asked for something the rollout's status does not allow). */
export class RolloutStateError extends UserError {
  constructor(message: string) {
    super('INVALID_ROLLOUT_STATE', message, 'module');
  }
}

/** Throws unless `from -> to` is in the table. */
export function assertTransition(from: RolloutStatus, to: RolloutStatus): void {
  if (!isLegalTransition(from, to)) throw new RolloutStateError(`A rollout cannot go from ${from} to ${to}`);
}

const COMMAND_HINTS: Partial<Record<RolloutCommand, string>> = {
  advance: 'only a RUNNING or HOLDING rollout can be advanced (resume it first)',
  pause: 'only a RUNNING or HOLDING rollout can be paused',
  resume: 'only a PAUSED rollout can be resumed',
  promote: 'only a RUNNING, HOLDING or PAUSED rollout can be promoted',
  abort: 'it is already finished',
};

function requireCommand(rollout: Rollout, command: RolloutCommand): void {
  if (!ROLLOUT_COMMAND_SOURCES[command].includes(rollout.status)) {
    const hint = COMMAND_HINTS[command];
    throw new RolloutStateError(`The rollout of "${rollout.module}" is ${rollout.status}: cannot ${command}${hint ? ` (${hint})` : ''}`);
  }
}

export type RolloutEffect =
  /** Move the split flag to this share (0 stops routing to the canary). */
  | { kind: 'SET_PERCENTAGE'; percentage: number }
  /** Start the step's statistics over (both versions). */
  | { kind: 'RESET_STATS' }
  /** Make the canary the module's active version; carried out before the decision is stored (a failure aborts instead). */
  | { kind: 'PROMOTE_CANARY' }
  /** Stop routing to the canary, drain and unload it. */
  | { kind: 'DROP_CANARY' };

export interface RolloutDecision {
  rollout: Rollout;
  events: RolloutHistoryEvent[];
  effects: RolloutEffect[];
}

export interface NewRollout {
  id: string;
  seq: number;
  module: string;
  fromVersion: string;
  toVersion: string;
  toModulePath: string;
  flag: string;
  plan: RolloutPlan;
  testWith: string | null;
  actor: string;
}

function event(type: RolloutEventType, at: number, percentage: number, detail: string | null): RolloutHistoryEvent {
  return { type, at, percentage, detail };
}

function moved(rollout: Rollout, to: RolloutStatus, now: number, changes: Partial<Rollout>): Rollout {
  assertTransition(rollout.status, to);
  return { ...rollout, ...changes, status: to, updatedAt: now };
}

/** A change within the current status (a deadline, the share in manual mode): not an edge of the table. */
function touched(rollout: Rollout, now: number, changes: Partial<Rollout>): Rollout {
  return { ...rollout, ...changes, status: rollout.status, updatedAt: now };
}

function isFinal(status: RolloutStatus): boolean {
  return ROLLOUT_TRANSITIONS[status].length === 0;
}

export function isTerminal(rollout: Rollout): boolean {
  return isFinal(rollout.status);
}

const intervalMs = (rollout: Rollout): number | null =>
  rollout.stepIntervalSeconds === null ? null : rollout.stepIntervalSeconds * 1000;

/** A new rollout: TESTING while the new version loads (and its tests run); the split goes to 0 first. */
export function createRollout(input: NewRollout, now: number): RolloutDecision {
  const rollout: Rollout = {
    id: input.id,
    seq: input.seq,
    module: input.module,
    fromVersion: input.fromVersion,
    toVersion: input.toVersion,
    toModulePath: input.toModulePath,
    flag: input.flag,
    status: 'TESTING',
    steps: [...input.plan.steps],
    stepIndex: 0,
    percentage: 0,
    stepIntervalSeconds: input.plan.stepIntervalSeconds,
    gates: { ...input.plan.gates },
    autoPromote: input.plan.autoPromote,
    testWith: input.testWith,
    testRunId: null,
    stepStartedAt: null,
    nextStepAt: null,
    pausedAt: null,
    remainingMs: null,
    resumeStatus: null,
    awaitingPromotion: false,
    actor: input.actor,
    startedAt: now,
    updatedAt: now,
    finishedAt: null,
    abortReason: null,
    abort: null,
  };
  const detail = `${input.fromVersion} -> ${input.toVersion} by ${input.actor}, steps ${input.plan.steps.join('/')}%, ${
    input.plan.stepIntervalSeconds === null ? 'manual steps' : `every ${input.plan.stepIntervalSeconds}s`
  }${input.testWith ? `, testing with ${input.testWith}` : ''}`;
  return { rollout, events: [event('STARTED', now, 0, detail)], effects: [{ kind: 'SET_PERCENTAGE', percentage: 0 }] };
}

function enterStep(rollout: Rollout, index: number, now: number, detail: string): RolloutDecision {
  const percentage = rollout.steps[index]!;
  const interval = intervalMs(rollout);
  const next = moved(rollout, 'RUNNING', now, {
    stepIndex: index,
    percentage,
    stepStartedAt: now,
    nextStepAt: interval === null ? null : now + interval,
    awaitingPromotion: false,
  });
  return {
    rollout: next,
    events: [event('STEP', now, percentage, `step ${index + 1}/${rollout.steps.length}: ${percentage}% to ${rollout.toVersion}; ${detail}`)],
    effects: [{ kind: 'SET_PERCENTAGE', percentage }, { kind: 'RESET_STATS' }],
  };
}

/** The new version is loaded and healthy (and its tests passed): the first step begins. */
export function canaryReady(rollout: Rollout, now: number, testRunId: string | null = null): RolloutDecision {
  requireCommand(rollout, 'canaryReady');
  return enterStep({ ...rollout, testRunId }, 0, now, testRunId ? `test run ${testRunId} passed` : 'new version loaded');
}

/**
 * The new version did not load or its tests failed (TESTING: nothing was ever routed to it), or
 * it could not be loaded again after a restart, or its promotion failed: the stable version
 * keeps serving.
 */
export function canaryFailed(rollout: Rollout, now: number, cause: 'TESTS_FAILED' | 'CANARY_FAILED', reason: string, testRunId: string | null = null): RolloutDecision {
  requireCommand(rollout, 'canaryFailed');
  const next = testRunId === null ? rollout : { ...rollout, testRunId };
  // A staging that failed left nothing loaded: only a routed canary has anything to undo.
  return aborted(next, now, { cause, limit: null, value: null, stats: null }, reason, rollout.status === 'TESTING' ? 'NOTHING' : 'ROUTED');
}

export interface GateVerdict {
  verdict: 'PASS' | 'HOLD' | 'FAIL';
  /** For HOLD and FAIL: why, in words. */
  reason: string | null;
  abort: RolloutAbort | null;
}

/** A breaker that is not CLOSED (or DISABLED, which only watches) has opened since the step began. */
export function breakerHasOpened(state: BreakerState | null): boolean {
  return state === 'OPEN' || state === 'HALF_OPEN' || state === 'FORCED_OPEN';
}

const fmt = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(3).replace(/0+$/, ''));

/** The gates applied to one step's figures (pure; the breaker is judged by the caller). */
export function judgeGates(gates: RolloutGates, stats: RolloutStatsSnapshot): GateVerdict {
  const { canary, stable } = stats;
  if (canary.calls < gates.minCalls) {
    return { verdict: 'HOLD', reason: `${canary.calls} of ${gates.minCalls} canary calls needed for a verdict`, abort: null };
  }
  const fail = (cause: RolloutAbortCause, limit: number, value: number, reason: string): GateVerdict => ({
    verdict: 'FAIL', reason, abort: { cause, limit, value, stats },
  });
  const rate = canary.failureRate ?? 0;
  if (rate > gates.maxFailureRate) {
    return fail('FAILURE_RATE', gates.maxFailureRate, rate,
      `canary failure rate ${fmt(rate)} (${canary.failures} of ${canary.calls} calls) > maxFailureRate ${fmt(gates.maxFailureRate)}`);
  }
  if (gates.maxP99LatencyMs !== null && canary.p99Ms !== null && canary.p99Ms > gates.maxP99LatencyMs) {
    return fail('P99_LATENCY', gates.maxP99LatencyMs, canary.p99Ms,
      `canary p99 ${fmt(canary.p99Ms)} ms > maxP99LatencyMs ${gates.maxP99LatencyMs}`);
  }
  if (gates.maxLatencyRatio !== null && canary.p99Ms !== null && stable.calls > 0 && stable.p99Ms !== null && stable.p99Ms > 0) {
    const ratio = canary.p99Ms / stable.p99Ms;
    if (ratio > gates.maxLatencyRatio) {
      return fail('LATENCY_RATIO', gates.maxLatencyRatio, ratio,
        `canary p99 ${fmt(canary.p99Ms)} ms is ${fmt(ratio)}x the stable p99 ${fmt(stable.p99Ms)} ms > maxLatencyRatio ${fmt(gates.maxLatencyRatio)}`);
    }
  }
  return { verdict: 'PASS', reason: null, abort: null };
}

function summary(stats: RolloutStatsSnapshot): string {
  const c = stats.canary;
  return `canary ${c.calls} calls, ${c.failures} failed${c.p99Ms === null ? '' : `, p99 ${fmt(c.p99Ms)} ms`}`;
}

/** When the gates are next due (null: not automatically). */
export function nextJudgementAt(rollout: Rollout): number | null {
  if (rollout.status !== 'RUNNING' && rollout.status !== 'HOLDING') return null;
  return rollout.nextStepAt;
}

export interface JudgeInput {
  stats: RolloutStatsSnapshot;
  canaryBreaker: BreakerState | null;
}

/**
 * Judges the current step. Returns null when nothing changes: the step is not due yet (or the
 * steps are manual) and nothing failed.
 */
export function judge(rollout: Rollout, input: JudgeInput, now: number): RolloutDecision | null {
  requireCommand(rollout, 'judge');
  const { stats } = input;
  if (breakerHasOpened(input.canaryBreaker)) {
    return aborted(rollout, now, { cause: 'BREAKER_OPEN', limit: null, value: null, stats },
      `the canary's breaker is ${input.canaryBreaker}; ${summary(stats)}`, 'ROUTED');
  }
  const verdict = judgeGates(rollout.gates, stats);
  if (verdict.verdict === 'FAIL') return aborted(rollout, now, verdict.abort!, verdict.reason!, 'ROUTED');
  const interval = intervalMs(rollout);
  // Manual steps (and the wait for promoteRollout) only ever abort on their own.
  if (interval === null) return null;
  if (rollout.nextStepAt === null || now < rollout.nextStepAt) return null;
  if (rollout.awaitingPromotion) {
    return { rollout: touched(rollout, now, { nextStepAt: now + interval }), events: [], effects: [] };
  }
  if (verdict.verdict === 'HOLD') {
    const next = moved(rollout, 'HOLDING', now, { nextStepAt: now + interval });
    return { rollout: next, events: [event('HOLDING', now, rollout.percentage, `${verdict.reason}; judged again in ${rollout.stepIntervalSeconds}s`)], effects: [] };
  }
  const last = rollout.stepIndex >= rollout.steps.length - 1;
  if (!last) return enterStep(rollout, rollout.stepIndex + 1, now, `step ${rollout.stepIndex + 1} passed (${summary(stats)})`);
  if (rollout.autoPromote) return promoted(rollout, now, `last step passed (${summary(stats)}); promoted automatically`);
  const next = moved(rollout, 'RUNNING', now, { nextStepAt: now + interval, awaitingPromotion: true });
  return {
    rollout: next,
    events: [event('STEP', now, rollout.percentage, `last step passed (${summary(stats)}); waiting for promoteRollout (autoPromote is off)`)],
    effects: [],
  };
}

/** The canary's breaker opened: abort at once, whatever the step. */
export function breakerOpened(rollout: Rollout, now: number, state: BreakerState, stats: RolloutStatsSnapshot | null): RolloutDecision {
  requireCommand(rollout, 'breakerOpened');
  return aborted(rollout, now, { cause: 'BREAKER_OPEN', limit: null, value: null, stats },
    `the canary's breaker opened (${state})${stats ? `; ${summary(stats)}` : ''}`, 'ROUTED');
}

/** The operator moves to the next step now, without judging. */
export function advance(rollout: Rollout, now: number, actor: string): RolloutDecision {
  requireCommand(rollout, 'advance');
  const index = nextStepIndex(rollout);
  if (index === null) {
    throw new RolloutStateError(`The rollout of "${rollout.module}" is at its last step (${rollout.percentage}%): promote it with promoteRollout`);
  }
  return enterStep(rollout, index, now, `advanced by ${actor}`);
}

/** The first step above the current share (the flag may have been moved by hand between steps). */
function nextStepIndex(rollout: Rollout): number | null {
  const index = rollout.steps.findIndex((step) => step > rollout.percentage);
  return index < 0 ? null : index;
}

export function pause(rollout: Rollout, now: number, actor: string): RolloutDecision {
  requireCommand(rollout, 'pause');
  const remainingMs = rollout.nextStepAt === null ? null : Math.max(0, rollout.nextStepAt - now);
  const resumeStatus = rollout.status as 'RUNNING' | 'HOLDING';
  const next = moved(rollout, 'PAUSED', now, { pausedAt: now, remainingMs, nextStepAt: null, resumeStatus });
  const left = remainingMs === null ? '' : `; ${Math.ceil(remainingMs / 1000)}s left in the step`;
  return { rollout: next, events: [event('PAUSED', now, rollout.percentage, `paused by ${actor}${left}`)], effects: [] };
}

export function resume(rollout: Rollout, now: number, actor: string): RolloutDecision {
  requireCommand(rollout, 'resume');
  const to = rollout.resumeStatus ?? 'RUNNING';
  const nextStepAt = rollout.remainingMs === null ? null : now + rollout.remainingMs;
  const next = moved(rollout, to, now, { pausedAt: null, remainingMs: null, resumeStatus: null, nextStepAt });
  const left = rollout.remainingMs === null ? '' : `; ${Math.ceil(rollout.remainingMs / 1000)}s left in the step`;
  return { rollout: next, events: [event('RESUMED', now, rollout.percentage, `resumed by ${actor}${left}`)], effects: [] };
}

function promoted(rollout: Rollout, now: number, detail: string): RolloutDecision {
  const next = moved(rollout, 'PROMOTED', now, {
    percentage: 100, nextStepAt: null, pausedAt: null, remainingMs: null, resumeStatus: null, awaitingPromotion: false, finishedAt: now,
  });
  return {
    rollout: next,
    events: [event('PROMOTED', now, 100, `${rollout.toVersion} is the active version, ${rollout.fromVersion} its previous version; ${detail}`)],
    effects: [{ kind: 'PROMOTE_CANARY' }],
  };
}

/** The operator promotes now: the canary becomes the active version. */
export function promote(rollout: Rollout, now: number, actor: string): RolloutDecision {
  requireCommand(rollout, 'promote');
  return promoted(rollout, now, `promoted by ${actor} at ${rollout.percentage}%`);
}

export function abort(rollout: Rollout, now: number, actor: string, reason: string | null): RolloutDecision {
  requireCommand(rollout, 'abort');
  const why = reason && reason.trim() !== '' ? reason.trim() : 'no reason given';
  return aborted(rollout, now, { cause: 'MANUAL', limit: null, value: null, stats: null }, `aborted by ${actor}: ${why}`, rollout.status === 'TESTING' ? 'STAGED' : 'ROUTED');
}

/** What an abort must undo: a canary taking traffic, one loaded (or loading) but not routed yet, or nothing. */
type AbortScope = 'ROUTED' | 'STAGED' | 'NOTHING';

function aborted(rollout: Rollout, now: number, abortInfo: RolloutAbort, reason: string, scope: AbortScope): RolloutDecision {
  const next = moved(rollout, 'ABORTED', now, {
    percentage: 0, nextStepAt: null, pausedAt: null, remainingMs: null, resumeStatus: null, awaitingPromotion: false,
    finishedAt: now, abortReason: reason, abort: abortInfo,
  });
  // The split goes to 0 first, so no further call is routed to the canary while it drains.
  const effects: RolloutEffect[] = scope === 'ROUTED' ? [{ kind: 'SET_PERCENTAGE', percentage: 0 }, { kind: 'DROP_CANARY' }]
    : scope === 'STAGED' ? [{ kind: 'DROP_CANARY' }] : [];
  return { rollout: next, events: [event('ABORTED', now, 0, reason)], effects };
}

/**
 * With manual steps the split follows the flag: `setFlagPercentage` (or enabling it ALL_ON)
 * is a step, and the step's statistics start over. Automatic rollouts own their flag and
 * ignore a hand-moved share (their next step sets it again): null.
 */
export function flagMoved(rollout: Rollout, now: number, percentage: number, actor: string | null): RolloutDecision | null {
  requireCommand(rollout, 'flagMoved');
  if (rollout.stepIntervalSeconds !== null || percentage === rollout.percentage) return null;
  let stepIndex = 0;
  rollout.steps.forEach((step, i) => {
    if (step <= percentage) stepIndex = i;
  });
  const next = touched(rollout, now, { percentage, stepIndex, stepStartedAt: now });
  return {
    rollout: next,
    events: [event('STEP', now, percentage, `flag "${rollout.flag}" set to ${percentage}%${actor ? ` by ${actor}` : ''}`)],
    effects: [{ kind: 'RESET_STATS' }],
  };
}

/**
 * After a restart: both versions are loaded again, the split is set back to the stored share
 * and the step's statistics start empty; `nextStepAt` is kept, so the step has the time that was
 * left. A TESTING rollout stages (and tests) its new version again.
 */
export function recoveryEffects(rollout: Rollout): RolloutEffect[] {
  if (rollout.status === 'TESTING') return [{ kind: 'SET_PERCENTAGE', percentage: 0 }];
  return [{ kind: 'SET_PERCENTAGE', percentage: rollout.percentage }, { kind: 'RESET_STATS' }];
}
