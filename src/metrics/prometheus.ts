/**
 * The Prometheus registry (prom-client) over Helios's plain counters. Nothing here runs on a
 * hot path: breakers, flag evaluations, module invocations and GraphQL operations add to plain
 * numbers and typed arrays they own, and a scrape copies them: low-cardinality families in
 * prom-client's `collect()`, the families with a series per breaker or flag (and the
 * histograms) through a direct text writer (exposition.ts), since prom-client's per-sample
 * formatting made a scrape of 1,000 breakers take most of a second.
 *
 * Breakers follow resilience4j's names and shapes (`resilience4j_circuitbreaker_*` becomes
 * `helios_circuitbreaker_*`), so its Grafana dashboards work after a prefix change: state as
 * one 0/1 series per state, failure and slow-call rates in percent (-1 while fewer than
 * `minimumCalls` calls back them), buffered calls (the sliding window's contents), calls as a
 * histogram by kind (exact counts; durations from a sample for breakers that read no clock of
 * their own, see SampledDurationHistograms and CALL_TIMING_SAMPLE), and not-permitted calls as a
 * counter.
 *
 * Rollout metrics (percentage and status) are not emitted: rollouts do not exist yet.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { BreakerService } from '../breakers/service.js';
import { CALL_KINDS, type CircuitBreaker } from '../breakers/engine.js';
import { BREAKER_STATES } from '../breakers/states.js';
import { feedCounters } from '../events.js';
import type { FlagService } from '../flags/service.js';
import { INVOCATION_OUTCOMES } from '../modules/metrics-counts.js';
import { MODULE_STATES } from '../modules/states.js';
import type { ModuleService } from '../modules/service.js';
import type { TestRunService } from '../testing/service.js';
import { ROLLOUT_STATUSES, type Rollout } from '../rollouts/events.js';
import type { RolloutService } from '../rollouts/service.js';
import { ExpositionWriter, labelText } from './exposition.js';
import { OPERATION_OUTCOMES, type GraphQLOperationCounters } from './graphql.js';
import { BUCKET_SLOTS, DURATION_BUCKETS_SECONDS, type DurationHistograms } from './histogram.js';

export interface MetricsSources {
  breakers: BreakerService;
  flags: FlagService;
  modules: ModuleService;
  testing: Pick<TestRunService, 'countByStatus'>;
  /** The module's current (or last) rollout; optional so a metrics set can be built without rollouts. */
  rollouts?: Pick<RolloutService, 'current'>;
  graphql: GraphQLOperationCounters;
  /** Open WebSockets (graphql-ws) right now. */
  openWebSockets: () => number;
}

export interface HeliosMetrics {
  /** prom-client's registry: default process metrics and the low-cardinality families. */
  readonly registry: Registry;
  readonly contentType: string;
  /** The whole exposition text. */
  scrape(): Promise<string>;
  /** Detaches listeners (breaker transitions). */
  close(): void;
}

/** How long a scrape waits for a worker's memory report before leaving that module out. */
const WORKER_MEMORY_TIMEOUT_MS = 1000;

const BUCKET_LABELS = [...DURATION_BUCKETS_SECONDS.map(String), '+Inf'];

/** One histogram (cumulative buckets, _sum in seconds, _count) of `series` of `h`. */
function writeHistogram(out: ExpositionWriter, name: string, labels: string, h: DurationHistograms, series: number): void {
  const base = series * BUCKET_SLOTS;
  const bucket = `${name}_bucket{${labels === '' ? '' : `${labels},`}le="`;
  let cumulative = 0;
  for (let i = 0; i < BUCKET_SLOTS; i++) {
    cumulative += h.counts[base + i]!;
    out.line(`${bucket}${BUCKET_LABELS[i]!}"} ${cumulative}\n`);
  }
  out.sample(`${name}_sum`, labels, h.sumsMs[series]! / 1000);
  out.sample(`${name}_count`, labels, cumulative);
}

const STATE_LABELS = BREAKER_STATES.map((s) => s.toLowerCase());

