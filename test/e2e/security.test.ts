/** Access control and hardening end to end: roles on both transports, tokens, anonymous modes, limits, masking. */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { print } from 'graphql';
import { createClient } from 'graphql-ws';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  ApiTokensDocument,
  AuditLogDocument,
  CreateApiTokenDocument,
  FeatureFlagChangedDocument,
  FeatureFlagsDocument,
  RegisterModuleDocument,
  RevokeApiTokenDocument,
  SetFlagPercentageDocument,
  ModuleDocument,
  LoadModuleDocument,
} from '../gql/graphql.js';
import { serverPool } from '../support/pool.js';
import { subscribe, untilListening, TEST_ADMIN_TOKEN, type TestServer } from '../support/server.js';

const pool = serverPool();
const start = pool.start;

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const anonymous = {} as Record<string, string>;

async function post(h: TestServer, body: unknown, headers: Record<string, string> = bearer(TEST_ADMIN_TOKEN)) {
  const res = await fetch(h.url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  let json: { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] } | unknown[] | null = null;
  try {
    json = JSON.parse(text) as typeof json;
  } catch {
    json = null;
  }
  return { status: res.status, json: json as unknown as { data?: Record<string, unknown>; errors?: { message: string; extensions?: { code?: string } }[] }, text };
}

async function tokens(h: TestServer) {
  const viewer = (await h.query(CreateApiTokenDocument, { name: 'dashboard', role: 'VIEWER' })).createApiToken.token!;
  const operator = (await h.query(CreateApiTokenDocument, { name: 'ops', role: 'OPERATOR' })).createApiToken.token!;
  return { viewer, operator };
}

/** Resolves with the close code when the server closes the socket. */
function closeCodeOf(client: ReturnType<typeof createClient>, query: string): Promise<number> {
  return new Promise((resolve) => {
    client.on('closed', (event) => resolve((event as { code: number }).code));
    client.subscribe({ query }, { next: () => {}, error: () => {}, complete: () => {} });
  });
}

describe('roles', () => {
  it('over HTTP: VIEWER reads, OPERATOR changes, ADMIN registers modules and manages tokens; the audit names the token', async () => {
    const modulesDir = pool.modulesDir();
    const h = await start({ env: { HELIOS_MODULES_DIR: modulesDir } });
    const { viewer, operator } = await tokens(h);
    expect(viewer).toMatch(/^hel_/);

    expect((await h.request(FeatureFlagsDocument, undefined, bearer(viewer))).data!.featureFlags).toHaveLength(8);
    const denied = await h.request(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 50 }, bearer(viewer));
    expect(denied.data!.setFlagPercentage).toEqual({ flag: null, errors: [expect.objectContaining({ code: 'FORBIDDEN' })] });

    const allowed = await h.request(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 50 }, bearer(operator));
    expect(allowed.data!.setFlagPercentage.errors).toEqual([]);
    const audit = await h.query(AuditLogDocument, { first: 1, target: 'websocket_v2' });
    expect(audit.auditLog.edges[0]!.node).toMatchObject({ actor: 'ops', action: 'setFlagPercentage' });

    const register = await h.request(RegisterModuleDocument, { name: 'm', modulePath: 'market_simulator.js', version: '1' }, bearer(operator));
    expect(register.data!.registerModule.errors[0]!.code).toBe('FORBIDDEN');
    expect((await h.request(LoadModuleDocument, { name: 'm' }, bearer(operator))).data!.loadModule.errors[0]!.code).toBe('MODULE_NOT_FOUND');
    expect((await h.query(RegisterModuleDocument, { name: 'm', modulePath: 'market_simulator.js', version: '1' })).registerModule.errors).toEqual([]);

    const list = await h.request(ApiTokensDocument, undefined, bearer(operator));
    expect(list.errors![0]!.extensions!.code).toBe('FORBIDDEN');
    const asAdmin = await h.query(ApiTokensDocument);
    expect(asAdmin.apiTokens.map((t) => [t.name, t.role, t.createdBy])).toEqual([['dashboard', 'VIEWER', 'bootstrap-admin'], ['ops', 'OPERATOR', 'bootstrap-admin']]);
    expect((await h.request(CreateApiTokenDocument, { name: 'x', role: 'ADMIN' }, bearer(operator))).data!.createApiToken.errors[0]!.code).toBe('FORBIDDEN');

    // Only hashes are stored.
    const stored = await h.server.app.database.kysely.selectFrom('api_tokens').selectAll().execute();
    expect(JSON.stringify(stored)).not.toContain(viewer.slice(4));
    expect(JSON.stringify(stored)).not.toContain(operator.slice(4));
  });

  it('over WebSocket: the token travels in connection_init; a viewer subscribes, an operator mutates, bad tokens get 4403', async () => {
    const h = await start();
    const { viewer, operator } = await tokens(h);
    const feed = subscribe(h.wsClient({ token: viewer }), FeatureFlagChangedDocument, {});
    await untilListening(h, 'featureFlagChanged');

    const viewerWs = h.wsClient({ token: viewer });
    const denied = await new Promise<unknown>((resolve) => {
      viewerWs.subscribe({ query: print(SetFlagPercentageDocument), variables: { name: 'websocket_v2', percentage: 5 } }, { next: resolve, error: resolve, complete: () => {} });
    });
    expect(JSON.stringify(denied)).toContain('FORBIDDEN');

    const operatorWs = h.wsClient({ token: operator });
    await new Promise<unknown>((resolve) => {
      operatorWs.subscribe({ query: print(SetFlagPercentageDocument), variables: { name: 'websocket_v2', percentage: 6 } }, { next: resolve, error: resolve, complete: () => {} });
    });
    expect((await feed.next()).featureFlagChanged).toMatchObject({ name: 'websocket_v2', actor: 'ops', flag: { percentage: 6 } });

    const bad = createClient({ url: h.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { authorization: 'Bearer hel_not-a-real-token' } });
    expect(await closeCodeOf(bad, '{ featureFlags { name } }')).toBe(4403);
    const malformed = createClient({ url: h.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { authorization: 'Basic abc' } });
    expect(await closeCodeOf(malformed, '{ featureFlags { name } }')).toBe(4403);
    await bad.dispose();
    await malformed.dispose();
  });
});

