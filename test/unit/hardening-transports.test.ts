/**
 * The hardening pieces wired the way src/server.ts wires Yoga and graphql-ws: the same limits
 * answer over HTTP and over a WebSocket, a refused operation leaves the socket (and its other
 * subscriptions) alive, a socket without a valid token is closed with 4403, and quotas hold.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GraphQLError, type ExecutionArgs } from 'graphql';
import { CloseCode, type OperationResult } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { createSchema, createYoga } from 'graphql-yoga';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { webSocketOpen } from '../support/server.js';
import { callerOfConnection, type Caller } from '../../src/auth/authorization.js';
import { ClientQuota, limitWebSocketConnections, operationQuotaErrors, WS_CLOSE_TRY_AGAIN_LATER } from '../../src/hardening/connections.js';
import { DEFAULT_HARDENING_LIMITS } from '../../src/hardening/limits.js';
import { useDocumentLimits } from '../../src/hardening/plugin.js';
import { guardRequestBody } from '../../src/hardening/request-body.js';

const schema = createSchema<{ req: IncomingMessage; caller?: Caller }>({
  typeDefs: /* GraphQL */ `
    type Query { hello: String!, node: Node!, whoami: String! }
    type Node { child: Node!, name: String! }
    type Subscription { ticks: Int! }
  `,
  resolvers: {
    Query: {
      hello: () => 'world',
      node: () => ({}),
      whoami: (_: unknown, __: unknown, ctx: { caller?: Caller }) => ctx.caller?.name ?? 'nobody',
    },
    Node: { child: () => ({}), name: () => 'n' },
    Subscription: {
      ticks: {
        // Never ends on its own: a subscription that holds its slot until completed.
        subscribe: async function* () {
          yield { ticks: 1 };
          await new Promise(() => {});
        },
      },
    },
  },
});

const deep = (levels: number) => `{ node { ${'child { '.repeat(levels - 2)}name${' }'.repeat(levels - 2)} } }`;
const GOOD = 'Bearer good-token-0123456789';
const tokens = { authenticate: (t: string | null) => (t === 'good-token-0123456789' ? { name: 'ci', role: 'OPERATOR' as const } : null) };

interface Harness {
  http: Server;
  url: string;
  wsUrl: string;
  close(): Promise<void>;
}

const running: Harness[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((h) => h.close()));
});

async function startHarness(opts: { maxConnections?: number; maxOperations?: number; bodyLimit?: number } = {}): Promise<Harness> {
  const yoga = createYoga<{ req: IncomingMessage }>({
    schema,
    plugins: [useDocumentLimits()],
    batching: { limit: DEFAULT_HARDENING_LIMITS.maxBatchSize },
    maxRequestBodySize: opts.bodyLimit ?? DEFAULT_HARDENING_LIMITS.maxRequestBodyBytes,
    logging: false,
  });
  const http = createServer((req, res) => {
    void guardRequestBody(req, res, opts.bodyLimit).then((ok) => {
      if (ok) void yoga(req, res);
    });
  });
  const wsServer = new WebSocketServer({ server: http, path: '/graphql' });
  limitWebSocketConnections(wsServer, new ClientQuota(opts.maxConnections ?? DEFAULT_HARDENING_LIMITS.maxWsConnectionsPerClient));
  const disposable = useServer<Record<string, unknown> | undefined, { request: IncomingMessage; caller?: Caller }>(
    {
      onConnect: (ctx) => {
        const caller = callerOfConnection(ctx.connectionParams, tokens, 'none');
        if (!caller) return false;
        ctx.extra.caller = caller;
        return true;
      },
      execute: (args) => (args.rootValue as Enveloped).execute(args),
      subscribe: (args) => (args.rootValue as Enveloped).subscribe(args),
      onSubscribe: async (ctx, _id, payload) => {
        const quota = operationQuotaErrors(ctx, opts.maxOperations);
        if (quota.length > 0) return quota;
        const enveloped = yoga.getEnveloped({ req: ctx.extra.request, params: payload });
        try {
          const document = enveloped.parse(payload.query);
          const errors = enveloped.validate(enveloped.schema, document);
          if (errors.length > 0) return errors;
          return {
            schema: enveloped.schema,
            operationName: payload.operationName ?? null,
            document,
            variableValues: payload.variables ?? null,
            contextValue: { ...(await enveloped.contextFactory()), caller: ctx.extra.caller },
            rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
          } satisfies ExecutionArgs;
        } catch (error) {
          if (error instanceof GraphQLError) return [error];
          throw error;
        }
      },
    },
    wsServer,
  );
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const port = (http.address() as AddressInfo).port;
  const harness: Harness = {
    http,
    url: `http://127.0.0.1:${port}/graphql`,
    wsUrl: `ws://127.0.0.1:${port}/graphql`,
    async close() {
      await disposable.dispose();
      for (const client of wsServer.clients) client.terminate();
      wsServer.close();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    },
  };
  running.push(harness);
  return harness;
}

