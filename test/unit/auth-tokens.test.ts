/** TokenService: create, authenticate, revoke, list, and the start-up bootstrap. */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditRepository } from '../../src/audit/repository.js';
import {
  BOOTSTRAP_ADMIN_NAME,
  LAST_USED_RESOLUTION_MS,
  TokenBootstrapError,
  TokenService,
} from '../../src/auth/service.js';
import { hashToken, TOKEN_PREFIX } from '../../src/auth/token-secret.js';
import { ManualClock } from '../../src/clock.js';
import { openDatabase, type Db } from '../../src/db/connection.js';
import { migrate, readMigrations } from '../../src/db/migrate.js';
import { UserError } from '../../src/errors.js';
import { createLogger, type Logger } from '../../src/logger.js';

interface Setup {
  db: Db;
  clock: ManualClock;
  audit: AuditRepository;
  tokens: TokenService;
  logLines: string[];
  logger: Logger;
}

function setup(): Setup {
  const db = openDatabase(':memory:');
  migrate(db, readMigrations('migrations'));
  const clock = new ManualClock();
  const audit = new AuditRepository(db);
  const logLines: string[] = [];
  const logger = createLogger('debug', {}, (line) => logLines.push(line));
  return { db, clock, audit, tokens: new TokenService({ db, audit, clock, logger }), logLines, logger };
}

function codeOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (error) {
    return error instanceof UserError ? error.code : `not a UserError: ${String(error)}`;
  }
}

