/**
 * The transports under hostile or ending conditions, over the real wire:
 * - WebSocket frame caps: a few KiB before `connection_init` is acknowledged, the HTTP body cap
 *   after it, an oversized frame closed with 1009 and never held (RSS of a server in a child
 *   process);
 * - revocation ends a token's SSE streams (GraphQL over SSE, distinct connections) and refuses
 *   everything it tries later, on every transport;
 * - shutdown completes every subscription on both transports and is not held by open streams;
 * - request errors (parse, validation, variables) carry the same codes on HTTP and WebSocket.
 */
import { connect, type Socket } from 'node:net';
import { print } from 'graphql';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CreateApiTokenDocument, FeatureFlagChangedDocument, FeatureFlagsDocument, RevokeApiTokenDocument, SetFlagPercentageDocument } from '../gql/graphql.js';
import { startChildServer, type ChildServer } from '../support/child.js';
import { serverPool } from '../support/pool.js';
import { subscribe, TEST_ADMIN_TOKEN, untilListening, webSocketOpen, type TestServer } from '../support/server.js';

const pool = serverPool();
const ADMIN = `Bearer ${TEST_ADMIN_TOKEN}`;
const FLAG = 'websocket_v2';

let child: ChildServer | null = null;
afterEach(async () => {
  await child?.stop();
  child = null;
});

interface Message {
  id?: string;
  type: string;
  payload?: unknown;
}

/** A raw graphql-transport-ws client: every message, in order, and the exact close code. */
class RawSocket {
  readonly messages: Message[] = [];
  /** Messages and the close, in the order they arrived. */
  readonly timeline: string[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly ws: WebSocket;
  private waiters: (() => void)[] = [];

  constructor(url: string) {
    this.ws = new WebSocket(url, 'graphql-transport-ws');
    this.ws.on('error', () => {});
    this.ws.on('message', (data) => {
      const message = JSON.parse(String(data)) as Message;
      this.messages.push(message);
      this.timeline.push(`${message.type}${message.id ? `:${message.id}` : ''}`);
      this.wake();
    });
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => {
      this.timeline.push(`close:${code}`);
      resolve({ code, reason: reason.toString() });
      this.wake();
    }));
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  open(): Promise<void> {
    return webSocketOpen(this.ws);
  }

  send(message: object): void {
    this.ws.send(JSON.stringify(message));
  }