function slowCallRate(breaker: CircuitBreaker): number {
  const window = breaker.windowCounts;
  const minimum = breaker.config.minimumCalls;
  if (window !== null) return window.calls === 0 || window.calls < minimum ? -1 : (window.slowCalls * 100) / window.calls;
  const m = breaker.metrics;
  const settled = m.successes + m.failures;
  return settled === 0 || settled < minimum ? -1 : (m.slowCalls * 100) / settled;
}

/** Every helios_circuitbreaker_* family. */
function writeBreakers(out: ExpositionWriter, breakers: readonly CircuitBreaker[], transitions: ReadonlyMap<string, Transitions>): void {
  const named = breakers.map((b) => ({ b, labels: labelText([['name', b.name]]) }));
  out.family('helios_circuitbreaker_state', 'gauge', 'Circuit breaker state: 1 for the current state, 0 for the others.');
  for (const { b, labels } of named) {
    const current = BREAKER_STATES.indexOf(b.state);
    for (let i = 0; i < STATE_LABELS.length; i++) out.sample('helios_circuitbreaker_state', `${labels},state="${STATE_LABELS[i]!}"`, i === current ? 1 : 0);
  }
  out.family('helios_circuitbreaker_calls_seconds', 'histogram', 'Calls through a breaker by kind (successful, failed, ignored, not_permitted) since this process started; rejections count as 0 s. Counts are exact; breakers that read no clock time a sample of their calls (README).');
  for (const { b, labels } of named) {
    const h = b.callDurations;
    if (h === null) continue;
    // Kinds never seen have no series yet, as prom-client's labelled histograms do.
    for (let k = 0; k < CALL_KINDS.length; k++) {
      if (h.count(k) > 0) writeHistogram(out, 'helios_circuitbreaker_calls_seconds', `${labels},kind="${CALL_KINDS[k]!}"`, h, k);
    }
  }
  const metrics = named.map(({ b, labels }) => ({ b, labels, m: b.metrics }));
  out.family('helios_circuitbreaker_not_permitted_calls_total', 'counter', 'Calls a breaker rejected (OPEN, FORCED_OPEN, HALF_OPEN at capacity) over its persisted lifetime.');
  for (const { labels, m } of metrics) out.sample('helios_circuitbreaker_not_permitted_calls_total', labels, m.rejections);
  out.family('helios_circuitbreaker_failure_rate', 'gauge', 'Failure rate in percent over the sliding window (or all settled calls without one); -1 below minimumCalls.');
  for (const { labels, m } of metrics) out.sample('helios_circuitbreaker_failure_rate', labels, m.failureRate ?? -1);
  out.family('helios_circuitbreaker_slow_call_rate', 'gauge', 'Slow calls in percent over the sliding window (or all settled calls without one); -1 below minimumCalls.');
  for (const { b, labels } of named) out.sample('helios_circuitbreaker_slow_call_rate', labels, slowCallRate(b));
  out.family('helios_circuitbreaker_buffered_calls', 'gauge', 'Calls held in the sliding window by kind (successful, failed); breakers without a window have no series.');
  for (const { b, labels } of named) {
    const w = b.windowCounts;
    if (w === null) continue;
    out.sample('helios_circuitbreaker_buffered_calls', `${labels},kind="successful"`, w.calls - w.failures);
    out.sample('helios_circuitbreaker_buffered_calls', `${labels},kind="failed"`, w.failures);
  }
  out.family('helios_circuitbreaker_transitions_total', 'counter', 'State transitions since this process started, by breaker and edge.');
  for (const [name, edges] of transitions) {
    const labels = labelText([['name', name]]);
    for (const [edge, count] of edges) out.sample('helios_circuitbreaker_transitions_total', `${labels},${edge}`, count);
  }
}

