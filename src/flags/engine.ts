/**
 * Feature-flag evaluation: pure, synchronous, no I/O, time passed in as `now` (epoch ms).
 *
 * Order of decisions for a known flag:
 *   enabled = false                 -> false, DISABLED (whatever the strategy)
 *   ALL_ON / ALL_OFF                -> true / false, STATIC
 *   WHITELIST                       -> true, TARGETING_MATCH when some entry's attribute value of
 *                                      the context is listed; else false, DEFAULT
 *   PERCENTAGE / GRADUAL            -> bucket = murmurhash3("<flag>:<sticky>") % 10000 over UTF-8,
 *                                      enabled iff bucket < round(percentage * 100), SPLIT;
 *                                      with no sticky value a random bucket, RANDOM
 * An unknown flag is false, FLAG_NOT_FOUND.
 *
 * Buckets depend only on the flag name and the sticky value, so raising a percentage only ever
 * adds contexts. A GRADUAL flag's percentage moves from start to target in whole-point steps
 * (the last step lands exactly on target); `nextGradualChangeAt` gives the instant of the next
 * step so a service can schedule one timer and publish each change.
 *
 * `compileFlag` does all per-definition work once (hash prefix state, threshold, whitelist
 * sets, constant results), so `evaluate` allocates at most its result object.
 */
import { murmurhash3, murmurhash3From, murmurStateOf, type MurmurState } from './murmurhash3.js';

export const ROLLOUT_STRATEGIES = ['ALL_ON', 'ALL_OFF', 'PERCENTAGE', 'WHITELIST', 'GRADUAL'] as const;
export type RolloutStrategy = (typeof ROLLOUT_STRATEGIES)[number];

export const EVALUATION_REASONS = [
  'DISABLED',
  'STATIC',
  'TARGETING_MATCH',
  'SPLIT',
  'RANDOM',
  'DEFAULT',
  'FLAG_NOT_FOUND',
] as const;
export type EvaluationReason = (typeof EVALUATION_REASONS)[number];

/**
 * An evaluation's outcome as one small number: `reason index * 2 + (enabled ? 1 : 0)`, the
 * reason's index in EVALUATION_REASONS. What `CompiledFlag.decide` answers, allocation-free, for
 * callers that need only on/off (canary routing, `isEnabled`) and the per-flag evaluation counts.
 */
export type OutcomeSlot = number;

export function outcomeSlot(reason: EvaluationReason, enabled: boolean): OutcomeSlot {
  return EVALUATION_REASONS.indexOf(reason) * 2 + (enabled ? 1 : 0);
}

export function slotEnabled(slot: OutcomeSlot): boolean {
  return (slot & 1) === 1;
}

const SPLIT_OFF = outcomeSlot('SPLIT', false);
const SPLIT_ON = outcomeSlot('SPLIT', true);
const RANDOM_OFF = outcomeSlot('RANDOM', false);
const RANDOM_ON = outcomeSlot('RANDOM', true);

/** Matches a context whose value of `attribute` is one of `values`. */
export interface WhitelistEntry {
  attribute: string;
  values: string[];
}

export interface GradualSchedule {
  startPercentage: number;
  targetPercentage: number;
  /** Epoch ms. */
  startAt: number;
  durationSeconds: number;
}

export interface FlagDefinition {
  name: string;
  description: string;
  enabled: boolean;
  strategy: RolloutStrategy;
  /** 0..100, up to 2 decimals. */
  percentage: number;
  /** Context attribute used as the sticky value; 'default' means sessionId, then userId. */
  stickiness: string;
  whitelist: WhitelistEntry[];
  gradual: GradualSchedule | null;
  /** Epoch ms. */
  createdAt: number;
  updatedAt: number;
}

export interface EvaluationContext {
  sessionId?: string | null;
  userId?: string | null;
  symbol?: string | null;
  system?: string | null;
  attributes?: Record<string, unknown> | null;
}

export interface FlagEvaluation {
  flag: string;
  enabled: boolean;
  reason: EvaluationReason;
  strategy: RolloutStrategy | null;
  /** The effective percentage for PERCENTAGE and GRADUAL when it decided the outcome, else null. */
  percentage: number | null;
  /** 0..9999 when a bucket decided the outcome, else null. */
  bucket: number | null;
}

