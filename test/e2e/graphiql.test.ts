/**
 * GraphiQL over the real HTTP server: a small page, assets served by Helios compressed,
 * content-hashed, immutable and with ETags, and memory that does not grow with visitors; and
 * over graphql-ws, the token GraphiQL sends with each operation (its Headers tab, in
 * `extensions.headers`) with anonymous access off. The browser itself: graphiql-browser.test.ts.
 */
import { gunzipSync, brotliDecompressSync } from 'node:zlib';
import { print } from 'graphql';
import type { Client } from 'graphql-ws';
import { describe, expect, it } from 'vitest';
import { CreateApiTokenDocument, FeatureFlagChangedDocument, RevokeApiTokenDocument, SetFlagPercentageDocument } from '../gql/graphql.js';
import { serverPool } from '../support/pool.js';
import { rawGet } from '../support/raw-http.js';
import { untilListening, type TestServer } from '../support/server.js';

const pool = serverPool();

const get = rawGet;

const page = (h: TestServer) => get(h.url, { accept: 'text/html' });

function assetUrls(h: TestServer, html: string): string[] {
  return [...new Set([...html.matchAll(/\/graphiql\/[\w.-]+/g)].map((m) => new URL(m[0], h.url).toString()))];
}

describe('GraphiQL', () => {
  it('is a small page whose assets come from Helios itself: compressed by Accept-Encoding, immutable, with ETags and 304', async () => {
    const h = await pool.start();
    const html = await page(h);
    expect(html.status).toBe(200);
    expect(html.headers['content-type']).toContain('text/html');
    const text = html.body.toString('utf8');
    expect(html.body.length).toBeLessThan(4096);
    expect(text).toContain('YogaGraphiQL.renderYogaGraphiQL');
    // No CDN: every script, style, worker and icon is served from this origin.
    expect(text).not.toMatch(/https?:\/\//);
    const urls = assetUrls(h, text);
    expect(urls.map((u) => new URL(u).pathname.replace(/\.[0-9a-f]{16}\./, '.<hash>.')).sort()).toEqual([
      '/graphiql/editor.worker.<hash>.js',
      '/graphiql/favicon.<hash>.ico',
      '/graphiql/graphiql.<hash>.css',
      '/graphiql/graphiql.<hash>.js',
      '/graphiql/graphql.worker.<hash>.js',
      '/graphiql/json.worker.<hash>.js',
    ]);

    const js = urls.find((u) => /graphiql\.[0-9a-f]{16}\.js$/.test(u))!;
    const plain = await get(js);
    expect(plain.status).toBe(200);
    expect(plain.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(plain.headers.vary).toBe('Accept-Encoding');
    expect(plain.body.toString('utf8')).toContain('renderYogaGraphiQL');

    const br = await get(js, { 'accept-encoding': 'gzip, deflate, br' });
    expect(br.headers['content-encoding']).toBe('br');
    expect(Number(br.headers['content-length'])).toBe(br.body.length);
    expect(br.body.length).toBeLessThan(plain.body.length / 3);
    expect(brotliDecompressSync(br.body).equals(plain.body)).toBe(true);

    const gz = await get(js, { 'accept-encoding': 'gzip, br;q=0' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.body).equals(plain.body)).toBe(true);

    // One ETag per representation; a match answers 304 with no body, a mismatch the asset.
    const etags = [plain, br, gz].map((a) => a.headers.etag as string);
    expect(new Set(etags).size).toBe(3);
    const notModified = await get(js, { 'accept-encoding': 'br', 'if-none-match': br.headers.etag as string });
    expect(notModified.status).toBe(304);
    expect(notModified.body.length).toBe(0);
    expect(notModified.headers.etag).toBe(br.headers.etag);
    expect(notModified.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect((await get(js, { 'accept-encoding': 'br', 'if-none-match': '"something-else"' })).status).toBe(200);

    for (const url of urls) {
      const asset = await get(url, { 'accept-encoding': 'br' });
      expect(asset.status, url).toBe(200);
      expect(asset.headers['content-encoding'], url).toBe('br');
      expect(asset.headers.etag, url).toMatch(/^"[0-9a-f]{16}-br"$/);
    }
    const icon = await get(urls.find((u) => u.endsWith('.ico'))!);
    expect(icon.headers['content-type']).toBe('image/x-icon');
    expect(icon.body.subarray(0, 4).equals(Buffer.from([0, 0, 1, 0]))).toBe(true);

    // Unknown (e.g. an older version's) hashes are gone, other methods are refused.
    expect((await get(js.replace(/[0-9a-f]{16}/, '0'.repeat(16)))).status).toBe(404);
    const post = await fetch(js, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('is not served at all with HELIOS_GRAPHIQL=false', async () => {
    const on = await pool.start();
    const asset = assetUrls(on, (await page(on)).body.toString('utf8'))[0]!;
    const off = await pool.start({ env: { HELIOS_GRAPHIQL: 'false' } });
    expect((await get(new URL(new URL(asset).pathname, off.url).toString())).status).toBe(404);
    expect((await page(off)).body.toString('utf8')).not.toContain('YogaGraphiQL');
  });

  it('100 concurrent visits (page and its largest asset) add less than 50 MB of RSS', async () => {
    const h = await pool.start();
    const first = await page(h);
    const urls = assetUrls(h, first.body.toString('utf8'));
    // The first visit loads and compresses the assets once; that cost is paid once per process.
    for (const url of urls) {
      await get(url, { 'accept-encoding': 'br' }, false);
      await get(url, { 'accept-encoding': 'gzip' }, false);
    }
    const js = urls.find((u) => /graphiql\.[0-9a-f]{16}\.js$/.test(u));
    const before = process.memoryUsage().rss;
    let peak = before;
    const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
    const visits = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const html = await get(h.url, { accept: 'text/html', 'accept-encoding': 'gzip, deflate, br' }, false);
        // (Without assets of their own, as before Helios served them, the page is the whole cost.)
        return js ? [html, await get(js, { 'accept-encoding': i % 2 ? 'br' : 'gzip' }, false)] : [html];
      }),
    );
    clearInterval(sample);
    peak = Math.max(peak, process.memoryUsage().rss);
    expect((peak - before) / 1024 / 1024).toBeLessThan(50);
    expect(visits.flat().every((a) => a.status === 200)).toBe(true);
    expect(visits.every((visit) => visit.length === 2 && visit[0]!.bytes < 4096)).toBe(true);
  });
});

/** What GraphiQL sends: `connection_init` with `{}`, then the Headers tab in each subscribe's extensions. */
function operation(client: Client, query: string, headers?: Record<string, unknown>, variables?: Record<string, unknown>) {
  const events: unknown[] = [];
  let ended: { error?: unknown } | null = null;
  const waiters: Array<() => void> = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  client.subscribe(
    { query, ...(variables ? { variables } : {}), ...(headers ? { extensions: { headers } } : {}) },
    {
      next: (value) => (events.push(value), wake()),
      error: (error) => ((ended = { error }), wake()),
      complete: () => ((ended = {}), wake()),
    },
  );
  const until = (ok: () => boolean) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out; events ${JSON.stringify(events)}, ended ${JSON.stringify(ended)}`)), 5000);
      const check = () => (ok() ? (clearTimeout(timer), resolve()) : waiters.push(check));
      check();
    });
  return {
    events,
    get ended() {
      return ended;
    },
    async first() {
      await until(() => events.length > 0 || ended !== null);
      // graphql-ws hands an operation's refusal (an `error` message) to the sink as the errors array.
      const refusal = Array.isArray(ended?.error) ? { errors: ended.error } : undefined;
      return (events[0] ?? refusal) as { data?: Record<string, unknown>; errors?: { message: string; extensions?: { code?: string } }[] } | undefined;
    },
    async end() {
      await until(() => ended !== null);
      return ended!;
    },
  };
}

describe('GraphiQL over graphql-ws with HELIOS_ANONYMOUS=none', () => {
  const none = { env: { HELIOS_ANONYMOUS: 'none' } };
  const flagFeed = print(FeatureFlagChangedDocument);

  it('takes the token from the operation (GraphiQL\'s Headers tab) for that operation, with the HTTP rules', async () => {
    const h = await pool.start(none);
    const viewer = (await h.query(CreateApiTokenDocument, { name: 'dashboard', role: 'VIEWER' })).createApiToken.token!;
    const operator = (await h.query(CreateApiTokenDocument, { name: 'ops', role: 'OPERATOR' })).createApiToken.token!;
    const socket = h.wsClient({ token: null });

    // Without a token anywhere: an error for this operation (GraphiQL shows it), not a closed socket.
    const bare = await operation(socket, '{ featureFlags { name } }').first();
    expect(bare?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(bare?.errors?.[0]?.message).toContain('extensions.headers');

    // Malformed, unknown and non-string tokens are refused, never downgraded.
    for (const authorization of ['Basic abc', 'Bearer hel_not-a-real-token', 42]) {
      const refused = await operation(socket, '{ featureFlags { name } }', { Authorization: authorization }).first();
      expect(refused?.errors?.[0]?.extensions?.code, String(authorization)).toBe('UNAUTHENTICATED');
    }

    // A viewer's token (any header case) subscribes on the same socket; it may not change a flag.
    const feed = operation(socket, flagFeed, { authorization: `Bearer ${viewer}` }, { name: 'websocket_v2' });
    await untilListening(h, 'featureFlagChanged');
    const denied = await operation(socket, print(SetFlagPercentageDocument), { Authorization: `Bearer ${viewer}` }, { name: 'websocket_v2', percentage: 7 }).first();
    expect(JSON.stringify(denied)).toContain('FORBIDDEN');
    const changed = await operation(socket, print(SetFlagPercentageDocument), { Authorization: `Bearer ${operator}` }, { name: 'websocket_v2', percentage: 8 }).first();
    expect((changed?.data?.setFlagPercentage as { errors: unknown[] }).errors).toEqual([]);
    const event = (await feed.first())?.data?.featureFlagChanged as { actor: string; flag: { percentage: number } };
    expect(event).toMatchObject({ actor: 'ops', flag: { percentage: 8 } });
    expect(feed.ended).toBeNull();
  });

  it('ends the subscriptions of an operation token when it is revoked, and refuses it afterwards', async () => {
    const h = await pool.start(none);
    const operator = (await h.query(CreateApiTokenDocument, { name: 'ops', role: 'OPERATOR' })).createApiToken.token!;
    const socket = h.wsClient({ token: null });
    const feed = operation(socket, flagFeed, { Authorization: `Bearer ${operator}` }, {});
    await untilListening(h, 'featureFlagChanged');
    await h.query(RevokeApiTokenDocument, { name: 'ops' });
    expect(((await feed.end()).error as { code?: number }).code).toBe(4403);

    const again = await operation(h.wsClient({ token: null }), flagFeed, { Authorization: `Bearer ${operator}` }, {}).first();
    expect(again?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });
});
