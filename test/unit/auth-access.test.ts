/** Roles, the Authorization header, anonymous access and caller resolution. */
import { describe, expect, it } from 'vitest';
import {
  isLoopbackHost,
  parseAnonymousMode,
  resolveAnonymousRole,
  AnonymousModeError,
} from '../../src/auth/anonymous.js';
import {
  authorizationFromConnectionParams,
  connectionCaller,
  MalformedAuthorizationError,
  parseAuthorization,
  requireRole,
  resolveCaller,
  resolveOperationCaller,
  type AuthenticatedToken,
  type Caller,
} from '../../src/auth/authorization.js';
import { parseRole, roleAllows, ROLES, type Role } from '../../src/auth/roles.js';
import { UserError } from '../../src/errors.js';

describe('roles', () => {
  it('are ordered VIEWER < OPERATOR < ADMIN, each including the lower ones', () => {
    expect(ROLES).toEqual(['VIEWER', 'OPERATOR', 'ADMIN']);
    const allowed = (have: Role | null) => ROLES.filter((need) => roleAllows(have, need));
    expect(allowed('VIEWER')).toEqual(['VIEWER']);
    expect(allowed('OPERATOR')).toEqual(['VIEWER', 'OPERATOR']);
    expect(allowed('ADMIN')).toEqual(['VIEWER', 'OPERATOR', 'ADMIN']);
    expect(allowed(null)).toEqual([]);
  });

  it('parse case-insensitively and refuse anything else', () => {
    expect(parseRole('operator')).toBe('OPERATOR');
    expect(parseRole(' Admin ')).toBe('ADMIN');
    expect(parseRole('root')).toBeNull();
    expect(parseRole('')).toBeNull();
  });
});

describe('parseAuthorization', () => {
  it('reads "Bearer <token>" with any case of the scheme', () => {
    expect(parseAuthorization('Bearer hel_abc')).toBe('hel_abc');
    expect(parseAuthorization('bearer hel_abc')).toBe('hel_abc');
    expect(parseAuthorization('BEARER   hel_abc  ')).toBe('hel_abc');
  });

  it('treats a missing or empty header as no credentials', () => {
    expect(parseAuthorization(undefined)).toBeNull();
    expect(parseAuthorization(null)).toBeNull();
    expect(parseAuthorization('   ')).toBeNull();
  });

  it.each([
    ['Basic dXNlcjpwYXNz'],
    ['Bearer'],
    ['Bearer '],
    ['hel_abc'],
    ['Bearer two tokens'],
    ['Bearer tök'],
    [`Bearer ${'x'.repeat(2000)}`],
  ])('refuses %j with a typed error', (header) => {
    expect(() => parseAuthorization(header)).toThrow(MalformedAuthorizationError);
    try {
      parseAuthorization(header);
    } catch (error) {
      expect((error as MalformedAuthorizationError).code).toBe('UNAUTHENTICATED');
    }
  });

  it('reads the graphql-ws connection_init payload', () => {
    expect(authorizationFromConnectionParams({ authorization: 'Bearer t' })).toBe('Bearer t');
    expect(authorizationFromConnectionParams({ Authorization: 'Bearer t' })).toBe('Bearer t');
    expect(authorizationFromConnectionParams(undefined)).toBeNull();
    expect(authorizationFromConnectionParams({})).toBeNull();
    expect(() => authorizationFromConnectionParams({ authorization: 42 })).toThrow(MalformedAuthorizationError);
  });
});

describe('anonymous access', () => {
  it('defaults to viewer only on loopback hosts', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '0:0:0:0:0:0:0:1', 'localhost', 'LOCALHOST', '::ffff:127.0.0.1']) {
      expect(resolveAnonymousRole(undefined, host), host).toBe('viewer');
    }
    for (const host of ['0.0.0.0', '::', '', '10.0.0.5', '192.168.1.1', 'example.com', '::2', '128.0.0.1', '::ffff:10.0.0.1']) {
      expect(resolveAnonymousRole(undefined, host), host).toBe('none');
    }
  });

  it('follows an explicit mode whatever the host', () => {
    expect(resolveAnonymousRole('none', '127.0.0.1')).toBe('none');
    expect(resolveAnonymousRole('viewer', '0.0.0.0')).toBe('viewer');
  });

  it('parses HELIOS_ANONYMOUS', () => {
    expect(parseAnonymousMode(undefined)).toBeUndefined();
    expect(parseAnonymousMode('')).toBeUndefined();
    expect(parseAnonymousMode('Viewer')).toBe('viewer');
    expect(parseAnonymousMode('none')).toBe('none');
    expect(() => parseAnonymousMode('admin')).toThrow(AnonymousModeError);
  });

  it('recognises loopback spellings only', () => {
    expect(isLoopbackHost('127.255.255.254')).toBe(true);
    expect(isLoopbackHost('::0001')).toBe(true);
    expect(isLoopbackHost('1::1')).toBe(false);
    expect(isLoopbackHost('localhost.example.com')).toBe(false);
  });
});

