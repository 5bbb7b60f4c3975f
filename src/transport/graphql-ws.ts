/**
 * GraphQL over WebSocket (`graphql-transport-ws`, graphql-ws's protocol, served by
 * graphql-transport-ws.ts) on the HTTP server's /graphql path: authentication in
 * `connection_init`, the same envelop pipeline (limits, codes, masking) as HTTP per operation,
 * per-token sockets for revocation, and a shutdown that completes every operation first.
 *
 * Fan-out. A subscription's events are executed once per distinct (document, variables, role)
 * (shared-subscriptions.ts), and the JSON of the `next` payload is made once with them
 * (`nextPayloadJson`); each socket's frame is that payload with its own id spliced in
 * (`nextFrame`), the bytes graphql-ws's `JSON.stringify({ id, type, payload })` writes (tested
 * against graphql-ws itself), written straight to the socket (`SocketDelivery`), the shared
 * payload's bytes not copied per socket (ws-text-frame.ts).
 *
 * Frame size. ws checks a frame's declared length against its `maxPayload` when it has read the
 * frame *header*, before buffering the payload, and on excess closes with 1009 "Message Too Big"
 * and discards whatever else the peer sends (it stops feeding the socket's data to its parser).
 * So an oversized frame is never held. The cap has two stages:
 * - until `connection_init` is acknowledged: PRE_ACK_MAX_FRAME_BYTES (8 KiB; a
 *   `connection_init` with a token is ~100 bytes). This is the server's `maxPayload`, so every
 *   new socket starts with it and an unauthenticated peer can make the server hold at most
 *   8 KiB (plus one TCP read) per socket;
 * - after the ack: HELIOS_MAX_BODY_BYTES, the same cap as an HTTP body, so a 20 MB variable is
 *   refused (1009) over WS as it is (413) over HTTP.
 * ws has no public setter for one socket's cap: `raiseFrameLimit` writes the receiver's
 * `_maxPayload`, the field ws reads at each header. If a future ws renames it, the raise fails
 * closed (frames stay capped at 8 KiB, a warning is logged) and the e2e test of a large
 * operation after the ack fails; ws is pinned to ^8 in package.json. A message split over
 * fragments is counted whole (ws sums the fragments' lengths).
 *
 * Shutdown. `shutdown()` ends every subscription's iterator, so the protocol server sends
 * `complete` for each id, waits until those are written, and only then closes the socket with 1001
 * "Going Away". 1001 is RFC 6455's "server is going down"; graphql-ws clients treat it as
 * retryable, which is what a client of a restarting server wants, and since every subscription
 * has completed, a lazy client (graphql-ws's default) has nothing left to reconnect for, while
 * an eager one retries only `retryAttempts` times with backoff. A fatal 4xxx code would instead
 * tell clients that their request was wrong.
 *
 * Loading. ws, graphql-ws and the protocol server are imported on the first upgrade request,
 * not at start: a server that no client opens a socket to never loads them (about 15 modules,
 * tens of ms of every start; issue 15). Until then this transport's own `upgrade` listener holds the request; the
 * WebSocketServer it then makes (`noServer`, same path, origin check and frame cap) handles
 * that upgrade and every later one exactly as one attached to the HTTP server would.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { GraphQLError, type ExecutionArgs, type ExecutionResult } from 'graphql';
import type { YogaServerInstance } from 'graphql-yoga';
import type { WebSocket, WebSocketServer } from 'ws';
import type { Services } from '../app.js';
import type { AnonymousMode } from '../auth/anonymous.js';
import { authorizationFromConnectionParams, connectionCaller, parseAuthorization, resolveOperationCaller, type Caller } from '../auth/authorization.js';
import { verifyWebSocketOrigin, type OriginPolicy } from '../hardening/browser-origin.js';
import { ClientQuota, limitWebSocketConnections, operationQuotaErrors } from '../hardening/connections.js';
import type { HardeningLimits } from '../hardening/limits.js';
import type { GraphQLContext } from '../graphql/context.js';
import { subscribeShared, type SubscriptionDelivery } from '../graphql/shared-subscriptions.js';
import { errorFields, type Logger } from '../logger.js';
import type { Connection, serveGraphQLTransportWs } from './graphql-transport-ws.js';
import { writeTextFrame } from './ws-text-frame.js';

/** The frame (message) cap before `connection_init` is acknowledged. */
export const PRE_ACK_MAX_FRAME_BYTES = 8 * 1024;
/** RFC 6455 "Going Away", sent after every operation on the socket has completed. */
export const WS_CLOSE_GOING_AWAY = 1001;
/** How long a socket closed for a protocol violation stays open for its close frame to arrive. */
export const PROTOCOL_ERROR_LINGER_MS = 1000;
/** RFC 6455 "Message Too Big", ws's answer to a frame over the cap. */
export const WS_CLOSE_MESSAGE_TOO_BIG = 1009;
/** graphql-ws's CloseCode.InternalServerError. */
const CLOSE_INTERNAL_ERROR = 4500;

