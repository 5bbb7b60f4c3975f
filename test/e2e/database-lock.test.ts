/**
 * One Helios per database (src/db/lock.ts): a second process, real or in this one, refuses with
 * DATABASE_IN_USE before it touches the database, and a holder killed with kill -9 leaves no
 * lock behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DatabaseInUseError } from '../../src/db/lock.js';
import {
  AuditLogDocument,
  LoadModuleDocument,
  ModuleDocument,
  RegisterModuleDocument,
  TestModuleDocument,
  TestRunDocument,
} from '../gql/graphql.js';
import { serverPool } from '../support/pool.js';
import { startTestServer, TEST_ADMIN_TOKEN } from '../support/server.js';

const pool = serverPool();

/** A module whose own test never settles (for two minutes): its run stays RUNNING. */
const HANGING_TESTS = `export default {
  type: 'GENERIC',
  async create() { return { async ping() { return 'pong'; } }; },
  tests: [{ name: 'waits', required: false, timeoutMs: 120000, run: () => new Promise(() => {}) }],
};
`;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `src/main.ts` in a child process, as `npm run dev` runs it. */
function runMain(dbPath: string, modulesDir: string): { child: ChildProcess; ready: Promise<void>; exited: Promise<Exit> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: process.cwd(),
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      HELIOS_DB_PATH: dbPath,
      HELIOS_MODULES_DIR: modulesDir,
      HELIOS_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (stdout.includes('Helios is ready')) onReady();
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<Exit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, ready, exited };
}

/** The error a start is refused with; a server that starts anyway is stopped (and null returned). */
async function refusal(start: Promise<{ stop(): Promise<void> }>): Promise<unknown> {
  return start.then(
    async (server) => {
      await server.stop();
      return null;
    },
    (error: unknown) => error,
  );
}

describe('one Helios process per database', () => {
  it('refuses a second server, in this process or another, before it changes anything', async () => {
    const modulesDir = pool.modulesDir();
    writeFileSync(path.join(modulesDir, 'hanging_tests.js'), HANGING_TESTS);
    const h = await pool.start({ env: { HELIOS_MODULES_DIR: modulesDir } });
    await h.query(RegisterModuleDocument, { name: 'counter', modulePath: 'counter.js', version: '1' });
    expect((await h.query(LoadModuleDocument, { name: 'counter' })).loadModule.errors).toEqual([]);
    await h.query(RegisterModuleDocument, { name: 'patient', modulePath: 'hanging_tests.js', version: '1' });
    const run = (await h.query(TestModuleDocument, { name: 'patient', moduleType: 'GENERIC' })).testModule.testRun!;
    expect(run.status).toBe('RUNNING');
    const moduleBefore = (await h.query(ModuleDocument, { name: 'counter' })).module!;
    const auditBefore = (await h.query(AuditLogDocument, { first: 1 })).auditLog.edges[0]!.node.id;

    // In this process: createApp is refused with a typed error naming the database and holder.
    const error = await refusal(startTestServer({ dir: h.dir, env: { HELIOS_MODULES_DIR: modulesDir } }));
    expect(error).toBeInstanceOf(DatabaseInUseError);
    const inUse = error as DatabaseInUseError;
    expect(inUse.code).toBe('DATABASE_IN_USE');
    expect(inUse.holder).toMatchObject({ pid: process.pid, host: hostname() });
    expect(inUse.message).toContain(`The database ${h.dbPath} is in use by another Helios process (pid ${process.pid} on ${hostname()}, started `);

    // Another process (`npm run dev` beside `npm start`): a clean message and a non-zero exit.
    const started = Date.now();
    const other = runMain(h.dbPath, modulesDir);
    const exit = await other.exited;
    expect(exit.code).toBe(1);
    expect(exit.stdout).not.toContain('Helios is ready');
    expect(exit.stderr).toContain(`Helios did not start (DATABASE_IN_USE): The database ${h.dbPath} is in use by another Helios process (pid ${process.pid} on ${hostname()}`);
    expect(exit.stderr).not.toContain('    at '); // no stack trace
    expect(Date.now() - started).toBeLessThan(20_000);

    // The live server was not touched: its run is still RUNNING, its module as it was.
    expect((await h.query(TestRunDocument, { id: run.id })).testRun!.status).toBe('RUNNING');
    const moduleAfter = (await h.query(ModuleDocument, { name: 'counter' })).module!;
    expect(moduleAfter).toEqual(moduleBefore);
    expect((await h.query(AuditLogDocument, { first: 1 })).auditLog.edges[0]!.node.id).toBe(auditBefore);
    expect((await fetch(new URL('/health', h.url))).status).toBe(200);

    // Once the first one stops, the database is free again.
    await pool.stop(h);
    const next = await pool.start({ dir: h.dir, env: { HELIOS_MODULES_DIR: modulesDir } });
    expect((await next.query(ModuleDocument, { name: 'counter' })).module!.state).toBe('ACTIVE');
  });

  it('is not held by a process killed with kill -9', async () => {
    const modulesDir = pool.modulesDir();
    const dir = pool.track(mkdtempSync(path.join(tmpdir(), 'helios-lock-')));
    const dbPath = path.join(dir, 'helios.db');
    const holder = runMain(dbPath, modulesDir);
    await Promise.race([holder.ready, holder.exited.then((e) => { throw new Error(`the first server exited: ${e.stderr}`); })]);

    const refused = await refusal(startTestServer({ dir, env: { HELIOS_MODULES_DIR: modulesDir } }));
    expect(refused).toBeInstanceOf(DatabaseInUseError);
    expect((refused as DatabaseInUseError).holder).toMatchObject({ pid: holder.child.pid, host: hostname() });
    expect((refused as DatabaseInUseError).holder!.command).toContain('src/main.ts');

    holder.child.kill('SIGKILL');
    expect((await holder.exited).signal).toBe('SIGKILL');
    const h = await pool.start({ dir, env: { HELIOS_MODULES_DIR: modulesDir } });
    expect((await h.query(AuditLogDocument, { first: 1 })).auditLog.edges.length).toBe(1);
  });
});
