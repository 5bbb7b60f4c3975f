/** The server's own surface: probes, GraphiQL, WebSocket protocol, graceful shutdown. */
import { afterEach, describe, expect, it } from 'vitest';
import { FeatureFlagChangedDocument, SetFlagPercentageDocument } from '../gql/graphql.js';
import { removeDir, startTestServer, subscribe, untilListening, type TestServer } from '../support/server.js';

let h: TestServer | null = null;
afterEach(async () => {
  if (h) {
    await h.stop();
    removeDir(h.dir);
    h = null;
  }
});

describe('server', () => {
  it('answers /health and /ready, and serves GraphiQL to browsers on /graphql', async () => {
    h = await startTestServer();
    const base = h.url.replace('/graphql', '');
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${base}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready' });

    const page = await fetch(h.url, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('<title>Helios</title>');
    // Served inline: no CDN needed.
    expect(html).not.toContain('unpkg.com');
  });

  it('masks unexpected errors and keeps GraphQL errors typed', async () => {
    h = await startTestServer();
    const res = await fetch(h.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ nope }' }),
    });
    const body = (await res.json()) as { errors: { message: string; extensions: { code: string } }[] };
    expect(body.errors[0]!.extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
  });

  it('completes subscriptions and refuses new work on graceful shutdown', async () => {
    h = await startTestServer();
    const client = h.wsClient();
    const feed = subscribe(client, FeatureFlagChangedDocument, {});
    await untilListening(h, 'featureFlagChanged');
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 5 });
    await feed.next();

    const db = h.server.app.db;
    await h.server.stop();
    await feed.waitForCompletion();
    expect(db!.open).toBe(false);
    await expect(fetch(h.url)).rejects.toThrow();
    const stopped = h;
    h = null;
    await stopped.stop();
    removeDir(stopped.dir);
  });

  it('keeps the socket open when one operation on it is invalid', async () => {
    h = await startTestServer();
    const client = h.wsClient();
    const failure = await new Promise<unknown>((resolve) => {
      client.subscribe({ query: 'subscription { featureFlagChanged(name: 1 }' }, { next: () => {}, error: resolve, complete: () => resolve(null) });
    });
    expect(JSON.stringify(failure)).toContain('Syntax Error');
    const invalid = await new Promise<unknown>((resolve) => {
      client.subscribe({ query: 'subscription { noSuchFeed }' }, { next: () => {}, error: resolve, complete: () => resolve(null) });
    });
    expect(JSON.stringify(invalid)).toContain('noSuchFeed');
    const good = subscribe(client, FeatureFlagChangedDocument, {});
    await untilListening(h, 'featureFlagChanged');
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 7 });
    expect((await good.next()).featureFlagChanged.name).toBe('websocket_v2');
  });
});