describe('resolveCaller', () => {
  const known: Record<string, AuthenticatedToken> = { good: { name: 'ci', role: 'OPERATOR' } };
  const tokens = { authenticate: (token: string | null) => (token ? known[token] ?? null : null) };

  it('resolves a valid token to its name and role', () => {
    expect(resolveCaller('Bearer good', tokens, 'none')).toEqual({
      ok: true, caller: { name: 'ci', role: 'OPERATOR', anonymous: false },
    });
  });

  it('lets callers without credentials in as VIEWER only when anonymous access is on', () => {
    expect(resolveCaller(undefined, tokens, 'viewer')).toEqual({
      ok: true, caller: { name: 'anonymous', role: 'VIEWER', anonymous: true },
    });
    expect(resolveCaller(undefined, tokens, 'none')).toMatchObject({ ok: false, code: 'UNAUTHENTICATED', reason: 'MISSING_TOKEN' });
  });

  it('never downgrades bad credentials to anonymous', () => {
    expect(resolveCaller('Bearer wrong', tokens, 'viewer')).toMatchObject({ ok: false, reason: 'INVALID_TOKEN' });
    expect(resolveCaller('Basic abc', tokens, 'viewer')).toMatchObject({ ok: false, reason: 'MALFORMED_AUTHORIZATION' });
  });

  it('stays synchronous for a synchronous answer and waits for a promised one (a token index reloading)', async () => {
    const later = { authenticate: (token: string | null) => Promise.resolve(token ? known[token] ?? null : null) };
    const now = resolveCaller('Bearer good', tokens, 'none');
    expect(now).not.toBeInstanceOf(Promise);
    const pending = resolveCaller('Bearer good', later, 'none');
    expect(pending).toBeInstanceOf(Promise);
    expect(await pending).toEqual({ ok: true, caller: { name: 'ci', role: 'OPERATOR', anonymous: false } });
    expect(await resolveCaller('Bearer wrong', later, 'viewer')).toMatchObject({ ok: false, reason: 'INVALID_TOKEN' });
    // No token, or a malformed one: answered at once, the resolver is not asked.
    expect(resolveCaller(undefined, later, 'viewer')).toMatchObject({ ok: true, caller: { anonymous: true } });
    expect(resolveCaller('Basic abc', later, 'viewer')).toMatchObject({ ok: false, reason: 'MALFORMED_AUTHORIZATION' });
    // The graphql-ws variants pass a promised answer through too.
    expect(await connectionCaller({ authorization: 'Bearer good' }, later, 'none')).toEqual({ name: 'ci', role: 'OPERATOR', anonymous: false });
    expect(await connectionCaller({ authorization: 'Bearer wrong' }, later, 'none')).toBeNull();
    expect(await connectionCaller({}, later, 'none')).toBe('UNAUTHENTICATED');
    expect(await resolveOperationCaller('UNAUTHENTICATED', { headers: { Authorization: 'Bearer good' } }, later, 'none')).toMatchObject({
      ok: true, fromOperation: true, caller: { name: 'ci' },
    });
    expect(await resolveOperationCaller('UNAUTHENTICATED', { headers: { Authorization: 'Bearer wrong' } }, later, 'none')).toMatchObject({
      ok: false, reason: 'INVALID_TOKEN', fromOperation: true,
    });
  });
});

describe('requireRole', () => {
  const caller = (role: Role, anonymous = false): Caller => ({ name: anonymous ? 'anonymous' : 'ci', role, anonymous });
  const codeOf = (fn: () => void) => {
    try {
      fn();
      return null;
    } catch (error) {
      return error instanceof UserError ? error.code : 'other';
    }
  };

  it('allows enough role and refuses with FORBIDDEN or UNAUTHENTICATED otherwise', () => {
    expect(codeOf(() => requireRole(caller('ADMIN'), 'OPERATOR'))).toBeNull();
    expect(codeOf(() => requireRole(caller('OPERATOR'), 'OPERATOR'))).toBeNull();
    expect(codeOf(() => requireRole(caller('VIEWER'), 'OPERATOR'))).toBe('FORBIDDEN');
    expect(codeOf(() => requireRole(caller('OPERATOR'), 'ADMIN'))).toBe('FORBIDDEN');
    expect(codeOf(() => requireRole(caller('VIEWER', true), 'VIEWER'))).toBeNull();
    expect(codeOf(() => requireRole(caller('VIEWER', true), 'OPERATOR'))).toBe('UNAUTHENTICATED');
    expect(codeOf(() => requireRole(null, 'VIEWER'))).toBe('UNAUTHENTICATED');
  });
});
