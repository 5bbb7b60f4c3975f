/**
 * Typed errors of the module runtime. Module code runs on the other side of a thread boundary,
 * so what it throws travels as a `RemoteError` ({ name, message, code?, stack? }): the message
 * and code always survive, and the host wraps them in a `ModuleCallError`.
 */

import { clipText } from '../../text.js';

export const MODULE_LOAD_ERROR_CODES = [
  /** The file could not be imported (syntax error, missing import, top-level throw). */
  'MODULE_LOAD_FAILED',
  /** The file imported but exports no definition with a `create` function, or a malformed one. */
  'MODULE_INVALID_DEFINITION',
  /** `create(ctx)` threw, rejected or returned something other than an object. */
  'MODULE_INIT_FAILED',
  /** Starting the worker and importing the file took longer than `loadTimeoutMs`. */
  'MODULE_LOAD_TIMEOUT',
  /** `create(ctx)` took longer than `initTimeoutMs` (the worker was terminated). */
  'MODULE_INIT_TIMEOUT',
  /** The worker hit its heap limit (`maxOldGenerationSizeMb`) while loading. */
  'MODULE_OUT_OF_MEMORY',
  /** The worker died while loading for another reason (uncaught error, process.exit). */
  'MODULE_WORKER_CRASHED',
  /** `terminate()` or `dispose()` was called before the version was ready. */
  'MODULE_LOAD_ABORTED',
] as const;
export type ModuleLoadErrorCode = (typeof MODULE_LOAD_ERROR_CODES)[number];

export const MODULE_CALL_ERROR_CODES = [
  /** The instance has no such method. */
  'UNKNOWN_METHOD',
  /** A lifecycle name (`create`, `healthCheck`, `dispose`, `exportState`, `importState`). */
  'RESERVED_METHOD',
  /** No `tests` entry with that name. */
  'UNKNOWN_TEST',
  /** No answer within the call timeout. */
  'CALL_TIMEOUT',
  /** The module code threw or rejected; `remote` holds its error. */
  'CALL_FAILED',
  /** The argument or the result cannot cross the thread boundary (functions, class instances with private state...). */
  'NOT_CLONEABLE',
  /** The result is larger than `maxResultBytes`; it was dropped where it was produced. */
  'RESULT_TOO_LARGE',
  /** The version was disposed or terminated (by the host, or because it stopped responding). */
  'MODULE_TERMINATED',
  /** The worker died on its own (uncaught error, out of memory, process.exit). */
  'MODULE_CRASHED',
] as const;
export type ModuleCallErrorCode = (typeof MODULE_CALL_ERROR_CODES)[number];

/** An error as it crosses the thread boundary. */
export interface RemoteError {
  name: string;
  message: string;
  code?: string;
  stack?: string;
}

/**
 * How much of a text written by module code (an error's message or stack, a log line, a test's
 * error) passes the runtime boundary: enough to read, small enough that a module throwing a
 * 10 MB message cannot make every client, log line and stored error carry it.
 */
export const MAX_MODULE_TEXT_CHARS = 4096;
/** Error names and codes are identifiers, not prose. */
const MAX_MODULE_NAME_CHARS = 200;

/**
 * `text` cut to at most `max` characters, saying how long it was. A clipped text fits in `max`,
 * so clipping it again (worker, then host) keeps it as it is.
 */
export function clipModuleText(text: string, max: number = MAX_MODULE_TEXT_CHARS): string {
  return clipText(text, max);
}

/** A `RemoteError` whose every field is bounded (see `MAX_MODULE_TEXT_CHARS`). */
export function clipRemoteError(remote: RemoteError): RemoteError {
  const clipped: RemoteError = { name: clipModuleText(remote.name, MAX_MODULE_NAME_CHARS), message: clipModuleText(remote.message) };
  if (remote.code !== undefined) clipped.code = clipModuleText(remote.code, MAX_MODULE_NAME_CHARS);
  if (remote.stack !== undefined) clipped.stack = clipModuleText(remote.stack);
  return clipped;
}

/** Turns anything thrown into a `RemoteError`, keeping the message (clipped) whatever was thrown. */
export function toRemoteError(error: unknown): RemoteError {
  if (error instanceof Error) {
    const remote: RemoteError = { name: String(error.name), message: String(error.message) };
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' || typeof code === 'number') remote.code = String(code);
    if (typeof error.stack === 'string') remote.stack = error.stack;
    return clipRemoteError(remote);
  }
  if (typeof error === 'object' && error !== null) {
    const o = error as { name?: unknown; message?: unknown; code?: unknown };
    const remote: RemoteError = {
      name: typeof o.name === 'string' ? o.name : 'Error',
      message: typeof o.message === 'string' ? o.message : safeJson(error),
    };
    if (typeof o.code === 'string' || typeof o.code === 'number') remote.code = String(o.code);
    return clipRemoteError(remote);
  }
  return { name: 'Error', message: clipModuleText(String(error)) };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** "SyntaxError: Unexpected token" for typed errors, the bare message for plain ones. */
export function describeRemoteError(remote: RemoteError): string {
  return remote.name && remote.name !== 'Error' && !remote.message.startsWith(remote.name) ? `${remote.name}: ${remote.message}` : remote.message;
}

/** Rebuilds an `Error` from a `RemoteError` for code on the receiving side (a module awaiting a dependency). */
export function fromRemoteError(remote: RemoteError): Error & { code?: string } {
  const error: Error & { code?: string } = new Error(remote.message);
  error.name = remote.name;
  if (remote.code !== undefined) error.code = remote.code;
  if (remote.stack !== undefined) error.stack = remote.stack;
  return error;
}

export class ModuleLoadError extends Error {
  override name = 'ModuleLoadError';
  constructor(
    readonly code: ModuleLoadErrorCode,
    message: string,
    readonly moduleName: string,
    readonly version: string,
    /** The module's own error, when there was one (import or create failure). */
    readonly remote: RemoteError | null = null,
  ) {
    super(message);
  }
}

export class ModuleCallError extends Error {
  override name = 'ModuleCallError';
  constructor(
    readonly code: ModuleCallErrorCode,
    message: string,
    readonly moduleName: string,
    readonly version: string,
    /** The method (or lifecycle operation) that was called. */
    readonly method: string,
    /** The module's own error for CALL_FAILED. */
    readonly remote: RemoteError | null = null,
  ) {
    super(message);
  }

  /** The `code` the module attached to its error (e.g. 'CIRCUIT_OPEN' from a breaker inside it). */
  get remoteCode(): string | null {
    return this.remote?.code ?? null;
  }
}

export function isModuleLoadError(error: unknown): error is ModuleLoadError {
  return error instanceof ModuleLoadError;
}

export function isModuleCallError(error: unknown): error is ModuleCallError {
  return error instanceof ModuleCallError;
}
