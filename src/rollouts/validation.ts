/**
 * A rollout's plan (steps, interval, gates) checked once at the edge and turned into domain
 * values. Every problem is reported at once (UserErrors), each with its field.
 */
import { UserError, UserErrors } from '../errors.js';
import type { RolloutGates } from './events.js';

/** The seeds' doubling: start small, double each step. */
export const DEFAULT_ROLLOUT_STEPS: readonly number[] = [1, 2, 5, 10, 25, 50, 100];
/** The seeds' "monitor for an hour". */
export const DEFAULT_STEP_INTERVAL_SECONDS = 3600;
export const DEFAULT_GATES: Readonly<RolloutGates> = { maxFailureRate: 0.05, maxP99LatencyMs: null, maxLatencyRatio: null, minCalls: 20 };

export const MAX_ROLLOUT_STEPS = 100;
/** 30 days: longer intervals are a typo, and setTimeout re-arming is then never needed twice. */
export const MAX_STEP_INTERVAL_SECONDS = 30 * 24 * 3600;
export const MAX_P99_LATENCY_MS = 3_600_000;
export const MAX_LATENCY_RATIO = 1000;
export const MAX_MIN_CALLS = 1_000_000;

export interface RolloutGatesInput {
  maxFailureRate?: number | null;
  maxP99LatencyMs?: number | null;
  maxLatencyRatio?: number | null;
  minCalls?: number | null;
}

export interface RolloutPlanInput {
  steps?: readonly number[] | null;
  /** Omitted: the default (3600); null: manual steps. */
  stepIntervalSeconds?: number | null;
  gates?: RolloutGatesInput | null;
  autoPromote?: boolean | null;
}

export interface RolloutPlan {
  steps: number[];
  stepIntervalSeconds: number | null;
  gates: RolloutGates;
  autoPromote: boolean;
}

const invalid = (message: string, field: string) => new UserError('INVALID_ROLLOUT_CONFIG', message, field);

export function validateSteps(steps: readonly number[], errors: UserError[]): number[] {
  if (steps.length === 0) {
    errors.push(invalid('steps must not be empty: give at least [100]', 'steps'));
    return [];
  }
  if (steps.length > MAX_ROLLOUT_STEPS) {
    errors.push(invalid(`steps may hold at most ${MAX_ROLLOUT_STEPS} percentages (got ${steps.length})`, 'steps'));
    return [];
  }
  const before = errors.length;
  steps.forEach((step, i) => {
    if (!Number.isFinite(step) || step <= 0 || step > 100) {
      errors.push(invalid(`steps[${i}] = ${step}: every step must be a percentage within (0, 100]`, 'steps'));
    } else if (i > 0 && !(step > steps[i - 1]!)) {
      errors.push(invalid(`steps[${i}] = ${step} is not above steps[${i - 1}] = ${steps[i - 1]}: steps must be strictly increasing`, 'steps'));
    }
  });
  if (steps[steps.length - 1] !== 100) {
    errors.push(invalid(`steps must end at 100 (the last is ${steps[steps.length - 1]}): the canary takes all traffic before it is promoted`, 'steps'));
  }
  // Flags bucket to hundredths of a percent; a finer step would route like its rounding.
  steps.forEach((step, i) => {
    if (Number.isFinite(step) && Math.round(step * 100) !== step * 100) {
      errors.push(invalid(`steps[${i}] = ${step}: at most two decimals (flags route in hundredths of a percent)`, 'steps'));
    }
  });
  return errors.length === before ? [...steps] : [];
}

export function validateGates(input: RolloutGatesInput | null | undefined, errors: UserError[]): RolloutGates {
  const gates: RolloutGates = {
    maxFailureRate: input?.maxFailureRate ?? DEFAULT_GATES.maxFailureRate,
    maxP99LatencyMs: input?.maxP99LatencyMs ?? null,
    maxLatencyRatio: input?.maxLatencyRatio ?? null,
    minCalls: input?.minCalls ?? DEFAULT_GATES.minCalls,
  };
  if (!Number.isFinite(gates.maxFailureRate) || gates.maxFailureRate < 0 || gates.maxFailureRate > 1) {
    errors.push(invalid(`gates.maxFailureRate = ${gates.maxFailureRate}: must be a rate within [0, 1] (0.05 is 5%)`, 'gates.maxFailureRate'));
  }
  if (gates.maxP99LatencyMs !== null && (!Number.isInteger(gates.maxP99LatencyMs) || gates.maxP99LatencyMs < 1 || gates.maxP99LatencyMs > MAX_P99_LATENCY_MS)) {
    errors.push(invalid(`gates.maxP99LatencyMs = ${gates.maxP99LatencyMs}: must be a whole number of milliseconds within [1, ${MAX_P99_LATENCY_MS}]`, 'gates.maxP99LatencyMs'));
  }
  if (gates.maxLatencyRatio !== null && (!Number.isFinite(gates.maxLatencyRatio) || gates.maxLatencyRatio < 1 || gates.maxLatencyRatio > MAX_LATENCY_RATIO)) {
    errors.push(invalid(`gates.maxLatencyRatio = ${gates.maxLatencyRatio}: must be within [1, ${MAX_LATENCY_RATIO}] (1.5 allows a canary p99 50% above the stable one)`, 'gates.maxLatencyRatio'));
  }
  if (!Number.isInteger(gates.minCalls) || gates.minCalls < 1 || gates.minCalls > MAX_MIN_CALLS) {
    errors.push(invalid(`gates.minCalls = ${gates.minCalls}: must be a whole number within [1, ${MAX_MIN_CALLS}]`, 'gates.minCalls'));
  }
  return gates;
}

/** Checks a plan; throws UserErrors listing every problem. Omitted values take the defaults. */
export function validateRolloutPlan(input: RolloutPlanInput): RolloutPlan {
  const errors: UserError[] = [];
  const steps = validateSteps(input.steps ?? DEFAULT_ROLLOUT_STEPS, errors);
  const interval = input.stepIntervalSeconds === undefined ? DEFAULT_STEP_INTERVAL_SECONDS : input.stepIntervalSeconds;
  if (interval !== null && (!Number.isInteger(interval) || interval < 1 || interval > MAX_STEP_INTERVAL_SECONDS)) {
    errors.push(invalid(`stepIntervalSeconds = ${interval}: must be a whole number of seconds within [1, ${MAX_STEP_INTERVAL_SECONDS}], or null for manual steps`, 'stepIntervalSeconds'));
  }
  const gates = validateGates(input.gates, errors);
  if (errors.length === 1) throw errors[0]!;
  if (errors.length > 1) throw new UserErrors(errors);
  return { steps, stepIntervalSeconds: interval, gates, autoPromote: input.autoPromote ?? true };
}
