/**
 * What the REST API answers, in the seeds' vocabulary: snake_case field names, enum values in
 * lower case (`all_on`, `half_open`, `active`, as the seeds' Python enums have them), times as
 * ISO-8601 strings. Each view sits beside its JSON Schema, which the OpenAPI document prints.
 */
import type { Services } from '../app.js';
import type { CircuitBreaker } from '../breakers/engine.js';
import type { FlagDefinition, FlagEvaluation } from '../flags/engine.js';
import type { ModuleRecord } from '../modules/repository.js';
import type { TestRunRecord } from '../testing/repository.js';
import { sanitizeMessage } from '../hardening/safe-messages.js';
import { ROLLOUT_STRATEGIES, EVALUATION_REASONS } from '../flags/engine.js';
import { BREAKER_STATES } from '../breakers/states.js';
import { MODULE_STATES } from '../modules/states.js';
import { MODULE_TYPES } from '../modules/contract.js';
import { RUN_STATUSES, TEST_STATUSES } from '../testing/events.js';
import { ref, type JsonSchema } from './schema.js';

const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : new Date(ms).toISOString());
export const lower = (value: string): string => value.toLowerCase();
const lowerAll = (values: readonly string[]): string[] => values.map(lower);

const str: JsonSchema = { type: 'string' };
const nullableStr: JsonSchema = { type: ['string', 'null'] };
const time: JsonSchema = { type: 'string', format: 'date-time' };
const nullableTime: JsonSchema = { type: ['string', 'null'], format: 'date-time' };
const int: JsonSchema = { type: 'integer' };
const num: JsonSchema = { type: 'number' };
const bool: JsonSchema = { type: 'boolean' };
const strings: JsonSchema = { type: 'array', items: str };
const object = (properties: Record<string, JsonSchema>, description?: string): JsonSchema => ({
  type: 'object',
  ...(description ? { description } : {}),
  properties,
  required: Object.keys(properties),
});

// ---- modules ----

export function moduleView(m: ModuleRecord, services: Services) {
  const active = services.modules.activeVersion(m.name);
  const breaker = services.breakers.get(services.modules.breakerName(m.name));
  return {
    name: m.name,
    module_path: m.modulePath,
    version: m.version,
    state: lower(m.state),
    desired_state: lower(m.desiredState),
    dependencies: m.dependencies,
    dependents: services.modules.dependents(m.name),
    hot_reloadable: m.hotReloadable,
    isolation: lower(m.isolation),
    module_type: m.moduleType === null ? null : lower(m.moduleType),
    last_error: m.lastError === null ? null : sanitizeMessage(m.lastError),
    loaded_at: iso(m.loadedAt),
    previous_version: m.previousVersion,
    previous_module_path: m.previousModulePath,
    methods: [...(active?.methods ?? [])],
    in_flight: active?.inFlight ?? 0,
    breaker: breaker ? { name: breaker.name, state: lower(breaker.state) } : null,
    created_at: iso(m.createdAt),
    updated_at: iso(m.updatedAt),
  };
}

const ModuleSchema = object({
  name: str,
  module_path: { type: 'string', description: 'Relative to the modules folder, file form (`ml/neural_predictor_v2.js`).' },
  version: str,
  state: { type: 'string', enum: lowerAll(MODULE_STATES) },
  desired_state: { type: 'string', enum: ['unloaded', 'loaded', 'active'], description: 'What a restart converges back to.' },
  dependencies: strings,
  dependents: strings,
  hot_reloadable: bool,
  isolation: { type: 'string', enum: ['worker', 'inline'] },
  module_type: { type: ['string', 'null'], enum: lowerAll(MODULE_TYPES) },
  last_error: nullableStr,
  loaded_at: nullableTime,
  previous_version: nullableStr,
  previous_module_path: nullableStr,
  methods: strings,
  in_flight: int,
  breaker: { type: ['object', 'null'], properties: { name: str, state: { type: 'string', enum: lowerAll(BREAKER_STATES) } }, required: ['name', 'state'] },
  created_at: time,
  updated_at: time,
});

// ---- test runs ----