type WsConnection = Connection<Caller | 'UNAUTHENTICATED'>;
type OperationResult = ReturnType<Parameters<typeof serveGraphQLTransportWs>[1]['execute']>;

export interface GraphQLWsTransportOptions {
  httpServer: Server;
  path: string;
  /** Yoga's envelop pipeline, which every operation runs as over HTTP. */
  yoga: Pick<YogaServerInstance<{ req: IncomingMessage; res: ServerResponse }, GraphQLContext>, 'getEnveloped'>;
  services: Services;
  anonymous: AnonymousMode;
  origins: OriginPolicy;
  limits: HardeningLimits;
  maskError: (error: unknown, message: string) => GraphQLError;
  logger: Logger;
  /** Wraps each started subscription, e.g. to count it for /metrics (shared subscriptions skip envelop's subscribe). */
  countSubscription?: (args: ExecutionArgs, started: Promise<unknown>) => Promise<unknown>;
}

export interface GraphQLWsTransport {
  /** Open WebSockets right now (0 before the first upgrade loaded ws). */
  openSockets(): number;
  /** Closes every socket opened with the token `name` (4403), ending its subscriptions. */
  closeToken(name: string): void;
  /** Completes every operation, then closes every socket with 1001; bounded by `deadline` (epoch ms). */
  shutdown(deadline: number): Promise<void>;
}