describe('tokens', () => {
  it('a revoked token is refused at once on HTTP, its open sockets are closed, and invalid and malformed ones are refused too', async () => {
    const h = await start();
    const { operator } = await tokens(h);
    const ws = h.wsClient({ token: operator });
    const live = subscribe(ws, FeatureFlagChangedDocument, {});
    await untilListening(h, 'featureFlagChanged');

    const revoked = await h.query(RevokeApiTokenDocument, { name: 'ops' });
    expect(revoked.revokeApiToken.apiToken!.revokedAt).not.toBeNull();
    const after = await post(h, { query: '{ featureFlags { name } }' }, bearer(operator));
    expect(after.status).toBe(401);
    expect(after.json.errors![0]!.extensions!.code).toBe('UNAUTHENTICATED');
    // Its open subscription ends: the socket is closed with 4403.
    await live.waitForCompletion();
    expect((live.error as { code?: number } | null)?.code).toBe(4403);
    const again = subscribe(ws, FeatureFlagChangedDocument, { name: 'x' });
    await again.waitForCompletion();
    expect((again.error as { code?: number } | null)?.code).toBe(4403);
    // Other tokens' sockets are untouched.
    const admin = subscribe(h.wsClient(), FeatureFlagChangedDocument, {});
    await untilListening(h, 'featureFlagChanged');
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 3 });
    expect((await admin.next()).featureFlagChanged.name).toBe('websocket_v2');

    for (const header of ['Bearer nope', 'Bearer hel_' + 'x'.repeat(43), 'Basic dXNlcjpwYXNz', 'Bearer']) {
      const res = await post(h, { query: '{ featureFlags { name } }' }, { authorization: header });
      expect(res.status, header).toBe(401);
      expect(res.json.errors![0]!.extensions!.code).toBe('UNAUTHENTICATED');
    }
    expect((await h.query(RevokeApiTokenDocument, { name: 'nobody' })).revokeApiToken.errors[0]!.code).toBe('TOKEN_NOT_FOUND');
    expect((await h.query(CreateApiTokenDocument, { name: 'dashboard', role: 'VIEWER' })).createApiToken.errors[0]!.code).toBe('TOKEN_ALREADY_EXISTS');
  });

  it('with no token configured, the first start creates an admin token, prints it once and writes it to an owner-only file', async () => {
    const printed: string[] = [];
    const first = await start({ env: { HELIOS_ADMIN_TOKEN: '' }, print: (t) => printed.push(t) });
    expect(printed).toHaveLength(1);
    const file = path.join(first.dir, 'admin-token');
    const token = readFileSync(file, 'utf8').trim();
    expect(printed[0]).toContain(token);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const ok = await post(first, { query: 'mutation { setFlagPercentage(name: "x", percentage: 1) { errors { code } } }' }, bearer(token));
    expect(ok.json.data).toEqual({ setFlagPercentage: { errors: [] } });
    await pool.stop(first);

    const second = await start({ dir: first.dir, env: { HELIOS_ADMIN_TOKEN: '' }, print: (t) => printed.push(t) });
    expect(printed).toHaveLength(1);
    expect((await post(second, { query: '{ apiTokens { name role } }' }, bearer(token))).json.data).toEqual({ apiTokens: [{ name: 'admin', role: 'ADMIN' }] });
  });
});

