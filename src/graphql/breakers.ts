/** Circuit breakers in GraphQL: state, config, metrics, history, operator controls and live feeds. */
import { GraphQLError } from 'graphql';
import { SLIDING_WINDOW_TYPES, type BreakerConfig } from '../breakers/config.js';
import type { CircuitBreaker } from '../breakers/engine.js';
import type { BreakerNodeState } from '../breakers/service.js';
import { BREAKER_STATES, TRANSITION_REASONS, type BreakerMetrics, type BreakerTransition } from '../breakers/states.js';
import type { Clock, TimerHandle } from '../clock.js';
import { builder } from './builder.js';
import { entityPayload, runMutation, toDate, UserErrorRef, type Payload } from './common.js';
import { ModularityStatusRef } from './status.js';

const BreakerStateEnum = builder.enumType('BreakerState', {
  description:
    'CLOSED lets calls through; OPEN rejects them until the reset timeout; HALF_OPEN lets trial calls through; FORCED_OPEN is an operator\'s open that only a reset ends; DISABLED lets every call through while still counting.',
  values: BREAKER_STATES,
});

const TransitionReasonEnum = builder.enumType('BreakerTransitionReason', { values: TRANSITION_REASONS });

const SlidingWindowTypeEnum = builder.enumType('SlidingWindowType', {
  description: 'COUNT: the failure-rate window is the last slidingWindowSize calls; TIME: the calls of the last slidingWindowSize seconds.',
  values: SLIDING_WINDOW_TYPES,
});

const BreakerConfigRef = builder.objectRef<Readonly<BreakerConfig>>('CircuitBreakerConfig').implement({
  fields: (t) => ({
    failureThreshold: t.exposeInt('failureThreshold', { description: 'Consecutive failures that open a CLOSED breaker.' }),
    resetTimeoutSeconds: t.exposeFloat('resetTimeoutSeconds', { description: 'Seconds in OPEN before HALF_OPEN.' }),
    successThreshold: t.exposeInt('successThreshold', { description: 'Trial successes in HALF_OPEN that close it.' }),
    halfOpenMaxCalls: t.exposeInt('halfOpenMaxCalls', { description: 'Trial calls allowed at once in HALF_OPEN.' }),
    halfOpenDeadlineSeconds: t.exposeFloat('halfOpenDeadlineSeconds', {
      nullable: true,
      description: 'A trial still in flight this long after the first trial began re-opens the breaker.',
    }),
    callTimeoutMs: t.exposeInt('callTimeoutMs', { nullable: true, description: 'A call running longer counts as a failure.' }),
    slidingWindowSize: t.exposeInt('slidingWindowSize', {
      nullable: true,
      description: 'Failure-rate mode: the window, in calls (COUNT) or seconds (TIME); null: consecutive-failure mode only.',
    }),
    slidingWindowType: t.field({ type: SlidingWindowTypeEnum, resolve: (c) => c.slidingWindowType }),
    resetTimeoutMultiplier: t.exposeFloat('resetTimeoutMultiplier', {
      description: 'Exponential backoff: each re-opening from HALF_OPEN multiplies the OPEN wait by this (1: no backoff).',
    }),
    maxResetTimeoutSeconds: t.exposeFloat('maxResetTimeoutSeconds', { nullable: true, description: 'Cap of the backed-off OPEN wait.' }),
    minimumCalls: t.exposeInt('minimumCalls', { description: 'Calls needed before a failure rate counts.' }),
    failureRateThreshold: t.exposeFloat('failureRateThreshold', { description: 'Failure rate (percent) that opens the breaker.' }),
    slowCallDurationMs: t.exposeInt('slowCallDurationMs', { nullable: true, description: 'A call slower than this counts as a failure.' }),
  }),
});

const BreakerMetricsRef = builder.objectRef<BreakerMetrics>('CircuitBreakerMetrics').implement({
  description: 'Lifetime counters (never cleared by resets) and the current streaks.',
  fields: (t) => ({
    calls: t.exposeInt('calls', { description: 'Calls let through (rejections are counted apart).' }),
    successes: t.exposeInt('successes'),
    failures: t.exposeInt('failures', { description: 'Includes timeouts and slow calls.' }),
    rejections: t.exposeInt('rejections'),
    timeouts: t.exposeInt('timeouts'),
    slowCalls: t.exposeInt('slowCalls'),
    consecutiveFailures: t.exposeInt('consecutiveFailures'),
    consecutiveSuccesses: t.exposeInt('consecutiveSuccesses'),
    failureRate: t.exposeFloat('failureRate', { nullable: true, description: 'Percent; null below minimumCalls.' }),
    lastFailureAt: t.field({ type: 'DateTime', nullable: true, resolve: (m) => toDate(m.lastFailureAt) }),
    lastError: t.exposeString('lastError', { nullable: true }),
  }),
});