describe('TokenService', () => {
  let s: Setup;
  beforeEach(() => {
    s = setup();
  });
  afterEach(() => s.db.close());

  it('creates a random prefixed token that authenticates with its role', () => {
    const a = s.tokens.create('root', 'ci', 'OPERATOR');
    const b = s.tokens.create('root', 'dash', 'VIEWER');
    expect(a.token.startsWith(TOKEN_PREFIX)).toBe(true);
    expect(a.token).toMatch(/^hel_[A-Za-z0-9_-]{43}$/);
    expect(a.token).not.toBe(b.token);
    expect(a.record).toMatchObject({ name: 'ci', role: 'OPERATOR', createdBy: 'root', revokedAt: null, lastUsedAt: null });
    expect(s.tokens.authenticate(a.token)).toEqual({ name: 'ci', role: 'OPERATOR' });
    expect(s.tokens.authenticate(b.token)).toEqual({ name: 'dash', role: 'VIEWER' });
  });

  it('stores only the SHA-256 of the token, and never writes the token to the audit log', () => {
    const { token } = s.tokens.create('root', 'ci', 'ADMIN');
    const rows = s.db.prepare('SELECT * FROM api_tokens').all() as Record<string, unknown>[];
    expect(rows).toHaveLength(1);
    expect(rows[0]!.token_hash).toBe(hashToken(token));
    expect(rows[0]!.token_hash).toMatch(/^[0-9a-f]{64}$/);
    const everything = JSON.stringify(rows) + JSON.stringify(s.db.prepare('SELECT * FROM audit_log').all());
    expect(everything).not.toContain(token);
    expect(everything).not.toContain(token.slice(TOKEN_PREFIX.length));
    const audit = s.audit.page(10).entries;
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ actor: 'root', action: 'createApiToken', targetType: 'API_TOKEN', target: 'ci', before: null });
    expect(JSON.stringify(audit)).not.toContain(hashToken(token));
  });

  it('refuses unknown, garbage and empty tokens', () => {
    s.tokens.create('root', 'ci', 'ADMIN');
    expect(s.tokens.authenticate(null)).toBeNull();
    expect(s.tokens.authenticate('')).toBeNull();
    expect(s.tokens.authenticate('hel_' + 'A'.repeat(43))).toBeNull();
    expect(s.tokens.authenticate('not-a-token')).toBeNull();
  });

  it('validates names and roles, and refuses a duplicate active name', () => {
    expect(codeOf(() => s.tokens.create('root', 'bad name', 'VIEWER'))).toBe('INVALID_NAME');
    expect(codeOf(() => s.tokens.create('root', '', 'VIEWER'))).toBe('INVALID_NAME');
    expect(codeOf(() => s.tokens.create('root', BOOTSTRAP_ADMIN_NAME, 'VIEWER'))).toBe('INVALID_NAME');
    expect(codeOf(() => s.tokens.create('root', 'anonymous', 'VIEWER'))).toBe('INVALID_NAME');
    expect(codeOf(() => s.tokens.create('root', 'x', 'ROOT' as 'ADMIN'))).toBe('INVALID_ARGUMENT');
    s.tokens.create('root', 'ci', 'VIEWER');
    expect(codeOf(() => s.tokens.create('root', 'ci', 'ADMIN'))).toBe('TOKEN_ALREADY_EXISTS');
    expect(s.tokens.list().map((t) => [t.name, t.role])).toEqual([['ci', 'VIEWER']]);
    expect(s.audit.page(10).entries).toHaveLength(1);
  });

  it('revokes a token at once, audits it, and lets the name be reused', () => {
    const { token } = s.tokens.create('root', 'ci', 'OPERATOR');
    s.clock.advance(5_000);
    const revoked = s.tokens.revoke('boss', 'ci');
    expect(revoked.revokedAt).toBe(s.clock.now());
    expect(s.tokens.authenticate(token)).toBeNull();
    expect(codeOf(() => s.tokens.revoke('boss', 'ci'))).toBe('TOKEN_NOT_FOUND');
    expect(codeOf(() => s.tokens.revoke('boss', 'ghost'))).toBe('TOKEN_NOT_FOUND');
    expect(s.audit.page(10).entries.map((e) => [e.action, e.actor])).toEqual([
      ['revokeApiToken', 'boss'],
      ['createApiToken', 'root'],
    ]);

    const again = s.tokens.create('root', 'ci', 'VIEWER');
    expect(s.tokens.authenticate(again.token)).toEqual({ name: 'ci', role: 'VIEWER' });
    expect(s.tokens.authenticate(token)).toBeNull();
  });

  it('lists tokens by name without secrets', () => {
    const { token } = s.tokens.create('root', 'zeta', 'VIEWER');
    s.tokens.create('root', 'alpha', 'ADMIN');
    s.tokens.revoke('root', 'zeta');
    const list = s.tokens.list();
    expect(list.map((t) => t.name)).toEqual(['alpha', 'zeta']);
    expect(Object.keys(list[0]!).sort()).toEqual(['createdAt', 'createdBy', 'lastUsedAt', 'name', 'revokedAt', 'role']);
    expect(list[1]!.revokedAt).not.toBeNull();
    expect(JSON.stringify(list)).not.toContain(hashToken(token));
  });

  it('records last use at most once a minute', () => {
    const { token } = s.tokens.create('root', 'ci', 'VIEWER');
    const lastUsed = () => s.tokens.get('ci')!.lastUsedAt;
    const t0 = s.clock.now();
    s.tokens.authenticate(token);
    expect(lastUsed()).toBe(t0);
    s.clock.advance(LAST_USED_RESOLUTION_MS - 1);
    s.tokens.authenticate(token);
    expect(lastUsed()).toBe(t0);
    s.clock.advance(1);
    s.tokens.authenticate(token);
    expect(lastUsed()).toBe(t0 + LAST_USED_RESOLUTION_MS);
  });

  it('sees tokens created and revoked through another connection (the CLI) at once', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'helios-tok-'));
    try {
      const file = path.join(dir, 'db.sqlite');
      const serverDb = openDatabase(file);
      migrate(serverDb, readMigrations('migrations'));
      const cliDb = openDatabase(file);
      const deps = { clock: s.clock, logger: s.logger };
      const server = new TokenService({ db: serverDb, audit: new AuditRepository(serverDb), ...deps });
      const cli = new TokenService({ db: cliDb, audit: new AuditRepository(cliDb), ...deps });
      const { token } = cli.create('cli:me', 'ci', 'OPERATOR');
      expect(server.authenticate(token)).toEqual({ name: 'ci', role: 'OPERATOR' });
      cli.revoke('cli:me', 'ci');
      expect(server.authenticate(token)).toBeNull();
      serverDb.close();
      cliDb.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('TokenService.bootstrap', () => {
  let s: Setup;
  let dir: string;
  beforeEach(() => {
    s = setup();
    dir = mkdtempSync(path.join(tmpdir(), 'helios-boot-'));
  });
  afterEach(() => {
    s.db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates, prints once and saves an admin token with mode 0600 on the first start only', () => {
    const tokenFile = path.join(dir, 'nested', 'admin-token');
    const printed: string[] = [];
    const first = s.tokens.bootstrap({ adminToken: null, tokenFile, logger: s.logger, print: (t) => printed.push(t) });
    expect(first.kind).toBe('created');
    if (first.kind !== 'created') return;
    expect(first).toMatchObject({ name: 'admin', file: tokenFile });
    expect(printed).toHaveLength(1);
    expect(printed[0]).toContain(first.token);
    expect(printed[0]).toContain(tokenFile);
    expect(readFileSync(tokenFile, 'utf8')).toBe(`${first.token}\n`);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(s.tokens.authenticate(first.token)).toEqual({ name: 'admin', role: 'ADMIN' });
    expect(s.audit.page(10).entries[0]).toMatchObject({ actor: 'system', action: 'createApiToken', target: 'admin' });
    // The log says a token was created, never which.
    expect(s.logLines.join('\n')).not.toContain(first.token);

    const second = s.tokens.bootstrap({ adminToken: null, tokenFile, logger: s.logger, print: (t) => printed.push(t) });
    expect(second).toEqual({ kind: 'existing', tokens: 1 });
    expect(printed).toHaveLength(1);
    expect(readFileSync(tokenFile, 'utf8')).toBe(`${first.token}\n`);
  });

  it('creates nothing once any token has existed, even if all are revoked', () => {
    s.tokens.create('root', 'ci', 'ADMIN');
    s.tokens.revoke('root', 'ci');
    const printed: string[] = [];
    const tokenFile = path.join(dir, 'admin-token');
    expect(s.tokens.bootstrap({ adminToken: null, tokenFile, logger: s.logger, print: (t) => printed.push(t) }))
      .toEqual({ kind: 'existing', tokens: 1 });
    expect(printed).toEqual([]);
    expect(existsSync(tokenFile)).toBe(false);
  });

  it('never overwrites an existing token file; the new token is printed and a warning logged', () => {
    const tokenFile = path.join(dir, 'admin-token');
    writeFileSync(tokenFile, 'precious\n');
    const printed: string[] = [];
    const result = s.tokens.bootstrap({ adminToken: null, tokenFile, logger: s.logger, print: (t) => printed.push(t) });
    expect(result).toMatchObject({ kind: 'created', file: null });
    expect(readFileSync(tokenFile, 'utf8')).toBe('precious\n');
    expect(printed).toHaveLength(1);
    expect(result.kind === 'created' && printed[0]!.includes(result.token)).toBe(true);
    expect(s.logLines.some((l) => l.includes('"level":"warn"') && l.includes('left unchanged'))).toBe(true);
  });

  it('accepts HELIOS_ADMIN_TOKEN as ADMIN "bootstrap-admin" without storing it or creating a file', () => {
    const adminToken = 'a-long-enough-admin-secret-0123456789';
    const tokenFile = path.join(dir, 'admin-token');
    const printed: string[] = [];
    expect(s.tokens.bootstrap({ adminToken, tokenFile, logger: s.logger, print: (t) => printed.push(t) }))
      .toEqual({ kind: 'env', name: BOOTSTRAP_ADMIN_NAME });
    expect(s.tokens.authenticate(adminToken)).toEqual({ name: BOOTSTRAP_ADMIN_NAME, role: 'ADMIN' });
    expect(s.tokens.authenticate(adminToken + 'x')).toBeNull();
    expect(s.tokens.list()).toEqual([]);
    expect(printed).toEqual([]);
    expect(existsSync(tokenFile)).toBe(false);
    expect(s.logLines.join('\n')).not.toContain(adminToken);

    // Restarting without the variable removes it.
    s.tokens.bootstrap({ adminToken: null, tokenFile: null, logger: s.logger, print: () => {} });
    expect(s.tokens.authenticate(adminToken)).toBeNull();
  });

  it('refuses a short or unprintable HELIOS_ADMIN_TOKEN', () => {
    const opts = { tokenFile: null, logger: s.logger, print: () => {} };
    expect(() => s.tokens.bootstrap({ ...opts, adminToken: 'short' })).toThrow(TokenBootstrapError);
    expect(() => s.tokens.bootstrap({ ...opts, adminToken: 'has a space in it, long enough' })).toThrow(/printable/);
  });
});