describe('anonymous callers', () => {
  it('may read on loopback by default but not change anything', async () => {
    const h = await start();
    expect((await h.request(FeatureFlagsDocument, undefined, anonymous)).data!.featureFlags).toHaveLength(8);
    const change = await h.request(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 1 }, anonymous);
    expect(change.data!.setFlagPercentage.errors[0]!.code).toBe('UNAUTHENTICATED');
    const feed = subscribe(h.wsClient({ token: null }), FeatureFlagChangedDocument, {});
    await untilListening(h, 'featureFlagChanged');
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 2 });
    expect((await feed.next()).featureFlagChanged.name).toBe('websocket_v2');
  });

  it('are refused with HELIOS_ANONYMOUS=none, on HTTP (401) and WebSocket (UNAUTHENTICATED per operation)', async () => {
    const h = await start({ env: { HELIOS_ANONYMOUS: 'none' } });
    const res = await post(h, { query: '{ featureFlags { name } }' }, anonymous);
    expect(res.status).toBe(401);
    // A socket without a token is accepted (GraphiQL sends its token with each operation), but
    // an operation without one is refused (see graphiql.test.ts).
    const client = createClient({ url: h.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0 });
    const refused = await new Promise<unknown>((resolve) => {
      client.subscribe({ query: '{ featureFlags { name } }' }, { next: resolve, error: resolve, complete: () => {} });
    });
    expect(JSON.stringify(refused)).toContain('UNAUTHENTICATED');
    await client.dispose();
    expect((await h.query(FeatureFlagsDocument)).featureFlags).toHaveLength(8);
  });
});

describe('limits on hostile operations', () => {
  const nested = (depth: number) => '{ ' + 'a { '.repeat(depth) + 'b' + ' }'.repeat(depth) + ' }';

  it('refuses deep, wide, long, directive-heavy and costly documents, batches and bodies, and stays healthy', async () => {
    const h = await start();
    const cases: [string, string][] = [
      [nested(13), 'QUERY_TOO_DEEP'],
      ['{ ' + Array.from({ length: 31 }, (_, i) => `a${i}: __typename`).join(' ') + ' }', 'TOO_MANY_ALIASES'],
      ['{ ' + Array.from({ length: 21 }, () => '__typename @include(if: true)').join(' ') + ' }', 'TOO_MANY_DIRECTIVES'],
      ['{ ' + '__typename '.repeat(2100) + '}', 'TOO_MANY_TOKENS'],
      ['{ ' + Array.from({ length: 25 }, (_, i) => `f${i}: featureFlags { name whitelist { attribute values } }`).join(' ') + ' }', 'QUERY_TOO_COMPLEX'],
    ];
    for (const [query, code] of cases) {
      const res = await post(h, { query });
      expect(res.json.errors?.[0]?.extensions?.code, code).toBe(code);
      expect(res.text).not.toMatch(/at .*\.(ts|js):\d+/);
    }

    const batch = await post(h, Array.from({ length: 11 }, () => ({ query: '{ __typename }' })));
    expect(batch.status).toBeGreaterThanOrEqual(400);
    const smallBatch = await post(h, Array.from({ length: 2 }, () => ({ query: '{ __typename }' })));
    expect(smallBatch.json).toEqual([{ data: { __typename: 'Query' } }, { data: { __typename: 'Query' } }]);

    const huge = await fetch(h.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ __typename }', variables: { pad: 'x'.repeat(300 * 1024) } }) });
    expect(huge.status).toBe(413);

    expect((await fetch(h.url.replace('/graphql', '/health'))).status).toBe(200);
    expect((await h.query(FeatureFlagsDocument)).featureFlags).toHaveLength(8);
  });

  it('applies the same limits over WebSocket without closing the socket, and caps sockets and operations', async () => {
    const h = await start({ env: { HELIOS_MAX_WS_PER_CLIENT: '2', HELIOS_MAX_OPERATIONS_PER_SOCKET: '2' } });
    const ws = h.wsClient();
    const first = subscribe(ws, FeatureFlagChangedDocument, {});
    await untilListening(h, 'featureFlagChanged');
    const deep = await new Promise<unknown>((resolve) => ws.subscribe({ query: nested(13) }, { next: resolve, error: resolve, complete: () => {} }));
    expect(JSON.stringify(deep)).toContain('QUERY_TOO_DEEP');
    const second = subscribe(ws, FeatureFlagChangedDocument, { name: 'websocket_v2' });
    await untilListening(h, 'featureFlagChanged', 2);
    const third = subscribe(ws, FeatureFlagChangedDocument, { name: 'x' });
    await third.waitForCompletion();
    expect(JSON.stringify(third.error ?? third.events)).toContain('TOO_MANY_SUBSCRIPTIONS');
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 9 });
    expect((await first.next()).featureFlagChanged.name).toBe('websocket_v2');
    expect((await second.next()).featureFlagChanged.name).toBe('websocket_v2');

    const extra = [h.wsClient(), h.wsClient()];
    subscribe(extra[0]!, FeatureFlagChangedDocument, {});
    await untilListening(h, 'featureFlagChanged', 3);
    expect(await closeCodeOf(extra[1]!, '{ __typename }')).toBe(1013);
  });
});

