/**
 * GraphQL over HTTP, the common case, without Yoga's Fetch-API layer and without envelop's
 * per-request orchestration. Yoga's node adapter turns every request into a WHATWG Request (URL,
 * Headers, an AbortController, a body stream) and every answer into a Response; envelop then
 * builds an enveloped context and walks each plugin's hooks around parse, validate, the context
 * factory and execution, through promise helpers, on every request. For a small query that costs
 * several times the execution (bench/RESULTS.md, issue 15). This lane answers `POST /graphql`
 * with a JSON body straight from node:http, and runs a document it has vetted once as a fixed
 * sequence of the same steps, with the same functions the plugins use:
 *
 * - the document: parsed with the hardening limits and validated with every rule Yoga applies
 *   (graphql-js, the limits, introspection off), once per query text;
 * - the caller: the context factory Yoga runs (server.ts `contextFor`, the token check), on every
 *   request; a refused caller is left to Yoga, whose 401 is the answer;
 * - execution: graphql-js `execute` on that document and context. A result without `data` (a
 *   variable that does not coerce, a missing required one: nothing was executed) is left to
 *   Yoga, which answers it with its coded request errors;
 * - then, in the order Yoga's plugins run after execution: message capping
 *   (hardening/message-limits.ts `capResult`), the operation metrics
 *   (metrics/graphql.ts `GraphQLOperationCounters.record`), error masking (server.ts
 *   `maskError`, logged as Yoga logs a masked error);
 * - the answer: Yoga's own `processRegularResult` (status code, content type, JSON body), written
 *   as @whatwg-node/server writes it, so the answer is the same, byte for byte
 *   (test/e2e/graphql-http-lane.test.ts compares every case with Yoga's).
 *
 * Everything else is left to Yoga, unchanged (`handle` returns null): other methods and paths,
 * other content types, a body that is not a JSON object of the standard parameters, batches,
 * subscriptions, an Accept header that picks a stream (SSE, multipart) or nothing, a browser
 * Origin while CORS is on, and any document that does not parse, validate or name an operation
 * (Yoga's error answers for those depend on its request object). Whether a document qualifies
 * is decided once per query text; what is cached is the document, never an answer.
 */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { execute, getOperationAST, GraphQLError, type DocumentNode, type ExecutionResult, type GraphQLSchema, type OperationDefinitionNode, type Source } from 'graphql';
import { processRegularResult, type GraphQLParams, type YogaServerInstance } from 'graphql-yoga';
import type { CompiledQuery } from 'graphql-jit';
import { isPromise, thenMaybe, type MaybePromise } from '../auth/authorization.js';
import type { GraphQLContext } from '../graphql/context.js';
import { capResult } from '../hardening/message-limits.js';
import type { GraphQLOperationCounters } from '../metrics/graphql.js';
import { setBounded } from '../bounded-cache.js';

/** Query texts whose verdict (a document, or "leave it to Yoga") is kept; oldest out first. */
const DOCUMENT_CACHE_SIZE = 1024;
/** Longer query texts are not kept (1,024 of them at the body cap would hold 256 MB). */
const MAX_CACHED_QUERY_CHARS = 16 * 1024;
/** Distinct Accept headers whose negotiated media type is kept. */
const MEDIA_TYPE_CACHE_SIZE = 64;

type ServerContext = { req: IncomingMessage; res: ServerResponse };

export interface GraphQLHttpLaneOptions {
  yoga: YogaServerInstance<ServerContext, GraphQLContext>;
  /** The GraphQL path (`/graphql`); only that exact URL qualifies. */
  path: string;
  /** The parser Yoga runs (with the hardening limits): a document it refuses is left to Yoga. */
  parse: (source: string) => DocumentNode;
  /** Whether Yoga answers CORS (then a request with an Origin is left to it). */
  cors: boolean;
  /** Yoga's context factory for an HTTP request: the caller from its Authorization header; throws or rejects to refuse it. */
  contextFor: (authorization: string | undefined) => MaybePromise<GraphQLContext>;
  /** Yoga's `maskedErrors.maskError`, applied to every error of a result as Yoga applies it. */
  maskError: (error: unknown, message: string) => GraphQLError;
  /** The counters Yoga's `useOperationMetrics` plugin records into (null when metrics are off). */
  counters: GraphQLOperationCounters | null;
  /** Answers the request through Yoga's whole pipeline: for what the lane leaves to Yoga after it has started. */
  toYoga: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  /** Hears each query compiled with graphql-jit (or that graphql-jit refused): for tests. */
  onCompile?: (operationName: string | null, compiled: boolean) => void;
}

