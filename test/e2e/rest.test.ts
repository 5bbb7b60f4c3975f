/**
 * The seeds' REST API over real HTTP: every endpoint of both seed documents with their example
 * bodies, the two deployment workflows step by step, the error statuses, auth and audit, and the
 * OpenAPI document (every route documented; every response matches its documented schema).
 */
import { cpSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AuditLogDocument, CreateApiTokenDocument, FeatureFlagDocument, ModuleDocument } from '../gql/graphql.js';
import { REST_ROUTES } from '../../src/rest/routes.js';
import type { JsonSchema } from '../../src/rest/schema.js';
import { serverPool } from '../support/pool.js';
import { TEST_ADMIN_TOKEN, type TestServer } from '../support/server.js';

const pool = serverPool();

/** The modules folder laid out as the seeds' dotted paths name it (`src.ml.inference.neural_predictor_v2`). */
function seedModulesDir(): string {
  const dir = pool.modulesDir();
  const put = (from: string, to: string) => {
    mkdirSync(path.dirname(path.join(dir, to)), { recursive: true });
    cpSync(path.join('examples/modules', from), path.join(dir, to));
  };
  put('ml/neural_predictor_v2.js', 'src/ml/inference/neural_predictor_v2.js');
  put('trading/paper_trading_v2.js', 'src/trading/services/paper_trading_v2.js');
  put('trading/paper_trading_v2.js', 'src/trading/services/paper_trading_v3.js');
  put('market_simulator.js', 'src/features/my_new_feature.js');
  return dir;
}

interface Answer {
  status: number;
  headers: Headers;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON under test
}

interface Call {
  body?: unknown;
  /** Sent as is (malformed JSON, a body without a JSON content type). */
  raw?: string;
  /** Default: the admin token; null sends none. */
  token?: string | null;
  headers?: Record<string, string>;
}

let documentSchemas: Record<string, JsonSchema> | null = null;
const responseSchemas = new Map<string, JsonSchema>();