export interface CompiledFlag {
  /** A frozen snapshot of the definition this flag was compiled from. */
  readonly definition: FlagDefinition;
  evaluate(ctx: EvaluationContext, now: number): FlagEvaluation;
  /** The same decision as `evaluate`, as an outcome slot, without building a result. */
  decide(ctx: EvaluationContext, now: number): OutcomeSlot;
  /** Whether the decision depends on the time (`now` is read only then). */
  readonly usesClock: boolean;
}

export const BUCKET_COUNT = 10000;
export const DEFAULT_STICKINESS = 'default';

export function isRolloutStrategy(value: string): value is RolloutStrategy {
  return (ROLLOUT_STRATEGIES as readonly string[]).includes(value);
}

export function bucketOf(flagName: string, stickyValue: string): number {
  return murmurhash3(`${flagName}:${stickyValue}`) % BUCKET_COUNT;
}

/** Buckets below this are enabled; `percentage` is clamped to 0..100. */
export function thresholdOf(percentage: number): number {
  return Math.round(clampPercentage(percentage) * 100);
}

// ---------------------------------------------------------------------------------------------
// Context attributes

const SESSION_ID = 0;
const USER_ID = 1;
const SYMBOL = 2;
const SYSTEM = 3;
const FREE = 4;
type AttributeKind = 0 | 1 | 2 | 3 | 4;

function kindOf(attribute: string): AttributeKind {
  switch (attribute) {
    case 'sessionId':
      return SESSION_ID;
    case 'userId':
      return USER_ID;
    case 'symbol':
      return SYMBOL;
    case 'system':
      return SYSTEM;
    default:
      return FREE;
  }
}

/**
 * Empty strings count as absent: a blank sticky value would put every such context in one
 * bucket. Numbers and booleans match their `String()` form; objects never match.
 */
function scalarString(value: unknown): string | null {
  switch (typeof value) {
    case 'string':
      return value.length > 0 ? value : null;
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(value);
    default:
      return null;
  }
}

/** The named field first, else `attributes[name]`, as a non-empty string or null. */
function readAttribute(ctx: EvaluationContext, kind: AttributeKind, name: string): string | null {
  let named: unknown;
  switch (kind) {
    case SESSION_ID:
      named = ctx.sessionId;
      break;
    case USER_ID:
      named = ctx.userId;
      break;
    case SYMBOL:
      named = ctx.symbol;
      break;
    case SYSTEM:
      named = ctx.system;
      break;
    default:
      named = undefined;
  }
  if (typeof named === 'string' && named.length > 0) return named;
  if (named != null) {
    const s = scalarString(named);
    if (s !== null) return s;
  }
  const attributes = ctx.attributes;
  return attributes == null ? null : scalarString(attributes[name]);
}

/** The context's value of `attribute` under the whitelist/stickiness lookup rule. */
export function contextValueOf(ctx: EvaluationContext, attribute: string): string | null {
  return readAttribute(ctx, kindOf(attribute), attribute);
}

export function stickyValueOf(def: Pick<FlagDefinition, 'stickiness'>, ctx: EvaluationContext): string | null {
  const stickiness = def.stickiness;
  if (stickiness === DEFAULT_STICKINESS || stickiness === '') {
    return readAttribute(ctx, SESSION_ID, 'sessionId') ?? readAttribute(ctx, USER_ID, 'userId');
  }
  return readAttribute(ctx, kindOf(stickiness), stickiness);
}

// ---------------------------------------------------------------------------------------------
// Percentages and gradual schedules

function clampPercentage(p: number): number {
  if (!(p > 0)) return 0; // also NaN
  return p >= 100 ? 100 : p;
}

function round2(p: number): number {
  return Math.round(p * 100) / 100;
}

/** A schedule in integer units: hundredths of a point and whole milliseconds. */
interface NormalizedSchedule {
  start: number;
  target: number;
  startAt: number;
  durationMs: number;
  /** |target - start| in hundredths of a point. */
  deltaH: number;
  sign: 1 | -1;
}

