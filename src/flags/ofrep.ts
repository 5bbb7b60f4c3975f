/**
 * OpenFeature Remote Evaluation Protocol (OFREP) <-> Helios, as pure functions: no I/O, no
 * HTTP. The transport (src/transport/ofrep.ts) parses the request with `parseOfrepRequest`,
 * evaluates with the flags service (the same in-memory engine as GraphQL's `evaluateFlag`) and
 * answers with `ofrepAnswer`.
 *
 * Context (the request's `context` object):
 *   targetingKey                      -> sessionId (the first value `default` stickiness reads,
 *                                        so it is the sticky value of every `default` flag), and
 *                                        attributes.targetingKey (so a whitelist can name it)
 *   sessionId, userId, symbol, system -> the same named fields (strings; null = absent)
 *   any other key                     -> attributes[key], value as given
 * `sessionId` and `targetingKey` both given and different is INVALID_CONTEXT: one of them would
 * silently not be the sticky value.
 *
 * Result:
 *   value = enabled (boolean); variant "on" / "off"; metadata { strategy, percentage?, bucket? }
 *   reason DISABLED, STATIC, TARGETING_MATCH, SPLIT, DEFAULT -> the OFREP reason of that name
 *   FLAG_NOT_FOUND                    -> 404 errorCode FLAG_NOT_FOUND
 *   RANDOM (no sticky value)          -> 400 errorCode TARGETING_KEY_MISSING: a remote answer
 *                                        drawn at random per request could not be cached or
 *                                        compared, so OFREP asks for the key instead (as GO
 *                                        Feature Flag does for its splits)
 * OFREP's UNKNOWN reason is never sent: every Helios reason has an exact counterpart above.
 */
import type { EvaluationContext, EvaluationReason, FlagEvaluation } from './engine.js';

export const OFREP_ERROR_CODES = ['PARSE_ERROR', 'INVALID_CONTEXT', 'TARGETING_KEY_MISSING', 'FLAG_NOT_FOUND', 'GENERAL'] as const;
export type OfrepErrorCode = (typeof OFREP_ERROR_CODES)[number];

export type OfrepReason = 'STATIC' | 'TARGETING_MATCH' | 'SPLIT' | 'DISABLED' | 'DEFAULT' | 'UNKNOWN';

/** Helios reasons that are a successful evaluation, and their OFREP names. */
export const OFREP_REASON_OF: Readonly<Record<Exclude<EvaluationReason, 'RANDOM' | 'FLAG_NOT_FOUND'>, OfrepReason>> = {
  DISABLED: 'DISABLED',
  STATIC: 'STATIC',
  TARGETING_MATCH: 'TARGETING_MATCH',
  SPLIT: 'SPLIT',
  DEFAULT: 'DEFAULT',
};

export interface OfrepSuccess {
  key: string;
  value: boolean;
  reason: OfrepReason;
  variant: 'on' | 'off';
  metadata: Record<string, string | number | boolean>;
}

export interface OfrepFailure {
  key: string;
  errorCode: OfrepErrorCode;
  errorDetails: string;
}

/** A whole-request failure (bulk), or one without a flag key. */
export interface OfrepRequestFailure {
  errorCode: OfrepErrorCode;
  errorDetails: string;
}

export type OfrepRequest =
  | { ok: true; context: EvaluationContext; /** The `context` object as sent ({} when absent). */ raw: Record<string, unknown> }
  | ({ ok: false } & OfrepRequestFailure);

const NAMED_FIELDS = ['sessionId', 'userId', 'symbol', 'system'] as const;
type NamedField = (typeof NAMED_FIELDS)[number];

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const fail = (errorCode: OfrepErrorCode, errorDetails: string): OfrepRequest => ({ ok: false, errorCode, errorDetails });

/** An empty body is an empty context; anything else must be `{"context": {...}}` (context optional). */
export function parseOfrepRequest(body: Uint8Array | string | null | undefined): OfrepRequest {
  const text = typeof body === 'string' ? body : body ? Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8') : '';
  if (text.trim() === '') return { ok: true, context: {}, raw: {} };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return fail('PARSE_ERROR', `The request body is not valid JSON: ${(error as Error).message}`);
  }
  if (!isPlainObject(parsed)) return fail('PARSE_ERROR', 'The request body must be a JSON object like {"context": {...}}');
  const context = parsed.context;
  if (context === undefined || context === null) return { ok: true, context: {}, raw: {} };
  if (!isPlainObject(context)) return fail('INVALID_CONTEXT', '"context" must be a JSON object');
  return toHeliosContext(context);
}

