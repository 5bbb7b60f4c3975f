/**
 * The rough edges a newcomer hit (issue 14): the SDL downloadable from the server, GraphiQL's
 * welcome text, and refused requests not logged as server errors.
 */
import { readFileSync } from 'node:fs';
import { parse, validate } from 'graphql';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { buildSchema } from '../../src/graphql/schema.js';
import { createLogger } from '../../src/logger.js';
import { graphiqlWelcome } from '../../src/transport/graphiql.js';
import { serverPool } from '../support/pool.js';

const pool = serverPool();
const base = (url: string) => url.replace(/\/graphql$/, '');

describe('GET /schema.graphql', () => {
  it('serves the committed SDL, and nothing when introspection is off', async () => {
    const h = await pool.start();
    const res = await fetch(`${base(h.url)}/schema.graphql`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await res.text()).toBe(readFileSync('schema/schema.graphql', 'utf8'));
    const off = await pool.start({ env: { HELIOS_INTROSPECTION: 'false' } });
    expect((await fetch(`${base(off.url)}/schema.graphql`)).status).toBe(404);
  });
});

describe('GraphiQL welcome text', () => {
  it('says what Helios is and how to get a token, and its operation runs', async () => {
    for (const mode of ['viewer', 'none'] as const) {
      const text = graphiqlWelcome(mode);
      expect(text).toMatch(/runtime control plane/);
      expect(text).toMatch(/data\/admin-token/);
      expect(text).toMatch(/Headers tab/);
      expect(text).toMatch(/second browser tab/);
      expect(text).not.toMatch(/Yoga/);
      expect(validate(buildSchema(), parse(text)).map((e) => e.message)).toEqual([]);
    }
    expect(graphiqlWelcome('viewer')).toMatch(/Reading needs no token/);
    expect(graphiqlWelcome('none')).toMatch(/Every operation needs a token/);
    const h = await pool.start();
    const html = await (await fetch(h.url, { headers: { accept: 'text/html' } })).text();
    expect(html).toContain(JSON.stringify(graphiqlWelcome('viewer')).slice(1, 60));
  });
});

describe('refused requests', () => {
  it('are logged below error: a client mistake is not a server error', async () => {
    const lines: Array<{ level: string; msg: string }> = [];
    const logger = createLogger('debug', {}, (line) => lines.push(JSON.parse(line) as { level: string; msg: string }));
    const h = await pool.start({ env: { HELIOS_ANONYMOUS: 'none' }, logger });
    const post = (body: object, headers: Record<string, string> = {}) =>
      fetch(h.url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    expect((await post({ query: '{ featureFlags { name } }' })).status).toBe(401);
    expect((await post({ query: 'mutation { disableFeatureFlag(name: "x") { errors { code } } }' })).status).toBe(401);
    expect((await post({ query: '{ featureFlags { name } }' }, { authorization: 'Bearer no-such-token-123' })).status).toBe(401);
    expect((await fetch(`${h.url}?query=subscription%7BfeatureFlagChanged%7Bname%7D%7D`, { headers: { accept: 'text/event-stream' } })).status).toBe(401);
    expect((await fetch(`${base(h.url)}/api/modularity/feature-flags`)).status).toBe(401);
    expect((await fetch(`${base(h.url)}/api/modularity/feature-flags/percentage`, { method: 'POST', body: '{"name":"x","percentage":1}' })).status).toBe(401);
    // graphql-ws: an operation without a token on a socket without one.
    const client = createClient({ url: h.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
    const errors = await new Promise<unknown>((resolve) => {
      client.subscribe({ query: '{ featureFlags { name } }' }, { next: (r) => resolve(r.errors), error: resolve, complete: () => resolve(null) });
    });
    expect(JSON.stringify(errors)).toMatch(/UNAUTHENTICATED/);
    await client.dispose();
    expect(lines.filter((l) => l.level === 'error' || l.level === 'warn')).toEqual([]);
  });
});
