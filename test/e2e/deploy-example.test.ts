/** `npm run example:deploy` (examples/deploy/deploy.ts) against a real server: every step succeeds, narrated. */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { serverPool } from '../support/pool.js';
import { TEST_ADMIN_TOKEN } from '../support/server.js';

const pool = serverPool();

function runDemo(env: Record<string, string>): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    // Async, never spawnSync: the server under test runs in this process.
    const child = spawn('npx', ['tsx', 'examples/deploy/deploy.ts'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => process.kill(-child.pid!, 'SIGTERM'), 90_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

describe('examples/deploy', () => {
  it('runs the seeds\' workflow end to end and says what it did', { timeout: 120_000 }, async () => {
    const h = await pool.start({ env: { HELIOS_MODULES_DIR: pool.modulesDir(), HELIOS_MODULE_MAX_HEAP_MB: '32' } });
    const { code, out, err } = await runDemo({ HELIOS_URL: h.url, HELIOS_TOKEN: TEST_ADMIN_TOKEN });
    expect({ code, err: code === 0 ? '' : err, tail: code === 0 ? '' : out.slice(-2000) }).toEqual({ code: 0, err: '', tail: '' });
    for (const line of [
      'neural_predictor: registered',
      'neural_predictor: ACTIVE at 1.0.0',
      'before the rollout: served by 1.0.0',
      'PASSED:',
      'neural_network_v2: PERCENTAGE at 10%',
      'module:neural_predictor: CLOSED',
      'neural_network_v2: PERCENTAGE at 50%',
      'neural_network_v2: ALL_ON',
      'now 2.0.0 (previous 1.0.0), gated by test run',
      'after the swap: served by 2.0.0',
      'skipped: the rollouts domain is not in this build yet',
      'now 1.0.0 (previous 2.0.0)',
      'after the rollback: served by 1.0.0',
      'Done.',
    ]) {
      expect(out).toContain(line);
    }
    // The server ends where the narration says.
    const { flags, modules } = h.server.app.services;
    expect(flags.get('neural_network_v2')).toMatchObject({ enabled: true, strategy: 'ALL_ON' });
    expect(modules.get('neural_predictor')).toMatchObject({ state: 'ACTIVE', version: '1.0.0', previousVersion: '2.0.0' });

    // A second run on the same server finds the modules registered and still succeeds.
    const again = await runDemo({ HELIOS_URL: h.url, HELIOS_TOKEN: TEST_ADMIN_TOKEN });
    expect(again.code).toBe(0);
    expect(again.out).toContain('neural_predictor: already registered');
  });

  it('stops with a clear message and exit code 1 when a step is refused', { timeout: 60_000 }, async () => {
    const h = await pool.start();
    const { code, out } = await runDemo({ HELIOS_URL: h.url, HELIOS_TOKEN: 'not-a-valid-token-0123' });
    expect(code).toBe(1);
    expect(out).toMatch(/Stopped: .*(Invalid or revoked token|UNAUTHENTICATED)/);
  });
});