/** Raises one socket's frame cap (see the module comment); false when ws's internals moved. */
export function raiseFrameLimit(socket: WebSocket, bytes: number): boolean {
  const receiver = (socket as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver;
  if (!receiver || typeof receiver._maxPayload !== 'number') return false;
  receiver._maxPayload = bytes;
  return true;
}

/** Yoga's `extensions.http` is for choosing an HTTP status; it means nothing on a socket. */
function withoutHttpExtension(error: GraphQLError): GraphQLError {
  if (!error.extensions || !('http' in error.extensions)) return error;
  const { http: _http, ...extensions } = error.extensions;
  return new GraphQLError(error.message, {
    nodes: error.nodes ?? null,
    source: error.source ?? null,
    positions: error.positions ?? null,
    path: error.path ?? null,
    originalError: error.originalError ?? null,
    extensions,
  });
}

/**
 * What graphql-ws puts in a `next` message's payload for `result`: our `onNext` answer (request
 * errors without their HTTP extension) or, without one, graphql-ws's own copy of the result.
 */
export function nextPayload(result: ExecutionResult): ExecutionResult | null {
  if (!result.errors?.length) return null;
  return { ...result, errors: result.errors.map(withoutHttpExtension) };
}

/**
 * The JSON graphql-ws writes as a `next` message's payload (see its emit.next), made once per
 * shared result; `nextFrame` splices it into one subscriber's message, byte for byte what
 * `JSON.stringify({ id, type: 'next', payload })` writes.
 */
export function nextPayloadJson(result: ExecutionResult): string {
  const answered = nextPayload(result);
  if (answered) return JSON.stringify(answered);
  const { errors, ...resultWithoutErrors } = result;
  return JSON.stringify({ ...resultWithoutErrors, ...(errors ? { errors: errors.map((e) => e.toJSON()) } : {}) });
}

/** What comes before the payload in the `next` message for `id`. */
export function nextFramePrefix(id: string): string {
  return `{"id":${JSON.stringify(id)},"type":"next","payload":`;
}

/** What comes from the payload on in a `next` message: the payload's JSON and the closing brace. */
export function nextFrameTail(payloadJson: string): string {
  return `${payloadJson}}`;
}

/** The whole `next` message for `id`: the prefix, then the tail, as SocketDelivery writes them. */
export function nextFrame(id: string, payloadJson: string): string {
  return nextFramePrefix(id) + nextFrameTail(payloadJson);
}

/**
 * A subscriber's `next` frames written straight to its socket, as graphql-ws's `send` would
 * (nothing once it is not open): its own prefix, made at its first frame, then the payload and
 * the closing brace, shared by every subscriber of the key (see ws-text-frame.ts).
 */
class SocketDelivery implements SubscriptionDelivery<Buffer> {
  private prefix: Buffer | null = null;
  /** Extensions are settled at the handshake, before the socket serves any operation. */
  private readonly withExtensions: boolean;

  constructor(
    private readonly socket: WebSocket,
    private readonly id: string,
  ) {
    this.withExtensions = socket.extensions !== '';
  }

  payloadOf(result: ExecutionResult): Buffer {
    return Buffer.from(nextFrameTail(nextPayloadJson(result)));
  }

  write(payload: Buffer, written: (error?: Error | null) => void): void {
    if (this.socket.readyState !== this.socket.OPEN) return written();
    writeTextFrame(this.socket, (this.prefix ??= Buffer.from(nextFramePrefix(this.id))), payload, written, this.withExtensions);
  }
}

function tokenOf(params: unknown): string | null {
  try {
    return parseAuthorization(authorizationFromConnectionParams(params));
  } catch {
    return null;
  }
}

interface Enveloped {
  execute: (args: ExecutionArgs) => OperationResult;
  subscribe: (args: ExecutionArgs) => OperationResult;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function createGraphQLWsTransport(options: GraphQLWsTransportOptions): GraphQLWsTransport {
  const { services, limits, logger, yoga } = options;
  const sockets = new SocketsByToken();
  let connections: ReadonlySet<WsConnection> = new Set();
  /** Where each started operation's `next` frames go (its socket and id), for subscribeShared. */
  const deliveries = new WeakMap<ExecutionArgs, SubscriptionDelivery<Buffer>>();
  let stopping = false;
  let warnedFrameLimit = false;
  const quota = new ClientQuota(limits.maxWsConnectionsPerClient);
  /** Set once ws is loaded (the first upgrade request). */
  let wsServer: WebSocketServer | null = null;
  let disposable: { dispose(): void | Promise<void> } | null = null;
  let loading: Promise<WebSocketServer> | null = null;

  const load = (): Promise<WebSocketServer> => (loading ??= (async () => {
    const [{ WebSocketServer }, { serveGraphQLTransportWs }] = await Promise.all([import('ws'), import('./graphql-transport-ws.js')]);
    const made = new WebSocketServer({
      noServer: true,
      path: options.path,
      verifyClient: verifyWebSocketOrigin(options.origins),
      maxPayload: Math.min(PRE_ACK_MAX_FRAME_BYTES, limits.maxRequestBodyBytes),
      // ws's server default, said here: a zlib context per socket would cost more than the frames.
      perMessageDeflate: false,
    });
    limitWebSocketConnections(made, quota);
    disposable = serve(made, serveGraphQLTransportWs);
    wsServer = made;
    return made;
  })());

  // What `new WebSocketServer({ server })` attaches: every upgrade goes to ws (which answers 400
  // for another path), and the HTTP server's errors are the WebSocket server's (the protocol
  // server then closes its sockets with 4500, as graphql-ws does).
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Until ws owns the socket, a reset must not be an uncaught 'error'.
    const early = () => socket.destroy();
    socket.on('error', early);
    load().then(
      (server) => {
        socket.off('error', early);
        if (socket.destroyed) return;
        server.handleUpgrade(req, socket, head, (ws) => server.emit('connection', ws, req));
      },
      (error: unknown) => {
        socket.off('error', early);
        logger.error('cannot load the WebSocket server', errorFields(error));
        socket.destroy();
      },
    );
  };
  const onHttpError = (error: Error) => {
    wsServer?.emit('error', error);
  };
  options.httpServer.on('upgrade', onUpgrade);
  options.httpServer.on('error', onHttpError);

  const maskSharedError = (error: GraphQLError) => options.maskError(error, 'Unexpected error.');
  const serve = (server: WebSocketServer, serveProtocol: typeof serveGraphQLTransportWs) => {
    const served = serveProtocol<Caller | 'UNAUTHENTICATED'>(server, {
      logger,
      // A malformed or revoked token closes the socket with 4403 Forbidden. Without any (and
      // anonymous access off) each operation must bring its own, as GraphiQL does.
      onConnect: async (connection) => {
        // Answered from memory; a promise only while the token index reloads (TokenService).
        const caller = await connectionCaller(connection.connectionParams, services.tokens, options.anonymous);
        if (!caller) return false;
        connection.caller = caller;
        const { socket } = connection;
        if (caller !== 'UNAUTHENTICATED' && !caller.anonymous) sockets.add(caller.name, socket);
        if (!raiseFrameLimit(socket, limits.maxRequestBodyBytes) && !warnedFrameLimit) {
          warnedFrameLimit = true;
          logger.warn('cannot raise the WebSocket frame cap after connection_init; frames stay capped', { bytes: PRE_ACK_MAX_FRAME_BYTES });
        }
        return true;
      },
      execute: (args) => (args.rootValue as Enveloped).execute(args),
      // Each event is executed once for all sockets holding the same subscription (see shared-subscriptions.ts).
      subscribe: (args) => {
        const { caller } = args.contextValue as GraphQLContext;
        const delivery = deliveries.get(args);
        // onSubscribe sets one for every operation it starts: a miss is a bug here (4500).
        if (!delivery) throw new Error('subscription started without a delivery');
        const shared = subscribeShared(args, {
          subscribe: (args.rootValue as Enveloped).subscribe,
          maskError: maskSharedError,
          sharingKey: `${caller.role}:${caller.anonymous ? 'anonymous' : 'token'}`,
          delivery,
        });
        return (options.countSubscription ? options.countSubscription(args, shared) : shared) as OperationResult;
      },
      onSubscribe: async (connection, id, payload) => {
        if (stopping) return [new GraphQLError('The server is shutting down', { extensions: { code: 'SHUTTING_DOWN' } })];
        const quota = operationQuotaErrors(connection, limits.maxOperationsPerConnection);
        if (quota.length > 0) return quota;
        // A token in the operation's extensions.headers (GraphiQL's Headers tab) counts for it alone.
        const resolution = await resolveOperationCaller(connection.caller!, payload.extensions, services.tokens, options.anonymous);
        if (!resolution.ok) return [new GraphQLError(resolution.message, { extensions: { code: resolution.code } })];
        const { caller } = resolution;
        const { socket } = connection;
        if (resolution.fromOperation) sockets.add(caller.name, socket);
        // A token revoked since the socket opened may not start anything new.
        else if (!caller.anonymous && !(await services.tokens.authenticate(tokenOf(connection.connectionParams)))) {
          return [new GraphQLError('Invalid or revoked token', { extensions: { code: 'UNAUTHENTICATED' } })];
        }
        const enveloped = yoga.getEnveloped({ socket, params: payload });
        // A throwing parse or validation rule would close the whole socket (4500):
        // turn every failure into errors for this one operation instead.
        try {
          const document = enveloped.parse(payload.query);
          const errors = enveloped.validate(enveloped.schema, document);
          if (errors.length > 0) return errors.map(withoutHttpExtension);
          const args: ExecutionArgs = {
            schema: enveloped.schema,
            operationName: payload.operationName ?? null,
            document,
            variableValues: payload.variables ?? null,
            contextValue: await enveloped.contextFactory({ actor: caller.name, caller, services } satisfies GraphQLContext),
            rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
          };
          deliveries.set(args, new SocketDelivery(socket, id));
          return args;
        } catch (error) {
          if (error instanceof GraphQLError) return [withoutHttpExtension(error)];
          logger.error('websocket subscribe failed', errorFields(error));
          return [new GraphQLError('Unexpected error.', { extensions: { code: 'INTERNAL_SERVER_ERROR' } })];
        }
      },
      // Request errors (variables) come back as a result; drop their HTTP-only extension too.
      onNext: nextPayload,
    });
    connections = served.connections;

    // A socket error is logged as one line: each oversized frame (ws emits it as an error) with
    // a stack trace would let an attacker flood the logs. A protocol violation (ws's WS_ERR_*
    // codes: too big, bad framing) is the client's fault.
    //
    // On a protocol violation ws has already sent its close frame (1009 for a frame over the cap)
    // and would go on reading and discarding whatever the peer still sends until the peer closes
    // (up to 30 s): for a peer streaming a 90 MB frame that is 90 MB of garbage buffers per socket
    // for the collector. Instead the TCP socket stops being read (the kernel's window throttles
    // the peer) and is destroyed after PROTOCOL_ERROR_LINGER_MS, time for the close frame to arrive.
    server.on('connection', (socket, request) => {
      const tcp = request.socket;
      socket.on('error', (error: Error & { code?: string }) => {
        const clientFault = typeof error.code === 'string' && error.code.startsWith('WS_ERR_');
        if (!clientFault) {
          logger.warn('websocket error', errorFields(error));
          if (socket.readyState === socket.OPEN) socket.close(CLOSE_INTERNAL_ERROR, 'Internal server error');
          return;
        }
        logger.debug('websocket closed on a protocol violation', { code: error.code });
        // After ws's own resume (queued before it emitted this error).
        process.nextTick(() => tcp.pause());
        const linger = setTimeout(() => tcp.destroy(), PROTOCOL_ERROR_LINGER_MS);
        tcp.once('close', () => clearTimeout(linger));
      });
    });
    return served;
  };

  /** Ends each operation's iterator until `complete` has been sent for all of them. */
  const completeOperations = async (connection: WsConnection, deadline: number) => {
    const ended = new WeakSet<object>();
    for (;;) {
      const open = Object.values(connection.subscriptions);
      if (open.length === 0 || Date.now() >= deadline) return;
      for (const operation of open) {
        // null: a query or mutation still executing, or a subscription still starting.
        const iterator = operation;
        if (iterator && !ended.has(iterator) && typeof iterator.return === 'function') {
          ended.add(iterator);
          void Promise.resolve(iterator.return(undefined)).catch(() => {});
        }
      }
      await sleep(5);
    }
  };

  return {
    openSockets: () => wsServer?.clients.size ?? 0,
    closeToken: (name) => sockets.closeAll(name, 4403, 'Token revoked'),
    async shutdown(deadline) {
      stopping = true;
      // An upgrade that is loading ws right now: its server is the one to close.
      const server = loading ? await loading.catch(() => null) : null;
      if (server && disposable) {
        await Promise.all([...connections].map((connection) => completeOperations(connection, deadline)));
        // Closes what is left with 1001 "Going away".
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([disposable.dispose(), new Promise((resolve) => { timer = setTimeout(resolve, Math.max(0, deadline - Date.now())); })]);
        clearTimeout(timer);
        for (const client of server.clients) client.terminate();
        server.close();
      }
      // As a closed attached WebSocketServer does: no more upgrades (Node then drops them).
      options.httpServer.off('upgrade', onUpgrade);
      options.httpServer.off('error', onHttpError);
    },
  };
}

/** Open sockets per token name; a socket leaves its set when it closes. */
class SocketsByToken {
  private readonly byName = new Map<string, Set<WebSocket>>();

  add(name: string, socket: WebSocket): void {
    const set = this.byName.get(name) ?? new Set<WebSocket>();
    if (set.has(socket)) return;
    set.add(socket);
    this.byName.set(name, set);
    socket.on('close', () => {
      set.delete(socket);
      if (set.size === 0 && this.byName.get(name) === set) this.byName.delete(name);
    });
  }

  closeAll(name: string, code: number, reason: string): void {
    for (const socket of this.byName.get(name) ?? []) socket.close(code, reason);
  }
}