interface Enveloped {
  execute: (args: ExecutionArgs) => OperationResult;
  subscribe: (args: ExecutionArgs) => OperationResult;
}

interface GraphQLResponse {
  data?: unknown;
  errors?: { message: string; extensions?: { code?: string } }[];
}

async function post(url: string, body: unknown): Promise<{ status: number; json: GraphQLResponse | GraphQLResponse[] }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as GraphQLResponse };
}

const codesOf = (r: GraphQLResponse | GraphQLResponse[]) => (Array.isArray(r) ? r : [r]).flatMap((x) => x.errors ?? []).map((e) => e.extensions?.code);

/** A raw graphql-transport-ws client, to see every message and the exact close code. */
class RawSocket {
  readonly messages: { id?: string; type: string; payload?: unknown }[] = [];
  closed: Promise<{ code: number; reason: string }>;
  private readonly ws: WebSocket;
  private waiters: (() => void)[] = [];

  constructor(url: string) {
    this.ws = new WebSocket(url, 'graphql-transport-ws');
    this.ws.on('message', (data) => {
      this.messages.push(JSON.parse(String(data)) as { type: string });
      for (const w of this.waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      for (const w of this.waiters.splice(0)) w();
    }));
  }

  opened(): Promise<void> {
    return webSocketOpen(this.ws);
  }