const BreakerTransitionRef = builder.objectRef<BreakerTransition>('BreakerTransition').implement({
  description: 'One change of state, with the counters at that moment.',
  fields: (t) => ({
    name: t.exposeString('name', { description: 'The breaker.' }),
    from: t.field({ type: BreakerStateEnum, resolve: (e) => e.from }),
    to: t.field({ type: BreakerStateEnum, resolve: (e) => e.to }),
    reason: t.field({ type: TransitionReasonEnum, resolve: (e) => e.reason }),
    at: t.field({ type: 'DateTime', resolve: (e) => toDate(e.at) }),
    openUntil: t.field({ type: 'DateTime', nullable: true, resolve: (e) => toDate(e.openUntil) }),
    metrics: t.field({ type: BreakerMetricsRef, resolve: (e) => e.metrics }),
    node: t.string({
      description: 'The node whose breaker moved: each node of a cluster has its own instance of every breaker (on SQLite, this node).',
      resolve: (e, _args, ctx) => e.node ?? ctx.services.breakers.nodeId,
    }),
  }),
});

const BreakerNodeStateRef = builder.objectRef<BreakerNodeState>('BreakerNodeState').implement({
  description: 'One node\'s instance of a breaker: its state and counters on that node.',
  fields: (t) => ({
    node: t.exposeString('node'),
    state: t.field({ type: BreakerStateEnum, resolve: (n) => n.state }),
    metrics: t.field({
      type: BreakerMetricsRef,
      nullable: true,
      description: 'That node\'s counters as it last reported them (null when it reported none).',
      resolve: (n) => n.metrics,
    }),
    updatedAt: t.field({
      type: 'DateTime',
      description: 'When that node reported it (for the node answering: now, from its memory).',
      resolve: (n) => toDate(n.updatedAt),
    }),
  }),
});

export const CircuitBreakerRef = builder.objectRef<CircuitBreaker>('CircuitBreaker').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    state: t.field({ type: BreakerStateEnum, resolve: (b) => b.state }),
    config: t.field({ type: BreakerConfigRef, resolve: (b) => b.config }),
    metrics: t.field({ type: BreakerMetricsRef, resolve: (b) => b.metrics }),
    stateChangedAt: t.field({ type: 'DateTime', resolve: (b) => toDate(b.stateChangedAt) }),
    openAttempts: t.exposeInt('openAttempts', { description: 'Re-openings from HALF_OPEN since it was last CLOSED: the backoff step.' }),
    openUntil: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'When an OPEN breaker turns HALF_OPEN.',
      resolve: (b) => toDate(b.openUntil),
    }),
    nodes: t.field({
      type: [BreakerNodeStateRef],
      description:
        'Every live node\'s instance of this breaker, by node id (this node\'s from its memory, the others\' as they last reported them); `state` above is this node\'s. On SQLite, this node alone.',
      resolve: (b, _args, ctx) => ctx.services.breakers.nodes(b.name),
    }),
    transitions: t.field({
      type: [BreakerTransitionRef],
      description: 'The last `last` transitions, oldest first.',
      args: { last: t.arg.int({ defaultValue: 20 }) },
      resolve: (b, args, ctx) => {
        const last = args.last ?? 20;
        if (last < 1 || last > 1000) {
          throw new GraphQLError('"last" must be between 1 and 1000', { extensions: { code: 'INVALID_ARGUMENT' } });
        }
        return ctx.services.breakers.transitions(b.name, last);
      },
    }),
  }),
});

