/**
 * The dashboard's routes on a folder of their own: 503 with what to do while the page is not
 * built, then the build as soon as it exists (no restart), the page revalidated and its assets
 * immutable.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { dashboardRoutes } from '../../src/transport/dashboard.js';
import { rawGet } from '../support/raw-http.js';

let server: Server | null = null;
let dir: string | null = null;

afterEach(async () => {
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  if (dir) rmSync(dir, { recursive: true, force: true });
  server = null;
  dir = null;
});

async function serve(folder: string): Promise<string> {
  const [page, assets] = dashboardRoutes(folder);
  server = createServer((req, res) => void (req.url!.startsWith(assets!.path) ? assets! : page!).handle(req, res));
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
}

describe('dashboard routes', () => {
  it('answer 503 until the page is built, then serve the build', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'helios-dashboard-'));
    const base = await serve(dir);
    const missing = await rawGet(`${base}/dashboard`);
    expect(missing.status).toBe(503);
    expect(missing.body.toString('utf8')).toContain('npm run build');
    expect(missing.headers['cache-control']).toBe('no-store');

    mkdirSync(path.join(dir, 'assets'));
    writeFileSync(path.join(dir, 'index.html'), '<!doctype html><script type="module" src="/dashboard/assets/app-abc123.js"></script>');
    writeFileSync(path.join(dir, 'assets', 'app-abc123.js'), 'console.log("dashboard");\n'.repeat(50));
    const page = await rawGet(`${base}/dashboard`);
    expect(page.status).toBe(200);
    expect(page.headers['cache-control']).toBe('no-cache');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    const asset = await rawGet(`${base}/dashboard/assets/app-abc123.js`, { 'accept-encoding': 'gzip' });
    expect(asset.status).toBe(200);
    expect(asset.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(asset.headers['content-encoding']).toBe('gzip');
    expect(asset.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect((await rawGet(`${base}/dashboard/assets/other.js`)).status).toBe(404);
  });
});