async function start(env: Record<string, string> = {}) {
  const h = await pool.start({ env: { HELIOS_MODULES_DIR: seedModulesDir(), HELIOS_MODULE_INIT_TIMEOUT_MS: '1500', HELIOS_MODULE_MAX_HEAP_MB: '32', ...env } });
  const base = h.url.replace(/\/graphql$/, '');
  const api = async (method: string, url: string, call: Call = {}): Promise<Answer> => {
    const token = call.token === undefined ? TEST_ADMIN_TOKEN : call.token;
    const headers: Record<string, string> = { ...(token ? { authorization: `Bearer ${token}` } : {}), ...call.headers };
    let body: string | undefined;
    if (call.raw !== undefined) body = call.raw;
    else if (call.body !== undefined) {
      body = JSON.stringify(call.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(base + url, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await res.text();
    const answer: Answer = { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
    await conforms(base, method, url, answer);
    return answer;
  };
  return Object.assign(h, { api, base });
}

// ---- responses against the OpenAPI document ----

async function conforms(base: string, method: string, url: string, answer: Answer): Promise<void> {
  const pathname = new URL(url, 'http://x').pathname;
  if (!pathname.startsWith('/api/modularity/')) return;
  if (!documentSchemas) {
    const doc = (await (await fetch(`${base}/api/openapi.json`)).json()) as {
      components: { schemas: Record<string, JsonSchema> };
      paths: Record<string, Record<string, { responses: Record<string, { content?: { 'application/json': { schema: JsonSchema } } }> }>>;
    };
    documentSchemas = doc.components.schemas;
    for (const [template, ops] of Object.entries(doc.paths)) {
      for (const [m, op] of Object.entries(ops)) {
        for (const [status, response] of Object.entries(op.responses)) {
          const schema = response.content?.['application/json'].schema ?? { $ref: '#/components/schemas/Error' };
          responseSchemas.set(`${m.toUpperCase()} ${template} ${status}`, schema);
        }
      }
    }
  }
  const route = REST_ROUTES.find((r) => r.method === method && new RegExp(`^${r.path.replace(/\{[a-z_]+\}/g, '[^/]+')}$`).test(pathname));
  const schema = route ? responseSchemas.get(`${method} ${route.path} ${answer.status}`) : { $ref: '#/components/schemas/Error' };
  expect(schema, `${method} ${pathname} answered ${answer.status}, which its OpenAPI entry does not list`).toBeDefined();
  expect(violations(answer.body, schema!, '$'), `${method} ${pathname} ${answer.status}`).toEqual([]);
}

function violations(value: unknown, schema: JsonSchema, at: string): string[] {
  if (schema.$ref) return violations(value, documentSchemas![schema.$ref.replace('#/components/schemas/', '')]!, at);
  const types = schema.type === undefined ? [] : Array.isArray(schema.type) ? schema.type : [schema.type];
  const typeOf = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v);
  const actual = typeOf(value);
  if (types.length && !types.some((t) => t === actual || (t === 'number' && actual === 'integer'))) return [`${at}: ${actual} is not ${types.join('|')}`];
  if (schema.enum && typeof value === 'string' && !schema.enum.includes(value)) return [`${at}: "${value}" not in enum`];
  const out: string[] = [];
  if (actual === 'array' && schema.items) (value as unknown[]).forEach((v, i) => out.push(...violations(v, schema.items!, `${at}[${i}]`)));
  if (actual === 'object' && schema.properties) {
    const record = value as Record<string, unknown>;
    for (const key of schema.required ?? []) if (!(key in record)) out.push(`${at}.${key}: missing`);
    for (const [key, v] of Object.entries(record)) {
      const property = schema.properties[key];
      if (!property) out.push(`${at}.${key}: not documented`);
      else out.push(...violations(v, property, `${at}.${key}`));
    }
  }
  return out;
}

async function untilRunFinished(h: Awaited<ReturnType<typeof start>>, moduleName: string, runId: string) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const history = await h.api('GET', `/api/modularity/modules/${moduleName}/test-history`);
    const run = history.body.test_runs.find((r: { id: string }) => r.id === runId);
    if (run && run.status !== 'running') return run;
    if (Date.now() > deadline) throw new Error(`test run ${runId} did not finish: ${JSON.stringify(history.body)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function tokenFor(h: TestServer, name: string, role: 'VIEWER' | 'OPERATOR') {
  const created = await h.query(CreateApiTokenDocument, { name, role });
  return created.createApiToken.token!;
}

describe('Quick Start: "Deploy New Module (Full Workflow)"', () => {
  it('runs step by step with the seed\'s bodies', async () => {
    const h = await start();
    // 1. Register module
    const registered = await h.api('POST', '/api/modularity/modules/register', {
      body: { name: 'my_new_feature', module_path: 'src.features.my_new_feature', version: '2.0.0', hot_reloadable: true },
    });
    expect(registered.status).toBe(201);
    expect(registered.body).toMatchObject({ name: 'my_new_feature', module_path: 'src/features/my_new_feature.js', version: '2.0.0', state: 'unloaded', hot_reloadable: true });
    // 2. Load module
    const loaded = await h.api('POST', '/api/modularity/modules/my_new_feature/load');
    expect(loaded.status).toBe(200);
    expect(loaded.body).toMatchObject({ state: 'active', breaker: { name: 'module:my_new_feature', state: 'closed' } });
    expect(loaded.body.loaded_at).toMatch(/^\d{4}-\d\d-\d\dT/);
    // 3. Test module
    const tested = await h.api('POST', '/api/modularity/modules/my_new_feature/test?module_type=generic');
    expect(tested.status).toBe(201);
    expect(tested.body).toMatchObject({ module_name: 'my_new_feature', module_type: 'generic', status: 'running', trigger: 'testModule', actor: 'bootstrap-admin' });
    const run = await untilRunFinished(h, 'my_new_feature', tested.body.id);
    expect(run).toMatchObject({ status: 'passed', failed: 0 });
    // 4. Enable for 10% traffic (creates the flag)
    const ten = await h.api('POST', '/api/modularity/feature-flags/percentage', { body: { name: 'my_new_feature', percentage: 10.0 } });
    expect(ten.status).toBe(200);
    expect(ten.body).toMatchObject({ name: 'my_new_feature', enabled: true, strategy: 'percentage', percentage: 10, effective_percentage: 10 });
    // 5. Monitor, then 50%
    const fifty = await h.api('POST', '/api/modularity/feature-flags/percentage', { body: { name: 'my_new_feature', percentage: 50.0 } });
    expect(fifty.body).toMatchObject({ percentage: 50, enabled: true });
    // 6. Full rollout (100%)
    const full = await h.api('POST', '/api/modularity/feature-flags/enable', { body: { name: 'my_new_feature', enabled: true, strategy: 'all_on' } });
    expect(full.status).toBe(200);
    expect(full.body).toMatchObject({ name: 'my_new_feature', enabled: true, strategy: 'all_on' });
    const check = await h.api('GET', `/api/modularity/feature-flags/my_new_feature?context=${encodeURIComponent('{"session_id":"abc123"}')}`);
    expect(check.body).toMatchObject({ name: 'my_new_feature', enabled: true, reason: 'static', strategy: 'all_on' });

    // One behaviour: GraphQL sees what REST did, and the audit names the token.
    const flag = await h.query(FeatureFlagDocument, { name: 'my_new_feature' });
    expect(flag.featureFlag).toMatchObject({ enabled: true, strategy: 'ALL_ON', percentage: 50 });
    const audit = await h.query(AuditLogDocument, { first: 10, target: 'my_new_feature' });
    expect(audit.auditLog.edges.map((e) => [e.node.action, e.node.actor])).toEqual([
      ['enableFeatureFlag', 'bootstrap-admin'],
      ['setFlagPercentage', 'bootstrap-admin'],
      ['setFlagPercentage', 'bootstrap-admin'],
      ['loadModule', 'bootstrap-admin'],
      ['registerModule', 'bootstrap-admin'],
    ]);
  });
});

describe('Guide: "Deploy New Neural Network Version"', () => {
  it('runs step by step with the seed\'s bodies, including the calls sent without a content type', async () => {
    const h = await start();
    // What the scenario takes as given: the dependency and the old predictor, serving.
    expect((await h.api('POST', '/api/modularity/modules/register', { body: { name: 'feature_extractor', module_path: 'feature_extractor', version: '1.0.0' } })).status).toBe(201);
    expect(
      (await h.api('POST', '/api/modularity/modules/register', {
        body: { name: 'neural_predictor', module_path: 'ml.neural_predictor', version: '1.0.0', dependencies: ['feature_extractor'] },
      })).status,
    ).toBe(201);
    expect((await h.api('POST', '/api/modularity/modules/neural_predictor/load')).body.state).toBe('active');

    // Step 1: Register the new module
    const step1 = await h.api('POST', '/api/modularity/modules/register', {
      body: { name: 'neural_predictor_v2', module_path: 'src.ml.inference.neural_predictor_v2', version: '2.0.0', dependencies: ['feature_extractor'], hot_reloadable: true },
    });
    expect(step1.status).toBe(201);
    expect(step1.body).toMatchObject({ state: 'unloaded', dependencies: ['feature_extractor'], module_path: 'src/ml/inference/neural_predictor_v2.js' });
    // Step 2: Load and test
    const load = await h.api('POST', '/api/modularity/modules/neural_predictor_v2/load');
    expect(load.body).toMatchObject({ state: 'active', methods: ['predict', 'stats'] });
    const test = await h.api('POST', '/api/modularity/modules/neural_predictor_v2/test?module_type=ml');
    expect(test.status).toBe(201);
    expect(await untilRunFinished(h, 'neural_predictor_v2', test.body.id)).toMatchObject({ status: 'passed', module_type: 'ml' });
    // Step 3: 10% of traffic
    const step3 = await h.api('POST', '/api/modularity/feature-flags/percentage', { body: { name: 'neural_network_v2', percentage: 10.0 } });
    expect(step3.body).toMatchObject({ name: 'neural_network_v2', strategy: 'percentage', percentage: 10, enabled: true });
    // Step 4: Monitor circuit breakers
    const step4 = await h.api('GET', '/api/modularity/circuit-breakers');
    expect(step4.status).toBe(200);
    expect(step4.body.breakers.map((b: { name: string; state: string }) => [b.name, b.state])).toEqual(
      expect.arrayContaining([['module:neural_predictor_v2', 'closed'], ['module:feature_extractor', 'closed']]),
    );
    // Step 5: 25%, 50%, 100%, as the seed writes them: `curl -d` without -H, so
    // Content-Type is application/x-www-form-urlencoded.
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const p25 = await h.api('POST', '/api/modularity/feature-flags/percentage', { raw: '{"name": "neural_network_v2", "percentage": 25.0}', headers: form });
    expect([p25.status, p25.body.percentage]).toEqual([200, 25]);
    const p50 = await h.api('POST', '/api/modularity/feature-flags/percentage', { raw: '{"name": "neural_network_v2", "percentage": 50.0}', headers: form });
    expect([p50.status, p50.body.percentage]).toEqual([200, 50]);
    const p100 = await h.api('POST', '/api/modularity/feature-flags/enable', { raw: '{"name": "neural_network_v2", "enabled": true, "strategy": "all_on"}', headers: form });
    expect(p100.body).toMatchObject({ enabled: true, strategy: 'all_on' });
    // Step 6: Hot-swap the old module
    const step6 = await h.api('POST', '/api/modularity/modules/swap', {
      body: { name: 'neural_predictor', new_version_path: 'src.ml.inference.neural_predictor_v2' },
    });
    expect(step6.status).toBe(200);
    expect(step6.body).toMatchObject({
      module: { name: 'neural_predictor', state: 'active', version: 'neural_predictor_v2', module_path: 'src/ml/inference/neural_predictor_v2.js', previous_version: '1.0.0' },
      test_run_id: null,
    });
    const graphql = await h.query(ModuleDocument, { name: 'neural_predictor' });
    expect(graphql.module).toMatchObject({ version: 'neural_predictor_v2', state: 'ACTIVE' });
  });
});

describe('every other seed endpoint', () => {
  it('answers with the seed\'s examples', async () => {
    const h = await start();
    const operator = await tokenFor(h, 'ci', 'OPERATOR');
    // Register example (ADMIN), with its dependency registered first.
    await h.api('POST', '/api/modularity/modules/register', { body: { name: 'market_simulator', module_path: 'market_simulator', version: '1.0.0' } });
    const reg = await h.api('POST', '/api/modularity/modules/register', {
      body: { name: 'paper_trading_v2', module_path: 'src.trading.services.paper_trading_v2', version: '2.0.0', dependencies: ['market_simulator'], hot_reloadable: true },
    });
    expect(reg.status).toBe(201);
    // Load with ?force_reload=false, then again with true (a reload of the same version).
    const load = await h.api('POST', '/api/modularity/modules/paper_trading_v2/load?force_reload=false', { token: operator });
    expect(load.body.state).toBe('active');
    const reload = await h.api('POST', '/api/modularity/modules/paper_trading_v2/load?force_reload=true', { token: operator });
    expect(reload.body).toMatchObject({ state: 'active', version: '2.0.0' });
    // Status of all and of one.
    const all = await h.api('GET', '/api/modularity/modules/status', { token: null });
    expect(all.body.modules.map((m: { name: string; state: string }) => [m.name, m.state])).toEqual([
      ['market_simulator', 'active'],
      ['paper_trading_v2', 'active'],
    ]);
    const one = await h.api('GET', '/api/modularity/modules/market_simulator/status', { token: null });
    expect(one.body).toMatchObject({ name: 'market_simulator', dependents: ['paper_trading_v2'] });
    // Hot-swap example.
    const swap = await h.api('POST', '/api/modularity/modules/swap', {
      token: operator,
      body: { name: 'paper_trading_v2', new_version_path: 'src.trading.services.paper_trading_v3' },
    });
    expect(swap.body.module).toMatchObject({ version: 'paper_trading_v3', previous_version: '2.0.0' });
    // Test with module_type=trading, then the history.
    const test = await h.api('POST', '/api/modularity/modules/paper_trading_v2/test?module_type=trading', { token: operator });
    expect(test.body).toMatchObject({ module_type: 'trading', actor: 'ci' });
    await untilRunFinished(h, 'paper_trading_v2', test.body.id);
    const history = await h.api('GET', '/api/modularity/modules/paper_trading_v2/test-history', { token: null });
    expect(history.body).toMatchObject({ module_name: 'paper_trading_v2', test_runs: [{ id: test.body.id, module_type: 'trading' }] });
    // Unload.
    const unload = await h.api('POST', '/api/modularity/modules/paper_trading_v2/unload', { token: operator });
    expect(unload.body).toMatchObject({ module: { state: 'unloaded' }, unloaded: ['paper_trading_v2'] });

    // Feature flags: list, check with context, enable (percentage), percentage, disable.
    const flags = await h.api('GET', '/api/modularity/feature-flags', { token: null });
    expect(flags.body.flags).toHaveLength(8);
    expect(flags.body.flags.find((f: { name: string }) => f.name === 'websocket_v2')).toMatchObject({ strategy: 'percentage', percentage: 25, enabled: false });
    const enable = await h.api('POST', '/api/modularity/feature-flags/enable', { token: operator, body: { name: 'neural_network_v2', enabled: true, strategy: 'percentage' } });
    expect(enable.body).toMatchObject({ enabled: true, strategy: 'percentage', percentage: 25 });
    const pct = await h.api('POST', '/api/modularity/feature-flags/percentage', { token: operator, body: { name: 'neural_network_v2', percentage: 25.0 } });
    expect(pct.body.effective_percentage).toBe(25);
    const check = await h.api('GET', `/api/modularity/feature-flags/neural_network_v2?context=${encodeURIComponent('{"session_id":"abc123"}')}`, { token: null });
    const expected = h.server.app.services.flags.evaluate('neural_network_v2', { sessionId: 'abc123' });
    expect(check.body).toMatchObject({ name: 'neural_network_v2', enabled: expected.enabled, reason: 'split', bucket: expected.bucket, percentage: 25, flag: { name: 'neural_network_v2' } });
    const disable = await h.api('POST', '/api/modularity/feature-flags/disable?name=neural_network_v2', { token: operator });
    expect(disable.body).toMatchObject({ name: 'neural_network_v2', enabled: false });
    const off = await h.api('GET', `/api/modularity/feature-flags/neural_network_v2?context=${encodeURIComponent('{"session_id":"abc123"}')}`, { token: null });
    expect(off.body).toMatchObject({ enabled: false, reason: 'disabled' });

    // Circuit breakers: open one through GraphQL's service, reset it over REST, reset all.
    await h.server.app.services.breakers.open('test', 'module:market_simulator');
    const listed = await h.api('GET', '/api/modularity/circuit-breakers', { token: null });
    expect(listed.body.breakers.find((b: { name: string }) => b.name === 'module:market_simulator').state).toBe('forced_open');
    const reset = await h.api('POST', `/api/modularity/circuit-breakers/${encodeURIComponent('module:market_simulator')}/reset`, { token: operator });
    expect(reset.body).toMatchObject({ name: 'module:market_simulator', state: 'closed' });
    await h.server.app.services.breakers.open('test', 'module:paper_trading_v2');
    const resetAll = await h.api('POST', '/api/modularity/circuit-breakers/reset-all', { token: operator });
    expect(resetAll.body.breakers.every((b: { state: string }) => b.state === 'closed')).toBe(true);

    // Overall status.
    const status = await h.api('GET', '/api/modularity/status', { token: null });
    expect(status.body).toMatchObject({
      modules: { total: 2, active: 1, unloaded: 1 },
      feature_flags: { total: 8 },
      circuit_breakers: { closed: status.body.circuit_breakers.total },
    });

    // The audit names the operator token for its changes.
    const audit = await h.query(AuditLogDocument, { first: 50 });
    const byAction = (action: string) => audit.auditLog.edges.filter((e) => e.node.action === action).map((e) => e.node.actor);
    expect(byAction('swapModule')).toEqual(['ci']);
    expect(byAction('disableFeatureFlag')).toEqual(['ci']);
    expect(byAction('resetCircuitBreaker')).toEqual(['ci']);
    expect(byAction('resetAllCircuitBreakers').length).toBeGreaterThan(0);
    expect(new Set(byAction('resetAllCircuitBreakers'))).toEqual(new Set(['ci']));
    expect(byAction('registerModule')).toEqual(['bootstrap-admin', 'bootstrap-admin']);
  });
});

describe('errors', () => {
  it('400 for invalid input, with the snake_case field', async () => {
    const h = await start();
    const malformed = await h.api('POST', '/api/modularity/feature-flags/percentage', { raw: '{"name": "x", "percentage": ', headers: { 'content-type': 'application/json' } });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error).toEqual({ code: 'MALFORMED_JSON', message: 'The request body is not valid JSON', field: null });

    const camel = await h.api('POST', '/api/modularity/modules/register', { body: { name: 'm', modulePath: 'counter', version: '1.0.0' } });
    expect(camel.status).toBe(400);
    expect(camel.body.errors.map((e: { field: string }) => e.field)).toEqual(['modulePath', 'module_path']);

    const typed = await h.api('POST', '/api/modularity/feature-flags/percentage', { body: { name: 'x', percentage: '50' } });
    expect([typed.status, typed.body.error.field, typed.body.error.code]).toEqual([400, 'percentage', 'INVALID_ARGUMENT']);
    const range = await h.api('POST', '/api/modularity/feature-flags/percentage', { body: { name: 'x', percentage: 150 } });
    expect([range.status, range.body.error.code, range.body.error.field]).toEqual([400, 'INVALID_PERCENTAGE', 'percentage']);
    const strategy = await h.api('POST', '/api/modularity/feature-flags/enable', { body: { name: 'x', strategy: 'most' } });
    expect([strategy.status, strategy.body.error.code]).toEqual([400, 'INVALID_STRATEGY']);
    const path = await h.api('POST', '/api/modularity/modules/register', { body: { name: 'm', module_path: '../../etc/passwd', version: '1.0.0' } });
    expect([path.status, path.body.error.code, path.body.error.field]).toEqual([400, 'INVALID_MODULE_PATH', 'module_path']);
    const flagQuery = await h.api('POST', '/api/modularity/modules/counter/load?force_reload=maybe');
    expect([flagQuery.status, flagQuery.body.error.field]).toEqual([400, 'force_reload']);
    const unknownQuery = await h.api('GET', '/api/modularity/feature-flags/websocket_v2?ctx=1');
    expect([unknownQuery.status, unknownQuery.body.error.field]).toEqual([400, 'ctx']);
    const context = await h.api('GET', '/api/modularity/feature-flags/websocket_v2?context=session_id=abc');
    expect([context.status, context.body.error.field]).toEqual([400, 'context']);
    const noName = await h.api('POST', '/api/modularity/feature-flags/disable');
    expect([noName.status, noName.body.error.field]).toEqual([400, 'name']);
    const type = await h.api('POST', '/api/modularity/modules/x/test?module_type=quantum');
    expect([type.status, type.body.error.field]).toEqual([400, 'module_type']);
    // Nothing changed.
    expect(h.server.app.services.flags.get('x')).toBeNull();
    expect(h.server.app.services.modules.list()).toEqual([]);
  });

  it('401 without a valid token where one is needed, 403 for a role too low', async () => {
    const h = await start();
    const viewer = await tokenFor(h, 'reader', 'VIEWER');
    const operator = await tokenFor(h, 'ops', 'OPERATOR');
    const anonymous = await h.api('POST', '/api/modularity/feature-flags/percentage', { token: null, body: { name: 'websocket_v2', percentage: 30 } });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error.code).toBe('UNAUTHENTICATED');
    expect(anonymous.headers.get('www-authenticate')).toBe('Bearer');
    const bad = await h.api('GET', '/api/modularity/feature-flags', { token: 'no-such-token-0123456789' });
    expect([bad.status, bad.body.error.code]).toEqual([401, 'UNAUTHENTICATED']);
    const low = await h.api('POST', '/api/modularity/circuit-breakers/reset-all', { token: viewer });
    expect([low.status, low.body.error.code]).toEqual([403, 'FORBIDDEN']);
    const notAdmin = await h.api('POST', '/api/modularity/modules/register', { token: operator, body: { name: 'm', module_path: 'counter', version: '1.0.0' } });
    expect([notAdmin.status, notAdmin.body.error.code]).toEqual([403, 'FORBIDDEN']);
    expect(h.server.app.services.flags.get('websocket_v2')!.percentage).toBe(25);
    expect(h.server.app.services.modules.list()).toEqual([]);
    // A viewer reads.
    expect((await h.api('GET', '/api/modularity/status', { token: viewer })).status).toBe(200);
  });

  it('401 for reads too with HELIOS_ANONYMOUS=none', async () => {
    const h = await start({ HELIOS_ANONYMOUS: 'none' });
    const read = await h.api('GET', '/api/modularity/feature-flags', { token: null });
    expect([read.status, read.body.error.code]).toEqual([401, 'UNAUTHENTICATED']);
    expect((await h.api('GET', '/api/modularity/feature-flags')).status).toBe(200);
  });

  it('404 for an unknown flag, breaker, module or route; 405 for a wrong method', async () => {
    const h = await start();
    const cases: Array<[string, string, unknown, string]> = [
      ['GET', '/api/modularity/feature-flags/no_such_flag', undefined, 'FLAG_NOT_FOUND'],
      ['POST', '/api/modularity/feature-flags/disable?name=no_such_flag', undefined, 'FLAG_NOT_FOUND'],
      ['POST', '/api/modularity/feature-flags/enable', { name: 'no_such_flag', enabled: false }, 'FLAG_NOT_FOUND'],
      ['POST', '/api/modularity/circuit-breakers/no_such_breaker/reset', undefined, 'BREAKER_NOT_FOUND'],
      ['GET', '/api/modularity/modules/no_such_module/status', undefined, 'MODULE_NOT_FOUND'],
      ['POST', '/api/modularity/modules/no_such_module/load', undefined, 'MODULE_NOT_FOUND'],
      ['POST', '/api/modularity/modules/no_such_module/unload', undefined, 'MODULE_NOT_FOUND'],
      ['POST', '/api/modularity/modules/no_such_module/test?module_type=ml', undefined, 'MODULE_NOT_FOUND'],
      ['GET', '/api/modularity/modules/no_such_module/test-history', undefined, 'MODULE_NOT_FOUND'],
      ['POST', '/api/modularity/modules/swap', { name: 'no_such_module', new_version_path: 'counter' }, 'MODULE_NOT_FOUND'],
      ['GET', '/api/modularity/no/such/route', undefined, 'ROUTE_NOT_FOUND'],
    ];
    for (const [method, url, body, code] of cases) {
      const answer = await h.api(method, url, body === undefined ? {} : { body });
      expect([method, url, answer.status, answer.body.error.code]).toEqual([method, url, 404, code]);
    }
    const wrong = await h.api('GET', '/api/modularity/circuit-breakers/reset-all');
    expect([wrong.status, wrong.body.error.code, wrong.headers.get('allow')]).toEqual([405, 'METHOD_NOT_ALLOWED', 'POST']);
  });

  it('409 for a state change the current state refuses', async () => {
    const h = await start();
    const register = (body: object) => h.api('POST', '/api/modularity/modules/register', { body });
    await register({ name: 'market_simulator', module_path: 'market_simulator', version: '1.0.0' });
    await register({ name: 'paper_trading', module_path: 'trading.paper_trading', version: '1.0.0', dependencies: ['market_simulator'], hot_reloadable: false });
    const again = await register({ name: 'market_simulator', module_path: 'market_simulator', version: '1.0.0' });
    expect([again.status, again.body.error.code]).toEqual([409, 'MODULE_ALREADY_EXISTS']);
    const swapUnloaded = await h.api('POST', '/api/modularity/modules/swap', { body: { name: 'paper_trading', new_version_path: 'trading.paper_trading_v2' } });
    expect([swapUnloaded.status, swapUnloaded.body.error.code, swapUnloaded.body.error.field]).toEqual([409, 'INVALID_MODULE_STATE', 'name']);
    await h.api('POST', '/api/modularity/modules/paper_trading/load');
    const notHot = await h.api('POST', '/api/modularity/modules/swap', { body: { name: 'paper_trading', new_version_path: 'trading.paper_trading_v2' } });
    expect([notHot.status, notHot.body.error.code]).toEqual([409, 'NOT_HOT_RELOADABLE']);
    const dependents = await h.api('POST', '/api/modularity/modules/market_simulator/unload');
    expect([dependents.status, dependents.body.error.code, dependents.body.error.field]).toEqual([409, 'DEPENDENTS_LOADED', 'cascade']);
    expect(h.server.app.services.modules.get('market_simulator')!.state).toBe('ACTIVE');
    const cascade = await h.api('POST', '/api/modularity/modules/market_simulator/unload?cascade=true');
    expect(cascade.body.unloaded).toEqual(['paper_trading', 'market_simulator']);
    expect((await register({ name: 'broken', module_path: 'bad/throws_in_create', version: '1.0.0' })).status).toBe(201);
    const failed = await h.api('POST', '/api/modularity/modules/broken/load');
    expect([failed.status, failed.body.error.code]).toEqual([409, 'MODULE_LOAD_FAILED']);
    expect((await h.api('GET', '/api/modularity/modules/broken/status')).body).toMatchObject({ state: 'failed', last_error: expect.any(String) });
  });

  it('applies the HTTP guards: foreign origin 403, body cap 413', async () => {
    const h = await start({ HELIOS_MAX_BODY_BYTES: '1024' });
    const foreign = await fetch(`${h.base}/api/modularity/feature-flags`, { headers: { origin: 'https://evil.example' } });
    expect(foreign.status).toBe(403);
    const big = await fetch(`${h.base}/api/modularity/feature-flags/percentage`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'x'.repeat(2000), percentage: 1 }),
    });
    expect(big.status).toBe(413);
  });

  it('reads a body above 16 KiB like any other (the form Yoga takes big bodies in is Yoga\'s alone)', async () => {
    const h = await start();
    const description = 'd'.repeat(20_000);
    const answer = await h.api('POST', '/api/modularity/feature-flags/percentage', { body: { name: 'big_body_flag', percentage: 30, padding: description } });
    // Read and validated as JSON: the unknown field is named, not MALFORMED_JSON.
    expect(answer.status).toBe(400);
    expect(answer.body.error.code).not.toBe('MALFORMED_JSON');
    expect(JSON.stringify(answer.body)).toContain('padding');
  });
});

describe('OpenAPI document', () => {
  /** Every endpoint both seed documents show, as they write them. */
  const SEED_ENDPOINTS = [
    'GET /api/modularity/modules/status',
    'GET /api/modularity/modules/{module_name}/status',
    'POST /api/modularity/modules/register',
    'POST /api/modularity/modules/{module_name}/load',
    'POST /api/modularity/modules/{module_name}/unload',
    'POST /api/modularity/modules/swap',
    'GET /api/modularity/feature-flags',
    'GET /api/modularity/feature-flags/{flag_name}',
    'POST /api/modularity/feature-flags/enable',
    'POST /api/modularity/feature-flags/percentage',
    'POST /api/modularity/feature-flags/disable',
    'GET /api/modularity/circuit-breakers',
    'POST /api/modularity/circuit-breakers/{breaker_name}/reset',
    'POST /api/modularity/circuit-breakers/reset-all',
    'POST /api/modularity/modules/{module_name}/test',
    'GET /api/modularity/modules/{module_name}/test-history',
    'GET /api/modularity/status',
  ];

  it('documents every route (and only those), every seed endpoint among them, with resolvable references', async () => {
    const h = await start();
    const res = await fetch(`${h.base}/api/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, { parameters: Array<{ name: string; in: string }> }>>; components: { schemas: object } };
    expect(doc.openapi).toBe('3.1.0');
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));
    expect(documented.sort()).toEqual(REST_ROUTES.map((r) => `${r.method} ${r.path}`).sort());
    expect(documented).toEqual(expect.arrayContaining(SEED_ENDPOINTS));
    for (const route of REST_ROUTES) {
      const op = doc.paths[route.path]![route.method.toLowerCase()]!;
      expect(op.parameters.filter((p) => p.in === 'query').map((p) => p.name)).toEqual((route.query ?? []).map((q) => q.name));
    }
    const text = JSON.stringify(doc);
    for (const [, target] of text.matchAll(/"\$ref":"#\/components\/(?:schemas|responses)\/([A-Za-z0-9]+)"/g)) {
      expect(text).toContain(`"${target}":{`);
    }
    // The seeds' query parameters are there.
    const queryOf = (p: string) => doc.paths[p]!.post?.parameters.filter((x) => x.in === 'query').map((x) => x.name);
    expect(queryOf('/api/modularity/modules/{module_name}/load')).toContain('force_reload');
    expect(queryOf('/api/modularity/modules/{module_name}/test')).toEqual(['module_type']);
    expect(queryOf('/api/modularity/feature-flags/disable')).toEqual(['name']);
  });
});