export interface GraphQLHttpLane {
  /** Answers `req` and returns the promise of it, or returns null: then Yoga must answer. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void> | null;
}

/** What processRegularResult builds with `fetchAPI.Response`: kept as given, written below. */
class CapturedResponse {
  constructor(
    readonly body: string | null,
    readonly init: { status?: number; statusText?: string; headers?: Record<string, string> } = {},
  ) {}
}
const CAPTURE = { Response: CapturedResponse } as unknown as Parameters<typeof processRegularResult>[1];

/** Yoga's `maskedErrors.errorMessage` (its default: server.ts sets only `maskError`). */
const MASKED_ERROR_MESSAGE = 'Unexpected error.';

/** Runs one operation of a vetted document with this context and these (raw) variables. */
type Runner = (contextValue: object, variables: GraphQLParams['variables']) => MaybePromise<ExecutionResult>;
interface RunnerEntry {
  /** Runs so far, counted up to `hotAfter`. */
  runs: number;
  /** Runs after which it is compiled (hotAfter()). */
  hotAfter: number;
  run: Runner;
}
/** Runs of the same small query (one document, one operation) after which it is compiled with graphql-jit. */
const HOT_AFTER = 3;
/** Query characters per run a query must have had before it is compiled (see hotAfter). */
const CHARS_PER_RUN = 100;

/**
 * When a query is compiled: after HOT_AFTER runs, or one run per CHARS_PER_RUN characters of its
 * text if that is more. Compiling costs more the bigger the document (measured 2026-12-02: 0.24 ms
 * for the 98-character bench query, 13.5 ms for a 4,700-character one near the hardening limits,
 * 2.8x its parse and validation), so a big text must have run often enough to pay for it: a
 * client sending many distinct big texts a few times each makes Helios parse and validate them,
 * as before, but not compile them.
 */
function hotAfter(queryChars: number): number {
  return Math.max(HOT_AFTER, Math.ceil(queryChars / CHARS_PER_RUN));
}

type GraphQLJit = Pick<typeof import('graphql-jit'), 'compileQuery' | 'isCompiledQuery'>;
let jitModule: GraphQLJit | false | null = null;
let jitLoading = false;
/**
 * graphql-jit, loaded the first time a query is hot rather than at start-up: with
 * fast-json-stringify and ajv it takes 200-250 ms to import (about a seventh of the time
 * `npm start` takes to /ready). Null while it loads; false if it cannot be loaded (graphql-js
 * then runs everything, as before).
 */
function graphqlJit(onFailure: (error: unknown) => void): GraphQLJit | false | null {
  if (jitModule === null && !jitLoading) {
    jitLoading = true;
    import('graphql-jit').then(
      (loaded) => {
        jitModule = loaded;
      },
      (error: unknown) => {
        jitModule = false;
        onFailure(error);
      },
    );
  }
  return jitModule;
}

/**
 * A compiled query's result as graphql-js gives it. graphql-jit answers `{ data, errors }`;
 * graphql-js (and Yoga's executor) `{ errors, data }`, the order of the JSON body. And its errors
 * carry `locations` without the AST nodes, source or positions that graphql-js errors have: error
 * masking and Yoga's serializer rebuild an error from those, so the locations would be lost. Each
 * is rebuilt here with the document's source and the positions of its locations (same message,
 * path and extensions), with an original error as graphql-js has one (below). A request error (no
 * `data`) is passed on as it is.
 */
function asGraphQLJsResult(result: MaybePromise<ExecutionResult>, source: Source | undefined): MaybePromise<ExecutionResult> {
  const convert = (r: ExecutionResult): ExecutionResult => (r.errors && 'data' in r ? { errors: r.errors.map((e) => located(e, source)), data: r.data } : r);
  return thenMaybe(result, convert);
}

function located(error: GraphQLError, source: Source | undefined): GraphQLError {
  const positions = !error.nodes && !error.positions && error.locations?.length && source
    ? error.locations.map(({ line, column }) => positionOf(source.body, line, column))
    : null;
  const placed = positions !== null && positions.every((p) => p >= 0);
  if (!placed && error.originalError) return error;
  return new GraphQLError(error.message, {
    ...(placed ? { source: source!, positions } : { nodes: error.nodes ?? null, source: error.source ?? null, positions: error.positions ?? null }),
    path: error.path ?? null,
    // graphql-js wraps every field error, its own included ("Cannot return null for non-nullable
    // field"), around an original error; graphql-jit creates its own without one. Masking tells
    // Helios's errors from unexpected ones by that original, so it is given the same shape.
    originalError: error.originalError ?? new Error(error.message),
    extensions: error.extensions,
  });
}

/** The character offset of a 1-based line and column, with graphql-js's line terminators; -1 if outside. */
export function positionOf(body: string, line: number, column: number): number {
  let offset = 0;
  for (let current = 1; current < line; current++) {
    const match = LINE_TERMINATOR.exec(body.slice(offset));
    if (!match) return -1;
    offset += match.index + match[0].length;
  }
  const position = offset + column - 1;
  return position <= body.length ? position : -1;
}
const LINE_TERMINATOR = /\r\n|[\n\r]/;

export function createGraphQLHttpLane(options: GraphQLHttpLaneOptions): GraphQLHttpLane {
  const { yoga } = options;
  const documents = new Map<string, DocumentNode | null>();

  const documentFor = (query: string): DocumentNode | null => {
    const known = documents.get(query);
    if (known !== undefined) return known;
    let document: DocumentNode | null;
    try {
      document = options.parse(query);
      // Yoga's validation with every rule it applies (graphql-js, the hardening limits,
      // introspection off). Run on this lane's own document object, so Yoga's caches (keyed
      // by its own documents) stay as Yoga fills them.
      const enveloped = yoga.getEnveloped({});
      if (enveloped.validate(enveloped.schema, document).length > 0) document = null;
    } catch {
      document = null;
    }
    // A long text (a hostile one, often) is decided again each time rather than held.
    if (query.length > MAX_CACHED_QUERY_CHARS) return document;
    setBounded(documents, query, document, DOCUMENT_CACHE_SIZE);
    return document;
  };

  // Clients send the same Accept header on every request: its verdict is kept (bounded).
  const mediaTypes = new Map<string | undefined, string | null>();
  const mediaTypeFor = (accept: string | undefined): string | null => {
    let type = mediaTypes.get(accept);
    if (type === undefined) {
      type = regularMediaType(accept);
      setBounded(mediaTypes, accept, type, MEDIA_TYPE_CACHE_SIZE);
    }
    return type;
  };

  const schema: GraphQLSchema = yoga.getEnveloped({}).schema;

  // How each (document, operation) runs. A query run often enough (hotAfter() runs: Mercurius's
  // `jit` option works the same way) is compiled once by graphql-jit, which resolves the
  // document's fields, literal arguments and variable coercion ahead of time instead of walking
  // the document on every request. Until then, and for a mutation or a query graphql-jit cannot
  // compile, graphql-js `execute` runs it (Yoga's executor keeps the same serial mutation order
  // and error paths). A one-off query therefore never pays for a compilation. Keyed by the cached
  // document object, so an entry lives as long as its document does.
  const runners = new WeakMap<DocumentNode, Map<string | null, RunnerEntry>>();
  const runnerFor = (document: DocumentNode, operation: OperationDefinitionNode, operationName: string | null, queryChars: number): Runner => {
    let byName = runners.get(document);
    if (!byName) runners.set(document, (byName = new Map()));
    let entry = byName.get(operationName);
    if (!entry) {
      entry = { runs: 0, hotAfter: hotAfter(queryChars), run: (contextValue, variableValues) => execute({ schema, document, contextValue, variableValues, operationName }) };
      byName.set(operationName, entry);
    }
    if (entry.runs < entry.hotAfter && operation.operation === 'query' && ++entry.runs === entry.hotAfter) {
      const jit = graphqlJit((error) => yoga.logger.warn('graphql-jit could not be loaded; graphql-js runs every query', error));
      if (jit === null) {
        // Still loading: graphql-js runs it this time, and the next run tries again.
        entry.runs--;
      } else {
        let compiled: CompiledQuery | null = null;
        if (jit) {
          try {
            const outcome = jit.compileQuery(schema, document, operationName ?? undefined);
            if (jit.isCompiledQuery(outcome)) compiled = outcome;
          } catch (error) {
            yoga.logger.warn('graphql-jit could not compile a query; graphql-js keeps running it', error);
          }
        }
        if (compiled) {
          const query = compiled;
          entry.run = (contextValue, variableValues) => asGraphQLJsResult(query.query(undefined, contextValue, variableValues), document.loc?.source);
        }
        options.onCompile?.(operationName, compiled !== null);
      }
    }
    return entry.run;
  };

  /** After execution, the steps Yoga's plugins take, in their order; then the answer. */
  const finish = (req: IncomingMessage, res: ServerResponse, params: GraphQLParams, operation: OperationDefinitionNode, mediaType: string, started: number, executed: ExecutionResult): void => {
    // No `data`: a request error (variables), nothing was executed. Yoga codes those.
    if (!('data' in executed)) {
      void options.toYoga(req, res);
      return;
    }
    let result = capResult(executed) ?? executed;
    options.counters?.record(operation.operation, params.operationName ?? operation.name?.value ?? null, (result.errors?.length ?? 0) > 0, performance.now() - started);
    if (result.errors) result = { ...result, errors: result.errors.map(mask) };
    write(res, result, mediaType);
  };

  const mask = (error: GraphQLError): GraphQLError => {
    const masked = options.maskError(error, MASKED_ERROR_MESSAGE);
    // Yoga logs every error its masking replaced.
    if (masked !== error) yoga.logger.error(error);
    return masked;
  };

  const run = (req: IncomingMessage, res: ServerResponse, params: GraphQLParams, document: DocumentNode, operation: OperationDefinitionNode, mediaType: string, context: GraphQLContext): Promise<void> | void => {
    // The context Yoga's resolvers get: its node adapter's server context, the params, the factory's fields.
    const contextValue = { req, res, waitUntil: yoga.waitUntil, params, ...context };
    const started = performance.now();
    let executed: MaybePromise<ExecutionResult>;
    try {
      executed = runnerFor(document, operation, params.operationName ?? null, (params.query ?? '').length)(contextValue, params.variables);
    } catch {
      // graphql-js throws only for arguments it cannot run at all; Yoga answers those.
      return options.toYoga(req, res);
    }
    return thenMaybe(executed, (result) => finish(req, res, params, operation, mediaType, started, result));
  };

  const answer = (req: IncomingMessage, res: ServerResponse, params: GraphQLParams, document: DocumentNode, operation: OperationDefinitionNode, mediaType: string): Promise<void> => {
    let context: MaybePromise<GraphQLContext>;
    try {
      context = options.contextFor(req.headers.authorization);
    } catch {
      // A refused caller: Yoga's pipeline runs the factory again and answers its error (401).
      return options.toYoga(req, res);
    }
    if (isPromise(context)) {
      return context.then(
        (resolved) => run(req, res, params, document, operation, mediaType, resolved),
        () => options.toYoga(req, res),
      );
    }
    return Promise.resolve(run(req, res, params, document, operation, mediaType, context));
  };

  return {
    handle(req, res) {
      if (req.method !== 'POST' || req.url !== options.path) return null;
      if (options.cors && req.headers.origin !== undefined) return null;
      if (!isJsonContentType(req.headers['content-type'])) return null;
      const body = (req as IncomingMessage & { body?: unknown }).body;
      if (!Buffer.isBuffer(body)) return null;
      const mediaType = mediaTypeFor(req.headers.accept);
      if (mediaType === null) return null;
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf-8'));
      } catch {
        return null;
      }
      const params = standardParams(parsed);
      if (!params) return null;
      const document = documentFor(params.query);
      if (!document) return null;
      const operation = getOperationAST(document, params.operationName);
      if (!operation || operation.operation === 'subscription') return null;
      return answer(req, res, params, document, operation, mediaType);
    },
  };
}

