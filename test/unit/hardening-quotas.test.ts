/** ClientQuota, client addresses, the per-connection operation quota, and safe messages. */
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { clientAddress, ClientQuota, operationQuotaErrors } from '../../src/hardening/connections.js';
import { sanitizeMessage, SQL_MESSAGE_REPLACEMENT } from '../../src/hardening/safe-messages.js';

describe('ClientQuota', () => {
  it('gives each key up to max slots and takes them back', () => {
    const quota = new ClientQuota(2);
    expect(quota.tryAcquire('a')).toBe(true);
    expect(quota.tryAcquire('a')).toBe(true);
    expect(quota.tryAcquire('a')).toBe(false);
    expect(quota.tryAcquire('b')).toBe(true);
    expect(quota.count('a')).toBe(2);
    quota.release('a');
    expect(quota.tryAcquire('a')).toBe(true);
    expect(quota.tryAcquire('a')).toBe(false);
  });

  it('forgets keys at zero and ignores extra releases', () => {
    const quota = new ClientQuota(1);
    quota.tryAcquire('a');
    quota.release('a');
    quota.release('a');
    expect(quota.keys).toBe(0);
    expect(quota.count('a')).toBe(0);
    expect(quota.tryAcquire('a')).toBe(true);
    expect(quota.tryAcquire('a')).toBe(false);
  });
});

describe('clientAddress', () => {
  const req = (remoteAddress: string | undefined) => ({ socket: { remoteAddress } as Socket });
  it('folds IPv4-mapped addresses and ignores forwarding headers', () => {
    expect(clientAddress(req('::ffff:10.1.2.3'))).toBe('10.1.2.3');
    expect(clientAddress(req('10.1.2.3'))).toBe('10.1.2.3');
    expect(clientAddress(req('::1'))).toBe('::1');
    expect(clientAddress(req(undefined))).toBe('unknown');
  });
});

describe('operationQuotaErrors', () => {
  const ctx = (n: number) => ({ subscriptions: Object.fromEntries(Array.from({ length: n }, (_, i) => [String(i), null])) });
  it('counts the operation being started, which graphql-ws has already reserved', () => {
    expect(operationQuotaErrors(ctx(3), 3)).toEqual([]);
    const errors = operationQuotaErrors(ctx(4), 3);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.extensions.code).toBe('TOO_MANY_SUBSCRIPTIONS');
  });
});

describe('sanitizeMessage', () => {
  it('keeps ordinary messages and relative paths', () => {
    expect(sanitizeMessage('Module "pricing" failed: boom')).toBe('Module "pricing" failed: boom');
    expect(sanitizeMessage('Module path "../outside.js" is outside the modules root')).toBe('Module path "../outside.js" is outside the modules root');
    expect(sanitizeMessage('see http://example.com/a/b for details')).toBe('see http://example.com/a/b for details');
    expect(sanitizeMessage('Select a module from the list')).toBe('Select a module from the list');
  });

  it('replaces absolute paths and file URLs', () => {
    expect(sanitizeMessage("Cannot find module '/srv/helios/examples/modules/x.js' imported from /srv/helios/src/a.ts:12:5"))
      .toBe("Cannot find module '<path>' imported from <path>");
    expect(sanitizeMessage('failed at file:///srv/helios/x.mjs:3:1')).toBe('failed at <path>');
    expect(sanitizeMessage('ENOENT: open C:\\Users\\me\\helios\\x.js')).toBe('ENOENT: open <path>');
  });

  it('drops stack frames', () => {
    const withStack = 'Error: boom\n    at run (/srv/helios/src/x.ts:1:1)\n    at node:internal/process:1:1';
    expect(sanitizeMessage(withStack)).toBe('Error: boom');
  });

  it('replaces anything that looks like SQL or a SQLite error entirely', () => {
    for (const message of [
      'SQLITE_BUSY: database is locked',
      'no such table: api_tokens',
      'UNIQUE constraint failed: api_tokens.token_hash',
      'near "FROM": syntax error in SELECT name FROM modules WHERE x',
      'INSERT INTO audit_log failed',
      'DELETE FROM feature_flags',
    ]) {
      expect(sanitizeMessage(message), message).toBe(SQL_MESSAGE_REPLACEMENT);
    }
  });
});
