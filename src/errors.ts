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
