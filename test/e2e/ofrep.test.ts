/**
 * OFREP end to end: the real server over HTTP, answering as open-feature/protocol's
 * service/openapi.yaml specifies, with the same engine as GraphQL's evaluateFlag.
 */
import { OpenFeature, type Client } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { bucketOf } from '../../src/flags/engine.js';
import {
  AddToWhitelistDocument,
  ConfigureGradualRolloutDocument,
  CreateFeatureFlagDocument,
  EnableFeatureFlagDocument,
  EvaluateFlagDocument,
  EvaluateFlagsDocument,
  SetFlagPercentageDocument,
  type EvaluationContextInput,
} from '../gql/graphql.js';
import { serverPool } from '../support/pool.js';
import { prng } from '../support/prng.js';
import { TEST_ADMIN_TOKEN, type TestServer } from '../support/server.js';

const pool = serverPool();
const ADMIN = { authorization: `Bearer ${TEST_ADMIN_TOKEN}` };

function baseOf(h: TestServer): string {
  return h.url.replace(/\/graphql$/, '');
}

async function ofrep(h: TestServer, path: string, body: unknown, headers: Record<string, string> = ADMIN) {
  const res = await fetch(`${baseOf(h)}/ofrep/v1/evaluate/flags${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text === '' ? null : (JSON.parse(text) as Record<string, unknown>) };
}

describe('OFREP single flag evaluation', () => {
  it('answers the seed flags with value, reason, variant and metadata', async () => {
    const h = await pool.start();
    expect(await ofrep(h, '/llm_enhanced_decisions', { context: { targetingKey: 'u1' } })).toMatchObject({
      status: 200,
      body: { key: 'llm_enhanced_decisions', value: true, reason: 'STATIC', variant: 'on', metadata: { strategy: 'ALL_ON' } },
    });
    expect((await ofrep(h, '/portfolio_optimizer_v2', {})).body).toEqual({
      key: 'portfolio_optimizer_v2', value: false, reason: 'DISABLED', variant: 'off', metadata: { strategy: 'ALL_OFF' },
    });
    // An empty body is an empty context.
    expect((await ofrep(h, '/hot_reload_modules', '')).body).toMatchObject({ value: true, reason: 'STATIC' });

    await h.query(SetFlagPercentageDocument, { name: 'neural_network_v2', percentage: 25 });
    const bucket = bucketOf('neural_network_v2', 'user-42');
    expect((await ofrep(h, '/neural_network_v2', { context: { targetingKey: 'user-42' } })).body).toEqual({
      key: 'neural_network_v2',
      value: bucket < 2500,
      reason: 'SPLIT',
      variant: bucket < 2500 ? 'on' : 'off',
      metadata: { strategy: 'PERCENTAGE', percentage: 25, bucket },
    });

    await h.query(EnableFeatureFlagDocument, { name: 'advanced_risk_engine' });
    expect((await ofrep(h, '/advanced_risk_engine', { context: { targetingKey: 'u', symbol: 'BTCZAR' } })).body).toMatchObject({
      value: true, reason: 'TARGETING_MATCH', variant: 'on',
    });
    expect((await ofrep(h, '/advanced_risk_engine', { context: { targetingKey: 'u', symbol: 'ETHZAR' } })).body).toMatchObject({
      value: false, reason: 'DEFAULT', variant: 'off',
    });
    // Percent-encoded keys are decoded.
    expect((await ofrep(h, '/hot%5Freload%5Fmodules', {})).body).toMatchObject({ key: 'hot_reload_modules', value: true });
  });

  it('answers errors with the status and error code the protocol names', async () => {
    const h = await pool.start();
    expect(await ofrep(h, '/no_such_flag', {})).toMatchObject({
      status: 404, body: { key: 'no_such_flag', errorCode: 'FLAG_NOT_FOUND', errorDetails: 'Feature flag "no_such_flag" does not exist' },
    });
    expect(await ofrep(h, '/hot_reload_modules', '{"context": ')).toMatchObject({
      status: 400, body: { key: 'hot_reload_modules', errorCode: 'PARSE_ERROR' },
    });
    expect(await ofrep(h, '/hot_reload_modules', '[1]')).toMatchObject({ status: 400, body: { errorCode: 'PARSE_ERROR' } });
    expect(await ofrep(h, '/hot_reload_modules', { context: [1, 2] })).toMatchObject({
      status: 400, body: { key: 'hot_reload_modules', errorCode: 'INVALID_CONTEXT', errorDetails: '"context" must be a JSON object' },
    });
    expect(await ofrep(h, '/hot_reload_modules', { context: { targetingKey: 7 } })).toMatchObject({
      status: 400, body: { errorCode: 'INVALID_CONTEXT', errorDetails: '"targetingKey" must be a string, got a number' },
    });
    expect(await ofrep(h, '/hot_reload_modules', { context: { userId: { id: 1 } } })).toMatchObject({
      status: 400, body: { errorCode: 'INVALID_CONTEXT', errorDetails: '"userId" must be a string, got an object' },
    });
    expect(await ofrep(h, '/hot_reload_modules', { context: { targetingKey: 'a', sessionId: 'b' } })).toMatchObject({
      status: 400, body: { errorCode: 'INVALID_CONTEXT' },
    });
    // The same value in both is fine.
    expect((await ofrep(h, '/hot_reload_modules', { context: { targetingKey: 'a', sessionId: 'a' } })).status).toBe(200);

    // A split needs a sticky value: a random answer per request is refused.
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 50 });
    expect(await ofrep(h, '/websocket_v2', { context: { symbol: 'BTCZAR' } })).toMatchObject({
      status: 400, body: { key: 'websocket_v2', errorCode: 'TARGETING_KEY_MISSING' },
    });
    // userId is a sticky value of `default` flags too, as for GraphQL.
    expect((await ofrep(h, '/websocket_v2', { context: { userId: 'u-1' } })).body).toMatchObject({ reason: 'SPLIT', metadata: { bucket: bucketOf('websocket_v2', 'u-1') } });
  });

  it('reads a context above 16 KiB like a small one', async () => {
    const h = await pool.start();
    const small = await ofrep(h, '/llm_enhanced_decisions', { context: { targetingKey: 'user-7' } });
    const big = await ofrep(h, '/llm_enhanced_decisions', { context: { targetingKey: 'user-7', note: 'n'.repeat(20_000) } });
    expect(small.status).toBe(200);
    expect(big.status).toBe(200);
    expect(big.body).toEqual(small.body);
  });

  it('answers CORS for a browser page on an allowed origin (preflight, then the evaluation), and refuses other origins', async () => {
    const h = await pool.start({ env: { HELIOS_ALLOWED_ORIGINS: 'https://app.example' } });
    const url = `${baseOf(h)}/ofrep/v1/evaluate/flags`;
    const preflight = await fetch(`${url}/hot_reload_modules`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(preflight.headers.get('access-control-allow-methods')).toBe('POST');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');
    const single = await ofrep(h, '/hot_reload_modules', { context: { targetingKey: 'u1' } }, { ...ADMIN, origin: 'https://app.example' });
    expect(single.status).toBe(200);
    expect(single.headers.get('access-control-allow-origin')).toBe('https://app.example');
    const bulk = await ofrep(h, '', { context: { targetingKey: 'u1' } }, { ...ADMIN, origin: 'https://app.example' });
    expect(bulk.headers.get('access-control-expose-headers')).toBe('ETag');
    expect(bulk.headers.get('etag')).toBeTruthy();
    const evil = await fetch(`${url}/hot_reload_modules`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(evil.status).toBe(403);
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    // Without an Origin (a server SDK), no CORS headers at all.
    expect((await ofrep(h, '/hot_reload_modules', {})).headers.get('access-control-allow-origin')).toBeNull();
  });

  it('uses the tokens, origin check and body limit of GraphQL', async () => {
    const h = await pool.start({ env: { HELIOS_MAX_BODY_BYTES: '2048' } });
    expect(await ofrep(h, '/hot_reload_modules', {}, { authorization: 'Bearer not-a-token' })).toMatchObject({
      status: 401, body: { errorDetails: 'Invalid or revoked token' },
    });
    expect(await ofrep(h, '/hot_reload_modules', {}, { authorization: 'Basic abc' })).toMatchObject({ status: 401 });
    // Anonymous callers read on a loopback server, as over GraphQL.
    expect((await ofrep(h, '/hot_reload_modules', {}, {})).status).toBe(200);
    expect(await ofrep(h, '/hot_reload_modules', {}, { ...ADMIN, origin: 'https://evil.example' })).toMatchObject({
      status: 403, body: { errorDetails: 'Origin https://evil.example is not allowed' },
    });
    const big = await ofrep(h, '/hot_reload_modules', { context: { targetingKey: 'x'.repeat(4096) } });
    expect(big.status).toBe(413);
    const get = await fetch(`${baseOf(h)}/ofrep/v1/evaluate/flags/hot_reload_modules`, { headers: ADMIN });
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST, OPTIONS');
    expect((await fetch(`${baseOf(h)}/ofrep/v2/other`, { method: 'POST', headers: ADMIN })).status).toBe(404);

    const closed = await pool.start({ env: { HELIOS_ANONYMOUS: 'none' } });
    expect(await ofrep(closed, '/hot_reload_modules', {}, {})).toMatchObject({ status: 401, body: { errorDetails: 'A bearer token is required' } });
    expect(await ofrep(closed, '', {}, {})).toMatchObject({ status: 401 });
  });

  it('evaluates from memory: no SQLite statement runs for an evaluation', async () => {
    const h = await pool.start();
    await h.query(SetFlagPercentageDocument, { name: 'neural_network_v2', percentage: 25 });
    // The better-sqlite3 statements under Kysely (the pool's servers run on SQLite).
    const statement = h.server.app.db!.prepare('SELECT 1') as unknown as object;
    const proto = Object.getPrototypeOf(statement) as Record<string, (...args: unknown[]) => unknown>;
    const methods = ['run', 'get', 'all', 'iterate'] as const;
    const originals = methods.map((m) => proto[m]!);
    let statements = 0;
    methods.forEach((m, i) => {
      proto[m] = function (this: unknown, ...args: unknown[]) {
        statements++;
        return originals[i]!.apply(this, args);
      };
    });
    try {
      // The counter is live: a GraphQL mutation is seen.
      await h.query(SetFlagPercentageDocument, { name: 'neural_network_v2', percentage: 30 });
      expect(statements).toBeGreaterThan(0);
      statements = 0;
      // The bootstrap admin token is checked against its hash in memory; anonymous needs no lookup either.
      for (let i = 0; i < 20; i++) expect((await ofrep(h, '/neural_network_v2', { context: { targetingKey: `k${i}` } })).status).toBe(200);
      expect((await ofrep(h, '', { context: { targetingKey: 'k' } }, {})).status).toBe(200);
      expect(statements).toBe(0);
    } finally {
      methods.forEach((m, i) => {
        proto[m] = originals[i]!;
      });
    }
  });
});

describe('OFREP bulk evaluation', () => {
  it('answers every flag with an ETag; If-None-Match gives 304 until the answer would change', async () => {
    const h = await pool.start();
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 50 });
    const first = await ofrep(h, '', { context: { targetingKey: 'user-1' } });
    expect(first.status).toBe(200);
    const flags = first.body!.flags as Array<Record<string, unknown>>;
    expect(flags.map((f) => f.key)).toEqual([
      'advanced_risk_engine', 'hot_reload_modules', 'llm_enhanced_decisions', 'multi_timeframe_analysis',
      'neural_network_v2', 'paper_trading_v2', 'portfolio_optimizer_v2', 'websocket_v2',
    ]);
    expect(flags.find((f) => f.key === 'websocket_v2')).toMatchObject({ reason: 'SPLIT', metadata: { bucket: bucketOf('websocket_v2', 'user-1') } });
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{32}"$/);

    const again = await ofrep(h, '', { context: { targetingKey: 'user-1' } }, { ...ADMIN, 'if-none-match': etag });
    expect(again.status).toBe(304);
    expect(again.body).toBeNull();
    expect(again.headers.get('etag')).toBe(etag);
    expect((await ofrep(h, '', { context: { targetingKey: 'user-1' } }, { ...ADMIN, 'if-none-match': `"x", W/${etag}` })).status).toBe(304);

    // Another context is another answer, even where the flags' values happen to agree.
    const other = await ofrep(h, '', { context: { targetingKey: 'user-2' } }, { ...ADMIN, 'if-none-match': etag });
    expect(other.status).toBe(200);
    expect(other.headers.get('etag')).not.toBe(etag);

    // A flag change makes every held ETag stale.
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 60 });
    const changed = await ofrep(h, '', { context: { targetingKey: 'user-1' } }, { ...ADMIN, 'if-none-match': etag });
    expect(changed.status).toBe(200);
    expect(changed.headers.get('etag')).not.toBe(etag);
    expect((changed.body!.flags as Array<Record<string, unknown>>).find((f) => f.key === 'websocket_v2')).toMatchObject({ metadata: { percentage: 60 } });

    // Per-flag failures sit beside the successes; a bad request fails as a whole.
    const keyless = await ofrep(h, '', { context: { userIdd: 'typo' } });
    expect((keyless.body!.flags as Array<Record<string, unknown>>).find((f) => f.key === 'websocket_v2')).toMatchObject({
      errorCode: 'TARGETING_KEY_MISSING',
    });
    expect(await ofrep(h, '', { context: 'user-1' })).toEqual({
      status: 400, headers: expect.anything(), body: { errorCode: 'INVALID_CONTEXT', errorDetails: '"context" must be a JSON object' },
    });
  });
});

describe('OFREP bulk ETag and time', () => {
  it('a gradual step changes the answer, so a held ETag stops matching though no definition changed', async () => {
    const clock = new ManualClock();
    const h = await pool.start({ clock });
    await h.query(ConfigureGradualRolloutDocument, { name: 'paper_trading_v2', startPercentage: 0, targetPercentage: 100, durationSeconds: 100 });
    const body = { context: { targetingKey: 'user-7' } };
    const first = await ofrep(h, '', body);
    const etag = first.headers.get('etag')!;
    expect((await ofrep(h, '', body, { ...ADMIN, 'if-none-match': etag })).status).toBe(304);
    clock.advance(50_000);
    const later = await ofrep(h, '', body, { ...ADMIN, 'if-none-match': etag });
    expect(later.status).toBe(200);
    expect((later.body!.flags as Array<Record<string, unknown>>).find((f) => f.key === 'paper_trading_v2')).toMatchObject({ metadata: { percentage: 50 } });
    // The new answer has its own ETag, which matches while nothing changes again.
    const again = later.headers.get('etag')!;
    expect((await ofrep(h, '', body, { ...ADMIN, 'if-none-match': again })).status).toBe(304);
  });
});

const SYMBOLS = ['BTCZAR', 'ETHZAR', 'XRPZAR', 'SOLZAR'];

describe('one engine', () => {
  it('OFREP answers exactly what evaluateFlag answers, for thousands of contexts', async () => {
    const h = await pool.start();
    await h.query(SetFlagPercentageDocument, { name: 'neural_network_v2', percentage: 37.5 });
    await h.query(EnableFeatureFlagDocument, { name: 'advanced_risk_engine' });
    await h.query(EnableFeatureFlagDocument, { name: 'paper_trading_v2' });
    await h.query(CreateFeatureFlagDocument, { name: 'by_symbol', percentage: 50, enabled: true, stickiness: 'symbol' });
    await h.query(CreateFeatureFlagDocument, { name: 'by_tier', strategy: 'WHITELIST', enabled: true });
    await h.query(AddToWhitelistDocument, { name: 'by_tier', attribute: 'tier', value: 'gold' });
    await h.query(AddToWhitelistDocument, { name: 'by_tier', attribute: 'targetingKey', value: 'vip-1' });
    const flags = ['neural_network_v2', 'advanced_risk_engine', 'paper_trading_v2', 'by_symbol', 'by_tier', 'llm_enhanced_decisions', 'portfolio_optimizer_v2', 'missing_flag'];

    const rand = prng(12);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)]!;
    const cases = Array.from({ length: 2000 }, (_, i) => {
      const ofrepContext: Record<string, unknown> = {};
      const gql: EvaluationContextInput = {};
      const attributes: Record<string, unknown> = {};
      const r = rand();
      if (r < 0.8) {
        const key = rand() < 0.05 ? 'vip-1' : `t-${Math.floor(rand() * 1e6)}`;
        ofrepContext.targetingKey = key;
        gql.sessionId = key;
        attributes.targetingKey = key;
        if (rand() < 0.1) ofrepContext.sessionId = key;
      } else if (r < 0.9) {
        ofrepContext.sessionId = gql.sessionId = `s-${i}`;
      }
      if (rand() < 0.5) ofrepContext.userId = gql.userId = `u-${Math.floor(rand() * 500)}`;
      if (rand() < 0.6) ofrepContext.symbol = gql.symbol = pick(SYMBOLS);
      if (rand() < 0.2) ofrepContext.system = gql.system = pick(['trader', 'risk']);
      if (rand() < 0.4) ofrepContext.tier = attributes.tier = pick(['gold', 'silver']);
      if (rand() < 0.2) ofrepContext.age = attributes.age = Math.floor(rand() * 90);
      if (Object.keys(attributes).length > 0) gql.attributes = attributes;
      return { flag: pick(flags), ofrepContext, gql };
    });

    let compared = 0;
    const reasons = new Set<string>();
    const queue = [...cases];
    const worker = async () => {
      for (let c = queue.shift(); c; c = queue.shift()) {
        const [remote, graph] = await Promise.all([
          ofrep(h, `/${c.flag}`, { context: c.ofrepContext }),
          h.query(EvaluateFlagDocument, { name: c.flag, context: c.gql }),
        ]);
        const e = graph.evaluateFlag;
        reasons.add(e.reason);
        if (e.reason === 'FLAG_NOT_FOUND') {
          expect(remote).toMatchObject({ status: 404, body: { key: c.flag, errorCode: 'FLAG_NOT_FOUND' } });
        } else if (e.reason === 'RANDOM') {
          expect(remote).toMatchObject({ status: 400, body: { key: c.flag, errorCode: 'TARGETING_KEY_MISSING' } });
        } else {
          const metadata: Record<string, unknown> = { strategy: e.strategy };
          if (e.percentage !== null && e.percentage !== undefined) metadata.percentage = e.percentage;
          if (e.bucket !== null && e.bucket !== undefined) metadata.bucket = e.bucket;
          expect({ context: c.ofrepContext, ...remote.body }).toEqual({
            context: c.ofrepContext, key: c.flag, value: e.enabled, reason: e.reason, variant: e.enabled ? 'on' : 'off', metadata,
          });
        }
        compared++;
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    expect(compared).toBe(2000);
    // Every kind of answer was met.
    expect([...reasons].sort()).toEqual(['DEFAULT', 'DISABLED', 'FLAG_NOT_FOUND', 'RANDOM', 'SPLIT', 'STATIC', 'TARGETING_MATCH']);

    // Bulk against evaluateFlags for a sample of the same contexts.
    for (const c of cases.slice(0, 150)) {
      const [remote, graph] = await Promise.all([ofrep(h, '', { context: c.ofrepContext }), h.query(EvaluateFlagsDocument, { context: c.gql })]);
      const byKey = new Map((remote.body!.flags as Array<Record<string, unknown>>).map((f) => [f.key, f]));
      expect(byKey.size).toBe(graph.evaluateFlags.length);
      for (const e of graph.evaluateFlags) {
        const f = byKey.get(e.flag)!;
        if (e.reason === 'RANDOM') expect(f.errorCode).toBe('TARGETING_KEY_MISSING');
        else expect([f.value, f.reason, (f.metadata as Record<string, unknown>).bucket ?? null]).toEqual([e.enabled, e.reason, e.bucket ?? null]);
      }
    }
  }, 180_000);
});

describe('as an app uses it: @openfeature/server-sdk with the published OFREP provider', () => {
  it('evaluates the seed flags before and after setFlagPercentage', async () => {
    const h = await pool.start();
    const provider = new OFREPProvider({ baseUrl: baseOf(h), headers: [['Authorization', `Bearer ${TEST_ADMIN_TOKEN}`]] });
    await OpenFeature.setProviderAndWait('helios', provider);
    const client: Client = OpenFeature.getClient('helios');
    try {
      const keys = Array.from({ length: 200 }, (_, i) => `user-${i}`);

      expect(await client.getBooleanDetails('llm_enhanced_decisions', false, { targetingKey: 'user-1' })).toMatchObject({
        value: true, reason: 'STATIC', variant: 'on', flagMetadata: { strategy: 'ALL_ON' },
      });
      for (const targetingKey of keys.slice(0, 20)) {
        expect(await client.getBooleanDetails('neural_network_v2', true, { targetingKey })).toMatchObject({ value: false, reason: 'DISABLED', variant: 'off' });
      }

      await h.query(SetFlagPercentageDocument, { name: 'neural_network_v2', percentage: 25 });
      let on = 0;
      for (const targetingKey of keys) {
        const details = await client.getBooleanDetails('neural_network_v2', false, { targetingKey, symbol: 'BTCZAR' });
        const bucket = bucketOf('neural_network_v2', targetingKey);
        expect(details).toMatchObject({ value: bucket < 2500, reason: 'SPLIT', flagMetadata: { strategy: 'PERCENTAGE', percentage: 25, bucket } });
        if (details.value) on++;
      }
      expect(on).toBeGreaterThan(25);
      expect(on).toBeLessThan(75);

      // Errors reach the app as OpenFeature errors with the default value.
      expect(await client.getBooleanDetails('no_such_flag', true, { targetingKey: 'x' })).toMatchObject({
        value: true, reason: 'ERROR', errorCode: 'FLAG_NOT_FOUND',
      });
      expect(await client.getBooleanDetails('neural_network_v2', true, {})).toMatchObject({
        value: true, reason: 'ERROR', errorCode: 'TARGETING_KEY_MISSING',
      });
      // A boolean flag asked for as a string is the SDK's type mismatch.
      expect(await client.getStringDetails('llm_enhanced_decisions', 'dflt', { targetingKey: 'x' })).toMatchObject({
        value: 'dflt', errorCode: 'TYPE_MISMATCH',
      });
    } finally {
      await OpenFeature.clearProviders();
    }
  });
});
