/**
 * Business errors as HTTP statuses: 400 invalid input, 401/403 auth, 404 an unknown flag,
 * breaker, module or run, 409 a state change the current state refuses. Every `ErrorCode` is
 * decided here (the Record type makes a new code a compile error until it is placed).
 */
import type { ErrorCode } from '../errors.js';

export const STATUS_OF_CODE: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  INVALID_NAME: 400,
  INVALID_PERCENTAGE: 400,
  INVALID_STRATEGY: 400,
  INVALID_BREAKER_CONFIG: 400,
  INVALID_MODULE_PATH: 400,
  MODULE_FILE_NOT_FOUND: 400,
  DEPENDENCY_CYCLE: 400,
  UNKNOWN_METHOD: 400,
  RESERVED_METHOD: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  FLAG_NOT_FOUND: 404,
  BREAKER_NOT_FOUND: 404,
  MODULE_NOT_FOUND: 404,
  TEST_RUN_NOT_FOUND: 404,
  TOKEN_NOT_FOUND: 404,
  FLAG_ALREADY_EXISTS: 409,
  MODULE_ALREADY_EXISTS: 409,
  TOKEN_ALREADY_EXISTS: 409,
  NOT_HOT_RELOADABLE: 409,
  NOT_CLONEABLE: 409,
  MODULE_UNAVAILABLE: 409,
  DEPENDENCY_NOT_FOUND: 409,
  DEPENDENTS_LOADED: 409,
  MODULE_HAS_DEPENDENTS: 409,
  INVALID_MODULE_STATE: 409,
  MODULE_LOAD_FAILED: 409,
  SWAP_FAILED: 409,
  NO_PREVIOUS_VERSION: 409,
  TESTS_FAILED: 409,
  // Rollouts (no seed route drives one; placed so swap/unload refusals answer 409).
  INVALID_ROLLOUT_CONFIG: 400,
  ROLLOUT_NOT_FOUND: 404,
  INVALID_ROLLOUT_STATE: 409,
  ROLLOUT_IN_PROGRESS: 409,
  FLAG_IN_USE: 409,
  // The flags file on the server is invalid: the request was fine, the server's state refuses it.
  INVALID_CONFIG_FILE: 409,
  // Invocation outcomes (no seed route invokes modules; placed for completeness).
  CIRCUIT_OPEN: 503,
  CALL_TIMEOUT: 504,
  CALL_FAILED: 502,
  RESULT_TOO_LARGE: 502,
};

/** Codes only the REST layer answers with (the request never reached a service). */
export type RestOnlyCode = 'MALFORMED_JSON' | 'ROUTE_NOT_FOUND' | 'METHOD_NOT_ALLOWED' | 'INTERNAL_SERVER_ERROR';

/** `modulePath` -> `module_path`: services name camelCase fields, the REST API snake_case ones. */
export function snakeField(field: string | null): string | null {
  return field === null ? null : field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
