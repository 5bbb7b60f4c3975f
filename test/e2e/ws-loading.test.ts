/**
 * ws and graphql-ws are loaded on the first upgrade request, not at start (transport/graphql-ws.ts):
 * a started server has not loaded them, the first socket works, an upgrade to another path is
 * refused with 400 as an attached WebSocketServer refuses it, a socket that goes away while ws is
 * loading harms nothing, and a server no socket was ever opened to stops cleanly.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';
import { repoUrl, runTsxScript } from '../support/tsx-script.js';

const servers: TestServer[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
  dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
});

/** Sends a raw upgrade request for `target` and returns the first line of the answer ('' if none). */
function rawUpgrade(port: number, target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n`);
    });
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.includes('\r\n')) {
        socket.destroy();
        resolve(text.split('\r\n')[0]!);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(text.split('\r\n')[0] ?? ''));
  });
}

describe('graphql-ws, loaded on the first upgrade', () => {
  it('a started server has not loaded ws; its first socket loads it', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'helios-ws-loading-'));
    dirs.push(dir);
    // Its own process: this one has loaded ws already (the test clients use it).
    const run = runTsxScript(dir, `
import { createRequire } from 'node:module';
import { loadConfig } from ${repoUrl('src/config.ts')};
import { startServer } from ${repoUrl('src/server.ts')};
const wsLoaded = () => Object.keys(createRequire(import.meta.url).cache).some((f) => f.includes('/node_modules/ws/'));
const server = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', HELIOS_DB_PATH: ${JSON.stringify(path.join(dir, 'helios.db'))}, HELIOS_ADMIN_TOKEN: 'test-admin-token-0123456789abcdef' }), { print: () => {} });
const before = wsLoaded();
const socket = new (await import('node:net')).Socket();
await new Promise((resolve) => socket.connect(server.port, '127.0.0.1', () => resolve(undefined)));
socket.write('GET /graphql HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\nSec-WebSocket-Version: 13\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Protocol: graphql-transport-ws\\r\\n\\r\\n');
const answer = await new Promise((resolve) => socket.once('data', (chunk) => resolve(String(chunk).split('\\r\\n')[0])));
socket.destroy();
console.log(JSON.stringify({ before, after: wsLoaded(), answer }));
await server.stop();
`);
    expect(run.stderr).toBe('');
    expect(run.result).toEqual({ before: false, after: true, answer: 'HTTP/1.1 101 Switching Protocols' });
  });

  it('refuses an upgrade to another path with 400, and one to /graphql switches protocols', async () => {
    const h = await startTestServer();
    servers.push(h);
    expect(await rawUpgrade(h.server.port, '/elsewhere')).toBe('HTTP/1.1 400 Bad Request');
    expect(await rawUpgrade(h.server.port, '/graphql')).toBe('HTTP/1.1 101 Switching Protocols');
  });

  it('a socket gone before ws took it harms nothing: the next client subscribes', async () => {
    const h = await startTestServer();
    servers.push(h);
    await new Promise<void>((resolve) => {
      const socket = connect(h.server.port, '127.0.0.1', () => {
        socket.write('GET /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
        socket.resetAndDestroy();
        resolve();
      });
    });
    const client = h.wsClient();
    const result = await new Promise<unknown>((resolve, reject) => {
      client.subscribe({ query: '{ modularityStatus { version } }' }, { next: resolve, error: reject, complete: () => {} });
    });
    await client.dispose();
    expect(result).toMatchObject({ data: { modularityStatus: { version: expect.any(String) } } });
    expect((await fetch(`http://127.0.0.1:${h.server.port}/ready`)).status).toBe(200);
  });

  it('a server no socket was ever opened to stops cleanly', async () => {
    const h = await startTestServer();
    await h.stop();
    await expect(rawUpgrade(h.server.port, '/graphql').catch(() => 'refused')).resolves.toBe('refused');
  });
});
