/**
 * The graphql-transport-ws protocol on a `ws` server, as graphql-ws's `useServer` (v6) speaks it,
 * with the state of a socket in one object. graphql-ws keeps per socket a context, a socket
 * wrapper with three closures, a message handler, two timers that live as long as the socket
 * (the init timer is never cleared before close, the keep-alive interval pings every 12 s),
 * `once` listeners, and per subscription two suspended async functions, an emitter with three
 * closures and the parsed message. At thousands of idle subscribers that was about 5 KiB each of
 * the 13 KiB a subscriber cost (issue 15). This server keeps a `Connection` per socket, with one
 * listener per event, one keep-alive sweep for all sockets, and an init timer that is cleared
 * once `connection_init` arrives.
 *
 * What a client sees is graphql-ws's protocol, message for message and code for code (messages
 * are parsed, validated and serialised with graphql-ws's own functions):
 * - the subprotocol must be `graphql-transport-ws`, else 4406 "Subprotocol not acceptable";
 * - no `connection_init` within `connectionInitWaitTimeout` (3 s): 4408 "Connection
 *   initialisation timeout"; a second one: 4429 "Too many initialisation requests"; refused by
 *   `onConnect`: 4403 "Forbidden"; accepted: `connection_ack` (with the payload `onConnect`
 *   returns, when it returns an object);
 * - a message that does not parse or validate: 4400 "Invalid message received";
 * - `subscribe` before the ack: 4401 "Unauthorized"; an id already running: 4409 "Subscriber for
 *   <id> already exists"; then `next`* and `complete`, or `error` (errors from `onSubscribe`, an
 *   unidentifiable operation, or a stream that throws); a client's `complete` ends it silently;
 * - `ping` is answered with `pong` (echoing its payload); `pong` is accepted;
 * - a handler that throws closes the socket with 4500 (the message, unless in production);
 * - keep-alive: every `keepAliveMs` (12 s) each open socket is pinged (a WebSocket ping frame),
 *   and terminated when its pong has not arrived by the next sweep, 12 s later;
 * - `dispose()` closes every socket with 1001 "Going away" and the server.
 */
import { getOperationAST, GraphQLError, type ExecutionArgs, type ExecutionResult } from 'graphql';
import {
  areGraphQLErrors,
  CloseCode,
  GRAPHQL_TRANSPORT_WS_PROTOCOL,
  handleProtocols,
  MessageType,
  parseMessage,
  stringifyMessage,
  type SubscribePayload,
} from 'graphql-ws';
import type { WebSocket, WebSocketServer } from 'ws';
import { errorFields, type Logger } from '../logger.js';

/** graphql-ws's defaults: connectionInitWaitTimeout and useServer's keepAlive. */
export const CONNECTION_INIT_WAIT_MS = 3_000;
export const KEEP_ALIVE_MS = 12_000;

type OperationResult = Promise<AsyncIterable<ExecutionResult> | ExecutionResult> | AsyncIterable<ExecutionResult> | ExecutionResult;

/** One socket's protocol state; `subscriptions` as graphql-ws's context has it (null while an operation starts). */
export class Connection<Caller = unknown> {
  connectionInitReceived = false;
  acknowledged = false;
  connectionParams: Readonly<Record<string, unknown>> | undefined = undefined;
  /** Set by `onConnect`: who the socket was opened by. */
  caller: Caller | undefined = undefined;
  subscriptions: Record<string, AsyncIterator<unknown> | null> = Object.create(null) as Record<string, AsyncIterator<unknown> | null>;
  /** Cleared when `connection_init` arrives or the socket closes. */
  initTimer: NodeJS.Timeout | null = null;

  constructor(readonly socket: WebSocket) {}

  /** As graphql-ws's `send`: nothing once the socket is not open; resolves when written. */
  send(data: string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.readyState !== this.socket.OPEN) return resolve();
      this.socket.send(data, (error) => (error ? reject(error) : resolve()));
    });
  }
}

export interface ProtocolHooks<Caller> {
  /** `connection_init` arrived (its payload is `connection.connectionParams`): false refuses the socket (4403). */
  onConnect(connection: Connection<Caller>): Promise<boolean> | boolean;
  /** The arguments to run `payload` with, or the errors to answer it with. */
  onSubscribe(connection: Connection<Caller>, id: string, payload: SubscribePayload): Promise<ExecutionArgs | readonly GraphQLError[]>;
  execute(args: ExecutionArgs): OperationResult;
  subscribe(args: ExecutionArgs): OperationResult;
  /** The payload of a `next` message for `result`, when it is not `result` itself. */
  onNext?(result: ExecutionResult): ExecutionResult | null;
}

