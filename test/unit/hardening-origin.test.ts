/** Browser origin checks (CSRF, cross-site WebSocket, DNS rebinding). */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { checkRequestOrigin, verifyWebSocketOrigin, type OriginPolicy } from '../../src/hardening/browser-origin.js';

const open: OriginPolicy = { allowedOrigins: ['https://ops.example.com'], requireLoopbackHost: false };
const loopback: OriginPolicy = { allowedOrigins: [], requireLoopbackHost: true };

describe('checkRequestOrigin', () => {
  it('lets non-browser clients and same-origin browsers through', () => {
    expect(checkRequestOrigin({ host: 'helios.internal:8000' }, open).ok).toBe(true);
    expect(checkRequestOrigin({ host: 'helios.internal:8000', origin: 'http://helios.internal:8000' }, open).ok).toBe(true);
    expect(checkRequestOrigin({ host: '127.0.0.1:8000', origin: 'http://127.0.0.1:8000', 'sec-fetch-site': 'same-origin' }, loopback).ok).toBe(true);
    expect(checkRequestOrigin({ host: 'localhost:8000', 'sec-fetch-site': 'none' }, loopback).ok).toBe(true);
    expect(checkRequestOrigin({ host: '[::1]:8000' }, loopback).ok).toBe(true);
  });

  it('allows listed origins only', () => {
    expect(checkRequestOrigin({ host: 'helios.internal', origin: 'https://ops.example.com' }, open).ok).toBe(true);
    expect(checkRequestOrigin({ host: 'helios.internal', origin: 'https://evil.example' }, open)).toMatchObject({ ok: false, code: 'FORBIDDEN_ORIGIN' });
    expect(checkRequestOrigin({ host: 'helios.internal', origin: 'null' }, open).ok).toBe(false);
  });

  it('refuses cross-site browser requests without an Origin', () => {
    expect(checkRequestOrigin({ host: 'helios.internal', 'sec-fetch-site': 'cross-site' }, open).ok).toBe(false);
    expect(checkRequestOrigin({ host: 'helios.internal', 'sec-fetch-site': 'same-site' }, open).ok).toBe(false);
  });

  it('refuses DNS-rebinding hosts while bound to loopback', () => {
    expect(checkRequestOrigin({ host: 'rebind.evil.example:8000', origin: 'http://rebind.evil.example:8000' }, loopback).ok).toBe(false);
    expect(checkRequestOrigin({}, loopback).ok).toBe(false);
  });
});

describe('verifyWebSocketOrigin', () => {
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = createServer();
    new WebSocketServer({ server, verifyClient: verifyWebSocketOrigin(loopback) });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const outcome = (origin?: string) => new Promise<string>((resolve) => {
    const ws = new WebSocket(url, origin ? { origin } : {});
    ws.on('open', () => {
      ws.close();
      resolve('open');
    });
    ws.on('unexpected-response', (_req, res) => resolve(`http ${res.statusCode}`));
    ws.on('error', () => resolve('error'));
  });

  it('upgrades same-origin and non-browser clients, and answers 403 to foreign pages', async () => {
    expect(await outcome()).toBe('open');
    expect(await outcome(url.replace('ws:', 'http:'))).toBe('open');
    expect(await outcome('https://evil.example')).toBe('http 403');
  });
});