/** Writes a single result as Yoga's processRegularResult builds it and @whatwg-node/server sends it. */
function write(res: ServerResponse, result: ExecutionResult, mediaType: string): void {
  const response = processRegularResult(result, CAPTURE, mediaType) as unknown as CapturedResponse;
  // @whatwg-node/server gives up on a response whose client went away.
  if (res.destroyed || res.writableEnded) return;
  // processRegularResult's own headers object, in its order; node-fetch appends the length.
  const headers: Record<string, string | number> = response.init.headers ?? {};
  const status = response.init.status ?? 200;
  if (response.body) headers['content-length'] = Buffer.byteLength(response.body);
  res.writeHead(status, response.init.statusText || STATUS_CODES[status] || 'OK', headers);
  res.end(response.body ?? undefined);
}

/** Yoga's `isPOSTJsonRequest` for `application/json` (its first listed content type only). */
function isJsonContentType(header: string | undefined): boolean {
  if (header === undefined) return false;
  const first = header.split(',')[0];
  return first === 'application/json' || first!.startsWith('application/json;');
}

const PARAM_NAMES = new Set(['query', 'variables', 'operationName', 'extensions']);

const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The body as GraphQL parameters when Yoga's own checks (useCheckGraphQLQueryParams) would pass
 * them unchanged: a JSON object, a string `query`, `variables` and `extensions` objects or
 * absent, a string `operationName` or absent, nothing else. Null for anything else.
 */
