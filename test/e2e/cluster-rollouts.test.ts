/**
 * Rollouts in a cluster (issue 16), on the real PostgreSQL (each describe its own database,
 * dropped after): one scheduler at a time (the leader), commands on any node, every node's
 * canary statistics judged together.
 *
 * - In-process: two apps on one database. A rollout started on the node that does not lead is
 *   stepped by the leader, judging the calls the other node served (the leader serves none);
 *   both nodes show the same step and hear every event once; a pause on one node is seen by the
 *   other and stops the leader's timer. The error-rate gate aborts only because of the other
 *   node's canary failures.
 * - Processes: kill -9 of the leader mid-rollout: another node becomes the leader and finishes
 *   the rollout (PROMOTED) through the remaining steps, none twice.
 */
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { ManualClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import type { RolloutProgressEvent } from '../../src/rollouts/events.js';
import { adminGql, eventually, startNode, type ClusterNodeProcess } from '../support/cluster.js';
import { createTestPostgres, postgresAvailable, type TestPostgres } from '../support/postgres.js';

const ADMIN = 'cluster-rollouts-admin-0123456789abcdef';

function rolloutModulesDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'helios-cluster-rollouts-'));
  cpSync('examples/modules/package.json', path.join(dir, 'package.json'));
  cpSync('test/fixtures/modules/rollout', path.join(dir, 'rollout'), { recursive: true });
  return dir;
}

/** An in-process node; the nodes share one manual clock (time moves when the test says: nodes stay live meanwhile). */
function startApp(url: string, id: string, modulesDir: string, clock: ManualClock): Promise<App> {
  return createApp(
    loadConfig({
      HELIOS_DATABASE_URL: url,
      HELIOS_NODE_ID: id,
      HELIOS_HEARTBEAT_MS: '200',
      HELIOS_NODE_TIMEOUT_MS: '3600000',
      HELIOS_ADMIN_TOKEN: ADMIN,
      HELIOS_MODULES_DIR: modulesDir,
      HELIOS_MODULE_INIT_TIMEOUT_MS: '5000',
      LOG_LEVEL: 'silent',
    }),
    { clock, logger: createLogger('silent'), print: () => {} },
  );
}


const REGISTER = `mutation($name: String!) { registerModule(name: $name, modulePath: "rollout/stable.js", version: "1.0.0") { errors { code message } } }`;
const LOAD = `mutation($name: String!) { loadModule(name: $name) { errors { code message } } }`;
const MODULE_STATE = `query($name: String!) { module(name: $name) { state version } }`;
const START = `mutation($module: String!, $path: String!, $steps: [Float!], $interval: Int, $gates: RolloutGatesInput) {
  startRollout(module: $module, newVersionPath: $path, newVersion: "2.0.0", steps: $steps, stepIntervalSeconds: $interval, gates: $gates) {
    rollout { status stepIndex percentage } errors { code message } } }`;
const ROLLOUT = `query($module: String!) { rollout(module: $module) { id status stepIndex percentage nextStepAt abortReason abort { cause canary { calls failures } } } }`;
const PAUSE = `mutation($module: String!) { pauseRollout(module: $module) { rollout { status remainingSeconds } errors { code message } } }`;
const RESUME = `mutation($module: String!) { resumeRollout(module: $module) { rollout { status } errors { code message } } }`;
const INVOKE = `mutation($name: String!, $ctx: EvaluationContextInput) { invokeModule(name: $name, method: "handle", context: $ctx) { servedBy errors { code message } } }`;
const STATUS = `{ clusterStatus { leader nodes { id } } }`;

interface RolloutAnswer {
  rollout: { id: string; status: string; stepIndex: number; percentage: number; nextStepAt: string | null; abortReason: string | null; abort: { cause: string; canary: { calls: number; failures: number } | null } | null } | null;
}

async function query(url: string, sql: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as Array<Record<string, unknown>>;
  } finally {
    await client.end();
  }
}

/** The rollout's stored history: type and share, oldest first. */
async function history(url: string, rolloutId: string): Promise<string[]> {
  const rows = await query(url, 'SELECT type, percentage FROM rollout_events WHERE rollout_id = $1 ORDER BY id', [rolloutId]);
  return rows.map((r) => `${String(r.type)} ${Number(r.percentage)}`);
}

const withoutHolds = (events: string[]) => events.filter((e) => !e.startsWith('HOLDING'));

