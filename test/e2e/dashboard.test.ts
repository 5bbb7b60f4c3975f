/**
 * The dashboard over HTTP (the built page, dist/dashboard, from `npm run build:dashboard`):
 * served by Helios from this origin, compressed, its hashed assets immutable, the page itself
 * revalidated by ETag; off with HELIOS_DASHBOARD=false. And the two schema fields it relies on:
 * `me` (what to offer a caller) and `testRunStarted` (runs it did not start). The page in a
 * browser: dashboard-browser.test.ts.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { brotliDecompressSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { dashboardBuildDir } from '../../src/transport/dashboard.js';
import { CreateApiTokenDocument, MeDocument, RegisterModuleDocument, TestModuleDocument, TestRunStartedDocument } from '../gql/graphql.js';
import { serverPool } from '../support/pool.js';
import { rawGet } from '../support/raw-http.js';
import { subscribe, untilListening, type TestServer } from '../support/server.js';

const pool = serverPool();
const pageUrl = (h: TestServer) => new URL('/dashboard', h.url).toString();

beforeAll(() => {
  if (!existsSync(path.join(dashboardBuildDir(), 'index.html'))) throw new Error('dist/dashboard is missing: run `npm run build:dashboard` (npm test does)');
});

describe('GET /dashboard', () => {
  it('is a small page from this origin whose hashed assets are compressed and immutable, the page revalidated by ETag', async () => {
    const h = await pool.start();
    const page = await rawGet(pageUrl(h), { 'accept-encoding': 'br, gzip' });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-encoding']).toBe('br');
    expect(page.headers['cache-control']).toBe('no-cache');
    expect(page.headers['content-security-policy']).toContain("connect-src 'self'");
    const html = brotliDecompressSync(page.body).toString('utf8');
    expect(html).toContain('<helios-dashboard>');
    // Offline: nothing is loaded from anywhere else.
    expect(html).not.toMatch(/(src|href)="https?:/);

    const again = await rawGet(pageUrl(h), { 'accept-encoding': 'br', 'if-none-match': page.headers.etag as string });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);
    expect((await rawGet(new URL('/dashboard/', h.url).toString())).status).toBe(200);

    const assets = [...html.matchAll(/\/dashboard\/assets\/[\w.-]+/g)].map((m) => new URL(m[0], h.url).toString());
    expect(assets.some((a) => a.endsWith('.js'))).toBe(true);
    expect(assets.some((a) => a.endsWith('.css'))).toBe(true);
    let wire = page.bytes;
    for (const url of assets) {
      const plain = await rawGet(url);
      const br = await rawGet(url, { 'accept-encoding': 'gzip, br' });
      expect(br.status, url).toBe(200);
      expect(br.headers['cache-control'], url).toBe('public, max-age=31536000, immutable');
      expect(br.headers['content-encoding'], url).toBe('br');
      expect(brotliDecompressSync(br.body).equals(plain.body), url).toBe(true);
      expect(br.bytes, url).toBeLessThan(plain.bytes / 2);
      expect((await rawGet(url, { 'accept-encoding': 'br', 'if-none-match': br.headers.etag as string })).status, url).toBe(304);
      wire += br.bytes;
    }
    expect(wire).toBeLessThan(300 * 1024);

    expect((await rawGet(new URL('/dashboard/assets/index-00000000.js', h.url).toString())).status).toBe(404);
    const post = await fetch(pageUrl(h), { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('is not served with HELIOS_DASHBOARD=false', async () => {
    const h = await pool.start({ env: { HELIOS_DASHBOARD: 'false' } });
    const page = await rawGet(pageUrl(h));
    expect(page.status).toBe(404);
    expect(page.body.toString('utf8')).not.toContain('helios-dashboard');
  });
});

describe('what the dashboard reads', () => {
  it('me: the caller\'s name and role, for a token and for the anonymous caller', async () => {
    const h = await pool.start();
    expect((await h.query(MeDocument, {})).me).toEqual({ name: 'bootstrap-admin', role: 'ADMIN', anonymous: false });
    const viewer = (await h.query(CreateApiTokenDocument, { name: 'wall', role: 'VIEWER' })).createApiToken.token!;
    expect((await h.request(MeDocument, {}, { authorization: `Bearer ${viewer}` })).data?.me).toEqual({ name: 'wall', role: 'VIEWER', anonymous: false });
    expect((await h.request(MeDocument, {}, {})).data?.me).toEqual({ name: 'anonymous', role: 'VIEWER', anonymous: true });
  });

  it('testRunStarted: the start of every run, whoever started it', async () => {
    const h = await pool.start({ env: { HELIOS_MODULES_DIR: pool.modulesDir() } });
    const feed = subscribe(h.wsClient(), TestRunStartedDocument);
    await untilListening(h, 'testProgress');
    await h.query(RegisterModuleDocument, { name: 'feature_extractor', modulePath: 'feature_extractor.js', version: '1.0.0' });
    const run = (await h.query(TestModuleDocument, { name: 'feature_extractor', moduleType: 'DATA_PIPELINE' })).testModule.testRun!;
    const started = (await feed.next()).testRunStarted;
    expect(started).toMatchObject({ type: 'RUN_STARTED', runId: run.id, run: { id: run.id, moduleName: 'feature_extractor' } });
    expect(started.total).toBeGreaterThan(0);
    // Only starts: the run's other events do not come through.
    await new Promise((r) => setTimeout(r, 300));
    expect(feed.events).toHaveLength(1);
  });
});
