/**
 * Limits on hostile requests. Every check is a plain function so HTTP (Yoga) and graphql-ws run
 * exactly the same ones: Yoga's HTTP-level plugins never see WebSocket operations.
 *
 * Where each limit is enforced:
 * - request body bytes: `guardRequestBody` (request-body.ts) before Yoga reads the body, and
 *   Yoga's own `maxRequestBodySize` as a second fence;
 * - batch size: Yoga's `batching: { limit }`;
 * - tokens: the parser (`maxTokens`), so a huge document is never turned into an AST;
 * - depth, aliases, directives, cost: `checkDocument` (document.ts) before graphql-js's own
 *   validation, whose overlapping-fields rule is the expensive part for hostile documents;
 * - WebSocket connections per client address and operations per connection: connections.ts.
 *
 * Every violation is reported as a `GraphQLError` with `extensions.code`; none is thrown out of
 * a validation step, because a throw there makes graphql-ws close the whole socket.
 */

export const LIMIT_ERROR_CODES = [
  'QUERY_TOO_DEEP',
  'TOO_MANY_ALIASES',
  'TOO_MANY_DIRECTIVES',
  'TOO_MANY_TOKENS',
  'QUERY_TOO_COMPLEX',
  'TOO_MANY_SUBSCRIPTIONS',
  'TOO_MANY_CONNECTIONS',
  'REQUEST_ENTITY_TOO_LARGE',
] as const;
export type LimitErrorCode = (typeof LIMIT_ERROR_CODES)[number];

/** What `checkDocument` and the parser look at. */
export interface DocumentLimits {
  /** Nested field levels; `{ a { b } }` is 2. Fragments add no level of their own. */
  maxDepth: number;
  /** Aliased fields, with fragments expanded where they are spread. */
  maxAliases: number;
  /** Directive uses anywhere in the operation, fragments expanded. */
  maxDirectives: number;
  /** Lexical tokens in the source (graphql's parser option `maxTokens`). */
  maxTokens: number;
  /** See document.ts: every field costs 1; a list field multiplies its selection by `listFactor`. */
  maxCost: number;
  listFactor: number;
}

export interface HardeningLimits extends DocumentLimits {
  /** Operations in one batched HTTP request (Yoga `batching: { limit }`). */
  maxBatchSize: number;
  /** Bytes of one HTTP request body. */
  maxRequestBodyBytes: number;
  /** Open WebSockets per client address. */
  maxWsConnectionsPerClient: number;
  /** Operations running at once on one WebSocket (subscriptions and in-flight queries). */
  maxOperationsPerConnection: number;
}

/**
 * Generous for every operation Helios's own clients send (GraphiQL's introspection query is
 * depth 13 when counted naively, which is why introspection is measured differently, see
 * document.ts), and low enough that one request cannot occupy the event loop for long.
 */
export const DEFAULT_HARDENING_LIMITS: Readonly<HardeningLimits> = Object.freeze({
  maxDepth: 12,
  maxAliases: 30,
  maxDirectives: 20,
  maxTokens: 2_000,
  maxCost: 5_000,
  listFactor: 10,
  maxBatchSize: 10,
  maxRequestBodyBytes: 256 * 1024,
  maxWsConnectionsPerClient: 20,
  maxOperationsPerConnection: 50,
});
