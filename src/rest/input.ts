/** Converting the seeds' spellings (lower-case enums, snake_case context keys) to domain values. */
import { UserError, type ErrorCode } from '../errors.js';
import type { EvaluationContext } from '../flags/engine.js';

/** `all_on`, `ALL_ON` or `All_On` to `ALL_ON`; anything else is refused with `code`. */
export function enumValue<T extends string>(raw: unknown, values: readonly T[], code: ErrorCode, field: string): T {
  const upper = typeof raw === 'string' ? raw.trim().toUpperCase() : '';
  const found = values.find((v) => v === upper);
  if (!found) {
    throw new UserError(code, `"${field}" must be one of ${values.map((v) => v.toLowerCase()).join(', ')}; got ${JSON.stringify(raw)}`, field);
  }
  return found;
}

const CONTEXT_KEYS: Record<string, keyof Omit<EvaluationContext, 'attributes'>> = {
  session_id: 'sessionId',
  sessionId: 'sessionId',
  user_id: 'userId',
  userId: 'userId',
  symbol: 'symbol',
  system: 'system',
};

/**
 * The seed's `?context={"session_id":"abc123"}`: a JSON object. `session_id`, `user_id`,
 * `symbol` and `system` (camelCase accepted too) are the context's own fields, with string
 * values; every other key is a free attribute, as in GraphQL's `attributes`.
 */
export function contextFromQuery(raw: string | undefined): EvaluationContext {
  if (raw === undefined || raw.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new UserError('INVALID_ARGUMENT', '"context" must be a JSON object, e.g. {"session_id":"abc123"}', 'context');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UserError('INVALID_ARGUMENT', '"context" must be a JSON object, e.g. {"session_id":"abc123"}', 'context');
  }
  const context: EvaluationContext = {};
  const attributes: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed as Record<string, unknown>)) {
    const own = CONTEXT_KEYS[key];
    if (!own) {
      attributes[key] = value;
      continue;
    }
    if (value !== null && typeof value !== 'string') throw new UserError('INVALID_ARGUMENT', `"context.${key}" must be a string`, 'context');
    context[own] = value;
  }
  if (Object.keys(attributes).length > 0) context.attributes = attributes;
  return context;
}