  async waitFor(predicate: (m: Message) => boolean, timeoutMs = 5000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find(predicate);
      if (found) return found;
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error(`socket closed while waiting; got ${this.timeline.join(', ')}`);
      if (Date.now() > deadline) throw new Error(`timed out; got ${this.timeline.join(', ')}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  /** Opens, sends connection_init with `payload` and waits for the ack. */
  async init(payload: Record<string, unknown> = { authorization: ADMIN }): Promise<void> {
    await this.open();
    this.send({ type: 'connection_init', payload });
    await this.waitFor((m) => m.type === 'connection_ack');
  }

  close(): void {
    this.ws.close();
  }
}

const codes = (payload: unknown) => {
  const errors = Array.isArray(payload) ? payload : (payload as { errors?: unknown[] }).errors ?? [];
  return (errors as { extensions?: { code?: string } }[]).map((e) => e.extensions?.code);
};

/** A GraphQL-over-SSE client (distinct connections mode): POST with Accept: text/event-stream. */
async function openSse(url: string, authorization: string, query: string, variables: Record<string, unknown> = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization },
    body: JSON.stringify({ query, variables }),
  });
  const events: { event: string; data: string }[] = [];
  const waiters: (() => void)[] = [];
  let ended = false;
  const wake = () => waiters.splice(0).forEach((w) => w());
  const reading = (async () => {
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let split: number;
      while ((split = buffer.indexOf('\n\n')) !== -1) {
        const block = buffer.slice(0, split);
        buffer = buffer.slice(split + 2);
        const lines = block.split('\n').filter((line) => !line.startsWith(':'));
        if (lines.length === 0) continue; // keep-alive ping
        const field = (name: string) => lines.filter((l) => l.startsWith(`${name}:`)).map((l) => l.slice(name.length + 1).trim()).join('\n');
        events.push({ event: field('event'), data: field('data') });
        wake();
      }
    }
  })().catch(() => {}).finally(() => {
    ended = true;
    wake();
  });
  const until = async (condition: () => boolean, what: string, timeoutMs = 5000) => {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(events)}`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  };
  return {
    status: res.status,
    events,
    get ended() {
      return ended;
    },
    nexts: () => events.filter((e) => e.event === 'next'),
    until,
    untilEnded: (timeoutMs?: number) => until(() => ended, 'the end of the stream', timeoutMs),
    cancel: () => res.body?.cancel().catch(() => {}),
    reading,
  };
}

const FEED = print(FeatureFlagChangedDocument);
const setFlag = (h: TestServer, percentage: number) => h.query(SetFlagPercentageDocument, { name: FLAG, percentage });

/**
 * One hostile WebSocket from a raw TCP socket: a frame header declaring `declared` bytes, then
 * `send` bytes of its payload. Resolves with the close code the server sends (or null if it
 * sends none within `timeoutMs`); the TCP socket is left open, as an attacker would.
 */
function oversizedFrame(port: number, declared: number, send: number, timeoutMs = 5000): Promise<{ code: number | null; socket: Socket }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    let handshake = true;
    let buffer = Buffer.alloc(0);
    const timer = setTimeout(() => resolve({ code: null, socket }), timeoutMs);
    socket.on('connect', () => {
      socket.write([
        'GET /graphql HTTP/1.1',
        `Host: 127.0.0.1:${port}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Protocol: graphql-transport-ws',
        '', '',
      ].join('\r\n'));
    });
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (handshake) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end === -1) return;
        if (!buffer.subarray(0, 12).toString().includes('101')) {
          clearTimeout(timer);
          resolve({ code: -1, socket });
          return;
        }
        handshake = false;
        buffer = buffer.subarray(end + 4);
        // FIN + text frame, masked, 64-bit length.
        const header = Buffer.alloc(14);
        header[0] = 0x81;
        header[1] = 0x80 | 127;
        header.writeBigUInt64BE(BigInt(declared), 2);
        header.writeUInt32BE(0x01020304, 10);
        socket.write(header);
        socket.write(Buffer.alloc(send, 0x61));
      }
      // A close frame from the server: 0x88, length, then the 2-byte code.
      if (buffer.length >= 4 && buffer[0] === 0x88) {
        clearTimeout(timer);
        resolve({ code: buffer.readUInt16BE(2), socket });
      }
    });
  });
}

describe('WebSocket frame caps', () => {
  it('caps frames at a few KiB until connection_init is acknowledged, then at the HTTP body cap, closing with 1009', async () => {
    const h = await pool.start();

    // 16 KiB connection_init: far below the body cap (256 KiB), above the pre-ack cap (8 KiB).
    const early = new RawSocket(h.wsUrl);
    await early.open();
    early.send({ type: 'connection_init', payload: { authorization: ADMIN, padding: 'x'.repeat(16 * 1024) } });
    expect((await early.closed).code).toBe(1009);

    // After the ack, a 64 KiB operation passes (the cap was raised for this socket)...
    const socket = new RawSocket(h.wsUrl);
    await socket.init();
    socket.send({ id: 'big', type: 'subscribe', payload: { query: 'query ($n: String!) { featureFlag(name: $n) { name } }', variables: { n: 'n'.repeat(64 * 1024) } } });
    expect(await socket.waitFor((m) => m.id === 'big' && m.type === 'next')).toMatchObject({ payload: { data: { featureFlag: null } } });

    // ...and one over HELIOS_MAX_BODY_BYTES is refused: 413 over HTTP, 1009 over WebSocket.
    const huge = { query: 'mutation ($v: String!) { setFlagPercentage(name: $v, percentage: 1) { errors { code } } }', variables: { v: 'v'.repeat(20 * 1024 * 1024) } };
    const http = await fetch(h.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: ADMIN }, body: JSON.stringify(huge) });
    expect(http.status).toBe(413);
    socket.send({ id: 'huge', type: 'subscribe', payload: huge });
    expect((await socket.closed).code).toBe(1009);
    expect(socket.messages.some((m) => m.id === 'huge')).toBe(false);
  });

  it('100 oversized frames grow the server (own process) by less than 50 MB and each is closed with 1009', async () => {
    child = await startChildServer({ HELIOS_MAX_WS_PER_CLIENT: '1000' });
    // Warm up: the first upgrade and operation load code that is not attack cost.
    const warm = new RawSocket(child.url.replace(/^http/, 'ws'));
    await warm.init();
    warm.close();
    await warm.closed;
    const before = child.memory();

    const MiB = 1024 * 1024;
    const attempts = await Promise.all(Array.from({ length: 100 }, () => oversizedFrame(child!.port, 90 * MiB, MiB)));
    const after = child.memory();
    const health = await fetch(new URL('/health', child.url));
    for (const { socket } of attempts) socket.destroy();

    expect(attempts.map((a) => a.code)).toEqual(Array(100).fill(1009));
    expect(health.status).toBe(200);
    expect(after.peak - before.peak).toBeLessThan(50 * MiB);
  }, 30_000);
});

describe('token revocation', () => {
  it('ends the token\'s SSE stream with `complete`, sends it nothing later, and refuses it on every transport', async () => {
    const h = await pool.start();
    const created = await h.query(CreateApiTokenDocument, { name: 'sse-viewer', role: 'VIEWER' });
    const token = `Bearer ${created.createApiToken.token!}`;

    const stream = await openSse(h.url, token, FEED, {});
    expect(stream.status).toBe(200);
    await untilListening(h, 'featureFlagChanged');
    await setFlag(h, 11);
    await stream.until(() => stream.nexts().length === 1, 'the first event');

    await h.query(RevokeApiTokenDocument, { name: 'sse-viewer' });
    await stream.untilEnded(2000);
    expect(stream.events.at(-1)?.event).toBe('complete');
    expect(h.server.app.services.bus.listenerCount('featureFlagChanged')).toBe(0);
    await setFlag(h, 12);
    await setFlag(h, 13);
    expect(stream.nexts()).toHaveLength(1);

    // Later operations with the revoked token: HTTP, SSE and WebSocket alike.
    const http = await h.request(FeatureFlagsDocument, {}, { authorization: token });
    expect(codes(http)).toEqual(['UNAUTHENTICATED']);
    const again = await openSse(h.url, token, FEED, {});
    expect(again.status).toBe(401);
    const ws = new RawSocket(h.wsUrl);
    await ws.open();
    ws.send({ type: 'connection_init', payload: { authorization: token } });
    expect((await ws.closed).code).toBe(4403);
  });
});

describe('graceful shutdown', () => {
  it('ends open SSE streams with `event: complete` and does not wait for them', async () => {
    const h = await pool.start({ env: { HELIOS_SHUTDOWN_TIMEOUT_MS: '10000' } });
    const streams = await Promise.all([openSse(h.url, ADMIN, FEED), openSse(h.url, ADMIN, FEED)]);
    await untilListening(h, 'featureFlagChanged', 2);
    await setFlag(h, 21);
    for (const s of streams) await s.until(() => s.nexts().length === 1, 'an event');

    const started = Date.now();
    await h.server.stop();
    expect(Date.now() - started).toBeLessThan(2000);
    for (const s of streams) {
      await s.untilEnded(1000);
      expect(s.events.map((e) => e.event)).toEqual(['next', 'complete']);
    }
  });

  it('sends graphql-ws clients `complete` for every subscription before closing with 1001, without waiting', async () => {
    const h = await pool.start({ env: { HELIOS_SHUTDOWN_TIMEOUT_MS: '10000' } });
    const raw = new RawSocket(h.wsUrl);
    await raw.init();
    raw.send({ id: 'flags', type: 'subscribe', payload: { query: FEED } });
    raw.send({ id: 'breakers', type: 'subscribe', payload: { query: 'subscription { breakerStateChanged { name } }' } });
    const client = h.wsClient();
    const feed = subscribe(client, FeatureFlagChangedDocument, {});
    await untilListening(h, 'featureFlagChanged', 2);
    await untilListening(h, 'breakerStateChanged', 1);
    await setFlag(h, 31);
    await feed.next();
    await raw.waitFor((m) => m.id === 'flags' && m.type === 'next');

    const started = Date.now();
    await h.server.stop();
    expect(Date.now() - started).toBeLessThan(2000);
    expect((await raw.closed).code).toBe(1001);
    const timeline = raw.timeline.filter((t) => t !== 'next:flags');
    expect(timeline.slice(-3).sort()).toEqual(['close:1001', 'complete:breakers', 'complete:flags']);
    expect(timeline.at(-1)).toBe('close:1001');
    // The graphql-ws client's sink is completed, not failed with a close event.
    await feed.waitForCompletion(1000);
    expect(feed.completed).toBe(true);
    expect(feed.error).toBeNull();
  });
});

describe('request error codes', () => {
  const mutation = 'mutation ($p: Float!) { setFlagPercentage(name: "websocket_v2", percentage: $p) { errors { code } } }';
  const post = async (body: string, accept = 'application/graphql-response+json') => {
    const res = await fetch((await current).url, { method: 'POST', headers: { 'content-type': 'application/json', accept, authorization: ADMIN }, body });
    return { status: res.status, body: (await res.json()) as { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] } };
  };
  let current: Promise<TestServer>;

  it('answers variables that do not coerce with 400 and BAD_USER_INPUT over HTTP', async () => {
    current = pool.start();
    for (const body of [
      JSON.stringify({ query: mutation, variables: { p: '50' } }),
      // JSON reads 1e309 as Infinity, which Float cannot represent.
      `{"query":${JSON.stringify(mutation)},"variables":{"p":1e309}}`,
      JSON.stringify({ query: mutation, variables: {} }),
    ]) {
      const res = await post(body);
      expect(res.status, body.slice(-40)).toBe(400);
      expect(res.body.data).toBeUndefined();
      expect(codes(res.body)).toEqual(['BAD_USER_INPUT']);
      expect(res.body.errors![0]!.message).toMatch(/^Variable "\$p"/);
    }
    // Legacy application/json: 200 as GraphQL over HTTP asks, with the same code.
    const legacy = await post(JSON.stringify({ query: mutation, variables: { p: '50' } }), 'application/json');
    expect(legacy.status).toBe(200);
    expect(codes(legacy.body)).toEqual(['BAD_USER_INPUT']);
  });

  it('gives parse, validation and variable errors the same codes over WebSocket as over HTTP', async () => {
    current = pool.start();
    const cases = [
      { query: '{ featureFlags { name ', expected: 'GRAPHQL_PARSE_FAILED' },
      { query: '{ noSuchField }', expected: 'GRAPHQL_VALIDATION_FAILED' },
      { query: mutation, variables: { p: '50' }, expected: 'BAD_USER_INPUT' },
      { query: 'subscription ($n: String) { featureFlagChanged(name: $n) { name } }', variables: { n: 5 }, expected: 'BAD_USER_INPUT' },
    ];
    const socket = new RawSocket((await current).wsUrl);
    await socket.init();
    for (const [i, c] of cases.entries()) {
      const http = await post(JSON.stringify({ query: c.query, variables: c.variables ?? {} }));
      expect(codes(http.body), c.query).toEqual([c.expected]);
      expect(http.status).toBe(400);
      socket.send({ id: String(i), type: 'subscribe', payload: { query: c.query, variables: c.variables ?? {} } });
      const answer = await socket.waitFor((m) => m.id === String(i) && (m.type === 'error' || m.type === 'next'));
      expect(codes(answer.payload), c.query).toEqual([c.expected]);
      expect(JSON.stringify(answer.payload)).not.toContain('"http"');
    }
    socket.close();
  });
});
