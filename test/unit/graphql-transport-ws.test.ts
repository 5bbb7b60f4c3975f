/**
 * The graphql-transport-ws server (src/transport/graphql-transport-ws.ts) against graphql-ws's
 * own `useServer`, over real sockets: the same scripted client conversation goes to each, and
 * what comes back (every message in order, the close code and reason) must be identical. Then
 * what only this server does: the init timer and the keep-alive sweep (short intervals here),
 * and one socket whose state goes with its close.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { execute, parse, subscribe, validate, type ExecutionArgs, type ExecutionResult } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { createSchema } from 'graphql-yoga';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { webSocketOpen } from '../support/server.js';
import { serveGraphQLTransportWs } from '../../src/transport/graphql-transport-ws.js';
import { createLogger } from '../../src/logger.js';

const schema = createSchema({
  typeDefs: /* GraphQL */ `
    type Query { hello: String!, boom: String }
    type Subscription { count(to: Int!): Int!, failing: Int!, forever: Int! }
  `,
  resolvers: {
    Query: { hello: () => 'world', boom: () => { throw new Error('boom'); } },
    Subscription: {
      count: {
        subscribe: async function* (_: unknown, { to }: { to: number }) {
          for (let i = 1; i <= to; i++) yield { count: i };
        },
      },
      failing: {
        subscribe: async function* () {
          yield { failing: 1 };
          throw new Error('stream broke');
        },
      },
      forever: {
        subscribe: async function* () {
          yield { forever: 1 };
          await new Promise(() => {});
        },
      },
    },
  },
});

type Kind = 'graphql-ws' | 'helios';

interface Harness {
  url: string;
  wss: WebSocketServer;
  close(): Promise<void>;
}

const running: Harness[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((h) => h.close()));
});