describe.skipIf(!postgresAvailable())('rollouts in a cluster of two in-process nodes', () => {
  let db: TestPostgres;
  let modulesDir: string;
  let n1: App;
  let n2: App;
  let leader: App;
  let follower: App;
  const clock = new ManualClock(Date.now());

  beforeAll(async () => {
    db = await createTestPostgres('cluster_rollouts');
    modulesDir = rolloutModulesDir();
    n1 = await startApp(db.url, 'n1', modulesDir, clock);
    n2 = await startApp(db.url, 'n2', modulesDir, clock);
    await eventually(async () => n1.services.cluster.membership.isLeader || n2.services.cluster.membership.isLeader, 'a leader');
    [leader, follower] = n1.services.cluster.membership.isLeader ? [n1, n2] : [n2, n1];
    expect(follower.services.cluster.membership.isLeader).toBe(false);
  }, 60_000);

  afterAll(async () => {
    await n2?.close();
    await n1?.close();
    await db?.drop();
  }, 60_000);

  async function withStable(name: string): Promise<void> {
    expect((await adminGql<{ registerModule: { errors: unknown[] } }>(leader, REGISTER, { name })).registerModule.errors).toEqual([]);
    expect((await adminGql<{ loadModule: { errors: unknown[] } }>(leader, LOAD, { name })).loadModule.errors).toEqual([]);
    await eventually(async () => (await adminGql<{ module: { state: string } | null }>(follower, MODULE_STATE, { name })).module?.state === 'ACTIVE', `${name} ACTIVE on the other node`);
  }

  const rolloutOn = async (app: App, module: string) => (await adminGql<RolloutAnswer>(app, ROLLOUT, { module })).rollout;
  /** The node's one scheduler timer (white box: only the leader ever arms it). */
  const timerOf = (app: App) => (app.services.rollouts as unknown as { timer: unknown }).timer;
  /** Moves the shared clock to the rollout's next judgement, once `app` knows it. */
  async function toNextStep(app: App, module: string): Promise<void> {
    const r = await rolloutOn(app, module);
    clock.set(new Date(r!.nextStepAt!).getTime());
  }
  /** Calls on one node for new users until `canary` of them were served by the canary. */
  async function canaryCalls(app: App, module: string, canary: number, from: number): Promise<number> {
    let served = 0;
    let user = from;
    while (served < canary) {
      const result = await app.services.modules.invoke(module, 'handle', null, { userId: `u${user++}` });
      if (result.servedBy === '2.0.0') served++;
      if (user - from > 500) throw new Error('the canary serves nothing');
    }
    return user;
  }

  it('a rollout started on the node that does not lead is stepped by the leader, judging the calls the other node served', async () => {
    await withStable('pricing');
    const heard = new Map<App, RolloutProgressEvent[]>([[leader, []], [follower, []]]);
    const offs = [leader, follower].map((app) => app.services.bus.on('rolloutProgress', (e) => { heard.get(app)!.push(e); }));

    const started = await adminGql<{ startRollout: { rollout: { status: string; stepIndex: number; percentage: number }; errors: unknown[] } }>(follower, START, {
      module: 'pricing', path: 'rollout/healthy.js', steps: [50, 100], interval: 1, gates: { minCalls: 3, maxFailureRate: 0.5 },
    });
    expect(started.startRollout.errors).toEqual([]);
    expect(started.startRollout.rollout).toMatchObject({ status: 'RUNNING', stepIndex: 0, percentage: 50 });
    // The leader knows it at once (the event); the node that started it arms no timer of its own.
    await eventually(async () => (await rolloutOn(leader, 'pricing'))?.status === 'RUNNING', 'the rollout on the leader');
    await eventually(async () => timerOf(leader) !== null, 'the leader\'s timer');
    expect(timerOf(follower)).toBeNull();

    // Only the follower serves calls: the leader can only step on the follower's figures (minCalls 3).
    let user = await canaryCalls(follower, 'pricing', 3, 0);
    expect(leader.services.rollouts.stats('pricing')!.canary.calls).toBe(0);
    await toNextStep(leader, 'pricing');
    await eventually(async () => {
      const [a, b] = await Promise.all([rolloutOn(leader, 'pricing'), rolloutOn(follower, 'pricing')]);
      return a?.stepIndex === 1 && b?.stepIndex === 1 && a.percentage === 100 && b.percentage === 100 && a.status === 'RUNNING' && b.status === 'RUNNING';
    }, 'both nodes at the second step');
    // Each node starts the step's figures over.
    expect(follower.services.rollouts.stats('pricing')!.canary.calls).toBe(0);
    user = await canaryCalls(follower, 'pricing', 3, user);
    await toNextStep(leader, 'pricing');
    const promoted = await eventually(async () => {
      const [a, b] = await Promise.all([rolloutOn(leader, 'pricing'), rolloutOn(follower, 'pricing')]);
      return a?.status === 'PROMOTED' && b?.status === 'PROMOTED' ? a : null;
    }, 'PROMOTED on both nodes');
    // One scheduler: every step once, in order.
    expect(await history(db.url, promoted.id)).toEqual(['STARTED 0', 'STEP 50', 'STEP 100', 'PROMOTED 100']);
    const automatic = await query(db.url, `SELECT action FROM audit_log WHERE target_type = 'ROLLOUT' AND actor = 'rollout' ORDER BY id`);
    expect(automatic.map((r) => r.action)).toEqual(['rolloutStep', 'rolloutStep', 'rolloutPromote']);
    expect(timerOf(follower)).toBeNull();
    // Every node heard every event once (its own and the other's).
    await eventually(async () => heard.get(follower)!.length === 4 && heard.get(leader)!.length === 4, 'the events on both nodes');
    for (const app of [leader, follower]) expect(heard.get(app)!.map((e) => `${e.type} ${e.percentage}`)).toEqual(['STARTED 0', 'STEP 50', 'STEP 100', 'PROMOTED 100']);
    offs.forEach((off) => off());
    // The canary is the active version everywhere.
    for (const app of [leader, follower]) {
      await eventually(async () => (await adminGql<{ module: { version: string } }>(app, MODULE_STATE, { name: 'pricing' })).module.version === '2.0.0', 'version 2.0.0');
    }
  }, 60_000);

  it('a pause on one node stops the leader\'s timer; a resume on the other goes on with the time left', async () => {
    await withStable('tariffs');
    const started = await adminGql<{ startRollout: { errors: unknown[] } }>(leader, START, {
      module: 'tariffs', path: 'rollout/healthy.js', steps: [50, 100], interval: 2, gates: { minCalls: 1 },
    });
    expect(started.startRollout.errors).toEqual([]);
    await eventually(async () => (await rolloutOn(follower, 'tariffs'))?.status === 'RUNNING', 'the rollout on the follower');
    const paused = await adminGql<{ pauseRollout: { rollout: { status: string } | null; errors: unknown[] } }>(follower, PAUSE, { module: 'tariffs' });
    expect(paused.pauseRollout.errors).toEqual([]);
    expect(paused.pauseRollout.rollout?.status).toBe('PAUSED');
    await eventually(async () => (await rolloutOn(leader, 'tariffs'))?.status === 'PAUSED', 'PAUSED on the leader');
    // Pausing again on the leader is refused: the state is shared.
    const again = await adminGql<{ pauseRollout: { errors: Array<{ code: string }> } }>(leader, PAUSE, { module: 'tariffs' });
    expect(again.pauseRollout.errors.map((e) => e.code)).toEqual(['INVALID_ROLLOUT_STATE']);
    // Long past the step's deadline: no judgement while paused (the leader has no timer armed).
    await eventually(async () => timerOf(leader) === null, 'the leader\'s timer disarmed');
    clock.advance(60_000);
    expect(await rolloutOn(leader, 'tariffs')).toMatchObject({ status: 'PAUSED', stepIndex: 0 });
    const resumed = await adminGql<{ resumeRollout: { rollout: { status: string } | null; errors: unknown[] } }>(leader, RESUME, { module: 'tariffs' });
    expect(resumed.resumeRollout.errors).toEqual([]);
    // With the time that was left (2 s): no calls at all, so the leader's timer holds it (HOLDING).
    await eventually(async () => (await rolloutOn(follower, 'tariffs'))?.status === 'RUNNING', 'RUNNING on the follower');
    const left = new Date((await rolloutOn(follower, 'tariffs'))!.nextStepAt!).getTime() - clock.now();
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(2_000);
    await toNextStep(leader, 'tariffs');
    await eventually(async () => (await rolloutOn(follower, 'tariffs'))?.status === 'HOLDING', 'HOLDING on the follower');
    const { rollout } = await adminGql<RolloutAnswer>(leader, ROLLOUT, { module: 'tariffs' });
    expect(await history(db.url, rollout!.id)).toEqual(['STARTED 0', 'STEP 50', 'PAUSED 50', 'RESUMED 50', 'HOLDING 50']);
    await adminGql(follower, `mutation { abortRollout(module: "tariffs") { errors { code } } }`);
    await eventually(async () => (await rolloutOn(leader, 'tariffs'))?.status === 'ABORTED', 'ABORTED on the leader');
  }, 60_000);

  it('the error-rate gate judges both nodes\' canary calls: it fails only with the other node\'s failures', async () => {
    await withStable('quotes');
    const started = await adminGql<{ startRollout: { errors: unknown[] } }>(leader, START, {
      module: 'quotes', path: 'rollout/healthy.js', steps: [50, 100], interval: 2, gates: { minCalls: 10, maxFailureRate: 0.2 },
    });
    expect(started.startRollout.errors).toEqual([]);
    await eventually(async () => (await rolloutOn(follower, 'quotes'))?.status === 'RUNNING', 'the rollout on the follower');
    const mine = leader.services.rollouts.canaryStats('quotes')!;
    const theirs = follower.services.rollouts.canaryStats('quotes')!;
    // The leader's own canary calls all succeed (alone they pass the gate); the other node's 15 of 20 fail.
    for (let i = 0; i < 20; i++) mine.canary.record(2, false);
    for (let i = 0; i < 20; i++) theirs.canary.record(2, i < 15);
    expect(leader.services.rollouts.stats('quotes')!.canary).toMatchObject({ calls: 20, failures: 0 });
    // rollout { canary } shows the whole cluster's step as last reported (every heartbeat).
    await eventually(async () => {
      const answer = await adminGql<{ rollout: { canary: { calls: number; failures: number } | null } | null }>(
        leader, 'query($m: String!) { rollout(module: $m) { canary { calls failures } } }', { m: 'quotes' },
      );
      return answer.rollout?.canary?.calls === 40 && answer.rollout.canary.failures === 15;
    }, 'the summed canary figures on the leader');
    await toNextStep(leader, 'quotes');
    const aborted = await eventually(async () => {
      const r = await rolloutOn(leader, 'quotes');
      return r?.status === 'ABORTED' ? r : null;
    }, 'ABORTED');
    expect(aborted.abort).toMatchObject({ cause: 'FAILURE_RATE', canary: { calls: 40, failures: 15 } });
    expect(aborted.abortReason).toContain('15 of 40 calls');
    await eventually(async () => (await rolloutOn(follower, 'quotes'))?.status === 'ABORTED', 'ABORTED on the follower');
    // A finished rollout's per-node figures are gone (each node drops its own after any write it had under way).
    await eventually(async () => (await query(db.url, 'SELECT node FROM rollout_node_stats WHERE rollout_id = $1', [aborted.id])).length === 0, 'no per-node figures left');
  }, 60_000);

  it('when the leader stops, the other node takes over the scheduler and goes on at the same step with the time left', async () => {
    await withStable('fares');
    const started = await adminGql<{ startRollout: { errors: unknown[] } }>(follower, START, {
      module: 'fares', path: 'rollout/healthy.js', steps: [50, 100], interval: 10, gates: { minCalls: 1 },
    });
    expect(started.startRollout.errors).toEqual([]);
    await eventually(async () => (await rolloutOn(leader, 'fares'))?.status === 'RUNNING', 'the rollout on the leader');
    const before = (await rolloutOn(follower, 'fares'))!;
    clock.advance(4_000);
    await leader.close();
    await eventually(async () => follower.services.cluster.membership.isLeader, 'the follower leads');
    // Armed from the database: the same step, the same deadline (6 s left).
    await eventually(async () => timerOf(follower) !== null, 'the new leader\'s timer');
    expect(await rolloutOn(follower, 'fares')).toMatchObject({ status: 'RUNNING', stepIndex: 0, nextStepAt: before.nextStepAt });
    await canaryCalls(follower, 'fares', 1, 0);
    clock.advance(5_000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await rolloutOn(follower, 'fares')).toMatchObject({ stepIndex: 0 });
    await toNextStep(follower, 'fares');
    await eventually(async () => (await rolloutOn(follower, 'fares'))?.stepIndex === 1, 'the second step');
    await canaryCalls(follower, 'fares', 1, 100);
    await toNextStep(follower, 'fares');
    const done = await eventually(async () => {
      const r = await rolloutOn(follower, 'fares');
      return r?.status === 'PROMOTED' ? r : null;
    }, 'PROMOTED');
    expect(await history(db.url, done.id)).toEqual(['STARTED 0', 'STEP 50', 'STEP 100', 'PROMOTED 100']);
  }, 60_000);
});

