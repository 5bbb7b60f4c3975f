/**
 * Breaker configuration: defaults, field-level validation (so the GraphQL layer can return
 * typed `UserError`s with a `field`) and merging a partial change over a current config.
 */

export interface BreakerConfig {
  /** Consecutive failures (errors, timeouts, slow calls) that open a CLOSED breaker. */
  failureThreshold: number;
  /** Seconds an OPEN breaker waits before HALF_OPEN (a scheduler timer moves it, no traffic needed). */
  resetTimeoutSeconds: number;
  /** Trial successes in HALF_OPEN that close the breaker. */
  successThreshold: number;
  /**
   * Trial calls allowed in flight at once in HALF_OPEN; others are rejected. Default 1: a
   * recovering dependency gets one probe at a time (opossum's behaviour); with
   * `successThreshold` 2 the trials then run one after the other.
   */
  halfOpenMaxCalls: number;
  /**
   * A HALF_OPEN breaker that still has a trial in flight this many seconds after its first
   * trial began re-opens (HALF_OPEN_DEADLINE), so a hung trial holding the only permit cannot
   * leave it stuck. Counted from the first trial, not from entering HALF_OPEN: a HALF_OPEN
   * breaker without traffic has nothing hung; with nothing in flight at the deadline it is
   * idle and the deadline restarts at its next trial. null = no deadline.
   */
  halfOpenDeadlineSeconds: number | null;
  /** A call still running after this long counts as a failure (and a timeout); null = none. */
  callTimeoutMs: number | null;
  /** Failure-rate mode over the last N calls (count-based window); null = mode off. */
  slidingWindowSize: number | null;
  /**
   * Calls the window (or, without a window, the lifetime counters) must hold before a failure
   * rate is computed or can open the breaker. Capped at `slidingWindowSize`, as resilience4j does.
   */
  minimumCalls: number;
  /** Percent (0, 100] of failed calls in the window that opens the breaker. */
  failureRateThreshold: number;
  /** A successful call slower than this counts as a failure (and a slow call); null = off. */
  slowCallDurationMs: number | null;
}

export const DEFAULT_BREAKER_CONFIG: Readonly<BreakerConfig> = Object.freeze({
  failureThreshold: 5,
  resetTimeoutSeconds: 60,
  successThreshold: 2,
  halfOpenMaxCalls: 1,
  halfOpenDeadlineSeconds: 60,
  callTimeoutMs: null,
  slidingWindowSize: null,
  minimumCalls: 10,
  failureRateThreshold: 50,
  slowCallDurationMs: null,
});

export interface BreakerConfigIssue {
  /** A `BreakerConfig` field, `name` for the breaker's name, or the unknown key that was given. */
  field: string;
  message: string;
}

/** Thrown by the engine when given an invalid config; `issues` are the same as `validateBreakerConfig`'s. */
export class BreakerConfigError extends Error {
  readonly code = 'INVALID_BREAKER_CONFIG' as const;
  constructor(readonly issues: readonly BreakerConfigIssue[]) {
    super(issues.map((i) => `${i.field}: ${i.message}`).join('; '));
    this.name = 'BreakerConfigError';
  }
}

const THIRTY_DAYS_S = 30 * 24 * 3600;
const MAX_TIMER_MS = 2 ** 31 - 1;

interface FieldRule {
  nullable: boolean;
  integer: boolean;
  /** Exclusive lower bound when `minExclusive`, else inclusive. */
  min: number;
  minExclusive: boolean;
  max: number;
  unit: string;
}

