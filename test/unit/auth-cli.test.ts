/** The token CLI (`npm run token -- ...`), run as a child process against a temporary database. */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditRepository } from '../../src/audit/repository.js';
import { TokenService } from '../../src/auth/service.js';
import { ManualClock } from '../../src/clock.js';
import { openSqliteDatabase } from '../../src/db/database.js';
import { UnitOfWork } from '../../src/db/unit-of-work.js';
import { createLogger } from '../../src/logger.js';
import { openTestDatabase } from '../support/database.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

let dir: string;
let dbPath: string;

function cli(...args: string[]): Promise<Run> {
  return cliOn(dbPath, ...args);
}

function cliOn(db: string, ...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn('npx', ['tsx', 'scripts/token.ts', ...args], {
      cwd: process.cwd(),
      env: { ...process.env, HELIOS_DB_PATH: db, HELIOS_ADMIN_TOKEN: '', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** What the server would see: a TokenService on its own connection to the same file. */
async function authenticate(token: string) {
  const database = openSqliteDatabase(dbPath);
  const uow = new UnitOfWork(database);
  const tokens = new TokenService({
    uow, sqlite: database.sqlite, audit: new AuditRepository(uow), clock: new ManualClock(), logger: createLogger('silent'),
  });
  try {
    return await tokens.authenticate(token);
  } finally {
    await tokens.stop();
    await database.close();
  }
}

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'helios-cli-'));
  dbPath = path.join(dir, 'data', 'helios.db');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('token CLI', () => {
  it('creates, lists and revokes tokens; the token is printed once on stdout', async () => {
    // A running server on the same file, its tokens loaded before the CLI changes them.
    const server = await openTestDatabase(dbPath);
    const running = new TokenService({
      uow: server.uow, sqlite: server.database.sqlite, audit: new AuditRepository(server.uow), clock: new ManualClock(), logger: createLogger('silent'),
    });
    await running.start();
    try {
      await cliChanges(running);
    } finally {
      await running.stop();
      await server.close();
    }
  });

  async function cliChanges(running: TokenService) {
    const created = await cli('create', '--name', 'ci', '--role', 'OPERATOR');
    expect(created.code, created.stderr).toBe(0);
    const token = created.stdout.trim();
    expect(token).toMatch(/^hel_[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toContain('shown only once');
    expect(await authenticate(token)).toEqual({ name: 'ci', role: 'OPERATOR' });
    expect(await running.authenticate(token)).toEqual({ name: 'ci', role: 'OPERATOR' });

    const listed = await cli('list');
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/ci\s+OPERATOR\s+active/);
    expect(listed.stdout).not.toContain(token);

    const json = await cli('list', '--json');
    expect(JSON.parse(json.stdout)).toMatchObject([{ name: 'ci', role: 'OPERATOR', revokedAt: null }]);

    const revoked = await cli('revoke', '--name', 'ci');
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(await authenticate(token)).toBeNull();
    expect(await running.authenticate(token)).toBeNull();
    expect((await cli('list')).stdout).toMatch(/ci\s+OPERATOR\s+revoked/);
  }

  it('exits 2 on a bad command line, before touching the database', async () => {
    const untouched = path.join(dir, 'untouched', 'helios.db');
    const badRole = await cliOn(untouched, 'create', '--name', 'x', '--role', 'ROOT');
    expect(badRole.code).toBe(2);
    expect(badRole.stderr).toContain('Unknown role "ROOT"');
    expect(badRole.stdout).toBe('');
    expect(existsSync(untouched)).toBe(false);
    expect((await cli('create', '--role', 'VIEWER')).code).toBe(2);
    expect((await cli('frobnicate')).code).toBe(2);
    expect((await cli('list', '--bogus')).code).toBe(2);
    expect((await cli()).code).toBe(2);
  });

  it('exits 1 with the reason when the change is refused', async () => {
    expect((await cli('create', '--name', 'dup', '--role', 'viewer')).code).toBe(0);
    const duplicate = await cli('create', '--name', 'dup', '--role', 'VIEWER');
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toContain('TOKEN_ALREADY_EXISTS');
    expect(duplicate.stdout).toBe('');
    const missing = await cli('revoke', '--name', 'ghost');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('TOKEN_NOT_FOUND');
  });
});