/** The mapping described at the top of this file. */
export function toHeliosContext(context: Record<string, unknown>): OfrepRequest {
  const named: Partial<Record<NamedField, string>> = {};
  const attributes: Record<string, unknown> = {};
  let targetingKey: string | null = null;
  for (const [key, value] of Object.entries(context)) {
    if (key === 'targetingKey') {
      if (value === null || value === undefined) continue;
      if (typeof value !== 'string') return fail('INVALID_CONTEXT', `"targetingKey" must be a string, got ${describe(value)}`);
      if (value !== '') targetingKey = value;
      attributes.targetingKey = value;
    } else if ((NAMED_FIELDS as readonly string[]).includes(key)) {
      if (value === null || value === undefined) continue;
      if (typeof value !== 'string') return fail('INVALID_CONTEXT', `"${key}" must be a string, got ${describe(value)}`);
      named[key as NamedField] = value;
    } else {
      attributes[key] = value;
    }
  }
  if (targetingKey !== null && named.sessionId !== undefined && named.sessionId !== '' && named.sessionId !== targetingKey) {
    return fail(
      'INVALID_CONTEXT',
      '"targetingKey" and "sessionId" differ: Helios uses the targeting key as the session id (the sticky value of default flags); send one, or the same value in both',
    );
  }
  const helios: EvaluationContext = {
    sessionId: targetingKey ?? named.sessionId ?? null,
    userId: named.userId ?? null,
    symbol: named.symbol ?? null,
    system: named.system ?? null,
    attributes: Object.keys(attributes).length > 0 ? attributes : null,
  };
  return { ok: true, context: helios, raw: context };
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

export type OfrepAnswer = { status: 200; body: OfrepSuccess } | { status: 400 | 404; body: OfrepFailure };

/**
 * One evaluation as OFREP sees it. `stickiness` is the flag's (for the TARGETING_KEY_MISSING
 * message); unknown flags pass null.
 */
export function ofrepAnswer(evaluation: FlagEvaluation, stickiness: string | null): OfrepAnswer {
  const key = evaluation.flag;
  switch (evaluation.reason) {
    case 'FLAG_NOT_FOUND':
      return { status: 404, body: { key, errorCode: 'FLAG_NOT_FOUND', errorDetails: `Feature flag "${key}" does not exist` } };
    case 'RANDOM': {
      const needs = stickiness === null || stickiness === 'default' || stickiness === ''
        ? '"targetingKey" (or "sessionId" or "userId")'
        : `"${stickiness}"`;
      return {
        status: 400,
        body: { key, errorCode: 'TARGETING_KEY_MISSING', errorDetails: `Feature flag "${key}" splits on ${needs}, which the context does not have` },
      };
    }
    default: {
      const metadata: Record<string, string | number | boolean> = {};
      if (evaluation.strategy !== null) metadata.strategy = evaluation.strategy;
      if (evaluation.percentage !== null) metadata.percentage = evaluation.percentage;
      if (evaluation.bucket !== null) metadata.bucket = evaluation.bucket;
      return {
        status: 200,
        body: {
          key,
          value: evaluation.enabled,
          reason: OFREP_REASON_OF[evaluation.reason],
          variant: evaluation.enabled ? 'on' : 'off',
          metadata,
        },
      };
    }
  }
}

/** The bulk answer's `flags`: every flag, successes and per-flag failures side by side. */
export function ofrepBulkFlags(evaluations: readonly FlagEvaluation[], stickinessOf: (flag: string) => string | null): Array<OfrepSuccess | OfrepFailure> {
  return evaluations.map((e) => ofrepAnswer(e, stickinessOf(e.flag)).body);
}

/**
 * `If-None-Match` against our ETag (RFC 9110 weak comparison: `W/` ignored; `*` matches
 * anything), for a list like `"a", W/"b"`.
 */
export function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  const ours = etag.replace(/^W\//, '');
  for (const part of header.split(',')) {
    const tag = part.trim();
    if (tag === '*') return true;
    if (tag.replace(/^W\//, '') === ours) return true;
  }
  return false;
}
