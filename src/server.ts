/**
 * One port for everything: Yoga answers HTTP (GraphQL, GraphiQL, SSE) on /graphql, graphql-ws
 * (`graphql-transport-ws`) upgrades WebSockets on the same path, and /health and /ready answer
 * probes. Shutdown stops accepting, lets in-flight requests finish, completes subscriptions,
 * then closes the database, all within `shutdownTimeoutMs`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GraphQLError, NoSchemaIntrospectionCustomRule, type ExecutionArgs } from 'graphql';
import type { OperationResult } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { renderGraphiQL } from '@graphql-yoga/render-graphiql';
import { createYoga, type Plugin } from 'graphql-yoga';
import { WebSocketServer, type WebSocket } from 'ws';
import { createApp, type App, type AppOptions } from './app.js';
import { isLoopbackHost } from './auth/anonymous.js';
import { authorizationFromConnectionParams, callerOfConnection, parseAuthorization, resolveCaller, type Caller } from './auth/authorization.js';
import { checkRequestOrigin, verifyWebSocketOrigin, type OriginPolicy } from './hardening/browser-origin.js';
import { ClientQuota, limitWebSocketConnections, operationQuotaErrors } from './hardening/connections.js';
import { useDocumentLimits } from './hardening/plugin.js';
import { guardRequestBody, sendGraphQLError } from './hardening/request-body.js';
import type { HeliosConfig } from './config.js';
import type { GraphQLContext } from './graphql/context.js';
import { buildSchema } from './graphql/schema.js';
import { subscribeShared } from './graphql/shared-subscriptions.js';
import { errorFields } from './logger.js';
import { countSharedSubscription, GraphQLOperationCounters, useOperationMetrics } from './metrics/graphql.js';
import { createHeliosMetrics } from './metrics/prometheus.js';
import { createMetricsRoute } from './transport/metrics.js';
import { createOfrepRoute } from './transport/ofrep.js';

export interface HeliosServer {
  app: App;
  port: number;
  url: string;
  /** Graceful stop; resolves when everything is closed. Idempotent. */
  stop(): Promise<void>;
}

const GRAPHQL_PATH = '/graphql';