const BreakerStateCountsRef = builder.objectRef<Record<string, number>>('BreakerStateCounts').implement({
  fields: (t) => ({
    total: t.int({ resolve: (c) => Object.values(c).reduce((a, b) => a + b, 0) }),
    closed: t.int({ resolve: (c) => c.CLOSED ?? 0 }),
    open: t.int({ resolve: (c) => c.OPEN ?? 0 }),
    halfOpen: t.int({ resolve: (c) => c.HALF_OPEN ?? 0 }),
    forcedOpen: t.int({ resolve: (c) => c.FORCED_OPEN ?? 0 }),
    disabled: t.int({ resolve: (c) => c.DISABLED ?? 0 }),
  }),
});

builder.objectField(
  ModularityStatusRef,
  'breakers',
  (t) => t.field({ type: BreakerStateCountsRef, resolve: (_s, _a, ctx) => ctx.services.breakers.countByState() }),
);

// ---- queries ----

builder.queryFields((t) => ({
  circuitBreakers: t.field({
    type: [CircuitBreakerRef],
    description: 'Every breaker, sorted by name.',
    resolve: (_root, _args, ctx) => ctx.services.breakers.list(),
  }),
  circuitBreaker: t.field({
    type: CircuitBreakerRef,
    nullable: true,
    args: { name: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => ctx.services.breakers.get(args.name),
  }),
}));

// ---- mutations ----

const breakerPayload = (name: string, description: string) => entityPayload(name, 'breaker', CircuitBreakerRef, description);

const ConfigureCircuitBreakerPayload = builder
  .objectRef<Payload<{ breaker: CircuitBreaker; created: boolean }>>('ConfigureCircuitBreakerPayload')
  .implement({
    fields: (t) => ({
      breaker: t.field({ type: CircuitBreakerRef, nullable: true, resolve: (p) => p.value?.breaker ?? null }),
      created: t.boolean({ description: 'True when the breaker did not exist before.', resolve: (p) => p.value?.created ?? false }),
      errors: t.field({ type: [UserErrorRef], resolve: (p) => p.errors }),
    }),
  });
const OpenCircuitBreakerPayload = breakerPayload('OpenCircuitBreakerPayload', 'The breaker, now FORCED_OPEN.');
const ResetCircuitBreakerPayload = breakerPayload('ResetCircuitBreakerPayload', 'The breaker, now CLOSED.');
const DisableCircuitBreakerPayload = breakerPayload('DisableCircuitBreakerPayload', 'The breaker, now DISABLED.');
const EnableCircuitBreakerPayload = breakerPayload('EnableCircuitBreakerPayload', 'The breaker, CLOSED again.');
const ResetAllCircuitBreakersPayload = builder.objectRef<Payload<CircuitBreaker[]>>('ResetAllCircuitBreakersPayload').implement({
  fields: (t) => ({
    breakers: t.field({ type: [CircuitBreakerRef], resolve: (p) => p.value ?? [] }),
    errors: t.field({ type: [UserErrorRef], resolve: (p) => p.errors }),
  }),
});

builder.mutationFields((t) => ({
  configureCircuitBreaker: t.field({
    type: ConfigureCircuitBreakerPayload,
    description:
      'Creates the breaker, or changes the given settings of an existing one in place (its state is kept). Omitted settings keep their value; null turns an optional setting off.',
    args: {
      name: t.arg.string({ required: true }),
      failureThreshold: t.arg.int(),
      resetTimeoutSeconds: t.arg.float(),
      successThreshold: t.arg.int(),
      callTimeoutMs: t.arg.int(),
      halfOpenMaxCalls: t.arg.int(),
      halfOpenDeadlineSeconds: t.arg.float(),
      slidingWindowSize: t.arg.int(),
      minimumCalls: t.arg.int(),
      failureRateThreshold: t.arg.float(),
      slowCallDurationMs: t.arg.int(),
      slidingWindowType: t.arg({ type: SlidingWindowTypeEnum }),
      resetTimeoutMultiplier: t.arg.float(),
      maxResetTimeoutSeconds: t.arg.float(),
    },
    resolve: (_root, { name, ...settings }, ctx) => {
      const partial = Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined)) as Partial<BreakerConfig>;
      return runMutation(ctx, 'OPERATOR', () => ctx.services.breakers.configure(ctx.actor, name, partial));
    },
  }),
  openCircuitBreaker: t.field({
    type: OpenCircuitBreakerPayload,
    description: 'Forces the breaker open (FORCED_OPEN): every call is rejected until resetCircuitBreaker.',
    args: { name: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.breakers.open(ctx.actor, args.name)),
  }),
  resetCircuitBreaker: t.field({
    type: ResetCircuitBreakerPayload,
    description: 'Closes the breaker and clears its streaks (lifetime counters are kept).',
    args: { name: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.breakers.reset(ctx.actor, args.name)),
  }),
  disableCircuitBreaker: t.field({
    type: DisableCircuitBreakerPayload,
    description: 'Lets every call through while still counting (resilience4j\'s DISABLED/METRICS_ONLY).',
    args: { name: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.breakers.disable(ctx.actor, args.name)),
  }),
  enableCircuitBreaker: t.field({
    type: EnableCircuitBreakerPayload,
    description: 'Ends DISABLED: the breaker is CLOSED and acts on failures again.',
    args: { name: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.breakers.enable(ctx.actor, args.name)),
  }),
  resetAllCircuitBreakers: t.field({
    type: ResetAllCircuitBreakersPayload,
    description: 'Closes every breaker except DISABLED ones.',
    resolve: (_root, _args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.breakers.resetAll(ctx.actor)),
  }),
}));