function normalize(g: GradualSchedule): NormalizedSchedule {
  const start = round2(clampPercentage(g.startPercentage));
  const target = round2(clampPercentage(g.targetPercentage));
  const d = Number.isFinite(g.durationSeconds) ? Math.round(g.durationSeconds * 1000) : 0;
  return {
    start,
    target,
    startAt: g.startAt,
    durationMs: d > 0 ? d : 0,
    deltaH: Math.round(Math.abs(target - start) * 100),
    sign: target >= start ? 1 : -1,
  };
}

/** Whole points moved after `elapsed` ms (0 <= elapsed < durationMs). */
function stepsAfter(n: NormalizedSchedule, elapsed: number): number {
  // Integer numerator and denominator, so an exact step boundary divides exactly.
  return Math.floor((n.deltaH * elapsed) / (n.durationMs * 100));
}

function percentageAt(n: NormalizedSchedule, now: number): number {
  const elapsed = now - n.startAt;
  if (!(elapsed >= 0)) return n.start;
  if (elapsed >= n.durationMs) return n.target;
  return round2(n.start + n.sign * stepsAfter(n, elapsed));
}

function nextChangeAt(n: NormalizedSchedule, now: number): number | null {
  if (n.deltaH === 0) return null;
  const elapsed = now - n.startAt;
  if (elapsed >= n.durationMs) return null;
  if (n.durationMs === 0) return n.startAt;
  const next = elapsed >= 0 ? stepsAfter(n, elapsed) + 1 : 1;
  if (next * 100 >= n.deltaH) return n.startAt + n.durationMs;
  // First whole millisecond at which `stepsAfter` reaches `next`.
  return n.startAt + Math.ceil((next * n.durationMs * 100) / n.deltaH);
}

/**
 * The schedule's percentage at `now`: `startPercentage` until `startAt`, then whole-point steps
 * toward the target (floor of the linear progress), exactly `targetPercentage` from
 * `startAt + durationSeconds` on. Durations are taken at millisecond resolution.
 */
export function gradualPercentageAt(g: GradualSchedule, now: number): number {
  return percentageAt(normalize(g), now);
}

/** The first instant (whole epoch ms) after `now` at which the percentage changes; null when none will. */
export function nextGradualChangeAt(g: GradualSchedule, now: number): number | null {
  return nextChangeAt(normalize(g), now);
}

/**
 * What the flag's rollout says at `now`, enabled or not: PERCENTAGE: its percentage; GRADUAL:
 * the schedule's percentage at `now` (its plain percentage when it has no schedule); other
 * strategies: null.
 */
export function scheduledPercentage(def: FlagDefinition, now: number): number | null {
  switch (def.strategy) {
    case 'PERCENTAGE':
      return round2(clampPercentage(def.percentage));
    case 'GRADUAL':
      return def.gradual ? gradualPercentageAt(def.gradual, now) : round2(clampPercentage(def.percentage));
    default:
      return null;
  }
}

/**
 * The percentage of contexts the flag is on for at `now`, one rule for both percentage
 * strategies: a disabled PERCENTAGE or GRADUAL flag is on for nobody, so 0 (its configured or
 * scheduled value stays visible as `percentage` / `gradual.currentPercentage`); an enabled one, its
 * scheduled percentage; other strategies: null.
 */
export function effectivePercentage(def: FlagDefinition, now: number): number | null {
  const scheduled = scheduledPercentage(def, now);
  return scheduled === null ? null : def.enabled ? scheduled : 0;
}

// ---------------------------------------------------------------------------------------------
// Evaluation

export function notFound(name: string): FlagEvaluation {
  return { flag: name, enabled: false, reason: 'FLAG_NOT_FOUND', strategy: null, percentage: null, bucket: null };
}

function constantResult(
  flag: string,
  enabled: boolean,
  reason: EvaluationReason,
  strategy: RolloutStrategy,
): FlagEvaluation {
  return Object.freeze({ flag, enabled, reason, strategy, percentage: null, bucket: null });
}

/** `def` itself when it is frozen all the way down (a stored flag is), else a frozen copy. */
function snapshot(def: FlagDefinition): FlagDefinition {
  if (isFrozenDeep(def)) return def;
  const whitelist = def.whitelist.map((e) => {
    const values = [...e.values];
    Object.freeze(values);
    return Object.freeze({ attribute: e.attribute, values });
  });
  Object.freeze(whitelist);
  const gradual = def.gradual ? Object.freeze({ ...def.gradual }) : null;
  return Object.freeze({ ...def, whitelist, gradual });
}