describe.skipIf(!postgresAvailable())('a rollout whose leader is killed with -9 (three processes)', () => {
  let db: TestPostgres;
  const nodes: ClusterNodeProcess[] = [];

  beforeAll(async () => {
    db = await createTestPostgres('cluster_rollouts_kill');
    const modulesDir = rolloutModulesDir();
    const env = { HELIOS_MODULES_DIR: modulesDir, HELIOS_MODULE_INIT_TIMEOUT_MS: '5000' };
    nodes.push(...(await Promise.all(['node-a', 'node-b', 'node-c'].map((id) => startNode(db.url, id, env)))));
  }, 90_000);

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop().catch(() => undefined)));
    await db?.drop();
  }, 60_000);

  const statusOf = (n: ClusterNodeProcess) => n.data<{ clusterStatus: { leader: string | null; nodes: Array<{ id: string }> } }>(STATUS);
  const rolloutOf = async (n: ClusterNodeProcess) => (await n.data<RolloutAnswer>(ROLLOUT, { module: 'pricing' })).rollout;

  it('another node becomes the leader and finishes the rollout at the right steps', async () => {
    const first = await eventually(async () => {
      const s = await statusOf(nodes[0]!);
      return s.clusterStatus.nodes.length === 3 && s.clusterStatus.leader ? s.clusterStatus.leader : null;
    }, 'three nodes and a leader', 20_000);
    const oldLeader = nodes.find((n) => n.id === first)!;
    const others = nodes.filter((n) => n !== oldLeader);
    const [origin] = others as [ClusterNodeProcess, ClusterNodeProcess];

    expect((await origin.data<{ registerModule: { errors: unknown[] } }>(REGISTER, { name: 'pricing' })).registerModule.errors).toEqual([]);
    expect((await origin.data<{ loadModule: { errors: unknown[] } }>(LOAD, { name: 'pricing' })).loadModule.errors).toEqual([]);
    for (const n of nodes) {
      await eventually(async () => (await n.data<{ module: { state: string } | null }>(MODULE_STATE, { name: 'pricing' })).module?.state === 'ACTIVE', `pricing ACTIVE on ${n.id}`);
    }
    const started = await origin.data<{ startRollout: { rollout: { status: string }; errors: unknown[] } }>(START, {
      module: 'pricing', path: 'rollout/healthy.js', steps: [25, 50, 75, 100], interval: 2, gates: { minCalls: 1, maxFailureRate: 0.5 },
    });
    expect(started.startRollout.errors).toEqual([]);
    expect(started.startRollout.rollout.status).toBe('RUNNING');

    // Calls on every node still up (one call in a step is enough; the leader sums the nodes).
    const alive = new Set(nodes);
    let stop = false;
    let user = 0;
    const pump = (async () => {
      while (!stop) {
        await Promise.all([...alive].map((n) => n.gql(INVOKE, { name: 'pricing', ctx: { userId: `u${user++}` } }).catch(() => undefined)));
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    try {
      await eventually(async () => ((await rolloutOf(origin))?.stepIndex ?? 0) >= 1, 'the second step', 15_000);
      alive.delete(oldLeader);
      await oldLeader.kill();
      const next = await eventually(async () => {
        const s = await statusOf(origin);
        return s.clusterStatus.leader && s.clusterStatus.leader !== first ? s.clusterStatus.leader : null;
      }, 'a new leader', 15_000);
      expect(others.map((n) => n.id)).toContain(next);
      const done = await eventually(async () => {
        const rs = await Promise.all(others.map(rolloutOf));
        return rs.every((r) => r?.status === 'PROMOTED') ? rs[0] : null;
      }, 'PROMOTED on the surviving nodes', 30_000);
      // Every step once, in order, across the two schedulers; the canary is the active version.
      // (A step that saw no canary call is judged again an interval later: HOLDING, then the step.)
      expect(withoutHolds(await history(db.url, done!.id))).toEqual(['STARTED 0', 'STEP 25', 'STEP 50', 'STEP 75', 'STEP 100', 'PROMOTED 100']);
      for (const n of others) {
        await eventually(async () => (await n.data<{ module: { version: string } }>(MODULE_STATE, { name: 'pricing' })).module.version === '2.0.0', `2.0.0 on ${n.id}`);
      }
    } finally {
      stop = true;
      await pump;
    }
  }, 120_000);
});