async function start(kind: Kind, timing: { initWait?: number; keepAlive?: number } = {}): Promise<Harness> {
  const http: Server = createServer();
  const wss = new WebSocketServer({ server: http, path: '/graphql' });
  const onConnect = (params: Readonly<Record<string, unknown>> | undefined) => params?.token !== 'bad';
  let disposable: { dispose(): Promise<void> | void };
  if (kind === 'graphql-ws') {
    disposable = useServer({ schema, onConnect: (ctx) => onConnect(ctx.connectionParams), connectionInitWaitTimeout: timing.initWait ?? 3_000 }, wss, timing.keepAlive ?? 12_000);
  } else {
    disposable = serveGraphQLTransportWs(wss, {
      logger: createLogger('silent'),
      connectionInitWaitTimeout: timing.initWait ?? 3_000,
      keepAliveMs: timing.keepAlive ?? 12_000,
      onConnect: (connection) => onConnect(connection.connectionParams),
      // What graphql-ws does without an onSubscribe: parse (a syntax error throws), validate, run.
      onSubscribe: async (_connection, _id, payload) => {
        const document = parse(payload.query);
        const errors = validate(schema, document);
        if (errors.length > 0) return errors;
        return { schema, document, operationName: payload.operationName ?? null, variableValues: payload.variables ?? null } satisfies ExecutionArgs;
      },
      execute: (args) => execute(args),
      subscribe: (args) => subscribe(args),
    });
  }
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const harness: Harness = {
    url: `ws://127.0.0.1:${(http.address() as AddressInfo).port}/graphql`,
    wss,
    async close() {
      await disposable.dispose();
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
  running.push(harness);
  return harness;
}

/** A raw client: everything it was told, in order, as text, then how the socket closed. */
class Conversation {
  readonly transcript: string[] = [];
  readonly closed: Promise<void>;
  private readonly ws: WebSocket;
  private waiters: (() => void)[] = [];

  /** `protocol` null: none offered. */
  constructor(url: string, protocol: string | null = 'graphql-transport-ws', options: WebSocket.ClientOptions = {}) {
    this.ws = protocol === null ? new WebSocket(url, options) : new WebSocket(url, protocol, options);
    this.ws.on('error', () => {});
    this.ws.on('message', (data) => {
      this.transcript.push(String(data));
      this.wake();
    });
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => {
      this.transcript.push(`close ${code} ${String(reason)}`);
      this.wake();
      resolve();
    }));
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  open(): Promise<void> {
    return webSocketOpen(this.ws);
  }

  send(message: object | string): void {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** Waits until the transcript has `count` entries (or the socket closed). */
  async until(count: number, timeoutMs = 3_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.transcript.length < count && !this.transcript.some((t) => t.startsWith('close '))) {
      if (Date.now() > deadline) throw new Error(`timed out with ${JSON.stringify(this.transcript)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.transcript;
  }

  close(): void {
    this.ws.close(1000);
  }
}

const INIT = { type: 'connection_init' };
const ACK = '{"type":"connection_ack"}';

/** Scenario: the client's messages, sent one after the other once the previous answers arrived; the transcript length to wait for. */
interface Scenario {
  name: string;
  steps: Array<{ send: object | string; expect: number }>;
  /** null: the client offers no subprotocol. */
  protocol?: string | null;
}

const scenarios: Scenario[] = [
  { name: 'ack, then ping and pong with and without payload', steps: [
    { send: INIT, expect: 1 },
    { send: { type: 'ping', payload: { at: 1 } }, expect: 2 },
    { send: { type: 'ping' }, expect: 3 },
    { send: { type: 'pong' }, expect: 3 },
    { send: { type: 'ping' }, expect: 4 },
  ] },
  { name: 'a query: next, then complete', steps: [{ send: INIT, expect: 1 }, { send: { id: '1', type: 'subscribe', payload: { query: '{ hello }' } }, expect: 3 }] },
  { name: 'a query whose field throws: next with the error, complete', steps: [{ send: INIT, expect: 1 }, { send: { id: 'q', type: 'subscribe', payload: { query: '{ boom }' } }, expect: 3 }] },
  { name: 'a subscription: next per event, then complete', steps: [{ send: INIT, expect: 1 }, { send: { id: 'a"b\\c\u2028', type: 'subscribe', payload: { query: 'subscription { count(to: 3) }' } }, expect: 5 }] },
  { name: 'a stream that throws: next, then error, no complete', steps: [{ send: INIT, expect: 1 }, { send: { id: 'f', type: 'subscribe', payload: { query: 'subscription { failing }' } }, expect: 3 }, { send: { type: 'ping' }, expect: 4 }] },
  { name: 'validation errors: error', steps: [{ send: INIT, expect: 1 }, { send: { id: 'v', type: 'subscribe', payload: { query: '{ nope }' } }, expect: 2 }] },
  { name: 'an unknown operation name: error', steps: [{ send: INIT, expect: 1 }, { send: { id: 'o', type: 'subscribe', payload: { query: 'query A { hello }', operationName: 'B' } }, expect: 2 }] },
  { name: 'a client complete ends a subscription silently', steps: [
    { send: INIT, expect: 1 },
    { send: { id: 'x', type: 'subscribe', payload: { query: 'subscription { forever }' } }, expect: 2 },
    { send: { id: 'x', type: 'complete' }, expect: 2 },
    { send: { type: 'ping' }, expect: 3 },
    // The id is free again.
    { send: { id: 'x', type: 'subscribe', payload: { query: '{ hello }' } }, expect: 5 },
  ] },
  { name: 'a running id again: 4409', steps: [
    { send: INIT, expect: 1 },
    { send: { id: 'x', type: 'subscribe', payload: { query: 'subscription { forever }' } }, expect: 2 },
    { send: { id: 'x', type: 'subscribe', payload: { query: '{ hello }' } }, expect: 3 },
  ] },
  { name: 'subscribe before the ack: 4401', steps: [{ send: { id: '1', type: 'subscribe', payload: { query: '{ hello }' } }, expect: 1 }] },
  { name: 'a second connection_init: 4429', steps: [{ send: INIT, expect: 1 }, { send: INIT, expect: 2 }] },
  { name: 'a refused connection_init: 4403', steps: [{ send: { type: 'connection_init', payload: { token: 'bad' } }, expect: 1 }] },
  { name: 'not JSON: 4400', steps: [{ send: '{nope', expect: 1 }] },
  { name: 'an invalid message: 4400', steps: [{ send: INIT, expect: 1 }, { send: { type: 'subscribe', payload: { query: '{ hello }' } }, expect: 2 }] },
  { name: 'a server message from the client: 4500', steps: [{ send: INIT, expect: 1 }, { send: { type: 'connection_ack' }, expect: 2 }] },
  { name: 'a syntax error: 4500 (graphql-ws parses without a guard)', steps: [{ send: INIT, expect: 1 }, { send: { id: 's', type: 'subscribe', payload: { query: '{' } }, expect: 2 }] },
  { name: 'no subprotocol: 4406', protocol: null, steps: [{ send: INIT, expect: 1 }] },
];

async function converse(kind: Kind, scenario: Scenario): Promise<string[]> {
  const harness = await start(kind);
  const client = new Conversation(harness.url, scenario.protocol);
  await client.open();
  for (const step of scenario.steps) {
    if (client.transcript.some((t) => t.startsWith('close '))) break;
    client.send(step.send);
    await client.until(step.expect);
  }
  // Anything late (a `complete` after an error, say) would show up now.
  client.send({ type: 'ping' });
  await client.until(client.transcript.length + 1).catch(() => client.transcript);
  client.close();
  await client.closed;
  return client.transcript;
}

describe('graphql-transport-ws server, message for message as graphql-ws', () => {
  for (const scenario of scenarios) {
    it(scenario.name, async () => {
      const theirs = await converse('graphql-ws', scenario);
      const ours = await converse('helios', scenario);
      expect(ours).toEqual(theirs);
      // The scenario did what it says (not two empty transcripts).
      expect(ours.length).toBeGreaterThanOrEqual(scenario.steps.at(-1)!.expect);
    });
  }

  it('ends sockets that never send connection_init with 4408, as graphql-ws, and keeps the others', async () => {
    for (const kind of ['graphql-ws', 'helios'] as const) {
      const harness = await start(kind, { initWait: 50 });
      const silent = new Conversation(harness.url);
      const talker = new Conversation(harness.url);
      await Promise.all([silent.open(), talker.open()]);
      talker.send(INIT);
      await silent.closed;
      expect(silent.transcript).toEqual(['close 4408 Connection initialisation timeout']);
      expect(talker.transcript).toEqual([ACK]);
      talker.send({ id: '1', type: 'subscribe', payload: { query: '{ hello }' } });
      expect(await talker.until(3)).toEqual([ACK, '{"id":"1","type":"next","payload":{"data":{"hello":"world"}}}', '{"id":"1","type":"complete"}']);
    }
  });

  it('keep-alive: pings every socket each interval and terminates one whose pong did not come by the next', async () => {
    const harness = await start('helios', { keepAlive: 40 });
    const answering = new Conversation(harness.url);
    const mute = new Conversation(harness.url, 'graphql-transport-ws', { autoPong: false });
    await Promise.all([answering.open(), mute.open()]);
    let pings = 0;
    (answering as unknown as { ws: WebSocket }).ws.on('ping', () => pings++);
    await mute.closed;
    // Terminated (no close frame): 1006 on the client's side.
    expect(mute.transcript).toEqual(['close 1006 ']);
    // Meanwhile the answering socket was pinged and lives on.
    const deadline = Date.now() + 3_000;
    while (pings < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(pings).toBeGreaterThanOrEqual(3);
    answering.send(INIT);
    expect(await answering.until(1)).toEqual([ACK]);
  });

  it('forgets a closed socket: its subscriptions are returned and it leaves the open connections', async () => {
    const http: Server = createServer();
    const wss = new WebSocketServer({ server: http, path: '/graphql' });
    let returned = 0;
    const served = serveGraphQLTransportWs(wss, {
      logger: createLogger('silent'),
      onConnect: () => true,
      onSubscribe: async (_c, _id, payload) => ({ schema, document: parse(payload.query) }),
      execute: (args) => execute(args),
      subscribe: () => {
        const iterator: AsyncIterableIterator<ExecutionResult> = {
          next: () => new Promise(() => {}),
          return: async () => {
            returned++;
            return { value: undefined, done: true };
          },
          [Symbol.asyncIterator]: () => iterator,
        };
        return iterator;
      },
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    running.push({ url: '', wss, close: async () => { await served.dispose(); await new Promise<void>((r) => http.close(() => r())); } });
    const client = new Conversation(`ws://127.0.0.1:${(http.address() as AddressInfo).port}/graphql`);
    await client.open();
    client.send(INIT);
    await client.until(1);
    for (const id of ['a', 'b', 'c']) client.send({ id, type: 'subscribe', payload: { query: 'subscription { forever }' } });
    const [connection] = [...served.connections];
    const deadline = Date.now() + 3_000;
    while (Object.values(connection!.subscriptions).filter(Boolean).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(Object.keys(connection!.subscriptions)).toEqual(['a', 'b', 'c']);
    client.close();
    await client.closed;
    while (served.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(served.connections.size).toBe(0);
    expect(returned).toBe(3);
    expect(connection!.initTimer).toBeNull();
  });
});