export function testRunView(r: TestRunRecord) {
  return {
    id: r.id,
    module_name: r.moduleName,
    module_version: r.moduleVersion,
    module_path: r.modulePath,
    module_type: lower(r.moduleType),
    status: lower(r.status),
    trigger: r.trigger,
    actor: r.actor,
    started_at: iso(r.startedAt),
    finished_at: iso(r.finishedAt),
    total: r.total,
    passed: r.passed,
    failed: r.failed,
    timed_out: r.timedOut,
    skipped: r.skipped,
    results: r.results.map((t) => ({
      name: t.name,
      required: t.required,
      source: lower(t.source),
      status: lower(t.status),
      duration_ms: t.durationMs,
      error: t.error === null ? null : sanitizeMessage(t.error),
    })),
  };
}

const TestRunSchema = object({
  id: str,
  module_name: str,
  module_version: str,
  module_path: str,
  module_type: { type: 'string', enum: lowerAll(MODULE_TYPES) },
  status: { type: 'string', enum: lowerAll(RUN_STATUSES) },
  trigger: str,
  actor: str,
  started_at: time,
  finished_at: nullableTime,
  total: int,
  passed: int,
  failed: int,
  timed_out: int,
  skipped: int,
  results: {
    type: 'array',
    items: object({
      name: str,
      required: bool,
      source: { type: 'string', enum: ['built_in', 'module'] },
      status: { type: 'string', enum: lowerAll(TEST_STATUSES) },
      duration_ms: num,
      error: nullableStr,
    }),
  },
});

// ---- feature flags ----

export function flagView(f: FlagDefinition, services: Services) {
  return {
    name: f.name,
    description: f.description,
    enabled: f.enabled,
    strategy: lower(f.strategy),
    percentage: f.percentage,
    effective_percentage: services.flags.effectivePercentage(f),
    stickiness: f.stickiness,
    whitelist: f.whitelist.map((w) => ({ attribute: w.attribute, values: w.values })),
    gradual: f.gradual
      ? {
          start_percentage: f.gradual.startPercentage,
          target_percentage: f.gradual.targetPercentage,
          start_at: iso(f.gradual.startAt),
          duration_seconds: f.gradual.durationSeconds,
          current_percentage: services.flags.scheduledPercentage({ ...f, strategy: 'GRADUAL' }) ?? f.gradual.startPercentage,
        }
      : null,
    created_at: iso(f.createdAt),
    updated_at: iso(f.updatedAt),
  };
}

const FlagSchema = object({
  name: str,
  description: str,
  enabled: bool,
  strategy: { type: 'string', enum: lowerAll(ROLLOUT_STRATEGIES) },
  percentage: { type: 'number', description: 'The configured percentage (PERCENTAGE strategy).' },
  effective_percentage: { type: ['number', 'null'], description: 'The percentage of contexts the flag is on for now: percentage and gradual flags only; 0 while disabled.' },
  stickiness: str,
  whitelist: { type: 'array', items: object({ attribute: str, values: strings }) },
  gradual: {
    type: ['object', 'null'],
    properties: { start_percentage: num, target_percentage: num, start_at: time, duration_seconds: int, current_percentage: num },
    required: ['start_percentage', 'target_percentage', 'start_at', 'duration_seconds', 'current_percentage'],
  },
  created_at: time,
  updated_at: time,
});

export function evaluationView(e: FlagEvaluation, flag: FlagDefinition, services: Services) {
  return {
    name: e.flag,
    enabled: e.enabled,
    reason: lower(e.reason),
    strategy: e.strategy === null ? null : lower(e.strategy),
    percentage: e.percentage,
    bucket: e.bucket,
    flag: flagView(flag, services),
  };
}

const FlagEvaluationSchema = object({
  name: str,
  enabled: { type: 'boolean', description: 'Whether the flag is on for the given context (the seed\'s is_enabled).' },
  reason: { type: 'string', enum: lowerAll(EVALUATION_REASONS) },
  strategy: { type: ['string', 'null'], enum: lowerAll(ROLLOUT_STRATEGIES) },
  percentage: { type: ['number', 'null'], description: 'Effective percentage, when a bucket decided.' },
  bucket: { type: ['integer', 'null'], description: 'The context bucket in 0..9999, when a bucket decided.' },
  flag: ref('FeatureFlag'),
});

// ---- circuit breakers ----

