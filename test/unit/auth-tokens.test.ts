/** TokenService: create, authenticate, revoke, list, and the start-up bootstrap. */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditRepository } from '../../src/audit/repository.js';
import {
  BOOTSTRAP_ADMIN_NAME,
  LAST_USED_RESOLUTION_MS,
  TokenBootstrapError,
  TokenService,
} from '../../src/auth/service.js';
import { hashToken, TOKEN_PREFIX } from '../../src/auth/token-secret.js';
import { ManualClock } from '../../src/clock.js';
import {
  migrateDatabase, migrationsDir, openPostgresDatabase, openSqliteDatabase, readMigrations, type Database,
} from '../../src/db/database.js';
import { UnitOfWork } from '../../src/db/unit-of-work.js';
import { UserError } from '../../src/errors.js';
import { createLogger, type Logger } from '../../src/logger.js';
import { packageRoot } from '../../src/paths.js';
import { openTestDatabase, type TestDatabase } from '../support/database.js';
import { createTestPostgres, postgresAvailable, type TestPostgres } from '../support/postgres.js';

interface Setup {
  db: TestDatabase;
  clock: ManualClock;
  audit: AuditRepository;
  tokens: TokenService;
  logLines: string[];
  logger: Logger;
}

async function setup(): Promise<Setup> {
  const db = await openTestDatabase();
  const clock = new ManualClock();
  const audit = new AuditRepository(db.uow);
  const logLines: string[] = [];
  const logger = createLogger('debug', {}, (line) => logLines.push(line));
  const tokens = new TokenService({ uow: db.uow, sqlite: db.database.sqlite, audit, clock, logger });
  return { db, clock, audit, tokens, logLines, logger };
}

/** A raw read of the file, past the service (what is really stored). */
function rows(s: Setup, table: 'api_tokens' | 'audit_log'): Record<string, unknown>[] {
  return s.db.database.sqlite!.prepare(`SELECT * FROM ${table}`).all() as Record<string, unknown>[];
}

async function codeOf(fn: () => unknown): Promise<string | null> {
  try {
    await fn();
    return null;
  } catch (error) {
    return error instanceof UserError ? error.code : `not a UserError: ${String(error)}`;
  }
}