// ---- subscriptions ----

builder.subscriptionField('breakerStateChanged', (t) =>
  t.field({
    type: BreakerTransitionRef,
    description:
      'Every transition of a breaker (all breakers when `name` is omitted), published once each, in order per breaker, after it is stored. In a cluster, every node\'s transitions (see `node`), in order per breaker and node.',
    args: { name: t.arg.string() },
    subscribe: (_root, args, ctx) =>
      ctx.services.bus.subscribe('breakerStateChanged', (event) => !args.name || event.name === args.name),
    resolve: (event) => event,
  }),
);

const BreakerSampleRef = builder.objectRef<{ at: number; breakers: CircuitBreaker[] }>('CircuitBreakerSample').implement({
  fields: (t) => ({
    at: t.field({ type: 'DateTime', resolve: (s) => toDate(s.at) }),
    breakers: t.field({ type: [CircuitBreakerRef], resolve: (s) => s.breakers }),
  }),
});

export const MIN_SAMPLE_INTERVAL_MS = 100;
export const MAX_SAMPLE_INTERVAL_MS = 3_600_000;

builder.subscriptionField('breakerSnapshots', (t) =>
  t.field({
    type: BreakerSampleRef,
    description:
      'A sampled feed for dashboards (as Hystrix\'s stream): the state of every breaker at once, then one sample per interval. A sample is taken only when the client has received the previous one, so a slow client gets fewer samples and nothing queues up.',
    args: { intervalMs: t.arg.int({ defaultValue: 1000 }) },
    subscribe: (_root, args, ctx) => {
      const interval = args.intervalMs ?? 1000;
      if (interval < MIN_SAMPLE_INTERVAL_MS || interval > MAX_SAMPLE_INTERVAL_MS) {
        throw new GraphQLError(`intervalMs must be between ${MIN_SAMPLE_INTERVAL_MS} and ${MAX_SAMPLE_INTERVAL_MS}`, {
          extensions: { code: 'INVALID_ARGUMENT' },
        });
      }
      const { breakers, clock } = ctx.services;
      return sampled(clock, interval, () => ({ at: clock.now(), breakers: breakers.list() }));
    },
    resolve: (sample) => sample,
  }),
);

/**
 * A pull-based sampler: the first value at once, each later one `intervalMs` after the reader
 * asked for it. Nothing is buffered, so a slow reader never makes memory grow.
 */
export function sampled<T>(clock: Clock, intervalMs: number, sample: () => T): AsyncIterableIterator<T> {
  let first = true;
  let done = false;
  let timer: TimerHandle | null = null;
  let waiting: ((result: IteratorResult<T>) => void) | null = null;
  const iterator: AsyncIterableIterator<T> = {
    next() {
      if (done) return Promise.resolve({ value: undefined, done: true });
      if (first) {
        first = false;
        return Promise.resolve({ value: sample(), done: false });
      }
      return new Promise((resolve) => {
        waiting = resolve;
        timer = clock.setTimer(intervalMs, () => {
          timer = null;
          waiting = null;
          resolve({ value: sample(), done: false });
        });
      });
    },
    return() {
      done = true;
      timer?.cancel();
      waiting?.({ value: undefined, done: true });
      waiting = null;
      return Promise.resolve({ value: undefined, done: true });
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
