/** Input rules for flags, applied once at the edge before values reach the engine. */
import { quoteValue, UserError } from '../errors.js';
import { ROLLOUT_STRATEGIES, type RolloutStrategy } from './engine.js';

export const MAX_DESCRIPTION_LENGTH = 1000;
export const MAX_WHITELIST_VALUE_LENGTH = 200;
export const MAX_WHITELIST_VALUES = 10_000;
/** Seed aliases for whitelist attributes ("users", "symbols", "systems") map onto context fields. */
const ATTRIBUTE_ALIASES: Record<string, string> = {
  users: 'userId',
  user: 'userId',
  user_id: 'userId',
  symbols: 'symbol',
  systems: 'system',
  sessions: 'sessionId',
  session_id: 'sessionId',
};
const ATTRIBUTE_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;

/** Percentages are 0..100 with a resolution of 0.01 (the bucket size); finer input is rounded. */
export function validatePercentage(value: number, field = 'percentage'): number {
  if (!Number.isFinite(value) || value < 0 || value > 100) {
    throw new UserError('INVALID_PERCENTAGE', `${field} must be a number between 0 and 100 (got ${value})`, field);
  }
  return Math.round(value * 100) / 100;
}

export function parseStrategy(value: string, field = 'strategy'): RolloutStrategy {
  const upper = value.trim().toUpperCase();
  if ((ROLLOUT_STRATEGIES as readonly string[]).includes(upper)) return upper as RolloutStrategy;
  throw new UserError(
    'INVALID_STRATEGY',
    `Unknown strategy ${quoteValue(value)}: expected one of ${ROLLOUT_STRATEGIES.join(', ')}`,
    field,
  );
}

export function normalizeAttribute(value: string, field = 'attribute'): string {
  const trimmed = value.trim();
  const attribute = ATTRIBUTE_ALIASES[trimmed] ?? trimmed;
  if (!ATTRIBUTE_PATTERN.test(attribute)) {
    throw new UserError(
      'INVALID_ARGUMENT',
      `Attribute ${quoteValue(value)} must be a context field (sessionId, userId, symbol, system) or an attribute name of letters, digits, "_", "." or "-"`,
      field,
    );
  }
  return attribute;
}

export function validateWhitelistValue(value: string, field = 'value'): string {
  if (value.length === 0) throw new UserError('INVALID_ARGUMENT', 'Whitelist value must not be empty', field);
  if (value.length > MAX_WHITELIST_VALUE_LENGTH) {
    throw new UserError('INVALID_ARGUMENT', `Whitelist value must be at most ${MAX_WHITELIST_VALUE_LENGTH} characters`, field);
  }
  return value;
}

export function validateDescription(value: string, field = 'description'): string {
  if (value.length > MAX_DESCRIPTION_LENGTH) {
    throw new UserError('INVALID_ARGUMENT', `Description must be at most ${MAX_DESCRIPTION_LENGTH} characters`, field);
  }
  return value;
}

export function validateStickiness(value: string, field = 'stickiness'): string {
  return value === 'default' ? value : normalizeAttribute(value, field);
}

export const MAX_GRADUAL_DURATION_SECONDS = 366 * 24 * 3600;

export function validateDuration(value: number, field = 'durationSeconds'): number {
  if (!Number.isInteger(value) || value < 1 || value > MAX_GRADUAL_DURATION_SECONDS) {
    throw new UserError(
      'INVALID_ARGUMENT',
      `${field} must be a whole number of seconds between 1 and ${MAX_GRADUAL_DURATION_SECONDS}`,
      field,
    );
  }
  return value;
}