describe('TokenService', () => {
  let s: Setup;
  beforeEach(async () => {
    s = await setup();
  });
  afterEach(async () => {
    await s.tokens.stop();
    await s.db.close();
  });

  it('creates a random prefixed token that authenticates with its role', async () => {
    const a = await s.tokens.create('root', 'ci', 'OPERATOR');
    const b = await s.tokens.create('root', 'dash', 'VIEWER');
    expect(a.token.startsWith(TOKEN_PREFIX)).toBe(true);
    expect(a.token).toMatch(/^hel_[A-Za-z0-9_-]{43}$/);
    expect(a.token).not.toBe(b.token);
    expect(a.record).toMatchObject({ name: 'ci', role: 'OPERATOR', createdBy: 'root', revokedAt: null, lastUsedAt: null });
    expect(await s.tokens.authenticate(a.token)).toEqual({ name: 'ci', role: 'OPERATOR' });
    expect(await s.tokens.authenticate(b.token)).toEqual({ name: 'dash', role: 'VIEWER' });
  });

  it('stores only the SHA-256 of the token, and never writes the token to the audit log', async () => {
    const { token } = await s.tokens.create('root', 'ci', 'ADMIN');
    const stored = rows(s, 'api_tokens');
    expect(stored).toHaveLength(1);
    expect(stored[0]!.token_hash).toBe(hashToken(token));
    expect(stored[0]!.token_hash).toMatch(/^[0-9a-f]{64}$/);
    const everything = JSON.stringify(stored) + JSON.stringify(rows(s, 'audit_log'));
    expect(everything).not.toContain(token);
    expect(everything).not.toContain(token.slice(TOKEN_PREFIX.length));
    const audit = (await s.audit.page(10)).entries;
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ actor: 'root', action: 'createApiToken', targetType: 'API_TOKEN', target: 'ci', before: null });
    expect(JSON.stringify(audit)).not.toContain(hashToken(token));
  });

  it('refuses unknown, garbage and empty tokens', async () => {
    await s.tokens.create('root', 'ci', 'ADMIN');
    expect(await s.tokens.authenticate(null)).toBeNull();
    expect(await s.tokens.authenticate('')).toBeNull();
    expect(await s.tokens.authenticate('hel_' + 'A'.repeat(43))).toBeNull();
    expect(await s.tokens.authenticate('not-a-token')).toBeNull();
  });

  it('validates names and roles, and refuses a duplicate active name', async () => {
    expect(await codeOf(() => s.tokens.create('root', 'bad name', 'VIEWER'))).toBe('INVALID_NAME');
    expect(await codeOf(() => s.tokens.create('root', '', 'VIEWER'))).toBe('INVALID_NAME');
    expect(await codeOf(() => s.tokens.create('root', BOOTSTRAP_ADMIN_NAME, 'VIEWER'))).toBe('INVALID_NAME');
    expect(await codeOf(() => s.tokens.create('root', 'anonymous', 'VIEWER'))).toBe('INVALID_NAME');
    expect(await codeOf(() => s.tokens.create('root', 'x', 'ROOT' as 'ADMIN'))).toBe('INVALID_ARGUMENT');
    await s.tokens.create('root', 'ci', 'VIEWER');
    expect(await codeOf(() => s.tokens.create('root', 'ci', 'ADMIN'))).toBe('TOKEN_ALREADY_EXISTS');
    expect((await s.tokens.list()).map((t) => [t.name, t.role])).toEqual([['ci', 'VIEWER']]);
    expect((await s.audit.page(10)).entries).toHaveLength(1);
  });

  it('revokes a token at once, audits it, and lets the name be reused', async () => {
    const { token } = await s.tokens.create('root', 'ci', 'OPERATOR');
    s.clock.advance(5_000);
    const revoked = await s.tokens.revoke('boss', 'ci');
    expect(revoked.revokedAt).toBe(s.clock.now());
    expect(await s.tokens.authenticate(token)).toBeNull();
    expect(await codeOf(() => s.tokens.revoke('boss', 'ci'))).toBe('TOKEN_NOT_FOUND');
    expect(await codeOf(() => s.tokens.revoke('boss', 'ghost'))).toBe('TOKEN_NOT_FOUND');
    expect((await s.audit.page(10)).entries.map((e) => [e.action, e.actor])).toEqual([
      ['revokeApiToken', 'boss'],
      ['createApiToken', 'root'],
    ]);

    const again = await s.tokens.create('root', 'ci', 'VIEWER');
    expect(await s.tokens.authenticate(again.token)).toEqual({ name: 'ci', role: 'VIEWER' });
    expect(await s.tokens.authenticate(token)).toBeNull();
  });

  it('lists tokens by name without secrets', async () => {
    const { token } = await s.tokens.create('root', 'zeta', 'VIEWER');
    await s.tokens.create('root', 'alpha', 'ADMIN');
    await s.tokens.revoke('root', 'zeta');
    const list = await s.tokens.list();
    expect(list.map((t) => t.name)).toEqual(['alpha', 'zeta']);
    expect(Object.keys(list[0]!).sort()).toEqual(['createdAt', 'createdBy', 'lastUsedAt', 'name', 'revokedAt', 'role']);
    expect(list[1]!.revokedAt).not.toBeNull();
    expect(JSON.stringify(list)).not.toContain(hashToken(token));
  });

  it('records last use at most once a minute', async () => {
    const { token } = await s.tokens.create('root', 'ci', 'VIEWER');
    const lastUsed = async () => (await s.tokens.get('ci'))!.lastUsedAt;
    // What is in the file once the fire-and-forget write has landed.
    const stored = async () => {
      await s.tokens.flush();
      return rows(s, 'api_tokens')[0]!.last_used_at;
    };
    const t0 = s.clock.now();
    await s.tokens.authenticate(token);
    expect(await lastUsed()).toBe(t0);
    expect(await stored()).toBe(t0);
    s.clock.advance(LAST_USED_RESOLUTION_MS - 1);
    await s.tokens.authenticate(token);
    expect(await lastUsed()).toBe(t0);
    expect(await stored()).toBe(t0);
    s.clock.advance(1);
    await s.tokens.authenticate(token);
    expect(await lastUsed()).toBe(t0 + LAST_USED_RESOLUTION_MS);
    expect(await stored()).toBe(t0 + LAST_USED_RESOLUTION_MS);
  });

  it('answers from memory, without a promise, once loaded: the request path never waits for the database', async () => {
    const { token } = await s.tokens.create('root', 'ci', 'OPERATOR');
    await s.tokens.start();
    const answer = s.tokens.authenticate(token);
    expect(answer).not.toBeInstanceOf(Promise);
    expect(answer).toEqual({ name: 'ci', role: 'OPERATOR' });
    // An unknown (well-shaped) token is refused from memory too: on SQLite memory is the table.
    const unknown = s.tokens.authenticate('hel_' + 'B'.repeat(43));
    expect(unknown).toBeNull();
    // Its revocation reaches memory when it commits, without a reload.
    await s.tokens.revoke('root', 'ci');
    const revoked = s.tokens.authenticate(token);
    expect(revoked).not.toBeInstanceOf(Promise);
    expect(revoked).toBeNull();
  });

  it('logs a failed last-use write and still lets the token in', async () => {
    const { token } = await s.tokens.create('root', 'ci', 'VIEWER');
    await s.tokens.start();
    // The next write fails (a busy or broken database): make the table refuse updates.
    s.db.database.sqlite!.exec(`CREATE TRIGGER no_touch BEFORE UPDATE ON api_tokens BEGIN SELECT RAISE(ABORT, 'busy'); END`);
    expect(s.tokens.authenticate(token)).toEqual({ name: 'ci', role: 'VIEWER' });
    await s.tokens.flush();
    expect(s.logLines.some((l) => l.includes('"level":"warn"') && l.includes('could not record token use'))).toBe(true);
  });

  it('keeps memory as committed: a create or revoke that rolls back changes nothing', async () => {
    const { token } = await s.tokens.create('root', 'ci', 'OPERATOR');
    await s.tokens.start();
    let secret = '';
    await expect(
      s.db.uow.run(async () => {
        await s.tokens.revoke('root', 'ci');
        secret = (await s.tokens.create('root', 'other', 'VIEWER')).token;
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    expect(s.tokens.authenticate(token)).toEqual({ name: 'ci', role: 'OPERATOR' });
    expect(s.tokens.authenticate(secret)).toBeNull();
    expect(await s.tokens.get('other')).toBeNull();
  });

  it('refresh(name) applies one token\'s row as the store has it', async () => {
    const { token } = await s.tokens.create('root', 'ci', 'OPERATOR');
    await s.tokens.start();
    // Changed behind the service's back (as another node would): memory does not know yet.
    s.db.database.sqlite!.prepare('UPDATE api_tokens SET revoked_at = 1 WHERE name = ?').run('ci');
    expect(s.tokens.authenticate(token)).toEqual({ name: 'ci', role: 'OPERATOR' });
    await s.tokens.refresh('ci');
    expect(s.tokens.authenticate(token)).toBeNull();
    s.db.database.sqlite!.prepare('DELETE FROM api_tokens WHERE name = ?').run('ci');
    await s.tokens.refresh('ci');
    expect(s.tokens.authenticate(token)).toBeNull();
  });

  it('sees tokens created and revoked through another connection (the CLI) at once', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'helios-tok-'));
    const opened: Database[] = [];
    try {
      const file = path.join(dir, 'db.sqlite');
      const server = await openTestDatabase(file);
      opened.push(server.database);
      const cliDb = openSqliteDatabase(file);
      opened.push(cliDb);
      const cliUow = new UnitOfWork(cliDb);
      const deps = { clock: s.clock, logger: s.logger };
      const serverTokens = new TokenService({ uow: server.uow, sqlite: server.database.sqlite, audit: new AuditRepository(server.uow), ...deps });
      const cliTokens = new TokenService({ uow: cliUow, sqlite: cliDb.sqlite, audit: new AuditRepository(cliUow), ...deps });
      await serverTokens.start();
      const { token } = await cliTokens.create('cli:me', 'ci', 'OPERATOR');
      expect(await serverTokens.authenticate(token)).toEqual({ name: 'ci', role: 'OPERATOR' });
      // Loaded now: the next answer comes from memory again.
      expect(serverTokens.authenticate(token)).toEqual({ name: 'ci', role: 'OPERATOR' });
      // The use above writes last_used_at in the background. Both connections live on this one
      // thread here, so that write would busy-wait (synchronously) on the CLI unit's write lock
      // while the unit cannot go on; in two processes it just waits its turn. Not what this test
      // is about: let it land first.
      await serverTokens.flush();
      await cliTokens.revoke('cli:me', 'ci');
      expect(await serverTokens.authenticate(token)).toBeNull();
      await serverTokens.stop();
    } finally {
      for (const database of opened) await database.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('TokenService.bootstrap', () => {
  let s: Setup;
  let dir: string;
  beforeEach(async () => {
    s = await setup();
    dir = mkdtempSync(path.join(tmpdir(), 'helios-boot-'));
  });
  afterEach(async () => {
    await s.tokens.stop();
    await s.db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates, prints once and saves an admin token with mode 0600 on the first start only', async () => {
    const tokenFile = path.join(dir, 'nested', 'admin-token');
    const printed: string[] = [];
    const first = await s.tokens.bootstrap({ adminToken: null, tokenFile, logger: s.logger, print: (t) => printed.push(t) });
    expect(first.kind).toBe('created');
    if (first.kind !== 'created') return;
    expect(first).toMatchObject({ name: 'admin', file: tokenFile });
    expect(printed).toHaveLength(1);
    expect(printed[0]).toContain(first.token);
    expect(printed[0]).toContain(tokenFile);
    expect(readFileSync(tokenFile, 'utf8')).toBe(`${first.token}\n`);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(await s.tokens.authenticate(first.token)).toEqual({ name: 'admin', role: 'ADMIN' });
    expect((await s.audit.page(10)).entries[0]).toMatchObject({ actor: 'system', action: 'createApiToken', target: 'admin' });
    // The log says a token was created, never which.
    expect(s.logLines.join('\n')).not.toContain(first.token);

    const second = await s.tokens.bootstrap({ adminToken: null, tokenFile, logger: s.logger, print: (t) => printed.push(t) });
    expect(second).toEqual({ kind: 'existing', tokens: 1 });
    expect(printed).toHaveLength(1);
    expect(readFileSync(tokenFile, 'utf8')).toBe(`${first.token}\n`);
  });

  it('creates nothing once any token has existed, even if all are revoked', async () => {
    await s.tokens.create('root', 'ci', 'ADMIN');
    await s.tokens.revoke('root', 'ci');
    const printed: string[] = [];
    const tokenFile = path.join(dir, 'admin-token');
    expect(await s.tokens.bootstrap({ adminToken: null, tokenFile, logger: s.logger, print: (t) => printed.push(t) }))
      .toEqual({ kind: 'existing', tokens: 1 });
    expect(printed).toEqual([]);
    expect(existsSync(tokenFile)).toBe(false);
  });

  it('never overwrites an existing token file; the new token is printed and a warning logged', async () => {
    const tokenFile = path.join(dir, 'admin-token');
    writeFileSync(tokenFile, 'precious\n');
    const printed: string[] = [];
    const result = await s.tokens.bootstrap({ adminToken: null, tokenFile, logger: s.logger, print: (t) => printed.push(t) });
    expect(result).toMatchObject({ kind: 'created', file: null });
    expect(readFileSync(tokenFile, 'utf8')).toBe('precious\n');
    expect(printed).toHaveLength(1);
    expect(result.kind === 'created' && printed[0]!.includes(result.token)).toBe(true);
    expect(s.logLines.some((l) => l.includes('"level":"warn"') && l.includes('left unchanged'))).toBe(true);
  });

  it('accepts HELIOS_ADMIN_TOKEN as ADMIN "bootstrap-admin" without storing it or creating a file', async () => {
    const adminToken = 'a-long-enough-admin-secret-0123456789';
    const tokenFile = path.join(dir, 'admin-token');
    const printed: string[] = [];
    expect(await s.tokens.bootstrap({ adminToken, tokenFile, logger: s.logger, print: (t) => printed.push(t) }))
      .toEqual({ kind: 'env', name: BOOTSTRAP_ADMIN_NAME });
    expect(await s.tokens.authenticate(adminToken)).toEqual({ name: BOOTSTRAP_ADMIN_NAME, role: 'ADMIN' });
    expect(await s.tokens.authenticate(adminToken + 'x')).toBeNull();
    expect(await s.tokens.list()).toEqual([]);
    expect(printed).toEqual([]);
    expect(existsSync(tokenFile)).toBe(false);
    expect(s.logLines.join('\n')).not.toContain(adminToken);

    // Restarting without the variable removes it.
    await s.tokens.bootstrap({ adminToken: null, tokenFile: null, logger: s.logger, print: () => {} });
    expect(await s.tokens.authenticate(adminToken)).toBeNull();
  });

  it('refuses a short or unprintable HELIOS_ADMIN_TOKEN', async () => {
    const opts = { tokenFile: null, logger: s.logger, print: () => {} };
    await expect(s.tokens.bootstrap({ ...opts, adminToken: 'short' })).rejects.toThrow(TokenBootstrapError);
    await expect(s.tokens.bootstrap({ ...opts, adminToken: 'has a space in it, long enough' })).rejects.toThrow(/printable/);
  });
});

describe.skipIf(!postgresAvailable())('TokenService on PostgreSQL (no data_version: a miss is looked up)', () => {
  let pg: TestPostgres;
  let database: Database;
  let uow: UnitOfWork;
  const clock = new ManualClock();
  const logger = createLogger('silent');
  const service = () => new TokenService({ uow, sqlite: null, audit: new AuditRepository(uow), clock, logger });

  beforeAll(async () => {
    pg = await createTestPostgres('tokens');
    database = openPostgresDatabase(pg.url, { poolSize: 4 });
    await migrateDatabase(database, readMigrations(migrationsDir(packageRoot(), database.dialect)));
    uow = new UnitOfWork(database);
  });
  afterAll(async () => {
    await database?.close();
    await pg?.drop();
  });

  it('creates, authenticates from memory, records last use, revokes and lists', async () => {
    const tokens = service();
    await tokens.start();
    const { token, record } = await tokens.create('root', 'pg_ci', 'OPERATOR');
    expect(record).toMatchObject({ name: 'pg_ci', role: 'OPERATOR', createdBy: 'root', revokedAt: null, lastUsedAt: null });
    const answer = tokens.authenticate(token);
    expect(answer).not.toBeInstanceOf(Promise);
    expect(answer).toEqual({ name: 'pg_ci', role: 'OPERATOR' });
    await tokens.flush();
    const row = await database.kysely.selectFrom('api_tokens').selectAll().where('name', '=', 'pg_ci').executeTakeFirstOrThrow();
    expect(row.last_used_at).toBe(clock.now());
    expect(row.token_hash).toBe(hashToken(token));
    expect(await codeOfPromise(tokens.create('root', 'pg_ci', 'VIEWER'))).toBe('TOKEN_ALREADY_EXISTS');
    await tokens.revoke('boss', 'pg_ci');
    expect(tokens.authenticate(token)).toBeNull();
    expect(await codeOfPromise(tokens.revoke('boss', 'pg_ci'))).toBe('TOKEN_NOT_FOUND');
    expect((await tokens.list()).find((t) => t.name === 'pg_ci')!.revokedAt).toBe(clock.now());
    await tokens.stop();
  });

  it('accepts a token created elsewhere (the CLI, another node) at once; a revocation elsewhere arrives by refresh', async () => {
    const server = service();
    const elsewhere = service();
    await server.start();
    const { token } = await elsewhere.create('cli:me', 'pg_remote', 'VIEWER');
    const first = server.authenticate(token);
    expect(first).toBeInstanceOf(Promise); // unknown to memory: looked up by its hash
    expect(await first).toEqual({ name: 'pg_remote', role: 'VIEWER' });
    expect(server.authenticate(token)).toEqual({ name: 'pg_remote', role: 'VIEWER' }); // now from memory
    expect(await server.authenticate('hel_' + 'C'.repeat(43))).toBeNull();
    await elsewhere.revoke('cli:me', 'pg_remote');
    await server.refresh('pg_remote');
    expect(server.authenticate(token)).toBeNull();
    await server.stop();
  });

  it('two creates of one name racing on two connections: one wins, the other gets TOKEN_ALREADY_EXISTS', async () => {
    const a = service();
    const b = service();
    const results = await Promise.allSettled([a.create('a', 'pg_race', 'VIEWER'), b.create('b', 'pg_race', 'ADMIN')]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(failed.reason).toBeInstanceOf(UserError);
    expect((failed.reason as UserError).code).toBe('TOKEN_ALREADY_EXISTS');
    const audit = await new AuditRepository(uow).page(50, undefined, 'pg_race');
    expect(audit.entries).toHaveLength(1);
  });
});

async function codeOfPromise(promise: Promise<unknown>): Promise<string | null> {
  return codeOf(() => promise);
}
