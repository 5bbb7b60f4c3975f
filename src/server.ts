/**
 * One port for everything, composed from one file per transport:
 * - transport/http.ts: the node:http server, /health and /ready, origin check, body cap and
 *   in-flight tracking, and a route table later adapters register on;
 * - transport/graphql-ws.ts: graphql-ws (`graphql-transport-ws`) upgrades on /graphql;
 * - transport/sse.ts: subscriptions Yoga streams over HTTP, tracked per token;
 * - transport/dashboard.ts: the built operations dashboard on /dashboard (HELIOS_DASHBOARD).
 * - transport/rest.ts: the seeds' REST API (/api/modularity/*) over the same services, and its
 *   OpenAPI document (/api/openapi.json).
 * - transport/graphql-http.ts: the lane for ordinary GraphQL POSTs, answered from node:http
 *   through Yoga's own params handler and result processor, without its Fetch-API layer.
 * Yoga answers HTTP GraphQL (and GraphiQL) on /graphql through the same envelop plugins that
 * graphql-ws operations run. Revoking a token ends its sockets and streams. Shutdown stops
 * accepting, completes every subscription on both transports, lets in-flight requests finish,
 * then closes the database, all within `shutdownTimeoutMs`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GraphQLError, NoSchemaIntrospectionCustomRule, type ExecutionArgs } from 'graphql';
import { createYoga, type Plugin } from 'graphql-yoga';
import { createApp, type App, type AppOptions } from './app.js';
import { isLoopbackHost } from './auth/anonymous.js';
import { resolveCaller, thenMaybe, type MaybePromise } from './auth/authorization.js';
import type { OriginPolicy } from './hardening/browser-origin.js';
import { useMessageLimits } from './hardening/message-limits.js';
import { parseWithLimits } from './hardening/document.js';
import { useDocumentLimits } from './hardening/plugin.js';
import { handBodyToYoga } from './hardening/request-body.js';
import { useRequestErrorCodes } from './hardening/request-errors.js';
import type { HeliosConfig } from './config.js';
import type { GraphQLContext } from './graphql/context.js';
import { buildSchema, printSortedSchema } from './graphql/schema.js';
import { errorFields } from './logger.js';
import { countSharedSubscription, GraphQLOperationCounters, useOperationMetrics } from './metrics/graphql.js';
import { createHeliosMetrics } from './metrics/prometheus.js';
import { createMetricsRoute, METRICS_PATH } from './transport/metrics.js';
import { createOfrepRoute, OFREP_PREFIX } from './transport/ofrep.js';
import { dashboardRoutes } from './transport/dashboard.js';
import { GRAPHIQL_ASSETS_PATH, graphiqlWelcome, renderGraphiQLPage, serveGraphiQLAsset } from './transport/graphiql.js';
import { createGraphQLHttpLane } from './transport/graphql-http.js';
import { createGraphQLWsTransport } from './transport/graphql-ws.js';
import { createHttpTransport, probeRoutes } from './transport/http.js';
import { restRoutes } from './transport/rest.js';
import { REST_ROUTES } from './rest/routes.js';
import { StreamRegistry, useStreamTracking } from './transport/sse.js';

export interface HeliosServer {
  app: App;
  port: number;
  url: string;
  /** Graceful stop; resolves when everything is closed. Idempotent. */
  stop(): Promise<void>;
}

const GRAPHQL_PATH = '/graphql';
const SCHEMA_FILE_PATH = '/schema.graphql';

let schemaFile: string | null = null;

function serveSchemaFile(req: IncomingMessage, res: ServerResponse): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
    res.end('Method Not Allowed\n');
    return;
  }
  const sdl = (schemaFile ??= printSortedSchema());
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(sdl), 'cache-control': 'no-cache' });
  res.end(req.method === 'HEAD' ? undefined : sdl);
}

export interface ServerOptions extends AppOptions {
  /**
   * Internal, for tests: false sends every HTTP GraphQL request through Yoga's own pipeline
   * instead of the lane (transport/graphql-http.ts), so the two answers can be compared;
   * `onDecision` hears, per request Yoga would have answered, whether the lane took it.
   */
  graphqlHttpLane?: boolean | {
    onDecision(req: IncomingMessage, taken: boolean): void;
    /** Hears each query the lane tried to compile with graphql-jit, and whether it compiled. */
    onCompile?(operationName: string | null, compiled: boolean): void;
  };
}

