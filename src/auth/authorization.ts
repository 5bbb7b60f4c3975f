/**
 * Who is calling, decided the same way for HTTP (`Authorization` header) and graphql-ws (the
 * `connection_init` payload `{ authorization: "Bearer <token>" }`, or per operation in the
 * subscribe payload's `extensions.headers`, as GraphiQL sends its Headers tab):
 * - no credentials: the anonymous caller (VIEWER) when anonymous access is on, refused otherwise;
 * - credentials that are malformed, unknown or revoked: refused, never downgraded to anonymous,
 *   so a client with a broken token finds out at once instead of silently losing rights.
 */
import { UserError } from '../errors.js';
import type { AnonymousMode } from './anonymous.js';
import { roleAllows, type Role } from './roles.js';

/** The actor recorded for callers without a token (they can only read, so it is rarely seen). */
export const ANONYMOUS_ACTOR = 'anonymous';
/** Longer headers are refused before any work is done on them. */
const MAX_AUTHORIZATION_LENGTH = 1024;

export interface AuthenticatedToken {
  name: string;
  role: Role;
}

export interface Caller {
  /** The token's name (recorded as the audit actor) or `anonymous`. */
  name: string;
  role: Role;
  anonymous: boolean;
}

export type AuthenticationFailure = 'MISSING_TOKEN' | 'MALFORMED_AUTHORIZATION' | 'INVALID_TOKEN';

export type CallerResolution =
  | { ok: true; caller: Caller }
  | { ok: false; code: 'UNAUTHENTICATED'; reason: AuthenticationFailure; message: string };

export class MalformedAuthorizationError extends Error {
  override name = 'MalformedAuthorizationError';
  readonly code = 'UNAUTHENTICATED' as const;
}

/**
 * `Bearer <token>` (scheme case-insensitive) to the token; null when there is no header at all.
 * Throws `MalformedAuthorizationError` for anything else (another scheme, no token, spaces).
 */
export function parseAuthorization(header: string | undefined | null): string | null {
  if (header === undefined || header === null) return null;
  const value = header.trim();
  if (value === '') return null;
  if (value.length > MAX_AUTHORIZATION_LENGTH) {
    throw new MalformedAuthorizationError('Authorization header is too long');
  }
  const match = /^(\S+)\s+(\S+)$/.exec(value);
  if (!match || match[1]!.toLowerCase() !== 'bearer') {
    throw new MalformedAuthorizationError('Authorization must be "Bearer <token>"');
  }
  const token = match[2]!;
  // Visible ASCII only: anything else cannot be a Helios token or a sane HELIOS_ADMIN_TOKEN.
  if (!/^[\x21-\x7e]+$/.test(token)) throw new MalformedAuthorizationError('The bearer token contains invalid characters');
  return token;
}

/**
 * The `authorization` entry of a graphql-ws `connection_init` payload (`Authorization` is
 * accepted too); null when absent. A non-string value is malformed.
 */
export function authorizationFromConnectionParams(params: unknown): string | null {
  if (params === null || params === undefined || typeof params !== 'object') return null;
  const record = params as Record<string, unknown>;
  const value = record.authorization ?? record.Authorization;
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') throw new MalformedAuthorizationError('connection_init "authorization" must be a string');
  return value;
}

/**
 * What `authenticate` answers: synchronously from memory on every request's path, a promise only
 * when the token index must first be (re)loaded (see TokenService.authenticate). Everything below
 * passes that shape through: synchronous in, synchronous out.
 */
export type Authentication = AuthenticatedToken | null | Promise<AuthenticatedToken | null>;

export interface CallerResolver {
  authenticate(token: string | null): Authentication;
}

/** A resolver that never answers with a promise (test doubles): the functions below stay synchronous. */
export interface SyncCallerResolver extends CallerResolver {
  authenticate(token: string | null): AuthenticatedToken | null;
}

export type MaybePromise<T> = T | Promise<T>;

export function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/** `fn(value)`, after `value` settles when it is a promise: keeps synchronous answers synchronous. */
export function thenMaybe<T, U>(value: MaybePromise<T>, fn: (v: T) => U): MaybePromise<U> {
  return isPromise(value) ? value.then(fn) : fn(value);
}

/**
 * Turns an Authorization value into a caller or the reason it was refused; never throws for
 * bad credentials (a promise from the resolver may reject if the token store cannot be read).
 */
export function resolveCaller(authorization: string | null | undefined, tokens: SyncCallerResolver, anonymous: AnonymousMode): CallerResolution;
export function resolveCaller(authorization: string | null | undefined, tokens: CallerResolver, anonymous: AnonymousMode): MaybePromise<CallerResolution>;
export function resolveCaller(
  authorization: string | null | undefined,
  tokens: CallerResolver,
  anonymous: AnonymousMode,
): MaybePromise<CallerResolution> {
  let token: string | null;
  try {
    token = parseAuthorization(authorization);
  } catch (error) {
    const message = error instanceof MalformedAuthorizationError ? error.message : 'Invalid Authorization header';
    return { ok: false, code: 'UNAUTHENTICATED', reason: 'MALFORMED_AUTHORIZATION', message };
  }
  if (token === null) {
    if (anonymous === 'viewer') return { ok: true, caller: { name: ANONYMOUS_ACTOR, role: 'VIEWER', anonymous: true } };
    return { ok: false, code: 'UNAUTHENTICATED', reason: 'MISSING_TOKEN', message: 'A bearer token is required' };
  }
  return thenMaybe(tokens.authenticate(token), (found): CallerResolution => {
    if (!found) return { ok: false, code: 'UNAUTHENTICATED', reason: 'INVALID_TOKEN', message: 'Invalid or revoked token' };
    return { ok: true, caller: { name: found.name, role: found.role, anonymous: false } };
  });
}

