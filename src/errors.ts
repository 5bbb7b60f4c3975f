/**
 * Business errors are data: a service throws `UserError` and the GraphQL layer turns it into
 * `errors { code message field }` on the mutation's payload. Anything else is unexpected and
 * is masked by Yoga (logged with its stack on the server only).
 */
export const ERROR_CODES = [
  'INVALID_ARGUMENT',
  'INVALID_NAME',
  'INVALID_PERCENTAGE',
  'INVALID_STRATEGY',
  'INVALID_CONFIG_FILE',
  'FLAG_NOT_FOUND',
  'FLAG_ALREADY_EXISTS',
  'BREAKER_NOT_FOUND',
  'INVALID_BREAKER_CONFIG',
  'MODULE_NOT_FOUND',
  'MODULE_ALREADY_EXISTS',
  'INVALID_MODULE_PATH',
  'MODULE_FILE_NOT_FOUND',
  'NOT_HOT_RELOADABLE',
  'NOT_CLONEABLE',
  'MODULE_UNAVAILABLE',
  'DEPENDENCY_NOT_FOUND',
  'DEPENDENCY_CYCLE',
  'DEPENDENTS_LOADED',
  'MODULE_HAS_DEPENDENTS',
  'INVALID_MODULE_STATE',
  'MODULE_LOAD_FAILED',
  'SWAP_FAILED',
  'NO_PREVIOUS_VERSION',
  'UNKNOWN_METHOD',
  'RESERVED_METHOD',
  'CIRCUIT_OPEN',
  'CALL_TIMEOUT',
  'CALL_FAILED',
  'RESULT_TOO_LARGE',
  'TEST_RUN_NOT_FOUND',
  'TESTS_FAILED',
  'FORBIDDEN',
  'UNAUTHENTICATED',
  'TOKEN_NOT_FOUND',
  'TOKEN_ALREADY_EXISTS',
  'INVALID_ROLLOUT_CONFIG',
  'INVALID_ROLLOUT_STATE',
  'ROLLOUT_IN_PROGRESS',
  'ROLLOUT_NOT_FOUND',
  'FLAG_IN_USE',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class UserError extends Error {
  override name = 'UserError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly field: string | null = null,
  ) {
    super(message);
  }
}

/** Several field errors found at once (validation), reported together. */
export class UserErrors extends Error {
  override name = 'UserErrors';
  constructor(readonly errors: readonly UserError[]) {
    super(errors.map((e) => e.message).join('; '));
  }
}

export function isUserError(error: unknown): error is UserError | UserErrors {
  return error instanceof UserError || error instanceof UserErrors;
}

export function userErrorsOf(error: UserError | UserErrors): UserError[] {
  return error instanceof UserErrors ? [...error.errors] : [error];
}

/** How much of a caller's value an error message repeats (see `quoteValue`). */
export const MAX_QUOTED_VALUE_CHARS = 100;

/**
 * A caller's value as error messages show it: JSON-quoted (so newlines and quotes cannot forge
 * log lines) and cut to `max` characters with the full length noted. Every message that repeats
 * something a caller sent goes through here, so a 200 KB argument gives a 150-character
 * message, never a 200 KB one for the sanitizer, the logs and the client.
 */
export function quoteValue(value: unknown, max = MAX_QUOTED_VALUE_CHARS): string {
  let text: string;
  try {
    text = typeof value === 'string' ? value : String(value);
  } catch {
    text = '(unprintable)';
  }
  if (text.length <= max) return JSON.stringify(text);
  let end = max;
  // Never split a surrogate pair.
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${JSON.stringify(`${text.slice(0, end)}…`)} (${text.length} characters)`;
}
