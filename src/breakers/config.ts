/**
 * Breaker configuration: defaults, field-level validation (so the GraphQL layer can return
 * typed `UserError`s with a `field`), the two rules between fields (a backoff cap not below
 * the base wait; a TIME window of at most an hour) and merging a partial change over a
 * current config. Fields added later (the window type, the backoff) have defaults that keep
 * the earlier behaviour, so a config persisted before them resolves unchanged.
 */

/** How a failure-rate window bounds what it holds: the last N calls, or the last N seconds. */
export const SLIDING_WINDOW_TYPES = ['COUNT', 'TIME'] as const;
export type SlidingWindowType = (typeof SLIDING_WINDOW_TYPES)[number];

export interface BreakerConfig {
  /** Consecutive failures (errors, timeouts, slow calls) that open a CLOSED breaker. */
  failureThreshold: number;
  /**
   * Seconds an OPEN breaker waits before HALF_OPEN (a scheduler timer moves it, no traffic
   * needed). The first wait of an episode; re-openings from HALF_OPEN may wait longer, see
   * `resetTimeoutMultiplier`.
   */
  resetTimeoutSeconds: number;
  /**
   * Exponential backoff of the OPEN wait (resilience4j's `IntervalFunction.ofExponentialBackoff`):
   * the k-th consecutive re-opening from HALF_OPEN (TRIAL_FAILED or HALF_OPEN_DEADLINE) waits
   * `min(resetTimeoutSeconds * resetTimeoutMultiplier^k, maxResetTimeoutSeconds)`, so a
   * dependency that keeps failing its trials is probed less and less often. k goes back to 0
   * when the breaker leaves the OPEN/HALF_OPEN cycle (CLOSED, whether by trials, reset,
   * resetAll or enable; or an operator's FORCED_OPEN/DISABLED). Default 1: no backoff.
   */
  resetTimeoutMultiplier: number;
  /**
   * Cap on the backed-off OPEN wait, at least `resetTimeoutSeconds`; null = no cap of one's
   * own (the wait still never exceeds 30 days, the longest `resetTimeoutSeconds` allowed).
   */
  maxResetTimeoutSeconds: number | null;
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
  /**
   * Failure-rate mode: the window's size, in calls (`slidingWindowType` COUNT) or in seconds
   * (TIME); null = mode off.
   */
  slidingWindowSize: number | null;
  /**
   * COUNT (default): the window holds the outcomes of the last `slidingWindowSize` calls.
   * TIME: it holds the outcomes of the last `slidingWindowSize` seconds of the clock, in
   * per-second buckets (resilience4j's TIME_BASED window, opossum's rolling buckets): the
   * current second and the N-1 before it. Changing the type starts an empty window.
   */
  slidingWindowType: SlidingWindowType;
  /**
   * Calls the window (or, without a window, the lifetime counters) must hold before a failure
   * rate is computed or can open the breaker. With a COUNT window it is capped at
   * `slidingWindowSize`, as resilience4j does; a TIME window has no call count to cap it at.
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
  resetTimeoutMultiplier: 1,
  maxResetTimeoutSeconds: null,
  successThreshold: 2,
  halfOpenMaxCalls: 1,
  halfOpenDeadlineSeconds: 60,
  callTimeoutMs: null,
  slidingWindowSize: null,
  slidingWindowType: 'COUNT',
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
/** The longest OPEN wait, backoff included (the bound of `resetTimeoutSeconds` itself). */
export const MAX_RESET_TIMEOUT_SECONDS = THIRTY_DAYS_S;
/** A TIME window keeps a bucket per second; an hour keeps one breaker's buckets under 50 KB. */
export const MAX_TIME_WINDOW_SECONDS = 3600;

interface NumberRule {
  nullable: boolean;
  integer: boolean;
  /** Exclusive lower bound when `minExclusive`, else inclusive. */
  min: number;
  minExclusive: boolean;
  max: number;
  /** '' for a plain factor. */
  unit: string;
}

function numberRule(rule: NumberRule): (value: unknown) => string | null {
  return (value) => {
    if (value === null) return rule.nullable ? null : 'must not be null';
    if (typeof value !== 'number' || !Number.isFinite(value)) return 'must be a finite number';
    if (rule.integer && !Number.isInteger(value)) return 'must be an integer';
    const unit = rule.unit === '' ? '' : ` ${rule.unit}`;
    if (rule.minExclusive ? value <= rule.min : value < rule.min) {
      return `must be ${rule.minExclusive ? 'greater than' : 'at least'} ${rule.min}${unit}`;
    }
    if (value > rule.max) return `must be at most ${rule.max}${unit}`;
    return null;
  };
}

function oneOf(values: readonly string[]): (value: unknown) => string | null {
  return (value) => (typeof value === 'string' && values.includes(value) ? null : `must be one of ${values.join(', ')}`);
}

/** One check per field, each on its own value; rules between fields are in `crossFieldIssues`. */
const CHECKS: Readonly<Record<keyof BreakerConfig, (value: unknown) => string | null>> = {
  failureThreshold: numberRule({ nullable: false, integer: true, min: 1, minExclusive: false, max: 1_000_000, unit: 'calls' }),
  resetTimeoutSeconds: numberRule({ nullable: false, integer: false, min: 0, minExclusive: true, max: THIRTY_DAYS_S, unit: 'seconds' }),
  // Above 100 the first backoff step already reaches any sensible cap.
  resetTimeoutMultiplier: numberRule({ nullable: false, integer: false, min: 1, minExclusive: false, max: 100, unit: '' }),
  maxResetTimeoutSeconds: numberRule({ nullable: true, integer: false, min: 0, minExclusive: true, max: THIRTY_DAYS_S, unit: 'seconds' }),
  successThreshold: numberRule({ nullable: false, integer: true, min: 1, minExclusive: false, max: 10_000, unit: 'calls' }),
  halfOpenMaxCalls: numberRule({ nullable: false, integer: true, min: 1, minExclusive: false, max: 10_000, unit: 'calls' }),
  halfOpenDeadlineSeconds: numberRule({ nullable: true, integer: false, min: 0, minExclusive: true, max: THIRTY_DAYS_S, unit: 'seconds' }),
  callTimeoutMs: numberRule({ nullable: true, integer: true, min: 1, minExclusive: false, max: MAX_TIMER_MS, unit: 'ms' }),
  // A COUNT window is a byte per call; 100k keeps one breaker under 100 KB. TIME: see crossFieldIssues.
  slidingWindowSize: numberRule({ nullable: true, integer: true, min: 1, minExclusive: false, max: 100_000, unit: 'calls' }),
  slidingWindowType: oneOf(SLIDING_WINDOW_TYPES),
  minimumCalls: numberRule({ nullable: false, integer: true, min: 1, minExclusive: false, max: 100_000, unit: 'calls' }),
  failureRateThreshold: numberRule({ nullable: false, integer: false, min: 0, minExclusive: true, max: 100, unit: 'percent' }),
  slowCallDurationMs: numberRule({ nullable: true, integer: true, min: 1, minExclusive: false, max: MAX_TIMER_MS, unit: 'ms' }),
};

export const BREAKER_CONFIG_FIELDS = Object.keys(CHECKS) as readonly (keyof BreakerConfig)[];

function isConfigField(key: string): key is keyof BreakerConfig {
  return Object.prototype.hasOwnProperty.call(CHECKS, key);
}

/**
 * Rules between two fields, over `partial` merged on `base` (or over `partial` alone without a
 * base, so only pairs it gives both of are checked). The issue names the field the change
 * gave, so an operator sees the setting they just tried: a lower `maxResetTimeoutSeconds`
 * blames that field, a higher `resetTimeoutSeconds` under an existing cap blames that one.
 */
function crossFieldIssues(
  partial: Readonly<Record<string, unknown>>,
  base: Readonly<BreakerConfig> | undefined,
  invalid: ReadonlySet<string>,
): BreakerConfigIssue[] {
  const issues: BreakerConfigIssue[] = [];
  const valueOf = (field: keyof BreakerConfig): unknown => (partial[field] !== undefined ? partial[field] : base?.[field]);
  const blame = (dependent: keyof BreakerConfig, other: keyof BreakerConfig): keyof BreakerConfig =>
    partial[other] !== undefined && partial[dependent] === undefined ? other : dependent;
  const usable = (...fields: (keyof BreakerConfig)[]): boolean => fields.every((f) => !invalid.has(f));

  const cap = valueOf('maxResetTimeoutSeconds');
  const reset = valueOf('resetTimeoutSeconds');
  if (usable('maxResetTimeoutSeconds', 'resetTimeoutSeconds') && typeof cap === 'number' && typeof reset === 'number' && cap < reset) {
    const field = blame('maxResetTimeoutSeconds', 'resetTimeoutSeconds');
    issues.push({
      field,
      message: field === 'maxResetTimeoutSeconds'
        ? `must be at least resetTimeoutSeconds (${reset} seconds)`
        : `must be at most maxResetTimeoutSeconds (${cap} seconds)`,
    });
  }

  const type = valueOf('slidingWindowType');
  const size = valueOf('slidingWindowSize');
  if (usable('slidingWindowType', 'slidingWindowSize') && type === 'TIME' && typeof size === 'number' && size > MAX_TIME_WINDOW_SECONDS) {
    const field = blame('slidingWindowSize', 'slidingWindowType');
    issues.push({
      field,
      message: field === 'slidingWindowSize'
        ? `must be at most ${MAX_TIME_WINDOW_SECONDS} seconds when slidingWindowType is TIME`
        : `TIME needs slidingWindowSize at most ${MAX_TIME_WINDOW_SECONDS} seconds (it is ${size})`,
    });
  }
  return issues;
}

/**
 * Field-level problems with a partial config; `undefined` fields are treated as absent
 * (GraphQL's omitted arguments). An empty list means valid. Accepts untyped input (JSON from
 * a file or a persisted row) and reports unknown fields rather than ignoring them. Rules
 * between fields (`maxResetTimeoutSeconds` >= `resetTimeoutSeconds`; a TIME window at most
 * 3600 s) are checked against `base` when given (the breaker's current config, or the
 * defaults for a new one), else only between fields the partial gives together.
 */
export function validateBreakerConfig(
  partial: Readonly<Partial<BreakerConfig>>,
  base?: Readonly<BreakerConfig>,
): BreakerConfigIssue[] {
  const issues: BreakerConfigIssue[] = [];
  if (typeof partial !== 'object' || partial === null) {
    return [{ field: 'config', message: 'must be an object' }];
  }
  const invalid = new Set<string>();
  for (const [key, value] of Object.entries(partial)) {
    if (value === undefined) continue;
    if (!isConfigField(key)) {
      issues.push({ field: key, message: 'is not a breaker config field' });
      continue;
    }
    const problem = CHECKS[key](value);
    if (problem !== null) {
      issues.push({ field: key, message: problem });
      invalid.add(key);
    }
  }
  issues.push(...crossFieldIssues(partial as Readonly<Record<string, unknown>>, base, invalid));
  return issues;
}

function assignField<K extends keyof BreakerConfig>(target: BreakerConfig, field: K, value: BreakerConfig[K]): void {
  target[field] = value;
}

/** `partial` merged over `base`, validated; throws `BreakerConfigError` and changes nothing when invalid. */
export function resolveBreakerConfig(
  partial: Readonly<Partial<BreakerConfig>> | undefined,
  base: Readonly<BreakerConfig> = DEFAULT_BREAKER_CONFIG,
): Readonly<BreakerConfig> {
  if (partial === undefined) return base;
  const issues = validateBreakerConfig(partial, base);
  if (issues.length > 0) throw new BreakerConfigError(issues);
  const merged: BreakerConfig = { ...base };
  for (const field of BREAKER_CONFIG_FIELDS) {
    const value = partial[field];
    if (value !== undefined) assignField(merged, field, value);
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