export async function startServer(config: HeliosConfig, options: AppOptions = {}): Promise<HeliosServer> {
  const app = await createApp(config, options);
  const { services } = app;
  const logger = services.logger.child({ component: 'server' });
  let ready = false;
  let stopping: Promise<void> | null = null;

  const origins: OriginPolicy = { allowedOrigins: config.allowedOrigins, requireLoopbackHost: isLoopbackHost(config.host) };
  const limits = config.limits;
  // GraphQL operations and subscriptions counted for /metrics (null with HELIOS_METRICS=false).
  const operations = config.metrics ? new GraphQLOperationCounters() : null;

  /** The caller behind an Authorization value, or a typed UNAUTHENTICATED error (401 over HTTP). */
  const contextFor = (authorization: string | null | undefined): GraphQLContext => {
    const resolution = resolveCaller(authorization, services.tokens, config.anonymous);
    if (!resolution.ok) {
      throw new GraphQLError(resolution.message, { extensions: { code: resolution.code, http: { status: 401 } } });
    }
    return { actor: resolution.caller.name, caller: resolution.caller, services };
  };

  const maskError = (error: unknown, message: string): GraphQLError => {
    const original = error instanceof GraphQLError ? error.originalError : error;
    if (error instanceof GraphQLError && !original) return error;
    if (original instanceof GraphQLError) return original;
    logger.error('unexpected error', errorFields(original));
    // Keep where it happened (locations, path), drop what happened (message, stack).
    const at = error instanceof GraphQLError ? { nodes: error.nodes ?? null, source: error.source ?? null, positions: error.positions ?? null, path: error.path ?? null } : {};
    return new GraphQLError(message, { ...at, extensions: { code: 'INTERNAL_SERVER_ERROR' } });
  };

  const yoga = createYoga<{ req: IncomingMessage; res: ServerResponse }, GraphQLContext>({
    schema: buildSchema(),
    graphqlEndpoint: GRAPHQL_PATH,
    landingPage: false,
    // GraphiQL's assets are served inline, so it works on networks without access to a CDN.
    renderGraphiQL,
    graphiql: config.graphiql ? { title: 'Helios', subscriptionsProtocol: 'WS' } : false,
    // Same-origin only by default; other browser origins are refused before Yoga (origin check).
    cors: config.allowedOrigins.length > 0 ? { origin: config.allowedOrigins, credentials: false } : false,
    batching: { limit: limits.maxBatchSize },
    // guardRequestBody (above Yoga) already enforces this limit and hands Yoga the body as a
    // Buffer. Yoga's own limiter would turn that Buffer back into a stream piped through a
    // TransformStream with an AbortSignal, on every request: half the time of a small query.
    maxRequestBodySize: false,
    // These run for HTTP and, through getEnveloped(), for graphql-ws too.
    plugins: [useDocumentLimits(limits), ...(config.introspection ? [] : [useNoIntrospection()]), ...(operations ? [useOperationMetrics(operations)] : [])],
    // graphql-ws operations arrive with their caller already resolved (onConnect); HTTP ones here.
    context: (initial) => {
      const resolved = initial as Partial<GraphQLContext>;
      return resolved.caller ? (resolved as GraphQLContext) : contextFor(initial.request.headers.get('authorization'));
    },
    logging: {
      debug: (...args) => logger.debug(String(args[0]), { args: args.slice(1).map(String) }),
      info: (...args) => logger.info(String(args[0]), { args: args.slice(1).map(String) }),
      warn: (...args) => logger.warn(String(args[0]), { args: args.slice(1).map(String) }),
      error: (...args) => logger.error(String(args[0]), { args: args.slice(1).map(String) }),
    },
    maskedErrors: { maskError },
  });

  // Standard doors (issue 12): OFREP and /metrics, each its own file under src/transport/.
  const ofrep = createOfrepRoute({ flags: services.flags, tokens: services.tokens, anonymous: config.anonymous, origins, maxRequestBodyBytes: limits.maxRequestBodyBytes, logger });
  const metrics = operations ? createHeliosMetrics({ ...services, graphql: operations, openWebSockets: () => wsServer.clients.size }) : null;
  const metricsRoute = metrics ? createMetricsRoute({ metrics, tokens: services.tokens, anonymous: config.anonymous, origins, logger }) : null;

  let inFlight = 0;
  const httpServer = createServer((req, res) => {
    const url = req.url ?? '/';
    if (url === '/health' || url.startsWith('/health?')) {
      sendJson(res, 200, { status: 'ok' });
      return;
    }
    if (url === '/ready' || url.startsWith('/ready?')) {
      sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', version: services.version });
      return;
    }
    // ---- standard-door routing hook (issue 12): moves into the transport route table ----
    if (ofrep.handle(req, res) || metricsRoute?.handle(req, res)) return;
    // ---- end of hook ----
    const origin = checkRequestOrigin(req.headers, origins);
    if (!origin.ok) {
      sendGraphQLError(res, 403, origin.code, origin.message);
      return;
    }
    inFlight++;
    let counted = true;
    const done = () => {
      if (counted) {
        counted = false;
        inFlight--;
      }
    };
    res.on('finish', done);
    res.on('close', done);
    void guardRequestBody(req, res, limits.maxRequestBodyBytes).then((accepted) => {
      if (accepted) void yoga(req, res);
    });
  });

  // Revoking a token closes its open sockets, so its subscriptions end too.
  const socketsOfToken = new SocketsByToken();
  const stopClosingRevoked = services.tokens.onRevoke((name) => socketsOfToken.closeAll(name, 4403, 'Token revoked'));

  const wsServer = new WebSocketServer({ server: httpServer, path: GRAPHQL_PATH, verifyClient: verifyWebSocketOrigin(origins) });
  limitWebSocketConnections(wsServer, new ClientQuota(limits.maxWsConnectionsPerClient));
  const wsDisposable = useServer<Record<string, unknown> | undefined, { request: IncomingMessage; caller?: Caller }>(
    {
      // A missing, malformed or revoked token closes the socket with 4403 Forbidden.
      onConnect: (ctx) => {
        const caller = callerOfConnection(ctx.connectionParams, services.tokens, config.anonymous);
        if (!caller) return false;
        ctx.extra.caller = caller;
        if (!caller.anonymous) socketsOfToken.add(caller.name, ctx.extra.socket);
        return true;
      },
      execute: (args) => (args.rootValue as Enveloped).execute(args),
      // Each event is executed once for all sockets holding the same subscription (see shared-subscriptions.ts).
      subscribe: (args) => {
        const { caller } = args.contextValue as GraphQLContext;
        const shared = subscribeShared(args, {
          subscribe: (args.rootValue as Enveloped).subscribe,
          maskError: (error) => maskError(error, 'Unexpected error.'),
          sharingKey: `${caller.role}:${caller.anonymous ? 'anonymous' : 'token'}`,
        });
        return (operations ? countSharedSubscription(operations, args, shared) : shared) as ReturnType<Enveloped['subscribe']>;
      },
      onSubscribe: async (ctx, _id, payload) => {
        const quota = operationQuotaErrors(ctx, limits.maxOperationsPerConnection);
        if (quota.length > 0) return quota;
        const caller = ctx.extra.caller!;
        // A token revoked since the socket opened may not start anything new.
        if (!caller.anonymous && !services.tokens.authenticate(tokenOf(ctx.connectionParams))) {
          return [new GraphQLError('Invalid or revoked token', { extensions: { code: 'UNAUTHENTICATED' } })];
        }
        const enveloped = yoga.getEnveloped({ ...ctx, req: ctx.extra.request, socket: ctx.extra.socket, params: payload });
        // A throwing parse or validation rule would make graphql-ws close the whole socket:
        // turn every failure into errors for this one operation instead.
        try {
          const document = enveloped.parse(payload.query);
          const errors = enveloped.validate(enveloped.schema, document);
          if (errors.length > 0) return errors;
          const args: ExecutionArgs = {
            schema: enveloped.schema,
            operationName: payload.operationName ?? null,
            document,
            variableValues: payload.variables ?? null,
            contextValue: await enveloped.contextFactory({ actor: caller.name, caller, services } satisfies GraphQLContext),
            rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
          };
          return args;
        } catch (error) {
          if (error instanceof GraphQLError) return [error];
          logger.error('websocket subscribe failed', errorFields(error));
          return [new GraphQLError('Unexpected error.', { extensions: { code: 'INTERNAL_SERVER_ERROR' } })];
        }
      },
    },
    wsServer,
  );

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(config.port, config.host, () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  const port = (httpServer.address() as AddressInfo).port;
  ready = true;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}${GRAPHQL_PATH}`;
  logger.info('helios listening', { url });

  const stop = async () => {
    ready = false;
    stopClosingRevoked();
    metrics?.close();
    httpServer.close();
    httpServer.closeIdleConnections();
    const deadline = Date.now() + config.shutdownTimeoutMs;
    while (inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (inFlight > 0) logger.warn('shutdown deadline passed with requests in flight', { inFlight });
    // Completes every subscription and closes sockets with 1001 "Going away".
    await Promise.race([wsDisposable.dispose(), new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())))]);
    for (const client of wsServer.clients) client.terminate();
    wsServer.close();
    httpServer.closeAllConnections();
    await app.close();
    logger.info('helios stopped');
  };

  return {
    app,
    port,
    url,
    stop: () => (stopping ??= stop()),
  };
}

/** Open sockets per token name; a socket leaves its set when it closes. */
class SocketsByToken {
  private readonly byName = new Map<string, Set<WebSocket>>();

  add(name: string, socket: WebSocket): void {
    const set = this.byName.get(name) ?? new Set<WebSocket>();
    set.add(socket);
    this.byName.set(name, set);
    socket.once('close', () => {
      set.delete(socket);
      if (set.size === 0 && this.byName.get(name) === set) this.byName.delete(name);
    });
  }

  closeAll(name: string, code: number, reason: string): void {
    for (const socket of this.byName.get(name) ?? []) socket.close(code, reason);
  }
}

function tokenOf(params: unknown): string | null {
  try {
    return parseAuthorization(authorizationFromConnectionParams(params));
  } catch {
    return null;
  }
}

/** Turns introspection off (HELIOS_INTROSPECTION=false), on both transports. */
function useNoIntrospection(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}

interface Enveloped {
  execute: (args: ExecutionArgs) => OperationResult;
  subscribe: (args: ExecutionArgs) => OperationResult;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
