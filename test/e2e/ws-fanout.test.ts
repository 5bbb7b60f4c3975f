/**
 * Subscription fan-out over the real wire (transport/graphql-ws.ts, graphql/shared-subscriptions.ts):
 * each event is executed and serialised once per distinct subscription and each socket gets the
 * shared payload spliced into its own `next` frame. Checked here against a real server:
 * - the frame is byte for byte what graphql-ws writes (`stringifyMessage`), for ids that JSON
 *   must escape, many of them on one socket, and the same data as a graphql-ws client receives;
 * - an error in a shared result is masked for every subscriber (no detail leaks), each socket
 *   still getting its own frame;
 * - a subscriber that completes stops receiving while the others go on;
 * - a socket that stops reading holds only itself back: its frames wait for the kernel, its feed
 *   fills and ends it with SLOW_CONSUMER after the frames it was sent, in order, while another
 *   socket gets every event.
 */
import { CloseCode, MessageType, stringifyMessage } from 'graphql-ws';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { BreakerTransition } from '../../src/breakers/states.js';
import { startTestServer, subscribe, TEST_ADMIN_TOKEN, untilListening, webSocketOpen, type TestServer } from '../support/server.js';
import { BreakerStateChangedDocument } from '../gql/graphql.js';

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

const QUERY = 'subscription { breakerStateChanged { name from to reason at metrics { failures consecutiveFailures rejections } } }';
const IDS = ['1', 'a"b', 'back\\slash', 'line\u2028sep', 'tab\tnew\nline', '\u0001ctl', 'é🙂', '</script>', 'x'.repeat(200)];

/** A raw graphql-transport-ws socket keeping every frame as the bytes that arrived. */
class RawSubscriber {
  readonly frames: Buffer[] = [];
  private readonly ws: WebSocket;
  private waiters: (() => void)[] = [];