export async function startServer(config: HeliosConfig, options: ServerOptions = {}): Promise<HeliosServer> {
  const app = await createApp(config, options);
  const { services } = app;
  const logger = services.logger.child({ component: 'server' });
  let ready = false;
  let stopping: Promise<void> | null = null;

  const origins: OriginPolicy = { allowedOrigins: config.allowedOrigins, requireLoopbackHost: isLoopbackHost(config.host) };
  const limits = config.limits;
  // GraphQL operations and subscriptions counted for /metrics (null with HELIOS_METRICS=false).
  const operations = config.metrics ? new GraphQLOperationCounters() : null;

  /**
   * The caller behind an Authorization value, or a typed UNAUTHENTICATED error (401 over HTTP).
   * Synchronous while the token index answers from memory (no promise per request); envelop
   * handles a throw here as it handles a rejection.
   */
  const contextFor = (authorization: string | null | undefined): MaybePromise<GraphQLContext> =>
    thenMaybe(resolveCaller(authorization, services.tokens, config.anonymous), (resolution) => {
      if (!resolution.ok) {
        throw new GraphQLError(resolution.message, { extensions: { code: resolution.code, http: { status: 401 } } });
      }
      return { actor: resolution.caller.name, caller: resolution.caller, services };
    });

  const maskError = (error: unknown, message: string): GraphQLError => {
    const original = error instanceof GraphQLError ? error.originalError : error;
    if (error instanceof GraphQLError && !original) return error;
    if (original instanceof GraphQLError) return original;
    logger.error('unexpected error', errorFields(original));
    // Keep where it happened (locations, path), drop what happened (message, stack).
    const at = error instanceof GraphQLError ? { nodes: error.nodes ?? null, source: error.source ?? null, positions: error.positions ?? null, path: error.path ?? null } : {};
    return new GraphQLError(message, { ...at, extensions: { code: 'INTERNAL_SERVER_ERROR' } });
  };

  const streams = new StreamRegistry();

  const yoga = createYoga<{ req: IncomingMessage; res: ServerResponse }, GraphQLContext>({
    schema: buildSchema(),
    graphqlEndpoint: GRAPHQL_PATH,
    landingPage: false,
    // A small page; its assets are served by Helios (no CDN), compressed and cached (graphiql.ts).
    renderGraphiQL: renderGraphiQLPage,
    graphiql: config.graphiql ? { title: 'Helios', subscriptionsProtocol: 'WS', defaultQuery: graphiqlWelcome(config.anonymous) } : false,
    // Same-origin only by default; other browser origins are refused before Yoga (origin check).
    cors: config.allowedOrigins.length > 0 ? { origin: config.allowedOrigins, credentials: false } : false,
    batching: { limit: limits.maxBatchSize },
    // guardRequestBody (transport/http.ts) already enforces this limit and hands Yoga the body
    // as a Buffer. Yoga's own limiter would turn that Buffer back into a stream piped through a
    // TransformStream with an AbortSignal, on every request: half the time of a small query.
    maxRequestBodySize: false,
    // These run for HTTP and, through getEnveloped(), for graphql-ws too.
    plugins: [
      useDocumentLimits(limits),
      useRequestErrorCodes(),
      useMessageLimits(),
      useStreamTracking(streams),
      ...(config.introspection ? [] : [useNoIntrospection()]),
      ...(operations ? [useOperationMetrics(operations)] : []),
    ],
    // graphql-ws operations arrive with their caller already resolved (onConnect); HTTP ones here.
    // (From the node request, which Yoga's Request copies its headers from: the HTTP lane has no Request.)
    context: (initial) => {
      const resolved = initial as Partial<GraphQLContext>;
      return resolved.caller ? (resolved as GraphQLContext) : contextFor(initial.req.headers.authorization);
    },
    logging: {
      debug: (...args) => logger.debug(String(args[0]), { args: args.slice(1).map(String) }),
      info: (...args) => logger.info(String(args[0]), { args: args.slice(1).map(String) }),
      warn: (...args) => logger.warn(String(args[0]), { args: args.slice(1).map(String) }),
      error: (...args) => logger.error(String(args[0]), { args: args.slice(1).map(String) }),
    },
    maskedErrors: { maskError },
  });

  const toYoga = (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    handBodyToYoga(req);
    // Yoga's node handler returns nothing when it answered synchronously.
    return Promise.resolve(yoga(req, res));
  };
  const lane = options.graphqlHttpLane === false
    ? null
    : createGraphQLHttpLane({
      yoga,
      path: GRAPHQL_PATH,
      parse: (source) => parseWithLimits(source, limits),
      cors: config.allowedOrigins.length > 0,
      contextFor,
      maskError,
      counters: operations,
      toYoga,
      ...(typeof options.graphqlHttpLane === 'object' && options.graphqlHttpLane.onCompile ? { onCompile: options.graphqlHttpLane.onCompile } : {}),
    });
  const http = createHttpTransport({
    origins,
    maxRequestBodyBytes: limits.maxRequestBodyBytes,
    fallback: (req, res) => {
      const answered = lane?.handle(req, res) ?? null;
      if (typeof options.graphqlHttpLane === 'object') options.graphqlHttpLane.onDecision(req, answered !== null);
      return answered ?? toYoga(req, res);
    },
  });
  for (const route of probeRoutes({ ready: () => ready, version: services.version })) http.route(route);
  for (const route of restRoutes({ routes: REST_ROUTES, services, anonymous: config.anonymous, logger })) http.route(route);
  // The SDL clients generate from (README: Typed clients); it says what introspection says, so
  // it is off when introspection is.
  if (config.introspection) http.route({ path: SCHEMA_FILE_PATH, handle: (req, res) => serveSchemaFile(req, res) });
  if (config.graphiql) http.route({ path: GRAPHIQL_ASSETS_PATH, handle: (req, res) => void serveGraphiQLAsset(req, res) });
  if (config.dashboard) for (const route of dashboardRoutes()) http.route(route);
  // Standard doors: OFREP and /metrics, each its own file under src/transport/. They answer
  // origin, auth and body errors in their own protocol's shape, so the table leaves those to them.
  const ofrep = createOfrepRoute({ flags: services.flags, tokens: services.tokens, anonymous: config.anonymous, origins, maxRequestBodyBytes: limits.maxRequestBodyBytes, logger });
  http.route({ path: OFREP_PREFIX, kind: 'self-guarded', handle: (req, res) => void ofrep.handle(req, res) });

  const ws = createGraphQLWsTransport({
    httpServer: http.server,
    path: GRAPHQL_PATH,
    yoga,
    services,
    anonymous: config.anonymous,
    origins,
    limits,
    maskError,
    logger,
    ...(operations ? { countSubscription: (args: ExecutionArgs, started: Promise<unknown>) => countSharedSubscription(operations, args, started) } : {}),
  });

  const metrics = operations ? createHeliosMetrics({ ...services, graphql: operations, openWebSockets: () => ws.openSockets() }) : null;
  if (metrics) {
    const metricsRoute = createMetricsRoute({ metrics, tokens: services.tokens, anonymous: config.anonymous, origins, logger });
    http.route({ path: METRICS_PATH, kind: 'self-guarded', handle: (req, res) => void metricsRoute.handle(req, res) });
  }

  // Revoking a token ends its sockets (4403) and its streams (`event: complete`); every later
  // operation with it is refused on both transports (resolveCaller, onSubscribe).
  const stopEndingRevoked = services.tokens.onRevoke((name) => {
    ws.closeToken(name);
    streams.endToken(name);
  });

  let port: number;
  try {
    port = await http.listen(config.port, config.host);
  } catch (error) {
    // A port already taken must not leave the database, its lock and the workers open.
    await ws.shutdown(Date.now());
    await app.close();
    throw error;
  }
  ready = true;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}${GRAPHQL_PATH}`;
  logger.info('helios listening', { url });
  services.cluster.setAddress(url);

  const stop = async () => {
    ready = false;
    stopEndingRevoked();
    metrics?.close();
    http.stopAccepting();
    const deadline = Date.now() + config.shutdownTimeoutMs;
    // Subscriptions first: they never end on their own, so waiting for them would only burn
    // the deadline. Streams get `event: complete`; sockets get `complete` per id, then 1001.
    await Promise.all([streams.endAll(), ws.shutdown(deadline)]);
    const left = await http.drain(deadline, (res) => streams.isStream(res));
    if (left > 0) logger.warn('shutdown deadline passed with requests in flight', { inFlight: left });
    http.closeAll();
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

/** Turns introspection off (HELIOS_INTROSPECTION=false), on both transports. */
function useNoIntrospection(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}