/** Per-flag families. */
function writeFlags(out: ExpositionWriter, flags: FlagService): void {
  const list = [...flags.definitions()];
  out.family('helios_flag_evaluations_total', 'counter', 'Flag evaluations (GraphQL, OFREP, in-process) since this process started, by flag, result and reason.');
  for (const t of flags.evaluationCounts?.tallies() ?? []) {
    out.sample('helios_flag_evaluations_total', labelText([['flag', t.flag], ['result', t.enabled ? 'true' : 'false'], ['reason', t.reason]]), t.count);
  }
  out.family('helios_flag_effective_percentage', 'gauge', 'The percentage in force now, for PERCENTAGE and GRADUAL flags.');
  for (const f of list) {
    const p = flags.effectivePercentage(f);
    if (p !== null) out.sample('helios_flag_effective_percentage', labelText([['flag', f.name]]), p);
  }
  out.family('helios_flag_enabled', 'gauge', '1 when the flag is enabled, else 0.');
  for (const f of list) out.sample('helios_flag_enabled', labelText([['flag', f.name]]), f.enabled ? 1 : 0);
}

function writeOperations(out: ExpositionWriter, counters: GraphQLOperationCounters): void {
  out.family('helios_graphql_operation_duration_seconds', 'histogram', 'GraphQL operations executed (HTTP and graphql-ws) by type, name and outcome (error: the result carries errors).');
  for (const op of counters.operations.values()) {
    const labels = labelText([['type', op.type], ['name', op.name]]);
    OPERATION_OUTCOMES.forEach((outcome, series) => {
      if (op.durations.count(series) > 0) writeHistogram(out, 'helios_graphql_operation_duration_seconds', `${labels},outcome="${outcome}"`, op.durations, series);
    });
  }
}

function writeModuleDurations(out: ExpositionWriter, modules: ModuleService): void {
  out.family('helios_module_invocation_duration_seconds', 'histogram', 'Duration of module invocations that ran (not rejected ones), by module and version.');
  for (const [module, versions] of modules.counters?.invocations ?? []) {
    for (const [version, counts] of versions) {
      writeHistogram(out, 'helios_module_invocation_duration_seconds', labelText([['module', module], ['version', version]]), counts.durations, 0);
    }
  }
}

/** Edge label text (`from_state="..",to_state=".."`) -> count, per breaker. */
type Transitions = Map<string, number>;

