/** The token CLI (`npm run token -- ...`), run as a child process against a temporary database. */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditRepository } from '../../src/audit/repository.js';
import { TokenService } from '../../src/auth/service.js';
import { ManualClock } from '../../src/clock.js';
import { openDatabase } from '../../src/db/connection.js';
import { createLogger } from '../../src/logger.js';

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
function authenticate(token: string) {
  const db = openDatabase(dbPath);
  try {
    return new TokenService({ db, audit: new AuditRepository(db), clock: new ManualClock(), logger: createLogger('silent') })
      .authenticate(token);
  } finally {
    db.close();
  }
}

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'helios-cli-'));
  dbPath = path.join(dir, 'data', 'helios.db');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('token CLI', () => {
  it('creates, lists and revokes tokens; the token is printed once on stdout', async () => {
    const created = await cli('create', '--name', 'ci', '--role', 'OPERATOR');
    expect(created.code, created.stderr).toBe(0);
    const token = created.stdout.trim();
    expect(token).toMatch(/^hel_[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toContain('shown only once');
    expect(authenticate(token)).toEqual({ name: 'ci', role: 'OPERATOR' });

    const listed = await cli('list');
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/ci\s+OPERATOR\s+active/);
    expect(listed.stdout).not.toContain(token);

    const json = await cli('list', '--json');
    expect(JSON.parse(json.stdout)).toMatchObject([{ name: 'ci', role: 'OPERATOR', revokedAt: null }]);

    const revoked = await cli('revoke', '--name', 'ci');
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(authenticate(token)).toBeNull();
    expect((await cli('list')).stdout).toMatch(/ci\s+OPERATOR\s+revoked/);
  });

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
