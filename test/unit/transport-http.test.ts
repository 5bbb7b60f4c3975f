/**
 * The HTTP layer's route table (src/transport/http.ts): another adapter is one `route()` call,
 * probes bypass the guards, guarded routes get the origin check and body cap, and shutdown
 * drains only what it is told to wait for.
 */
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpTransport, probeRoutes, sendJson, type HttpTransport } from '../../src/transport/http.js';

const running: HttpTransport[] = [];
afterEach(() => {
  for (const t of running.splice(0)) {
    t.closeAll();
    t.stopAccepting();
  }
});

async function start(bodyLimit = 1024): Promise<{ t: HttpTransport; base: string }> {
  const t = createHttpTransport({
    origins: { allowedOrigins: [], requireLoopbackHost: true },
    maxRequestBodyBytes: bodyLimit,
    fallback: (_req, res) => sendJson(res, 404, { route: 'fallback' }),
  });
  running.push(t);
  for (const route of probeRoutes({ ready: () => true, version: '1.2.3' })) t.route(route);
  const port = await t.listen(0, '127.0.0.1');
  return { t, base: `http://127.0.0.1:${port}` };
}

describe('HTTP route table', () => {
  it('routes exact paths and prefixes (longest first), queries ignored, the rest to the fallback', async () => {
    const { t, base } = await start();
    t.route({ path: '/ofrep/v1/evaluate', handle: (_req, res) => sendJson(res, 200, { route: 'exact' }) });
    t.route({ path: '/api/', handle: (_req, res) => sendJson(res, 200, { route: 'api' }) });
    t.route({ path: '/api/modularity/', handle: (req, res) => sendJson(res, 200, { route: 'modularity', url: req.url }) });
    const get = async (path: string) => (await (await fetch(base + path)).json()) as { route: string; url?: string };
    expect(await get('/ofrep/v1/evaluate?x=1')).toEqual({ route: 'exact' });
    expect(await get('/api/other')).toEqual({ route: 'api' });
    expect(await get('/api/modularity/status')).toEqual({ route: 'modularity', url: '/api/modularity/status' });
    expect(await get('/graphql')).toEqual({ route: 'fallback' });
    expect(await (await fetch(`${base}/ready`)).json()).toEqual({ status: 'ready', version: '1.2.3' });
  });

  it('answers probes before the origin check; guarded routes get 403 for a foreign origin and 413 over the body cap', async () => {
    const { t, base } = await start(1024);
    t.route({ path: '/echo', handle: (req, res) => sendJson(res, 200, { bytes: (req as { body?: Buffer }).body?.length ?? 0 }) });
    const foreign = { origin: 'https://evil.example' };
    expect((await fetch(`${base}/health`, { headers: foreign })).status).toBe(200);
    const refused = await fetch(`${base}/echo`, { method: 'POST', headers: foreign, body: 'x' });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { errors: { extensions: { code: string } }[] }).errors[0]!.extensions.code).toBe('FORBIDDEN_ORIGIN');
    expect(await (await fetch(`${base}/echo`, { method: 'POST', body: 'x'.repeat(1000) })).json()).toEqual({ bytes: 1000 });
    expect((await fetch(`${base}/echo`, { method: 'POST', body: 'x'.repeat(1025) })).status).toBe(413);
  });

  it('a throwing handler gets a coded 500 and the server keeps serving', async () => {
    const { t, base } = await start();
    t.route({ path: '/boom', handle: () => { throw new Error('boom'); } });
    t.route({ path: '/later', handle: async () => { await Promise.resolve(); throw new Error('later'); } });
    for (const path of ['/boom', '/later']) {
      const res = await fetch(base + path);
      expect(res.status).toBe(500);
      expect(await res.text()).not.toContain('boom');
    }
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });

  it('drain waits for in-flight requests except those it is told to skip', async () => {
    const { t, base } = await start();
    const held: ServerResponse[] = [];
    t.route({ path: '/hold', handle: (_req, res) => { held.push(res); } });
    const pending = [fetch(`${base}/hold`).catch(() => null), fetch(`${base}/hold`).catch(() => null)];
    while (held.length < 2) await new Promise((r) => setTimeout(r, 5));
    expect(t.inFlight()).toHaveLength(2);
    expect(await t.drain(Date.now() + 50)).toBe(2);
    expect(await t.drain(Date.now() + 50, (res) => res === held[0])).toBe(1);
    held[1]!.end();
    expect(await t.drain(Date.now() + 1000, (res) => res === held[0])).toBe(0);
    t.closeAll();
    await Promise.all(pending);
  });
});