export function breakerView(b: CircuitBreaker) {
  const c = b.config;
  const m = b.metrics;
  return {
    name: b.name,
    state: lower(b.state),
    state_changed_at: iso(b.stateChangedAt),
    open_until: iso(b.openUntil),
    open_attempts: b.openAttempts,
    config: {
      failure_threshold: c.failureThreshold,
      reset_timeout_seconds: c.resetTimeoutSeconds,
      success_threshold: c.successThreshold,
      call_timeout_ms: c.callTimeoutMs,
      half_open_max_calls: c.halfOpenMaxCalls,
      sliding_window_size: c.slidingWindowSize,
      sliding_window_type: lower(c.slidingWindowType),
      minimum_calls: c.minimumCalls,
      failure_rate_threshold: c.failureRateThreshold,
      slow_call_duration_ms: c.slowCallDurationMs,
    },
    metrics: {
      calls: m.calls,
      successes: m.successes,
      failures: m.failures,
      rejections: m.rejections,
      timeouts: m.timeouts,
      slow_calls: m.slowCalls,
      consecutive_failures: m.consecutiveFailures,
      consecutive_successes: m.consecutiveSuccesses,
      failure_rate: m.failureRate,
      last_failure_at: iso(m.lastFailureAt),
      last_error: m.lastError === null ? null : sanitizeMessage(m.lastError),
    },
  };
}

const nullableInt: JsonSchema = { type: ['integer', 'null'] };
const BreakerSchema = object({
  name: str,
  state: { type: 'string', enum: lowerAll(BREAKER_STATES) },
  state_changed_at: time,
  open_until: nullableTime,
  open_attempts: int,
  config: object({
    failure_threshold: int,
    reset_timeout_seconds: num,
    success_threshold: int,
    call_timeout_ms: nullableInt,
    half_open_max_calls: int,
    sliding_window_size: nullableInt,
    sliding_window_type: { type: 'string', enum: ['count', 'time'] },
    minimum_calls: int,
    failure_rate_threshold: num,
    slow_call_duration_ms: nullableInt,
  }),
  metrics: object({
    calls: int,
    successes: int,
    failures: int,
    rejections: int,
    timeouts: int,
    slow_calls: int,
    consecutive_failures: int,
    consecutive_successes: int,
    failure_rate: { type: ['number', 'null'] },
    last_failure_at: nullableTime,
    last_error: nullableStr,
  }),
});

// ---- status ----

export function statusView(services: Services) {
  const modules = services.modules.countByState();
  const breakers = services.breakers.countByState();
  const flags = services.flags.list();
  const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);
  return {
    version: services.version,
    started_at: iso(services.startedAt),
    uptime_seconds: Math.max(0, (services.clock.now() - services.startedAt) / 1000),
    modules: {
      total: total(modules),
      ...Object.fromEntries(Object.entries(modules).map(([state, n]) => [lower(state), n])),
    },
    feature_flags: { total: flags.length, enabled: flags.filter((f) => f.enabled).length },
    circuit_breakers: {
      total: total(breakers),
      ...Object.fromEntries(Object.entries(breakers).map(([state, n]) => [lower(state), n])),
    },
  };
}

const counts = (states: readonly string[]) => object({ total: int, ...Object.fromEntries(lowerAll(states).map((s) => [s, int])) });
const StatusSchema = object({
  version: str,
  started_at: time,
  uptime_seconds: num,
  modules: counts(MODULE_STATES),
  feature_flags: object({ total: int, enabled: int }),
  circuit_breakers: counts(BREAKER_STATES),
});

// ---- errors ----

const ErrorSchema: JsonSchema = {
  type: 'object',
  description: '`error` is the first problem; `errors` lists every problem (validation can find several).',
  properties: {
    error: object({ code: str, message: str, field: { type: ['string', 'null'], description: 'The snake_case field or parameter at fault.' } }),
    errors: { type: 'array', items: object({ code: str, message: str, field: nullableStr }) },
    test_run_id: { type: 'string', description: 'A swap refused because its test run failed: that run.' },
  },
  required: ['error', 'errors'],
};

/** The `components.schemas` of the OpenAPI document. */
export const COMPONENT_SCHEMAS: Record<string, JsonSchema> = {
  Module: ModuleSchema,
  TestRun: TestRunSchema,
  FeatureFlag: FlagSchema,
  FlagEvaluation: FlagEvaluationSchema,
  CircuitBreaker: BreakerSchema,
  ModularityStatus: StatusSchema,
  Error: ErrorSchema,
};
