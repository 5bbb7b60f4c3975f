/**
 * Prometheus /metrics end to end: the real server scraped over HTTP, the text read by an
 * independent parser (test/support/prometheus-text.ts), values checked to move after real
 * actions.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { feed } from '../../src/events.js';
import {
  BreakerStateChangedDocument,
  CreateApiTokenDocument,
  EvaluateFlagDocument,
  InvokeModuleDocument,
  LoadModuleDocument,
  ModuleDocument,
  OpenCircuitBreakerDocument,
  RegisterModuleDocument,
  SetFlagPercentageDocument,
  TestModuleDocument,
  TestRunDocument,
} from '../gql/graphql.js';
import { serverPool } from '../support/pool.js';
import { parsePrometheusText, sampleValue, type MetricFamily } from '../support/prometheus-text.js';
import { subscribe, TEST_ADMIN_TOKEN, untilListening, type TestServer } from '../support/server.js';

const pool = serverPool();

async function scrape(h: TestServer, headers: Record<string, string> = {}): Promise<Map<string, MetricFamily>> {
  const res = await fetch(h.url.replace(/\/graphql$/, '/metrics'), { headers });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}: ${text}`);
  expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parsePrometheusText(text);
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('/metrics', () => {
  it('lets the callers read who may read GraphQL', async () => {
    const h = await pool.start({ env: { HELIOS_ANONYMOUS: 'none' } });
    const url = h.url.replace(/\/graphql$/, '/metrics');
    expect((await fetch(url)).status).toBe(401);
    expect((await fetch(url, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const { createApiToken } = await h.query(CreateApiTokenDocument, { name: 'prometheus', role: 'VIEWER' });
    const viewer = await fetch(url, { headers: { authorization: `Bearer ${createApiToken.token!}` } });
    expect(viewer.status).toBe(200);
    expect(parsePrometheusText(await viewer.text()).has('helios_circuitbreaker_state')).toBe(true);
    expect((await fetch(url, { headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, origin: 'https://evil.example' } })).status).toBe(403);
    expect((await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } })).status).toBe(405);

    const open = await pool.start();
    const families = await scrape(open);
    // Default process metrics.
    expect(sampleValue(families, 'process_cpu_user_seconds_total')).toBeGreaterThanOrEqual(0);
    expect(sampleValue(families, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(sampleValue(families, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
  });

  it('is absent with HELIOS_METRICS=false, and nothing is counted', async () => {
    const h = await pool.start({ env: { HELIOS_METRICS: 'false' } });
    expect((await fetch(h.url.replace(/\/graphql$/, '/metrics'))).status).toBe(404);
    expect(h.server.app.services.flags.evaluationCounts).toBeNull();
    expect(h.server.app.services.modules.counters).toBeNull();
    expect(h.server.app.services.breakers.registry.getOrCreate('x').callDurations).toBeNull();
  });

  it('shows breakers with resilience4j names and shapes; a forced-open breaker is 1 for forced_open', async () => {
    const h = await pool.start();
    const breaker = h.server.app.services.breakers.registry.getOrCreate('payments', { slidingWindowSize: 10, minimumCalls: 2 });
    for (let i = 0; i < 3; i++) await breaker.call(async () => 'ok');
    for (let i = 0; i < 2; i++) await breaker.call(async () => { throw new Error('down'); }).catch(() => {});
    let m = await scrape(h);
    const state = (s: string) => sampleValue(m, 'helios_circuitbreaker_state', { name: 'payments', state: s });
    expect(['closed', 'open', 'half_open', 'forced_open', 'disabled'].map(state)).toEqual([1, 0, 0, 0, 0]);
    expect(sampleValue(m, 'helios_circuitbreaker_calls_seconds_count', { name: 'payments', kind: 'successful' })).toBe(3);
    expect(sampleValue(m, 'helios_circuitbreaker_calls_seconds_count', { name: 'payments', kind: 'failed' })).toBe(2);
    expect(sampleValue(m, 'helios_circuitbreaker_calls_seconds_bucket', { name: 'payments', kind: 'successful', le: '+Inf' })).toBe(3);
    expect(sampleValue(m, 'helios_circuitbreaker_failure_rate', { name: 'payments' })).toBe(40);
    expect(sampleValue(m, 'helios_circuitbreaker_slow_call_rate', { name: 'payments' })).toBe(0);
    expect(sampleValue(m, 'helios_circuitbreaker_buffered_calls', { name: 'payments', kind: 'successful' })).toBe(3);
    expect(sampleValue(m, 'helios_circuitbreaker_buffered_calls', { name: 'payments', kind: 'failed' })).toBe(2);
    expect(sampleValue(m, 'helios_circuitbreaker_not_permitted_calls_total', { name: 'payments' })).toBe(0);
    expect(m.get('helios_circuitbreaker_calls_seconds')!.type).toBe('histogram');

    const opened = await h.query(OpenCircuitBreakerDocument, { name: 'payments' });
    expect(opened.openCircuitBreaker.errors).toEqual([]);
    await breaker.call(async () => 'refused').catch(() => {});
    m = await scrape(h);
    expect(['closed', 'open', 'half_open', 'forced_open', 'disabled'].map(state)).toEqual([0, 0, 0, 1, 0]);
    expect(sampleValue(m, 'helios_circuitbreaker_not_permitted_calls_total', { name: 'payments' })).toBe(1);
    expect(sampleValue(m, 'helios_circuitbreaker_calls_seconds_count', { name: 'payments', kind: 'not_permitted' })).toBe(1);
    expect(sampleValue(m, 'helios_circuitbreaker_transitions_total', { name: 'payments', from_state: 'closed', to_state: 'forced_open' })).toBe(1);
    // A breaker's failure rate is -1 until minimumCalls calls back it.
    h.server.app.services.breakers.registry.getOrCreate('fresh');
    expect(sampleValue(await scrape(h), 'helios_circuitbreaker_failure_rate', { name: 'fresh' })).toBe(-1);
  });

  it('counts flag evaluations (GraphQL and OFREP alike) and shows effective percentages', async () => {
    const h = await pool.start();
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 40 });
    let m = await scrape(h);
    expect(sampleValue(m, 'helios_flag_effective_percentage', { flag: 'websocket_v2' })).toBe(40);
    expect(sampleValue(m, 'helios_flag_evaluations_total', { flag: 'llm_enhanced_decisions', result: 'true', reason: 'STATIC' })).toBeUndefined();

    for (let i = 0; i < 3; i++) await h.query(EvaluateFlagDocument, { name: 'llm_enhanced_decisions', context: { sessionId: `s${i}` } });
    await fetch(h.url.replace(/\/graphql$/, '/ofrep/v1/evaluate/flags/llm_enhanced_decisions'), { method: 'POST', body: '{}' });
    await h.query(EvaluateFlagDocument, { name: 'no_such_flag' });
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 55.5 });
    m = await scrape(h);
    expect(sampleValue(m, 'helios_flag_evaluations_total', { flag: 'llm_enhanced_decisions', result: 'true', reason: 'STATIC' })).toBe(4);
    expect(sampleValue(m, 'helios_flag_evaluations_unknown_total')).toBe(1);
    expect(sampleValue(m, 'helios_flag_effective_percentage', { flag: 'websocket_v2' })).toBe(55.5);
    expect(sampleValue(m, 'helios_flag_enabled', { flag: 'websocket_v2' })).toBe(1);
  });

  it('shows module state, invocations by version and outcome, durations, restarts and worker memory', async () => {
    const modulesDir = pool.modulesDir();
    const h = await pool.start({ env: { HELIOS_MODULES_DIR: modulesDir, HELIOS_MODULE_MAX_HEAP_MB: '32' } });
    await h.query(RegisterModuleDocument, { name: 'feature_extractor', modulePath: 'feature_extractor', version: '1.0.0', dependencies: [], moduleType: 'DATA_PIPELINE' });
    await h.query(RegisterModuleDocument, { name: 'flaky', modulePath: 'bad/misbehaves_in_call.js', version: '1' });
    let m = await scrape(h);
    expect(sampleValue(m, 'helios_module_state', { module: 'feature_extractor', state: 'unloaded' })).toBe(1);

    await h.query(LoadModuleDocument, { name: 'feature_extractor' });
    for (let i = 0; i < 4; i++) await h.query(InvokeModuleDocument, { name: 'feature_extractor', method: 'extract', args: { prices: [1, 2, 3] } });
    await h.query(InvokeModuleDocument, { name: 'feature_extractor', method: 'process', args: 'not a list' });
    await h.query(InvokeModuleDocument, { name: 'feature_extractor', method: 'nope' });
    m = await scrape(h);
    const fe = { module: 'feature_extractor', version: '1.0.0' };
    expect(sampleValue(m, 'helios_module_state', { module: 'feature_extractor', state: 'active' })).toBe(1);
    expect(sampleValue(m, 'helios_module_state', { module: 'feature_extractor', state: 'unloaded' })).toBe(0);
    expect(sampleValue(m, 'helios_module_invocations_total', { ...fe, outcome: 'success' })).toBe(4);
    expect(sampleValue(m, 'helios_module_invocations_total', { ...fe, outcome: 'failed' })).toBe(1);
    expect(sampleValue(m, 'helios_module_invocations_total', { ...fe, outcome: 'invalid' })).toBe(1);
    expect(sampleValue(m, 'helios_module_invocation_duration_seconds_count', fe)).toBe(6);
    expect(sampleValue(m, 'helios_module_invocation_duration_seconds_sum', fe)).toBeGreaterThan(0);
    expect(sampleValue(m, 'helios_module_worker_heap_used_bytes', fe)).toBeGreaterThan(100_000);
    // The module's breaker is a breaker like any other.
    expect(sampleValue(m, 'helios_circuitbreaker_calls_seconds_count', { name: 'module:feature_extractor', kind: 'successful' })).toBe(4);

    await h.query(LoadModuleDocument, { name: 'flaky' });
    await h.query(InvokeModuleDocument, { name: 'flaky', method: 'crashLater' });
    await until(async () => sampleValue(await scrape(h), 'helios_module_restarts_total', { module: 'flaky' }) === 1, 'a restart');
    await until(async () => (await h.query(ModuleDocument, { name: 'flaky' })).module!.state === 'ACTIVE', 'flaky back up');
  }, 30_000);

  it('counts test runs by status', async () => {
    const modulesDir = pool.modulesDir();
    const h = await pool.start({ env: { HELIOS_MODULES_DIR: modulesDir } });
    await h.query(RegisterModuleDocument, { name: 'feature_extractor', modulePath: 'feature_extractor', version: '1.0.0', dependencies: [], moduleType: 'DATA_PIPELINE' });
    expect(sampleValue(await scrape(h), 'helios_test_runs', { status: 'passed' })).toBe(0);
    const run = (await h.query(TestModuleDocument, { name: 'feature_extractor', moduleType: 'DATA_PIPELINE' })).testModule.testRun!;
    await until(async () => (await h.query(TestRunDocument, { id: run.id })).testRun!.status !== 'RUNNING', 'the run to finish');
    const m = await scrape(h);
    expect(sampleValue(m, 'helios_test_runs', { status: 'passed' })).toBe(1);
    expect(sampleValue(m, 'helios_test_runs', { status: 'running' })).toBe(0);
  }, 30_000);

  it('shows GraphQL operations, open WebSockets, active subscriptions and SLOW_CONSUMER disconnects', async () => {
    const h = await pool.start();
    await h.query(EvaluateFlagDocument, { name: 'hot_reload_modules' });
    await h.query(EvaluateFlagDocument, { name: 'hot_reload_modules' });
    await h.request(EvaluateFlagDocument, { name: 'x', context: { attributes: 5 } });
    let m = await scrape(h);
    expect(sampleValue(m, 'helios_graphql_operation_duration_seconds_count', { type: 'query', name: 'EvaluateFlag', outcome: 'success' })).toBe(2);
    expect(sampleValue(m, 'helios_graphql_operation_duration_seconds_count', { type: 'query', name: 'EvaluateFlag', outcome: 'error' })).toBe(1);
    expect(sampleValue(m, 'helios_websocket_connections')).toBe(0);
    expect(sampleValue(m, 'helios_graphql_active_subscriptions')).toBe(0);

    const client = h.wsClient();
    const events = subscribe(client, BreakerStateChangedDocument, { name: 'payments' });
    await untilListening(h, 'breakerStateChanged');
    m = await scrape(h);
    expect(sampleValue(m, 'helios_websocket_connections')).toBe(1);
    expect(sampleValue(m, 'helios_graphql_active_subscriptions')).toBe(1);
    expect(sampleValue(m, 'helios_graphql_operation_duration_seconds_count', { type: 'subscription', name: 'BreakerStateChanged', outcome: 'success' })).toBe(1);
    // A query over the socket is counted as over HTTP.
    await new Promise<void>((resolve, reject) => {
      client.subscribe({ query: 'query OverSocket { featureFlags { name } }' }, { next: () => {}, error: reject, complete: resolve });
    });
    m = await scrape(h);
    expect(sampleValue(m, 'helios_graphql_operation_duration_seconds_count', { type: 'query', name: 'OverSocket', outcome: 'success' })).toBe(1);

    events.dispose();
    await until(async () => sampleValue(await scrape(h), 'helios_graphql_active_subscriptions') === 0, 'the subscription to end');
    await client.dispose();
    await until(async () => sampleValue(await scrape(h), 'helios_websocket_connections') === 0, 'the socket to close');

    // Over SSE (envelop's subscribe path) too.
    const controller = new AbortController();
    const sse = await fetch(h.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: 'subscription OverSse { featureFlagChanged { name } }' }),
      signal: controller.signal,
    });
    expect(sse.status).toBe(200);
    await until(async () => sampleValue(await scrape(h), 'helios_graphql_active_subscriptions') === 1, 'the SSE subscription');
    expect(sampleValue(await scrape(h), 'helios_graphql_operation_duration_seconds_count', { type: 'subscription', name: 'OverSse', outcome: 'success' })).toBe(1);
    controller.abort();
    await until(async () => sampleValue(await scrape(h), 'helios_graphql_active_subscriptions') === 0, 'the SSE subscription to end');

    // A subscriber that falls behind is ended with SLOW_CONSUMER (the bus's feed, as every live feed uses).
    const before = sampleValue(await scrape(h), 'helios_subscription_slow_consumer_disconnects_total')!;
    let push: (n: number) => void = () => {};
    const slow = feed<number>((p) => {
      push = p;
      return () => {};
    }, 2);
    for (let i = 0; i < 3; i++) push(i);
    await expect(slow.next()).rejects.toThrow(/fell more than 2 events behind/);
    expect(sampleValue(await scrape(h), 'helios_subscription_slow_consumer_disconnects_total')).toBe(before + 1);
  });

  it('serves every metric the shipped Grafana dashboard queries', async () => {
    const dashboard = JSON.parse(readFileSync('examples/grafana/helios-dashboard.json', 'utf8')) as {
      panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
      templating: { list: Array<{ query: unknown }> };
    };
    const exprs = [
      ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
      ...dashboard.templating.list.map((v) => (typeof v.query === 'object' && v.query ? (v.query as { query: string }).query : String(v.query))),
    ];
    const names = new Set(exprs.flatMap((e) => e.match(/\b(helios|process|nodejs)_[a-z0-9_]+/g) ?? []));
    expect(names.size).toBeGreaterThan(20);
    const families = await scrape(await pool.start());
    const missing = [...names].filter((n) => !families.has(n) && !families.has(n.replace(/_(bucket|count|sum)$/, '')));
    expect(missing).toEqual([]);
  });
});