export interface ProtocolServerOptions<Caller> extends ProtocolHooks<Caller> {
  logger: Logger;
  connectionInitWaitTimeout?: number;
  keepAliveMs?: number;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isAsyncIterable(value: unknown): value is AsyncIterable<ExecutionResult> {
  return typeof Object(value)[Symbol.asyncIterator] === 'function';
}

function isAsyncGenerator(value: unknown): value is AsyncIterator<unknown> & { return(value?: unknown): Promise<unknown> } {
  return isObject(value) && typeof Object(value)[Symbol.asyncIterator] === 'function' && typeof value.return === 'function';
}

function limitCloseReason(reason: string, whenTooLong: string): string {
  return reason.length < 124 ? reason : whenTooLong;
}

/** Sockets a keep-alive sweep pinged and has not heard a pong from since. */
const awaitingPong = new WeakSet<WebSocket>();
function onPong(this: WebSocket): void {
  awaitingPong.delete(this);
}

/**
 * Serves graphql-transport-ws on `wsServer` (which chooses the subprotocol with graphql-ws's
 * `handleProtocols`). Returns graphql-ws's disposable and the open connections.
 */
export function serveGraphQLTransportWs<Caller>(
  wsServer: WebSocketServer,
  options: ProtocolServerOptions<Caller>,
): { dispose(): Promise<void>; connections: ReadonlySet<Connection<Caller>> } {
  const { logger } = options;
  const isProd = process.env.NODE_ENV === 'production';
  const initWait = options.connectionInitWaitTimeout ?? CONNECTION_INIT_WAIT_MS;
  const keepAliveMs = options.keepAliveMs ?? KEEP_ALIVE_MS;
  const connections = new Set<Connection<Caller>>();
  wsServer.options.handleProtocols = handleProtocols;

  const internalError = (connection: Connection<Caller>, error: unknown) => {
    logger.error('websocket message handling failed', errorFields(error));
    connection.socket.close(
      CloseCode.InternalServerError,
      isProd ? 'Internal server error' : limitCloseReason(error instanceof Error ? error.message : String(error), 'Internal server error'),
    );
  };

  // What graphql-ws does when the server emits an error: every socket is closed with 4500
  // (graphql-ws listens once, so a second error would be thrown; this one listens for all).
  wsServer.on('error', (error: unknown) => {
    logger.error('websocket server error', errorFields(error));
    for (const client of wsServer.clients) {
      client.close(CloseCode.InternalServerError, isProd ? 'Internal server error' : limitCloseReason(error instanceof Error ? error.message : String(error), 'Internal server error'));
    }
  });

  const sweep = keepAliveMs > 0 && Number.isFinite(keepAliveMs)
    ? setInterval(() => {
      for (const socket of wsServer.clients) {
        if (socket.readyState !== socket.OPEN) continue;
        if (awaitingPong.has(socket)) {
          socket.terminate();
          continue;
        }
        awaitingPong.add(socket);
        socket.ping();
      }
    }, keepAliveMs)
    : null;
  sweep?.unref();

  wsServer.on('connection', (socket: WebSocket) => {
    const connection = new Connection<Caller>(socket);
    if (socket.protocol !== GRAPHQL_TRANSPORT_WS_PROTOCOL) {
      socket.close(CloseCode.SubprotocolNotAcceptable, 'Subprotocol not acceptable');
      return;
    }
    connections.add(connection);
    if (initWait > 0 && Number.isFinite(initWait)) {
      connection.initTimer = setTimeout(() => {
        connection.initTimer = null;
        if (!connection.connectionInitReceived) socket.close(CloseCode.ConnectionInitialisationTimeout, 'Connection initialisation timeout');
      }, initWait);
    }
    // The upgrade request is not kept (graphql-ws holds it for the socket's life): about 1 KiB
    // of headers and stream state per socket that nothing reads after the upgrade.
    socket.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
      onMessage(connection, String(data)).catch((error: unknown) => internalError(connection, error));
    });
    socket.on('pong', onPong);
    socket.on('close', () => {
      connections.delete(connection);
      awaitingPong.delete(socket);
      if (connection.initTimer) clearTimeout(connection.initTimer);
      connection.initTimer = null;
      const subscriptions = Object.values(connection.subscriptions);
      connection.subscriptions = Object.create(null) as Record<string, AsyncIterator<unknown> | null>;
      for (const subscription of subscriptions) {
        if (isAsyncGenerator(subscription)) void Promise.resolve(subscription.return(undefined)).catch(() => {});
      }
    });
  });

  const onMessage = async (connection: Connection<Caller>, data: string): Promise<void> => {
    const { socket } = connection;
    let message: ReturnType<typeof parseMessage>;
    try {
      message = parseMessage(data);
    } catch {
      return socket.close(CloseCode.BadRequest, 'Invalid message received');
    }
    switch (message.type) {
      case MessageType.ConnectionInit: {
        if (connection.connectionInitReceived) return socket.close(CloseCode.TooManyInitialisationRequests, 'Too many initialisation requests');
        connection.connectionInitReceived = true;
        if (connection.initTimer) clearTimeout(connection.initTimer);
        connection.initTimer = null;
        if (isObject(message.payload)) connection.connectionParams = message.payload;
        const permitted = await options.onConnect(connection);
        if (permitted === false) return socket.close(CloseCode.Forbidden, 'Forbidden');
        connection.acknowledged = true;
        await connection.send(stringifyMessage({ type: MessageType.ConnectionAck }));
        return;
      }
      case MessageType.Ping:
        await connection.send(stringifyMessage(message.payload ? { type: MessageType.Pong, payload: message.payload } : { type: MessageType.Pong }));
        return;
      case MessageType.Pong:
        return;
      case MessageType.Subscribe:
        // Not awaited: the message is handled once the operation started; a failure closes the socket all the same.
        subscribe(connection, message.id, message.payload).catch((error: unknown) => internalError(connection, error));
        return;
      case MessageType.Complete: {
        const subscription = connection.subscriptions[message.id];
        delete connection.subscriptions[message.id];
        if (isAsyncGenerator(subscription)) await subscription.return(undefined);
        return;
      }
      default:
        throw new Error(`Unexpected message of type ${message.type} received`);
    }
  };

  const sendNext = (connection: Connection<Caller>, id: string, result: ExecutionResult) => {
    const answered = options.onNext?.(result);
    const { errors, ...resultWithoutErrors } = result;
    const payload = answered || { ...resultWithoutErrors, ...(errors ? { errors: errors.map((e) => e.toJSON()) } : {}) };
    return connection.send(stringifyMessage({ id, type: MessageType.Next, payload }));
  };
  const sendError = (connection: Connection<Caller>, id: string, errors: readonly GraphQLError[]) =>
    connection.send(stringifyMessage({ id, type: MessageType.Error, payload: errors.map((e) => e.toJSON()) }));

  const subscribe = async (connection: Connection<Caller>, id: string, payload: SubscribePayload): Promise<void> => {
    const { socket } = connection;
    if (!connection.acknowledged) return socket.close(CloseCode.Unauthorized, 'Unauthorized');
    if (id in connection.subscriptions) return socket.close(CloseCode.SubscriberAlreadyExists, `Subscriber for ${id} already exists`);
    connection.subscriptions[id] = null;
    let streaming: AsyncIterable<ExecutionResult> | null = null;
    try {
      const argsOrErrors = await options.onSubscribe(connection, id, payload);
      if (areGraphQLErrors(argsOrErrors)) return id in connection.subscriptions ? await sendError(connection, id, argsOrErrors) : undefined;
      if (Array.isArray(argsOrErrors)) throw new Error('Invalid return value from onSubscribe hook, expected an array of GraphQLError objects');
      const args = argsOrErrors as ExecutionArgs;
      const operation = getOperationAST(args.document, args.operationName);
      if (!operation) return id in connection.subscriptions ? await sendError(connection, id, [new GraphQLError('Unable to identify operation')]) : undefined;
      const result = await (operation.operation === 'subscription' ? options.subscribe(args) : options.execute(args));
      if (isAsyncIterable(result)) {
        if (!(id in connection.subscriptions)) {
          if (isAsyncGenerator(result)) void result.return(undefined);
        } else {
          connection.subscriptions[id] = result as unknown as AsyncIterator<unknown>;
          streaming = result;
        }
      } else if (id in connection.subscriptions) {
        await sendNext(connection, id, result);
      }
      if (!streaming && id in connection.subscriptions) await connection.send(stringifyMessage({ id, type: MessageType.Complete }));
    } finally {
      if (!streaming) delete connection.subscriptions[id];
    }
    // Its own small frame waits for the stream, not this one with all of its locals.
    if (streaming) stream(connection, id, streaming).catch((error: unknown) => internalError(connection, error));
  };

  /** graphql-ws's `for await` over a subscription: `next` per result, then `complete`, or `error` when it throws. */
  const stream = async (connection: Connection<Caller>, id: string, iterable: AsyncIterable<ExecutionResult>): Promise<void> => {
    try {
      const iterator = iterable[Symbol.asyncIterator]();
      try {
        for (;;) {
          const step = await iterator.next();
          if (step.done) break;
          try {
            await sendNext(connection, id, step.value);
          } catch (error) {
            // A `for await` whose body throws returns its iterator first.
            if (typeof iterator.return === 'function') await iterator.return(undefined);
            throw error;
          }
        }
      } catch (error) {
        // As graphql-ws: the stream's error as one GraphQLError, and no `complete` after it.
        const originalError = error instanceof Error ? error : new Error(String(error));
        await sendError(connection, id, [new GraphQLError(originalError.message, { originalError })]);
        delete connection.subscriptions[id];
      }
      if (id in connection.subscriptions) await connection.send(stringifyMessage({ id, type: MessageType.Complete }));
    } finally {
      delete connection.subscriptions[id];
    }
  };

  return {
    connections,
    async dispose() {
      if (sweep) clearInterval(sweep);
      for (const client of wsServer.clients) client.close(1001, 'Going away');
      wsServer.removeAllListeners();
      await new Promise<void>((resolve, reject) => wsServer.close((error) => (error ? reject(error) : resolve())));
    },
  };
}
