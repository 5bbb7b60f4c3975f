/**
 * The Prometheus registry (prom-client) over Helios's plain counters. Nothing here runs on a
 * hot path: breakers, flag evaluations, module invocations and GraphQL operations add to plain
 * numbers and typed arrays they own; every metric below copies them in its `collect()` (or
 * `get()`) when Prometheus scrapes.
 *
 * Breakers follow resilience4j's names and shapes (`resilience4j_circuitbreaker_*` becomes
 * `helios_circuitbreaker_*`), so its Grafana dashboards work after a prefix change: state as
 * one 0/1 series per state, failure and slow-call rates in percent (-1 while fewer than
 * `minimumCalls` calls back them), buffered calls (the sliding window's contents), calls as a
 * histogram by kind, and not-permitted calls as a counter.
 *
 * Rollout metrics (percentage and status) are not emitted: rollouts do not exist yet.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client';
import type { BreakerService } from '../breakers/service.js';
import { CALL_KINDS, type CircuitBreaker } from '../breakers/engine.js';
import { BREAKER_STATES, type BreakerState } from '../breakers/states.js';
import { feedCounters } from '../events.js';
import type { FlagService } from '../flags/service.js';
import { INVOCATION_OUTCOMES } from '../modules/metrics-counts.js';
import { MODULE_STATES } from '../modules/repository.js';
import type { ModuleService } from '../modules/service.js';
import type { TestRunService } from '../testing/service.js';
import { OPERATION_OUTCOMES, type GraphQLOperationCounters } from './graphql.js';
import { BUCKET_SLOTS, DURATION_BUCKETS_SECONDS, type DurationHistograms } from './histogram.js';

export interface MetricsSources {
  breakers: BreakerService;
  flags: FlagService;
  modules: ModuleService;
  testing: Pick<TestRunService, 'countByStatus'>;
  graphql: GraphQLOperationCounters;
  /** Open WebSockets (graphql-ws) right now. */
  openWebSockets: () => number;
}

export interface HeliosMetrics {
  readonly registry: Registry;
  readonly contentType: string;
  /** The exposition text. */
  scrape(): Promise<string>;
  /** Detaches listeners (breaker transitions). */
  close(): void;
}

/** How long a scrape waits for a worker's memory report before leaving that module out. */
const WORKER_MEMORY_TIMEOUT_MS = 1000;

const BUCKET_LABELS = [...DURATION_BUCKETS_SECONDS.map(String), '+Inf'];

interface HistogramValue {
  value: number;
  labels: Record<string, string>;
  metricName: string;
}

/** Appends one Prometheus histogram (cumulative buckets, _sum, _count) of series `series`. */
function pushHistogram(out: HistogramValue[], name: string, labels: Record<string, string>, h: DurationHistograms, series: number): void {
  const base = series * BUCKET_SLOTS;
  let cumulative = 0;
  for (let i = 0; i < BUCKET_SLOTS; i++) {
    cumulative += h.counts[base + i]!;
    out.push({ value: cumulative, labels: { ...labels, le: BUCKET_LABELS[i]! }, metricName: `${name}_bucket` });
  }
  out.push({ value: h.sumsMs[series]! / 1000, labels, metricName: `${name}_sum` });
  out.push({ value: cumulative, labels, metricName: `${name}_count` });
}

/**
 * A histogram whose buckets are read from our arrays at scrape time. prom-client's Histogram
 * can only `observe()`, which would put label hashing on the hot path, so this registers the
 * metric interface the registry formats (name, help, type, get()).
 */
function registerHistogram(registry: Registry, name: string, help: string, read: (out: HistogramValue[]) => void): void {
  const metric = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get: () => {
      const values: HistogramValue[] = [];
      read(values);
      return { name, help, type: 'histogram', aggregator: 'sum', values };
    },
  };
  registry.registerMetric(metric as unknown as Metric);
}

const stateLabel = (state: BreakerState): string => state.toLowerCase();

function slowCallRate(breaker: CircuitBreaker): number {
  const window = breaker.windowCounts;
  const minimum = breaker.config.minimumCalls;
  if (window !== null) return window.calls === 0 || window.calls < minimum ? -1 : (window.slowCalls * 100) / window.calls;
  const m = breaker.metrics;
  const settled = m.successes + m.failures;
  return settled === 0 || settled < minimum ? -1 : (m.slowCalls * 100) / settled;
}

