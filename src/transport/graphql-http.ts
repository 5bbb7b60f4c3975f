/**
 * GraphQL over HTTP, the common case, without Yoga's Fetch-API layer. Yoga's node adapter turns
 * every request into a WHATWG Request (URL, Headers, an AbortController, a body stream) and every
 * answer into a Response before writing it back; for a small query that costs as much as the
 * execution. This lane answers `POST /graphql` with a JSON body straight from node:http and runs
 * the rest through Yoga's own code: `yoga.handleParams` (the envelop plugins, the context
 * factory and its token check, execution, error masking and logging) and
 * `processRegularResult` (status code, content type, the JSON body). Only the HTTP reading and
 * writing around them is done here, as Yoga does it, so the answer is the same, byte for byte.
 *
 * Everything else is left to Yoga, unchanged (`handle` returns null): other methods and paths,
 * other content types, a body that is not a JSON object of the standard parameters, batches,
 * subscriptions, an Accept header that picks a stream (SSE, multipart) or nothing, a browser
 * Origin while CORS is on, and any document that does not parse, validate or name an operation
 * (Yoga's error answers for those depend on its request object). Whether a document qualifies
 * is decided once per query text; what is cached is the document, never an answer.
 */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { getOperationAST, type DocumentNode, type ExecutionResult } from 'graphql';
import { processRegularResult, type GraphQLParams, type YogaServerInstance } from 'graphql-yoga';
import type { GraphQLContext } from '../graphql/context.js';
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

  const answer = async (req: IncomingMessage, res: ServerResponse, params: GraphQLParams, mediaType: string): Promise<void> => {
    yoga.logger.debug('Parsing request to extract GraphQL parameters');
    // The server context Yoga's node adapter builds ({ req, res, waitUntil }); Yoga's handler
    // adds `params` (and its Request, which nothing here reads: the token comes from `req`).
    // No Request is passed (`handleParams` then adds only `params`): of Yoga's hooks, the only
    // ones that read it (usePreventMutationViaGET on parse) matter for GET and for a document
    // without a runnable operation, both left to Yoga above.
    const context = { req, res, waitUntil: yoga.waitUntil };
    const result = await yoga.handleParams({ request: undefined as unknown as Request, params, context: context as never });
    const response = processRegularResult(result as ExecutionResult, CAPTURE, mediaType) as unknown as CapturedResponse;
    // @whatwg-node/server gives up on a response whose client went away.
    if (res.destroyed || res.writableEnded) return;
    // processRegularResult's own headers object, in its order; node-fetch appends the length.
    const headers: Record<string, string | number> = response.init.headers ?? {};
    const status = response.init.status ?? 200;
    if (response.body) headers['content-length'] = Buffer.byteLength(response.body);
    res.writeHead(status, response.init.statusText || STATUS_CODES[status] || 'OK', headers);
    res.end(response.body ?? undefined);
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
      return answer(req, res, params, mediaType);
    },
  };
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
