/** `npm run example:deploy` (examples/deploy/deploy.ts) against a real server: every step succeeds, narrated, including a promoted and an aborted rollout. */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { serverPool } from '../support/pool.js';
import { TEST_ADMIN_TOKEN } from '../support/server.js';
import { RolloutDocument, RolloutsDocument } from '../gql/graphql.js';

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
      'STARTED: canary loaded beside the stable version',
      'STEP: canary at 50%',
      'STEP: canary at 100%',
      'PROMOTED: every step passed its gates',
      'neural_predictor now 3.0.0 (previous 2.0.0), canary none',
      'after the promotion: served by 3.0.0',
      'ABORTED: ',
      'a call the canary failed: CALL_FAILED: ',
      'after the abort, 50 calls from 50 users: 50 served by 3.0.0',
      'now 2.0.0 (previous 3.0.0)',
      'after the rollback: served by 2.0.0',
      'Done.',
    ]) {
      expect(out).toContain(line);
    }
    // The server ends where the narration says.
    const { flags, modules } = h.server.app.services;
    expect(flags.get('neural_network_v2')).toMatchObject({ enabled: true, strategy: 'ALL_ON' });
    expect(modules.get('neural_predictor')).toMatchObject({ state: 'ACTIVE', version: '2.0.0', previousVersion: '3.0.0' });
    // Two automatic rollouts happened, as narrated: 3.0.0 promoted, then 4.0.0 aborted by its failing calls.
    const history = (await h.query(RolloutsDocument, { module: 'neural_predictor' })).rollouts.nodes;
    expect(history.map((r) => [r.toVersion, r.status])).toEqual([['4.0.0', 'ABORTED'], ['3.0.0', 'PROMOTED']]);
    const aborted = (await h.query(RolloutDocument, { module: 'neural_predictor' })).rollout!;
    expect(aborted.abort?.cause).toMatch(/^(BREAKER_OPEN|FAILURE_RATE)$/);
    // HOLDING (too few canary calls in a second) may come between on a slow machine; no second step ever does.
    expect(aborted.events.map((e) => e.type).filter((t) => t !== 'HOLDING')).toEqual(['STARTED', 'STEP', 'ABORTED']);
    expect(aborted.canary).toBeNull();
    expect(out).toMatch(/PROMOTED: every step passed its gates[^\n]*\n\s+neural_predictor now 3\.0\.0/);
    expect(out).toMatch(/ABORTED: (BREAKER_OPEN|FAILURE_RATE)/);

    // A second run on the same server finds the modules registered and still succeeds.
    const again = await runDemo({ HELIOS_URL: h.url, HELIOS_TOKEN: TEST_ADMIN_TOKEN });
    expect(again.code).toBe(0);
    expect(again.out).toContain('neural_predictor: already registered');
    expect(again.out).toContain('PROMOTED: every step passed its gates');
    expect(again.out).toMatch(/ABORTED: (BREAKER_OPEN|FAILURE_RATE)/);
  });

  it('stops with a clear message and exit code 1 when a step is refused', { timeout: 60_000 }, async () => {
    const h = await pool.start();
    const { code, out } = await runDemo({ HELIOS_URL: h.url, HELIOS_TOKEN: 'not-a-valid-token-0123' });
    expect(code).toBe(1);
    expect(out).toMatch(/Stopped: .*(Invalid or revoked token|UNAUTHENTICATED)/);
  });
});