describe('browsers, introspection, GraphiQL and error masking', () => {
  it('refuses cross-site requests and WebSockets, allows its own origin', async () => {
    const h = await start();
    const own = new URL(h.url).origin;
    expect((await post(h, { query: '{ __typename }' }, { origin: own })).status).toBe(200);
    const evil = await post(h, { query: '{ __typename }' }, { origin: 'https://evil.example' });
    expect(evil.status).toBe(403);
    expect((await post(h, { query: '{ __typename }' }, { 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    const code = await new Promise<number | string>((resolve) => {
      const socket = new WebSocket(h.wsUrl, 'graphql-transport-ws', { headers: { origin: 'https://evil.example' } });
      socket.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      socket.on('open', () => resolve('opened'));
      socket.on('error', () => {});
    });
    expect(code).toBe(403);
  });

  it('turns introspection and GraphiQL off on request, on both transports', async () => {
    const h = await start({ env: { HELIOS_INTROSPECTION: 'false', HELIOS_GRAPHIQL: 'false' } });
    const res = await post(h, { query: '{ __schema { types { name } } }' });
    expect(res.json.errors![0]!.message).toMatch(/introspection/i);
    const ws = h.wsClient();
    const viaWs = await new Promise<unknown>((resolve) => ws.subscribe({ query: '{ __schema { queryType { name } } }' }, { next: resolve, error: resolve, complete: () => {} }));
    expect(JSON.stringify(viaWs)).toMatch(/introspection/i);
    const page = await fetch(h.url, { headers: { accept: 'text/html' } });
    expect(await page.text()).not.toContain('<title>Helios</title>');
  });

  it('never sends stack traces, file paths or SQL to clients', async () => {
    const modulesDir = pool.modulesDir();
    const h = await start({ env: { HELIOS_MODULES_DIR: modulesDir } });
    await h.query(RegisterModuleDocument, { name: 'broken', modulePath: 'bad/syntax_error.js', version: '1' });
    const load = await h.query(LoadModuleDocument, { name: 'broken' });
    const module = (await h.query(ModuleDocument, { name: 'broken' })).module!;
    for (const text of [JSON.stringify(load), module.lastError!]) {
      expect(text).not.toContain(modulesDir);
      expect(text).not.toMatch(/\/(tmp|work|home)\//);
    }
    h.server.app.services.flags.list = () => {
      throw new Error('SQLITE_ERROR: no such column: secret in SELECT * FROM feature_flags at /work/main/src/flags/repository.ts:42');
    };
    const res = await post(h, { query: '{ featureFlags { name } }' });
    expect(res.json.errors).toEqual([{ message: 'Unexpected error.', locations: expect.anything(), path: ['featureFlags'], extensions: { code: 'INTERNAL_SERVER_ERROR' } }]);
    expect(res.text).not.toMatch(/SELECT|repository\.ts|SQLITE/);
  });
});