export function createHeliosMetrics(sources: MetricsSources): HeliosMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const transitions = new Map<string, Transitions>();
  const stopTransitions = sources.breakers.registry.onTransition((e) => {
    let edges = transitions.get(e.name);
    if (!edges) transitions.set(e.name, (edges = new Map()));
    const edge = `from_state="${e.from.toLowerCase()}",to_state="${e.to.toLowerCase()}"`;
    edges.set(edge, (edges.get(edge) ?? 0) + 1);
  });

  // ---- low-cardinality families, through prom-client's collect() ----
  new Counter({
    name: 'helios_flag_evaluations_unknown_total',
    help: 'Evaluations of names that are no flag (FLAG_NOT_FOUND); one series, as callers choose the names.',
    registers,
    collect() {
      this.reset();
      this.inc(sources.flags.evaluationCounts?.notFound ?? 0);
    },
  });
  new Gauge({
    name: 'helios_module_state',
    help: 'Module state: 1 for the current state, 0 for the others.',
    labelNames: ['module', 'state'],
    registers,
    collect() {
      this.reset();
      for (const m of sources.modules.list()) {
        for (const s of MODULE_STATES) this.set({ module: m.name, state: s.toLowerCase() }, s === m.state ? 1 : 0);
      }
    },
  });
  new Counter({
    name: 'helios_module_invocations_total',
    help: 'Module invocations since this process started, by module, version and outcome.',
    labelNames: ['module', 'version', 'outcome'],
    registers,
    collect() {
      this.reset();
      for (const [module, versions] of sources.modules.counters?.invocations ?? []) {
        for (const [version, counts] of versions) {
          INVOCATION_OUTCOMES.forEach((outcome, i) => {
            if (counts.outcomes[i]! > 0) this.inc({ module, version, outcome }, counts.outcomes[i]!);
          });
        }
      }
    },
  });
  new Counter({
    name: 'helios_module_restarts_total',
    help: 'Automatic restarts of crashed modules attempted by the supervisor since this process started.',
    labelNames: ['module'],
    registers,
    collect() {
      this.reset();
      for (const [module, n] of sources.modules.counters?.restarts ?? []) this.inc({ module }, n);
    },
  });
  new Gauge({
    name: 'helios_module_worker_heap_used_bytes',
    help: "V8 heap in use in an active WORKER module's thread.",
    labelNames: ['module', 'version'],
    registers,
    async collect() {
      this.reset();
      const reports = await Promise.all(
        sources.modules.list().map(async (m) => {
          const version = sources.modules.activeVersion(m.name);
          if (!version?.memoryUsage) return null;
          try {
            const usage = await withTimeout(version.memoryUsage(), WORKER_MEMORY_TIMEOUT_MS);
            return usage ? { module: m.name, version: version.version, bytes: usage.heapUsedBytes } : null;
          } catch {
            return null;
          }
        }),
      );
      for (const r of reports) if (r) this.set({ module: r.module, version: r.version }, r.bytes);
    },
  });
  /** Each module's current (or last) rollout. */
  const currentRollouts = async (): Promise<Rollout[]> => {
    const rollouts = sources.rollouts;
    if (!rollouts) return [];
    const found: Rollout[] = [];
    for (const m of sources.modules.list()) {
      const rollout = await rollouts.current(m.name);
      if (rollout) found.push(rollout);
    }
    return found;
  };
  new Gauge({
    name: 'helios_rollout_percentage',
    help: "The share of calls routed to the canary by the module's current or last rollout.",
    labelNames: ['module', 'flag', 'to_version'],
    registers,
    async collect() {
      const current = await currentRollouts();
      this.reset();
      for (const r of current) this.set({ module: r.module, flag: r.flag, to_version: r.toVersion }, r.percentage);
    },
  });
  new Gauge({
    name: 'helios_rollout_status',
    help: "Rollout status of the module's current or last rollout: 1 for its status, 0 for the others.",
    labelNames: ['module', 'status'],
    registers,
    async collect() {
      const current = await currentRollouts();
      this.reset();
      for (const r of current) {
        for (const status of ROLLOUT_STATUSES) this.set({ module: r.module, status: status.toLowerCase() }, status === r.status ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: 'helios_test_runs',
    help: 'Recorded test runs by status.',
    labelNames: ['status'],
    registers,
    async collect() {
      const counts = await sources.testing.countByStatus();
      this.reset();
      for (const [status, n] of Object.entries(counts)) this.set({ status: status.toLowerCase() }, n);
    },
  });
  new Gauge({
    name: 'helios_websocket_connections',
    help: 'Open graphql-ws WebSockets.',
    registers,
    collect() {
      this.set(sources.openWebSockets());
    },
  });
  new Gauge({
    name: 'helios_graphql_active_subscriptions',
    help: 'GraphQL subscriptions running now (graphql-ws and SSE).',
    registers,
    collect() {
      this.set(sources.graphql.activeSubscriptions);
    },
  });
  new Counter({
    name: 'helios_subscription_slow_consumer_disconnects_total',
    help: 'Subscribers ended with SLOW_CONSUMER for falling too far behind, since this process started.',
    registers,
    collect() {
      this.reset();
      this.inc(feedCounters.slowConsumerDisconnects);
    },
  });

  return {
    registry,
    contentType: registry.contentType,
    async scrape() {
      const standard = await registry.metrics();
      // One series per breaker or flag: written directly (exposition.ts), after prom-client's part.
      const out = new ExpositionWriter();
      writeBreakers(out, sources.breakers.registry.list(), transitions);
      writeFlags(out, sources.flags);
      writeOperations(out, sources.graphql);
      writeModuleDurations(out, sources.modules);
      return `${standard}\n${out.text()}`;
    },
    close: stopTransitions,
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(null), ms);
    timer.unref();
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