/**
 * For graphql-ws `onConnect`: the caller behind a `connection_init` payload, or null to refuse
 * the socket (graphql-ws then closes it with 4403 Forbidden).
 */
export function callerOfConnection(params: unknown, tokens: SyncCallerResolver, anonymous: AnonymousMode): Caller | null;
export function callerOfConnection(params: unknown, tokens: CallerResolver, anonymous: AnonymousMode): MaybePromise<Caller | null>;
export function callerOfConnection(params: unknown, tokens: CallerResolver, anonymous: AnonymousMode): MaybePromise<Caller | null> {
  let authorization: string | null;
  try {
    authorization = authorizationFromConnectionParams(params);
  } catch {
    return null;
  }
  return thenMaybe(resolveCaller(authorization, tokens, anonymous), (resolution) => (resolution.ok ? resolution.caller : null));
}

/**
 * Throws a `UserError` when `caller` may not do what needs `need`: UNAUTHENTICATED for the
 * anonymous caller (a token would help), FORBIDDEN for a token whose role is too low.
 */
export function requireRole(caller: Caller | null, need: Role): void {
  if (caller && roleAllows(caller.role, need)) return;
  if (!caller || caller.anonymous) {
    throw new UserError('UNAUTHENTICATED', `This operation needs a token with the ${need} role`);
  }
  throw new UserError('FORBIDDEN', `Token "${caller.name}" has the ${caller.role} role; this operation needs ${need}`);
}

/**
 * For graphql-ws `onConnect`. Like `callerOfConnection`, except that a socket with no
 * credentials at all while anonymous access is off is accepted as `UNAUTHENTICATED`: it may
 * still run operations that carry their own token (see `resolveOperationCaller`), which is how
 * GraphiQL sends its Headers tab. Null refuses the socket (malformed, unknown or revoked token).
 */
export function connectionCaller(params: unknown, tokens: SyncCallerResolver, anonymous: AnonymousMode): Caller | 'UNAUTHENTICATED' | null;
export function connectionCaller(params: unknown, tokens: CallerResolver, anonymous: AnonymousMode): MaybePromise<Caller | 'UNAUTHENTICATED' | null>;
export function connectionCaller(params: unknown, tokens: CallerResolver, anonymous: AnonymousMode): MaybePromise<Caller | 'UNAUTHENTICATED' | null> {
  return thenMaybe(callerOfConnection(params, tokens, anonymous), (caller) => {
    if (caller) return caller;
    try {
      return parseAuthorization(authorizationFromConnectionParams(params)) === null ? 'UNAUTHENTICATED' : null;
    } catch {
      return null;
    }
  });
}

/**
 * The `Authorization` entry (any case) of a graphql-ws operation's `extensions.headers`, where
 * GraphiQL puts the JSON of its Headers tab; null when absent. A non-string value is malformed.
 */
export function authorizationFromOperationExtensions(extensions: unknown): string | null {
  if (extensions === null || typeof extensions !== 'object') return null;
  const headers = (extensions as Record<string, unknown>).headers;
  if (headers === null || typeof headers !== 'object') return null;
  for (const [key, value] of Object.entries(headers as Record<string, unknown>)) {
    if (key.toLowerCase() !== 'authorization' || value === undefined || value === null) continue;
    if (typeof value !== 'string') throw new MalformedAuthorizationError('extensions.headers "Authorization" must be a string');
    return value;
  }
  return null;
}

/**
 * The caller of one graphql-ws operation. A token in its `extensions.headers.Authorization`
 * counts for that operation only, under the same rules as an HTTP header (malformed, unknown
 * or revoked: refused, never downgraded); without one, the socket's caller, if it has one.
 */
export type OperationCallerResolution = CallerResolution & { fromOperation?: boolean };

export function resolveOperationCaller(
  socketCaller: Caller | 'UNAUTHENTICATED', extensions: unknown, tokens: SyncCallerResolver, anonymous: AnonymousMode,
): OperationCallerResolution;
export function resolveOperationCaller(
  socketCaller: Caller | 'UNAUTHENTICATED', extensions: unknown, tokens: CallerResolver, anonymous: AnonymousMode,
): MaybePromise<OperationCallerResolution>;
export function resolveOperationCaller(
  socketCaller: Caller | 'UNAUTHENTICATED',
  extensions: unknown,
  tokens: CallerResolver,
  anonymous: AnonymousMode,
): MaybePromise<OperationCallerResolution> {
  let authorization: string | null;
  try {
    authorization = authorizationFromOperationExtensions(extensions);
  } catch (error) {
    return { ok: false, code: 'UNAUTHENTICATED', reason: 'MALFORMED_AUTHORIZATION', message: (error as Error).message };
  }
  if (authorization !== null && authorization.trim() !== '') {
    return thenMaybe(resolveCaller(authorization, tokens, anonymous), (resolution) => ({ ...resolution, fromOperation: true }));
  }
  if (socketCaller !== 'UNAUTHENTICATED') return { ok: true, caller: socketCaller };
  return {
    ok: false,
    code: 'UNAUTHENTICATED',
    reason: 'MISSING_TOKEN',
    message:
      'A bearer token is required: send {"authorization": "Bearer <token>"} in connection_init, ' +
      'or {"Authorization": "Bearer <token>"} in the operation\'s extensions.headers (GraphiQL: the Headers tab)',
  };
}