function standardParams(body: unknown): (GraphQLParams & { query: string }) | null {
  if (!isPlainObject(body)) return null;
  for (const key in body) {
    if (body[key] !== null && body[key] !== undefined && !PARAM_NAMES.has(key)) return null;
  }
  const { query, variables, operationName, extensions } = body;
  if (typeof query !== 'string') return null;
  if (variables !== undefined && variables !== null && !isPlainObject(variables)) return null;
  if (extensions !== undefined && extensions !== null && !isPlainObject(extensions)) return null;
  if (operationName !== undefined && operationName !== null && typeof operationName !== 'string') return null;
  return body as unknown as GraphQLParams & { query: string };
}

const REGULAR_MEDIA_TYPES = ['application/graphql-response+json', 'application/json'];

/**
 * The media type Yoga's result processors settle on for a single (non-stream) result, when it is
 * one of the regular JSON ones; null when Yoga would pick SSE, multipart or nothing (406). The
 * same walk as graphql-yoga's useResultProcessors and accept.js: the Accept list read from its
 * end, only utf-8, the last match winning, the JSON types listed after the stream types.
 */
export function regularMediaType(accept: string | undefined): string | null {
  const requested: string[] = [];
  for (const entry of (accept || '*/*').replace(/\s/g, '').toLowerCase().split(',')) {
    const [mediaType, ...params] = entry.split(';');
    if (mediaType === undefined) continue;
    const charset = params.find((p) => p.includes('charset=')) || 'charset=utf-8';
    if (charset !== 'charset=utf-8') continue;
    requested.push(mediaType);
  }
  requested.reverse();
  // Yoga tries SSE, then multipart, then these; the last match wins, so a match here wins.
  let chosen: string | null = null;
  for (const asked of requested) {
    for (const type of REGULAR_MEDIA_TYPES) if (mediaTypeMatches(type, asked)) chosen = type;
  }
  return chosen;
}

function mediaTypeMatches(offered: string, asked: string): boolean {
  const [offeredType, offeredSub] = offered.split('/');
  const [type, sub] = asked.split('/');
  return (type === '*' || type === offeredType) && (sub === '*' || sub === offeredSub);
}