function isFrozenDeep(def: FlagDefinition): boolean {
  return (
    Object.isFrozen(def) &&
    Object.isFrozen(def.whitelist) &&
    def.whitelist.every((e) => Object.isFrozen(e) && Object.isFrozen(e.values)) &&
    (def.gradual === null || Object.isFrozen(def.gradual))
  );
}

/** Answers the same frozen result every time: disabled flags and ALL_ON / ALL_OFF. */
class ConstantFlag implements CompiledFlag {
  readonly usesClock = false;
  private readonly slot: OutcomeSlot;

  constructor(
    readonly definition: FlagDefinition,
    private readonly result: FlagEvaluation,
  ) {
    this.slot = outcomeSlot(result.reason, result.enabled);
  }

  evaluate(): FlagEvaluation {
    return this.result;
  }

  decide(): OutcomeSlot {
    return this.slot;
  }
}

interface WhitelistProbe {
  readonly kind: AttributeKind;
  readonly attribute: string;
  readonly values: ReadonlySet<string>;
}

class WhitelistFlag implements CompiledFlag {
  /** Attribute -> allowed values, entries for the same attribute merged. */
  readonly whitelist: ReadonlyMap<string, ReadonlySet<string>>;
  private readonly probes: readonly WhitelistProbe[];
  private readonly match: FlagEvaluation;
  private readonly noMatch: FlagEvaluation;

  constructor(readonly definition: FlagDefinition) {
    const map = new Map<string, Set<string>>();
    for (const entry of definition.whitelist) {
      let set = map.get(entry.attribute);
      if (!set) map.set(entry.attribute, (set = new Set()));
      for (const v of entry.values) set.add(v);
    }
    this.whitelist = map;
    this.probes = [...map]
      .filter(([, values]) => values.size > 0)
      .map(([attribute, values]) => ({ kind: kindOf(attribute), attribute, values }));
    this.match = constantResult(definition.name, true, 'TARGETING_MATCH', 'WHITELIST');
    this.noMatch = constantResult(definition.name, false, 'DEFAULT', 'WHITELIST');
  }

  readonly usesClock = false;
  private readonly matchSlot = outcomeSlot('TARGETING_MATCH', true);
  private readonly noMatchSlot = outcomeSlot('DEFAULT', false);

  private matches(ctx: EvaluationContext): boolean {
    const probes = this.probes;
    for (let i = 0; i < probes.length; i++) {
      const p = probes[i]!;
      const v = readAttribute(ctx, p.kind, p.attribute);
      if (v !== null && p.values.has(v)) return true;
    }
    return false;
  }

  evaluate(ctx: EvaluationContext): FlagEvaluation {
    return this.matches(ctx) ? this.match : this.noMatch;
  }

  decide(ctx: EvaluationContext): OutcomeSlot {
    return this.matches(ctx) ? this.matchSlot : this.noMatchSlot;
  }
}

/** PERCENTAGE and GRADUAL: a sticky bucket against a threshold (constant, or cached per gradual step). */
class SplitFlag implements CompiledFlag {
  private readonly name: string;
  private readonly strategy: RolloutStrategy;
  private readonly hashState: MurmurState;
  private readonly stickyDefault: boolean;
  private readonly stickyKind: AttributeKind;
  private readonly stickyName: string;
  private readonly schedule: NormalizedSchedule | null;
  private percentage: number;
  private threshold: number;
  // The current percentage holds for now in [validFrom, validUntil).
  private validFrom = Number.NEGATIVE_INFINITY;
  private validUntil = Number.POSITIVE_INFINITY;

  constructor(
    readonly definition: FlagDefinition,
    private readonly random: () => number,
  ) {
    this.name = definition.name;
    this.strategy = definition.strategy;
    this.hashState = murmurStateOf(`${definition.name}:`);
    const stickiness = definition.stickiness;
    this.stickyDefault = stickiness === DEFAULT_STICKINESS || stickiness === '';
    this.stickyKind = kindOf(stickiness);
    this.stickyName = stickiness;
    this.schedule = definition.strategy === 'GRADUAL' && definition.gradual ? normalize(definition.gradual) : null;
    this.percentage = round2(clampPercentage(definition.percentage));
    this.threshold = Math.round(this.percentage * 100);
    if (this.schedule) this.validUntil = this.validFrom; // forces the first refresh
  }