  send(message: object): void {
    this.ws.send(JSON.stringify(message));
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  async waitFor(predicate: (m: { id?: string; type: string; payload?: unknown }) => boolean): Promise<{ id?: string; type: string; payload?: unknown }> {
    for (;;) {
      const found = this.messages.find(predicate);
      if (found) return found;
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error('socket closed while waiting');
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  async init(authorization: string | null): Promise<void> {
    await this.opened();
    this.send({ type: 'connection_init', payload: authorization === null ? {} : { authorization } });
  }

  close(): void {
    this.ws.close();
  }
}

async function connected(url: string): Promise<RawSocket> {
  const socket = new RawSocket(url);
  await socket.init(GOOD);
  await socket.waitFor((m) => m.type === 'connection_ack');
  return socket;
}

describe('document limits over HTTP (Yoga plugin)', () => {
  it('answer normal queries and refuse hostile ones with coded errors', async () => {
    const h = await startHarness();
    const ok = await post(h.url, { query: deep(12) });
    expect(ok.status).toBe(200);
    expect(codesOf(ok.json)).toEqual([]);

    const tooDeep = await post(h.url, { query: deep(13) });
    expect(codesOf(tooDeep.json)).toEqual(['QUERY_TOO_DEEP']);
    expect((tooDeep.json as GraphQLResponse).data).toBeUndefined();
    // Yoga caches parse and validation results per document: the refusal must survive it.
    expect(codesOf((await post(h.url, { query: deep(13) })).json)).toEqual(['QUERY_TOO_DEEP']);
    expect(codesOf((await post(h.url, { query: `{ ${'hello '.repeat(2100)}}` })).json)).toEqual(['TOO_MANY_TOKENS']);

    const tooLong = await post(h.url, { query: `{ ${'hello '.repeat(2100)}}` });
    expect(codesOf(tooLong.json)).toEqual(['TOO_MANY_TOKENS']);

    const aliases = await post(h.url, { query: `{ ${Array.from({ length: 31 }, (_, i) => `a${i}: hello`).join(' ')} }` });
    expect(codesOf(aliases.json)).toEqual(['TOO_MANY_ALIASES']);
  });

  it('caps batched requests at maxBatchSize', async () => {
    const h = await startHarness();
    const ten = await post(h.url, Array.from({ length: 10 }, () => ({ query: '{ hello }' })));
    expect(ten.status).toBe(200);
    expect((ten.json as GraphQLResponse[]).map((r) => r.data)).toEqual(Array(10).fill({ hello: 'world' }));
    const eleven = await post(h.url, Array.from({ length: 11 }, () => ({ query: '{ hello }' })));
    expect(eleven.status).toBe(413);
  });
});

describe('document limits over graphql-ws (same plugin through getEnveloped)', () => {
  it('refuse a hostile operation with errors while the socket and its subscriptions live on', async () => {
    const h = await startHarness();
    const socket = await connected(h.wsUrl);
    socket.send({ id: 'sub', type: 'subscribe', payload: { query: 'subscription { ticks }' } });
    await socket.waitFor((m) => m.id === 'sub' && m.type === 'next');

    socket.send({ id: 'deep', type: 'subscribe', payload: { query: deep(13) } });
    const refused = await socket.waitFor((m) => m.id === 'deep');
    expect(refused.type).toBe('error');
    expect((refused.payload as { extensions?: { code?: string } }[])[0]?.extensions?.code).toBe('QUERY_TOO_DEEP');

    socket.send({ id: 'tokens', type: 'subscribe', payload: { query: `{ ${'hello '.repeat(2100)}}` } });
    const tooLong = await socket.waitFor((m) => m.id === 'tokens');
    expect((tooLong.payload as { extensions?: { code?: string } }[])[0]?.extensions?.code).toBe('TOO_MANY_TOKENS');

    socket.send({ id: 'ok', type: 'subscribe', payload: { query: '{ whoami }' } });
    const ok = await socket.waitFor((m) => m.id === 'ok' && m.type === 'next');
    expect(ok.payload).toEqual({ data: { whoami: 'ci' } });
    expect(socket.isOpen).toBe(true);
    expect(socket.messages.some((m) => m.id === 'sub' && m.type === 'complete')).toBe(false);
    socket.close();
  });

  it('closes a socket without a valid token with 4403 Forbidden', async () => {
    const h = await startHarness();
    for (const authorization of [null, 'Bearer wrong-token-0123456789', 'Basic abc']) {
      const socket = new RawSocket(h.wsUrl);
      await socket.init(authorization);
      expect((await socket.closed).code, String(authorization)).toBe(CloseCode.Forbidden);
    }
    expect(CloseCode.Forbidden).toBe(4403);
  });

  it('refuses operations beyond the per-connection quota, and frees a slot on complete', async () => {
    const h = await startHarness({ maxOperations: 2 });
    const socket = await connected(h.wsUrl);
    for (const id of ['a', 'b']) {
      socket.send({ id, type: 'subscribe', payload: { query: 'subscription { ticks }' } });
      await socket.waitFor((m) => m.id === id && m.type === 'next');
    }
    socket.send({ id: 'c', type: 'subscribe', payload: { query: 'subscription { ticks }' } });
    const refused = await socket.waitFor((m) => m.id === 'c');
    expect(refused.type).toBe('error');
    expect((refused.payload as { extensions?: { code?: string } }[])[0]?.extensions?.code).toBe('TOO_MANY_SUBSCRIPTIONS');

    socket.send({ id: 'a', type: 'complete' });
    // The completion is processed before the next message on the same socket.
    socket.send({ id: 'd', type: 'subscribe', payload: { query: 'subscription { ticks }' } });
    expect((await socket.waitFor((m) => m.id === 'd')).type).toBe('next');
    expect(socket.isOpen).toBe(true);
    socket.close();
  });

  it('closes sockets beyond the per-client quota with 1013 and frees the slot on close', async () => {
    const h = await startHarness({ maxConnections: 2 });
    const first = await connected(h.wsUrl);
    await connected(h.wsUrl);
    const third = new RawSocket(h.wsUrl);
    expect((await third.closed).code).toBe(WS_CLOSE_TRY_AGAIN_LATER);

    first.close();
    await first.closed;
    // The server sees the close a moment after the client does.
    let again: RawSocket | null = null;
    for (let attempt = 0; attempt < 50 && !again; attempt++) {
      const candidate = new RawSocket(h.wsUrl);
      const outcome = await Promise.race([
        candidate.init(GOOD).then(() => candidate.waitFor((m) => m.type === 'connection_ack')).then(() => 'ack' as const),
        candidate.closed.then(() => 'closed' as const),
      ]).catch(() => 'closed' as const);
      if (outcome === 'ack') again = candidate;
    }
    expect(again?.isOpen).toBe(true);
  });
});