const RULES: Readonly<Record<keyof BreakerConfig, FieldRule>> = {
  failureThreshold: { nullable: false, integer: true, min: 1, minExclusive: false, max: 1_000_000, unit: 'calls' },
  resetTimeoutSeconds: { nullable: false, integer: false, min: 0, minExclusive: true, max: THIRTY_DAYS_S, unit: 'seconds' },
  successThreshold: { nullable: false, integer: true, min: 1, minExclusive: false, max: 10_000, unit: 'calls' },
  halfOpenMaxCalls: { nullable: false, integer: true, min: 1, minExclusive: false, max: 10_000, unit: 'calls' },
  halfOpenDeadlineSeconds: { nullable: true, integer: false, min: 0, minExclusive: true, max: THIRTY_DAYS_S, unit: 'seconds' },
  callTimeoutMs: { nullable: true, integer: true, min: 1, minExclusive: false, max: MAX_TIMER_MS, unit: 'ms' },
  // The window is a byte per call; 100k keeps one breaker under 100 KB.
  slidingWindowSize: { nullable: true, integer: true, min: 1, minExclusive: false, max: 100_000, unit: 'calls' },
  minimumCalls: { nullable: false, integer: true, min: 1, minExclusive: false, max: 100_000, unit: 'calls' },
  failureRateThreshold: { nullable: false, integer: false, min: 0, minExclusive: true, max: 100, unit: 'percent' },
  slowCallDurationMs: { nullable: true, integer: true, min: 1, minExclusive: false, max: MAX_TIMER_MS, unit: 'ms' },
};

export const BREAKER_CONFIG_FIELDS = Object.keys(RULES) as readonly (keyof BreakerConfig)[];

function isConfigField(key: string): key is keyof BreakerConfig {
  return Object.prototype.hasOwnProperty.call(RULES, key);
}

function checkField(field: keyof BreakerConfig, value: unknown): string | null {
  const rule = RULES[field];
  if (value === null) return rule.nullable ? null : 'must not be null';
  if (typeof value !== 'number' || !Number.isFinite(value)) return 'must be a finite number';
  if (rule.integer && !Number.isInteger(value)) return 'must be an integer';
  if (rule.minExclusive ? value <= rule.min : value < rule.min) {
    return `must be ${rule.minExclusive ? 'greater than' : 'at least'} ${rule.min} ${rule.unit}`;
  }
  if (value > rule.max) return `must be at most ${rule.max} ${rule.unit}`;
  return null;
}

/**
 * Field-level problems with a partial config; `undefined` fields are treated as absent
 * (GraphQL's omitted arguments). An empty list means valid. Accepts untyped input (JSON from
 * a file or a persisted row) and reports unknown fields rather than ignoring them.
 */
export function validateBreakerConfig(partial: Readonly<Partial<BreakerConfig>>): BreakerConfigIssue[] {
  const issues: BreakerConfigIssue[] = [];
  if (typeof partial !== 'object' || partial === null) {
    return [{ field: 'config', message: 'must be an object' }];
  }
  for (const [key, value] of Object.entries(partial)) {
    if (value === undefined) continue;
    if (!isConfigField(key)) {
      issues.push({ field: key, message: 'is not a breaker config field' });
      continue;
    }
    const problem = checkField(key, value);
    if (problem !== null) issues.push({ field: key, message: problem });
  }
  return issues;
}

/** `partial` merged over `base`, validated; throws `BreakerConfigError` and changes nothing when invalid. */
export function resolveBreakerConfig(
  partial: Readonly<Partial<BreakerConfig>> | undefined,
  base: Readonly<BreakerConfig> = DEFAULT_BREAKER_CONFIG,
): Readonly<BreakerConfig> {
  if (partial === undefined) return base;
  const issues = validateBreakerConfig(partial);
  if (issues.length > 0) throw new BreakerConfigError(issues);
  const merged: BreakerConfig = { ...base };
  for (const field of BREAKER_CONFIG_FIELDS) {
    const value = partial[field];
    if (value !== undefined) (merged as Record<keyof BreakerConfig, number | null>)[field] = value;
  }
  return Object.freeze(merged);
}

export const MAX_BREAKER_NAME_LENGTH = 200;

/** Null when `name` can name a breaker. */
export function checkBreakerName(name: unknown): string | null {
  if (typeof name !== 'string' || name.trim().length === 0) return 'must be a non-empty string';
  if (name.length > MAX_BREAKER_NAME_LENGTH) return `must be at most ${MAX_BREAKER_NAME_LENGTH} characters`;
  return null;
}