  private refresh(now: number): void {
    const schedule = this.schedule!;
    this.percentage = percentageAt(schedule, now);
    this.threshold = Math.round(this.percentage * 100);
    const elapsed = now - schedule.startAt;
    this.validFrom =
      elapsed < 0 ? Number.NEGATIVE_INFINITY : elapsed >= schedule.durationMs ? schedule.startAt + schedule.durationMs : now;
    this.validUntil = nextChangeAt(schedule, now) ?? Number.POSITIVE_INFINITY;
  }

  get usesClock(): boolean {
    return this.schedule !== null;
  }

  private stickyOf(ctx: EvaluationContext): string | null {
    return this.stickyDefault
      ? readAttribute(ctx, SESSION_ID, 'sessionId') ?? readAttribute(ctx, USER_ID, 'userId')
      : readAttribute(ctx, this.stickyKind, this.stickyName);
  }

  private randomBucket(): number {
    const r = Math.floor(this.random() * BUCKET_COUNT);
    return r > 0 ? (r < BUCKET_COUNT ? r : BUCKET_COUNT - 1) : 0;
  }

  decide(ctx: EvaluationContext, now: number): OutcomeSlot {
    if (this.schedule !== null && !(now >= this.validFrom && now < this.validUntil)) this.refresh(now);
    const sticky = this.stickyOf(ctx);
    if (sticky !== null) return murmurhash3From(this.hashState, sticky) % BUCKET_COUNT < this.threshold ? SPLIT_ON : SPLIT_OFF;
    return this.randomBucket() < this.threshold ? RANDOM_ON : RANDOM_OFF;
  }

  evaluate(ctx: EvaluationContext, now: number): FlagEvaluation {
    if (!(now >= this.validFrom && now < this.validUntil)) this.refresh(now);
    const sticky = this.stickyOf(ctx);
    let bucket: number;
    let reason: EvaluationReason;
    if (sticky !== null) {
      bucket = murmurhash3From(this.hashState, sticky) % BUCKET_COUNT;
      reason = 'SPLIT';
    } else {
      bucket = this.randomBucket();
      reason = 'RANDOM';
    }
    return {
      flag: this.name,
      enabled: bucket < this.threshold,
      reason,
      strategy: this.strategy,
      percentage: this.percentage,
      bucket,
    };
  }
}

/**
 * Compiles a definition for repeated evaluation. The definition is copied and frozen, so a
 * later edit needs a new `compileFlag`. `random` (default `Math.random`) draws the bucket
 * when a context has no sticky value.
 */
export function compileFlag(def: FlagDefinition, random: () => number = Math.random): CompiledFlag {
  const definition = snapshot(def);
  if (!definition.enabled) {
    return new ConstantFlag(definition, constantResult(definition.name, false, 'DISABLED', definition.strategy));
  }
  switch (definition.strategy) {
    case 'ALL_ON':
      return new ConstantFlag(definition, constantResult(definition.name, true, 'STATIC', 'ALL_ON'));
    case 'ALL_OFF':
      return new ConstantFlag(definition, constantResult(definition.name, false, 'STATIC', 'ALL_OFF'));
    case 'WHITELIST':
      return new WhitelistFlag(definition);
    case 'PERCENTAGE':
    case 'GRADUAL':
      return new SplitFlag(definition, random);
    default: {
      const unknown: never = definition.strategy;
      throw new Error(`unknown rollout strategy: ${String(unknown)}`);
    }
  }
}

/** One-off evaluation; services evaluating often should keep a `compileFlag` result instead. */
export function evaluateFlag(
  def: FlagDefinition | undefined,
  name: string,
  ctx: EvaluationContext,
  now: number,
  random: () => number = Math.random,
): FlagEvaluation {
  if (!def) return notFound(name);
  return compileFlag(def, random).evaluate(ctx, now);
}