  constructor(url: string) {
    this.ws = new WebSocket(url, 'graphql-transport-ws');
    this.ws.on('error', () => {});
    this.ws.on('message', (data: Buffer) => {
      this.frames.push(data);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  async init(): Promise<void> {
    await webSocketOpen(this.ws);
    this.send({ type: 'connection_init', payload: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } });
    await this.until(1);
    expect(this.frames[0]!.toString()).toBe('{"type":"connection_ack"}');
  }

  send(message: object): void {
    this.ws.send(JSON.stringify(message));
  }

  async until(count: number): Promise<void> {
    const deadline = Date.now() + 5_000;
    while (this.frames.length < count) {
      if (Date.now() > deadline) throw new Error(`${this.frames.length} of ${count} frames: ${this.frames.map(String).join(' | ')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.ws.close(1000);
  }

  /** Stops (or resumes) reading the TCP socket, as a client that does not keep up. */
  reading(on: boolean): void {
    const socket = (this.ws as unknown as { _socket: import('node:net').Socket })._socket;
    if (on) socket.resume();
    else socket.pause();
  }
}

function transition(name: string, overrides: Partial<BreakerTransition> = {}): BreakerTransition {
  return {
    name,
    from: 'CLOSED',
    to: 'OPEN',
    reason: 'MANUAL_OPEN',
    at: Date.UTC(2026, 11, 2, 5, 40),
    openUntil: null,
    metrics: { calls: 4, successes: 1, failures: 3, rejections: 2, timeouts: 0, slowCalls: 0, consecutiveFailures: 3, consecutiveSuccesses: 0, lastFailureAt: null, lastError: null, failureRate: null },
    ...overrides,
  } as BreakerTransition;
}

/** The `payload` bytes of a `next` frame for `id` (what the server spliced in). */
function payloadBytes(frame: string, id: string): string {
  const head = `{"id":${JSON.stringify(id)},"type":"next","payload":`;
  expect(frame.startsWith(head)).toBe(true);
  expect(frame.endsWith('}')).toBe(true);
  return frame.slice(head.length, -1);
}

describe('fan-out: one serialised payload per distinct subscription, one frame per socket', () => {
  it('writes the bytes graphql-ws would, for many ids on one socket (ids JSON must escape too), and the data a graphql-ws client gets', async () => {
    const h = await startTestServer();
    servers.push(h);
    const raw = new RawSubscriber(h.wsUrl);
    await raw.init();
    for (const id of IDS) raw.send({ id, type: 'subscribe', payload: { query: QUERY } });
    const client = subscribe(h.wsClient(), BreakerStateChangedDocument, {});
    await untilListening(h, 'breakerStateChanged', IDS.length + 1);

    h.server.app.services.bus.publish('breakerStateChanged', transition('fanout_bytes'));
    await raw.until(1 + IDS.length);
    const frames = raw.frames.slice(1).map(String);
    const byId = new Map(frames.map((f) => [(JSON.parse(f) as { id: string }).id, f]));
    expect([...byId.keys()].sort()).toEqual([...IDS].sort());
    const payloads = new Set<string>();
    for (const id of IDS) {
      const frame = byId.get(id)!;
      // graphql-ws's own serialisation of the message it would have sent.
      expect(frame).toBe(stringifyMessage({ id, type: MessageType.Next, payload: JSON.parse(frame).payload }));
      payloads.add(payloadBytes(frame, id));
    }
    // One payload, spliced into every frame.
    expect(payloads.size).toBe(1);
    const [payload] = [...payloads];
    expect(JSON.parse(payload!)).toEqual({
      data: { breakerStateChanged: { name: 'fanout_bytes', from: 'CLOSED', to: 'OPEN', reason: 'MANUAL_OPEN', at: '2026-12-02T05:40:00.000Z', metrics: { failures: 3, consecutiveFailures: 3, rejections: 2 } } },
    });
    // A graphql-ws client (a different document: the generated one) hears the same transition.
    expect((await client.next()).breakerStateChanged.name).toBe('fanout_bytes');

    // Completing one id stops its frames; the other ids go on.
    raw.send({ id: IDS[0], type: 'complete' });
    const deadline = Date.now() + 5_000;
    while (h.server.app.services.bus.listenerCount('breakerStateChanged') > IDS.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    h.server.app.services.bus.publish('breakerStateChanged', transition('fanout_second'));
    await raw.until(1 + IDS.length + IDS.length - 1);
    const second = raw.frames.slice(1 + IDS.length).map((f) => JSON.parse(String(f)) as { id: string; payload: { data: { breakerStateChanged: { name: string } } } });
    expect(second.map((m) => m.id).sort()).toEqual(IDS.slice(1).sort());
    expect(new Set(second.map((m) => m.payload.data.breakerStateChanged.name))).toEqual(new Set(['fanout_second']));
    raw.close();
  });

  it('masks an error in a shared result for every subscriber, each on its own socket and id', async () => {
    const h = await startTestServer();
    servers.push(h);
    const sockets = [new RawSubscriber(h.wsUrl), new RawSubscriber(h.wsUrl), new RawSubscriber(h.wsUrl)];
    await Promise.all(sockets.map((s) => s.init()));
    sockets.forEach((s, i) => s.send({ id: `sub-${i}`, type: 'subscribe', payload: { query: QUERY } }));
    await untilListening(h, 'breakerStateChanged', sockets.length);
    let reads = 0;
    // A field whose resolver throws an unexpected error (a getter on the event object).
    const event = transition('fanout_masked');
    Object.defineProperty(event, 'reason', {
      get() {
        reads++;
        throw new Error('secret detail /etc/helios.db');
      },
    });
    h.server.app.services.bus.publish('breakerStateChanged', event);
    await Promise.all(sockets.map((s) => s.until(2)));
    const payloads = sockets.map((s, i) => payloadBytes(String(s.frames[1]), `sub-${i}`));
    expect(new Set(payloads).size).toBe(1);
    expect(payloads[0]).not.toContain('secret');
    const result = JSON.parse(payloads[0]!) as { data: unknown; errors: Array<{ message: string; path: unknown[]; extensions: { code: string } }> };
    // `reason` is non-null, so the whole field is null.
    expect(result.data).toBeNull();
    expect(result.errors.map((e) => [e.message, e.path, e.extensions.code])).toEqual([['Unexpected error.', ['breakerStateChanged', 'reason'], 'INTERNAL_SERVER_ERROR']]);
    // Executed once for the three subscribers.
    expect(reads).toBe(1);
    // And the sockets live on.
    h.server.app.services.bus.publish('breakerStateChanged', transition('fanout_after'));
    await Promise.all(sockets.map((s) => s.until(3)));
    sockets.forEach((s) => s.close());
  });

  it('holds a socket that does not read to its own queue and ends it with SLOW_CONSUMER, the others unaffected', async () => {
    const h = await startTestServer();
    servers.push(h);
    const healthy = new RawSubscriber(h.wsUrl);
    const slow = new RawSubscriber(h.wsUrl);
    await Promise.all([healthy.init(), slow.init()]);
    healthy.send({ id: 'healthy', type: 'subscribe', payload: { query: 'subscription { breakerStateChanged { name } }' } });
    slow.send({ id: 'slow', type: 'subscribe', payload: { query: 'subscription { breakerStateChanged { name } }' } });
    await untilListening(h, 'breakerStateChanged', 2);
    slow.reading(false);
    // 8 KiB frames: the kernel's buffers (a few MB on loopback) fill within the first ~600, then
    // the slow subscriber's feed queues up to 1,024 events and is ended.
    const EVENTS = 3_000;
    const padding = 'x'.repeat(8_192);
    const { bus } = h.server.app.services;
    for (let i = 0; i < EVENTS; i++) {
      bus.publish('breakerStateChanged', transition(`${i}:${padding}`));
      if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
    }
    await healthy.until(1 + EVENTS);
    const names = healthy.frames.slice(1).map((f) => (JSON.parse(String(f)) as { payload: { data: { breakerStateChanged: { name: string } } } }).payload.data.breakerStateChanged.name);
    expect(names.map((n) => Number(n.split(':')[0]))).toEqual(Array.from({ length: EVENTS }, (_, i) => i));
    // The slow subscriber's feed was detached when it overflowed; the healthy one still listens.
    expect(h.server.app.services.bus.listenerCount('breakerStateChanged')).toBe(1);

    slow.reading(true);
    const deadline = Date.now() + 10_000;
    const last = () => (slow.frames.length > 1 ? (JSON.parse(String(slow.frames.at(-1))) as { id: string; type: string; payload: unknown }) : null);
    while (last()?.type !== 'error' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    const end = last()!;
    expect(end).toMatchObject({ id: 'slow', type: 'error', payload: [{ extensions: { code: 'SLOW_CONSUMER' } }] });
    // Before it, the events it had been sent, in order and none lost, and fewer than all of them.
    const got = slow.frames.slice(1, -1).map((f) => JSON.parse(String(f)) as { id: string; type: string; payload: { data: { breakerStateChanged: { name: string } } } });
    expect(got.every((m) => m.id === 'slow' && m.type === 'next')).toBe(true);
    expect(got.map((m) => Number(m.payload.data.breakerStateChanged.name.split(':')[0]))).toEqual(Array.from({ length: got.length }, (_, i) => i));
    expect(got.length).toBeGreaterThan(0);
    expect(got.length).toBeLessThan(EVENTS - 1_024);

    // Both sockets and the server live on.
    bus.publish('breakerStateChanged', transition('after'));
    await healthy.until(2 + EVENTS);
    healthy.close();
    slow.close();
  });

  it('still refuses a duplicate id on a socket with 4409, as graphql-ws', async () => {
    const h = await startTestServer();
    servers.push(h);
    const ws = new WebSocket(h.wsUrl, 'graphql-transport-ws');
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    await new Promise((r) => ws.once('open', r));
    ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } }));
    await new Promise((r) => ws.once('message', r));
    ws.send(JSON.stringify({ id: 'same', type: 'subscribe', payload: { query: QUERY } }));
    await untilListening(h, 'breakerStateChanged', 1);
    ws.send(JSON.stringify({ id: 'same', type: 'subscribe', payload: { query: QUERY } }));
    expect(await closed).toBe(CloseCode.SubscriberAlreadyExists);
  });
});