export function createHeliosMetrics(sources: MetricsSources): HeliosMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const breakerList = () => sources.breakers.registry.list();

  // ---- circuit breakers ----
  new Gauge({
    name: 'helios_circuitbreaker_state',
    help: 'Circuit breaker state: 1 for the current state, 0 for the others.',
    labelNames: ['name', 'state'],
    registers,
    collect() {
      this.reset();
      for (const b of breakerList()) {
        const current = b.state;
        for (const s of BREAKER_STATES) this.set({ name: b.name, state: stateLabel(s) }, s === current ? 1 : 0);
      }
    },
  });
  registerHistogram(registry, 'helios_circuitbreaker_calls_seconds', 'Calls through a breaker by kind (successful, failed, ignored, not_permitted), since this process started.', (out) => {
    for (const b of breakerList()) {
      const h = b.callDurations;
      if (h === null) continue;
      CALL_KINDS.forEach((kind, series) => pushHistogram(out, 'helios_circuitbreaker_calls_seconds', { name: b.name, kind }, h, series));
    }
  });
  new Counter({
    name: 'helios_circuitbreaker_not_permitted_calls_total',
    help: 'Calls a breaker rejected (OPEN, FORCED_OPEN, HALF_OPEN at capacity), over its persisted lifetime.',
    labelNames: ['name'],
    registers,
    collect() {
      this.reset();
      for (const b of breakerList()) this.inc({ name: b.name }, b.metrics.rejections);
    },
  });
  new Gauge({
    name: 'helios_circuitbreaker_failure_rate',
    help: 'Failure rate in percent over the sliding window (or all settled calls without one); -1 below minimumCalls.',
    labelNames: ['name'],
    registers,
    collect() {
      this.reset();
      for (const b of breakerList()) this.set({ name: b.name }, b.metrics.failureRate ?? -1);
    },
  });
  new Gauge({
    name: 'helios_circuitbreaker_slow_call_rate',
    help: 'Slow calls in percent over the sliding window (or all settled calls without one); -1 below minimumCalls.',
    labelNames: ['name'],
    registers,
    collect() {
      this.reset();
      for (const b of breakerList()) this.set({ name: b.name }, slowCallRate(b));
    },
  });
  new Gauge({
    name: 'helios_circuitbreaker_buffered_calls',
    help: 'Calls held in the sliding window by kind (successful, failed); breakers without a window have no series.',
    labelNames: ['name', 'kind'],
    registers,
    collect() {
      this.reset();
      for (const b of breakerList()) {
        const w = b.windowCounts;
        if (w === null) continue;
        this.set({ name: b.name, kind: 'successful' }, w.calls - w.failures);
        this.set({ name: b.name, kind: 'failed' }, w.failures);
      }
    },
  });
  const transitions = new Map<string, { name: string; from: string; to: string; count: number }>();
  const stopTransitions = sources.breakers.registry.onTransition((e) => {
    const key = `${e.name}\u0000${e.from}\u0000${e.to}`;
    const entry = transitions.get(key);
    if (entry) entry.count++;
    else transitions.set(key, { name: e.name, from: stateLabel(e.from), to: stateLabel(e.to), count: 1 });
  });
  new Counter({
    name: 'helios_circuitbreaker_transitions_total',
    help: 'State transitions since this process started, by breaker and edge.',
    labelNames: ['name', 'from_state', 'to_state'],
    registers,
    collect() {
      this.reset();
      for (const t of transitions.values()) this.inc({ name: t.name, from_state: t.from, to_state: t.to }, t.count);
    },
  });

  // ---- feature flags ----
  new Counter({
    name: 'helios_flag_evaluations_total',
    help: 'Flag evaluations (GraphQL, OFREP, in-process) since this process started, by flag, result and reason.',
    labelNames: ['flag', 'result', 'reason'],
    registers,
    collect() {
      this.reset();
      for (const t of sources.flags.evaluationCounts?.tallies() ?? []) {
        this.inc({ flag: t.flag, result: t.enabled ? 'true' : 'false', reason: t.reason }, t.count);
      }
    },
  });
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
    name: 'helios_flag_effective_percentage',
    help: 'The percentage in force now, for PERCENTAGE and GRADUAL flags.',
    labelNames: ['flag'],
    registers,
    collect() {
      this.reset();
      for (const f of sources.flags.list()) {
        const p = sources.flags.effectivePercentage(f);
        if (p !== null) this.set({ flag: f.name }, p);
      }
    },
  });
  new Gauge({
    name: 'helios_flag_enabled',
    help: '1 when the flag is enabled, else 0.',
    labelNames: ['flag'],
    registers,
    collect() {
      this.reset();
      for (const f of sources.flags.list()) this.set({ flag: f.name }, f.enabled ? 1 : 0);
    },
  });

  // ---- modules ----
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
  registerHistogram(registry, 'helios_module_invocation_duration_seconds', 'Duration of module invocations that ran, by module and version.', (out) => {
    for (const [module, versions] of sources.modules.counters?.invocations ?? []) {
      for (const [version, counts] of versions) pushHistogram(out, 'helios_module_invocation_duration_seconds', { module, version }, counts.durations, 0);
    }
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

  // ---- test runs ----
  new Gauge({
    name: 'helios_test_runs',
    help: 'Recorded test runs by status.',
    labelNames: ['status'],
    registers,
    collect() {
      this.reset();
      for (const [status, n] of Object.entries(sources.testing.countByStatus())) this.set({ status: status.toLowerCase() }, n);
    },
  });

  // ---- transport ----
  registerHistogram(registry, 'helios_graphql_operation_duration_seconds', 'GraphQL operations executed (HTTP and graphql-ws), by type, name and outcome (error: the result carries errors).', (out) => {
    for (const op of sources.graphql.operations.values()) {
      OPERATION_OUTCOMES.forEach((outcome, series) => {
        if (op.durations.count(series) > 0) pushHistogram(out, 'helios_graphql_operation_duration_seconds', { type: op.type, name: op.name, outcome }, op.durations, series);
      });
    }
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
    scrape: () => registry.metrics(),
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
