/**
 * Modules and test runs in a cluster (issue 16), on the real PostgreSQL (each describe its own
 * database, dropped after): the desired state is shared, each node runs its own workers.
 *
 * - In-process: three apps (n1, n2, n3) on one database and one modules folder: a module
 *   registered and loaded on n1 is ACTIVE at the same version on n2 (`module { nodes }` shows
 *   every node); a swap on n1 is served by n2; an unload on n2 is done on n1; the shared row and
 *   the audit are written once, by the origin; a canary staged on the scheduler's node is staged
 *   and routed on the others and promoted everywhere; a test run's node is recorded, and a
 *   restarting node marks only its own unfinished runs INTERRUPTED; the leader marks those of a
 *   node that left the cluster and ends their feeds on every node.
 * - Processes: kill -9 of a node mid-swap leaves the others serving, and they converge.
 * - SQLite (a cluster of one): `module { nodes }` is this node alone, from memory.
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { RolloutStats } from '../../src/rollouts/stats.js';
import { TestRunRepository } from '../../src/testing/repository.js';
import { adminGql, eventually, startNode, type ClusterNodeProcess } from '../support/cluster.js';
import { makeModulesDir } from '../support/modules.js';
import { createTestPostgres, postgresAvailable, type TestPostgres } from '../support/postgres.js';

const ADMIN = 'cluster-modules-admin-0123456789abcdef';

function startApp(url: string, id: string, modulesDir: string): Promise<App> {
  return createApp(
    loadConfig({
      HELIOS_DATABASE_URL: url,
      HELIOS_NODE_ID: id,
      HELIOS_HEARTBEAT_MS: '200',
      HELIOS_NODE_TIMEOUT_MS: '2000',
      HELIOS_ADMIN_TOKEN: ADMIN,
      HELIOS_MODULES_DIR: modulesDir,
      LOG_LEVEL: 'silent',
    }),
    { logger: createLogger('silent'), print: () => {} },
  );
}


interface NodesAnswer {
  module: { state: string; version: string; nodes: Array<{ node: string; state: string; version: string | null }> } | null;
}
const NODES = `query($name: String!) { module(name: $name) { state version nodes { node state version updatedAt } } }`;

/** A second file of the counter module (the same code under another path). */
function addCounterCopy(modulesDir: string, file: string): void {
  copyFileSync(path.join(modulesDir, 'counter.js'), path.join(modulesDir, file));
}

async function count(url: string, sql: string, params: unknown[] = []): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(sql, params);
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

describe.skipIf(!postgresAvailable())('modules in a cluster of three in-process nodes', () => {
  let db: TestPostgres;
  let modulesDir: string;
  let n1: App;
  let n2: App;
  let n3: App;

  beforeAll(async () => {
    db = await createTestPostgres('cluster_modules');
    modulesDir = makeModulesDir();
    addCounterCopy(modulesDir, 'counter_b.js');
    addCounterCopy(modulesDir, 'counter_c.js');
    n1 = await startApp(db.url, 'n1', modulesDir);
    [n2, n3] = await Promise.all([startApp(db.url, 'n2', modulesDir), startApp(db.url, 'n3', modulesDir)]);
  }, 60_000);

  afterAll(async () => {
    for (const app of [n1, n2, n3]) await app?.close().catch(() => undefined);
    await db?.drop();
    rmSync(modulesDir, { recursive: true, force: true });
  }, 60_000);

  const served = async (app: App, name: string) => (await app.services.modules.invoke(name, 'get', null)).result as { version: string; count: number };

  it('register and load on n1: every node serves it ACTIVE at the same version, and module { nodes } shows each', async () => {
    await n1.services.modules.register('admin', { name: 'counter', modulePath: 'counter.js', version: '1.0.0' });
    await n1.services.modules.load('admin', 'counter');
    for (const app of [n2, n3]) {
      await eventually(async () => app.services.modules.get('counter')?.state === 'ACTIVE', `counter ACTIVE on ${app.services.cluster.nodeId}`);
      expect((await served(app, 'counter')).version).toBe('1.0.0');
    }
    const answer = await eventually(async () => {
      const a = await adminGql<NodesAnswer>(n2, NODES, { name: 'counter' });
      return a.module!.nodes.length === 3 && a.module!.nodes.every((n) => n.state === 'ACTIVE') ? a : null;
    }, 'three nodes reporting ACTIVE');
    expect(answer.module!.nodes.map((n) => [n.node, n.state, n.version])).toEqual([
      ['n1', 'ACTIVE', '1.0.0'], ['n2', 'ACTIVE', '1.0.0'], ['n3', 'ACTIVE', '1.0.0'],
    ]);
    // The origin wrote the shared row and the audit once; the other nodes only converged.
    expect(await count(db.url, `SELECT count(*) AS n FROM audit_log WHERE target = 'counter' AND action IN ('registerModule', 'loadModule')`)).toBe(2);
    expect(await count(db.url, `SELECT count(*) AS n FROM modules WHERE name = 'counter' AND desired_state = 'ACTIVE' AND state = 'ACTIVE'`)).toBe(1);
  });

  it('swap on n1: n2 and n3 serve the new version (state moved across on each node), audited once', async () => {
    await n2.services.modules.invoke('counter', 'increment', 5);
    const { record } = await n1.services.modules.swap('admin', 'counter', { newVersionPath: 'counter_b.js', newVersion: '2.0.0' });
    expect(record.version).toBe('2.0.0');
    for (const app of [n2, n3]) {
      await eventually(async () => (await served(app, 'counter')).version === '2.0.0', `2.0.0 on ${app.services.cluster.nodeId}`);
    }
    // n2's own count (5) moved across its own swap: each node's worker keeps its own state.
    expect((await served(n2, 'counter')).count).toBe(5);
    expect((await served(n3, 'counter')).count).toBe(0);
    expect(n2.services.modules.get('counter')).toMatchObject({ version: '2.0.0', modulePath: 'counter_b.js', previousVersion: '1.0.0', previousModulePath: 'counter.js' });
    expect(await count(db.url, `SELECT count(*) AS n FROM audit_log WHERE target = 'counter' AND action = 'swapModule'`)).toBe(1);
    await eventually(async () => {
      const a = await adminGql<NodesAnswer>(n3, NODES, { name: 'counter' });
      return a.module!.nodes.every((n) => n.version === '2.0.0');
    }, 'every node reporting 2.0.0');
    // A rollback on n3 is done everywhere too.
    await n3.services.modules.rollback('admin', 'counter');
    for (const app of [n1, n2]) {
      await eventually(async () => (await served(app, 'counter')).version === '1.0.0', `rolled back on ${app.services.cluster.nodeId}`);
    }
  });

  it('a reload (forceReload) on n2 re-reads the file on every node', async () => {
    const before = await Promise.all([n1, n3].map(async (app) => ((await app.services.modules.invoke('counter', 'get', null)).result as { moduleId: number }).moduleId));
    await n2.services.modules.load('admin', 'counter', { forceReload: true });
    for (const [i, app] of [n1, n3].entries()) {
      await eventually(async () => ((await app.services.modules.invoke('counter', 'get', null)).result as { moduleId: number }).moduleId !== before[i], `reloaded on ${app.services.cluster.nodeId}`);
    }
  });

  it('unload on n2: n1 and n3 unload it too; load on n3 brings it back everywhere; unregister on n1 forgets it everywhere', async () => {
    await n2.services.modules.unload('admin', 'counter');
    for (const app of [n1, n3]) {
      await eventually(async () => app.services.modules.get('counter')?.state === 'UNLOADED', `UNLOADED on ${app.services.cluster.nodeId}`);
      expect(app.services.modules.activeVersion('counter')).toBeNull();
    }
    await expect(n1.services.modules.invoke('counter', 'get', null)).rejects.toMatchObject({ code: 'INVALID_MODULE_STATE' });
    await n3.services.modules.load('admin', 'counter');
    await eventually(async () => n1.services.modules.get('counter')?.state === 'ACTIVE', 'ACTIVE again on n1');
    await n3.services.modules.unload('admin', 'counter');
    await eventually(async () => [n1, n2].every((a) => a.services.modules.get('counter')?.state === 'UNLOADED'), 'UNLOADED again');
    await n1.services.modules.unregister('admin', 'counter');
    for (const app of [n2, n3]) await eventually(async () => app.services.modules.get('counter') === null, `forgotten on ${app.services.cluster.nodeId}`);
    await eventually(async () => (await n2.services.modules.nodeStates('counter')).length === 0, 'no node state left');
  });

  it('a module with a dependency converges in order, and a load that fails reports the failure per node', async () => {
    await n1.services.modules.register('admin', { name: 'dep', modulePath: 'counter.js', version: 'd1' });
    await n1.services.modules.register('admin', { name: 'top', modulePath: 'counter_c.js', version: 't1', dependencies: ['dep'] });
    await n1.services.modules.load('admin', 'top');
    for (const app of [n2, n3]) {
      await eventually(async () => ['dep', 'top'].every((m) => app.services.modules.get(m)?.state === 'ACTIVE'), `dep and top on ${app.services.cluster.nodeId}`);
    }
    await n2.services.modules.unload('admin', 'dep', true);
    await eventually(async () => [n1, n3].every((a) => ['dep', 'top'].every((m) => a.services.modules.get(m)?.state === 'UNLOADED')), 'cascade everywhere');

    await n1.services.modules.register('admin', { name: 'broken', modulePath: 'bad/throws_in_create.js', version: 'b1' });
    await expect(n1.services.modules.load('admin', 'broken')).rejects.toMatchObject({ code: 'MODULE_LOAD_FAILED' });
    // The desired state (ACTIVE) is shared: each node tries, and each reports its own FAILED.
    const answer = await eventually(async () => {
      const a = await adminGql<NodesAnswer>(n3, NODES, { name: 'broken' });
      return a.module!.nodes.length === 3 && a.module!.nodes.every((n) => n.state === 'FAILED') ? a : null;
    }, 'FAILED on every node');
    expect(answer.module!.nodes.every((n) => n.version === null)).toBe(true);
    expect(n2.services.modules.get('broken')).toMatchObject({ state: 'FAILED', desiredState: 'ACTIVE' });
    expect(n2.services.modules.get('broken')!.lastError).toMatch(/.+/);
    // The shared row is the origin's view, written once.
    expect(await count(db.url, `SELECT count(*) AS n FROM audit_log WHERE target = 'broken' AND action = 'loadModule'`)).toBe(1);
  });

  it('a canary staged by the rollout side on n1 is staged and routed on n2, dropped everywhere, and promoted everywhere', async () => {
    await n1.services.modules.register('admin', { name: 'canaried', modulePath: 'counter.js', version: 'c1' });
    await n1.services.modules.load('admin', 'canaried');
    await eventually(async () => n2.services.modules.get('canaried')?.state === 'ACTIVE', 'canaried on n2');
    const remoteStats = new RolloutStats();
    n2.services.modules.setRemoteCanaryStats(() => remoteStats);
    // The split flag: every call to the canary (it propagates like every flag).
    await setAllOn(n1, 'canaried_split');
    await eventually(async () => n2.services.flags.get('canaried_split')?.enabled === true, 'the split flag on n2');
    const rm = n1.services.modules.rolloutModules();
    const plan = await rm.planCanary('canaried', 'counter_b.js', 'c2');
    await rm.stageCanary(plan, { actor: 'rollout', flag: 'canaried_split', testWith: null, stats: new RolloutStats() });
    await eventually(async () => n2.services.modules.canaryOf('canaried')?.version === 'c2', 'the canary on n2');
    const answer = await n2.services.modules.invoke('canaried', 'get', null, { userId: 'u1' });
    expect(answer.servedBy).toBe('c2');
    expect(remoteStats.canary.callCount).toBe(1);
    // Dropped on n1: n2 stops routing to it.
    await rm.dropCanary('canaried', 'rollout');
    await eventually(async () => n2.services.modules.canaryOf('canaried') === null, 'the canary dropped on n2');
    expect((await n2.services.modules.invoke('canaried', 'get', null, { userId: 'u1' })).servedBy).toBe('c1');
    // Staged again and promoted: every node serves c2 as its active version.
    await rm.stageCanary(await rm.planCanary('canaried', 'counter_b.js', 'c2'), { actor: 'rollout', flag: 'canaried_split', testWith: null, stats: new RolloutStats() });
    await eventually(async () => [n2, n3].every((a) => a.services.modules.canaryOf('canaried')?.version === 'c2'), 'the canary on n2 and n3');
    await n2.services.modules.invoke('canaried', 'increment', 7, { userId: 'u1' });
    await rm.promoteCanary('canaried', 'rollout');
    for (const app of [n2, n3]) {
      await eventually(async () => app.services.modules.activeVersion('canaried')?.version === 'c2' && app.services.modules.canaryOf('canaried') === null, `promoted on ${app.services.cluster.nodeId}`);
      expect(app.services.modules.get('canaried')).toMatchObject({ version: 'c2', previousVersion: 'c1' });
    }
    // n2 kept the state its canary built while serving (no new load).
    expect(((await n2.services.modules.invoke('canaried', 'get', null)).result as { count: number }).count).toBe(7);
  });

  it('a run on n1 streams its progress live to a follower on n3 (stored part, then the rest), ending with RUN_FINISHED', async () => {
    await n1.services.modules.register('admin', { name: 'streamed', modulePath: 'counter.js', version: 's1', moduleType: 'GENERIC' });
    await eventually(async () => n3.services.modules.get('streamed') !== null, 'streamed registered on n3');
    const startedOnN3: string[] = [];
    const off = n3.services.bus.on('testProgress', (event) => {
      if (event.type === 'RUN_STARTED') startedOnN3.push(event.runId);
    });
    const run = await n1.services.testing.testModule('admin', 'streamed', 'GENERIC');
    const onN1: string[] = [];
    const onN3: string[] = [];
    const follow = async (app: App, into: string[]) => {
      for await (const event of await app.services.testing.progress(run.id)) {
        into.push(event.type === 'TEST_STARTED' || event.type === 'TEST_FINISHED' ? `${event.type}:${event.index}` : event.type);
      }
    };
    await Promise.all([follow(n1, onN1), follow(n3, onN3)]);
    off();
    expect(onN3.at(-1)).toBe('RUN_FINISHED');
    // Every finished test once, in order, and the same ones n1 streamed.
    const finished = (list: string[]) => list.filter((e) => e.startsWith('TEST_FINISHED'));
    expect(finished(onN3)).toEqual(finished(onN1));
    expect(finished(onN3).length).toBeGreaterThan(0);
    expect(new Set(onN3).size).toBe(onN3.length);
    // The testRunStarted feed on n3 heard the run n1 started.
    await eventually(async () => startedOnN3.includes(run.id), 'RUN_STARTED on n3');
  });

  it('a test run records its node, its results are read on every node, and a restarting node interrupts only its own runs', async () => {
    await n1.services.modules.register('admin', { name: 'tested', modulePath: 'counter.js', version: 't1', moduleType: 'GENERIC' });
    await eventually(async () => n2.services.modules.get('tested') !== null, 'tested registered on n2');
    const run = await n2.services.testing.testModule('admin', 'tested', 'GENERIC');
    expect(run.node).toBe('n2');
    const onN3 = await eventually(async () => {
      const r = await n3.services.testing.get(run.id);
      return r && r.status !== 'RUNNING' ? r : null;
    }, 'the finished run read on n3');
    expect(onN3.node).toBe('n2');
    expect(onN3.results.length).toBeGreaterThan(0);
    const viaGraphql = await adminGql<{ testRun: { node: string } }>(n1, `query($id: ID!) { testRun(id: $id) { node } }`, { id: run.id });
    expect(viaGraphql.testRun.node).toBe('n2');
    // Rows a crash left RUNNING: one of n3's, one of n1's, one from before clusters.
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      for (const [id, node, seq] of [['left-n3', 'n3', 1000], ['left-n1', 'n1', 1001], ['left-legacy', null, 1002]] as const) {
        await client.query(
          `INSERT INTO test_runs (id, seq, module_name, module_version, module_path, module_type, status, trigger, actor, started_at, total, passed, failed, timed_out, skipped, node)
           VALUES ($1, $2, 'tested', 't1', 'counter.js', 'GENERIC', 'RUNNING', 'testModule', 'admin', 1, 0, 0, 0, 0, 0, $3)`,
          [id, seq, node],
        );
      }
      await n3.close();
      n3 = await startApp(db.url, 'n3', modulesDir);
      const { rows } = await client.query<{ id: string; status: string }>(`SELECT id, status FROM test_runs WHERE id LIKE 'left-%' ORDER BY id`);
      expect(rows).toEqual([
        { id: 'left-legacy', status: 'RUNNING' },
        { id: 'left-n1', status: 'RUNNING' },
        { id: 'left-n3', status: 'INTERRUPTED' },
      ]);
    } finally {
      await client.end();
    }
    // The restarted n3 came back to the shared desired state: canaried serves c2 there.
    await eventually(async () => n3.services.modules.activeVersion('canaried')?.version === 'c2', 'n3 recovered canaried at c2');
  });

  it('the leader ends the runs of a node that left: INTERRUPTED, RUN_FINISHED to followers elsewhere, a late write of it ignored', async () => {
    await n1.services.modules.register('admin', { name: 'orphaned', modulePath: 'counter.js', version: 'o1', moduleType: 'GENERIC' });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      // A run of a node that is gone (no heartbeat), with one stored result, and one of a live node.
      for (const [id, node, seq] of [['orphan-ghost', 'ghost', 2000], ['running-n2', 'n2', 2001]] as const) {
        await client.query(
          `INSERT INTO test_runs (id, seq, module_name, module_version, module_path, module_type, status, trigger, actor, started_at, total, passed, failed, timed_out, skipped, node)
           VALUES ($1, $2, 'orphaned', 'o1', 'counter.js', 'GENERIC', 'RUNNING', 'testModule', 'admin', 1, 2, 0, 0, 0, 0, $3)`,
          [id, seq, node],
        );
      }
      await client.query(
        `INSERT INTO test_results (run_id, position, name, required, source, status, duration_ms, error) VALUES ('orphan-ghost', 0, 'first', 1, 'BUILT_IN', 'PASSED', 3, NULL)`,
      );
      // Followers on two nodes: one of them leads (and ends the run), the other hears it through the log.
      const follow = async (app: App) => {
        const seen: string[] = [];
        for await (const event of await app.services.testing.progress('orphan-ghost')) {
          seen.push(event.type === 'RUN_FINISHED' ? `RUN_FINISHED:${event.status}:${event.summary.passed}` : event.type);
        }
        return seen;
      };
      const [onN1, onN3] = await Promise.all([follow(n1), follow(n3)]);
      for (const seen of [onN1, onN3]) expect(seen).toEqual(['RUN_STARTED', 'TEST_STARTED', 'TEST_FINISHED', 'RUN_FINISHED:INTERRUPTED:1']);
      const status = async (id: string) => (await client.query<{ status: string }>('SELECT status FROM test_runs WHERE id = $1', [id])).rows[0]!.status;
      expect(await status('orphan-ghost')).toBe('INTERRUPTED');
      expect((await n2.services.testing.get('orphan-ghost'))!.finishedAt).not.toBeNull();
      // A node that was only cut off, writing its run's end late: the run stays INTERRUPTED.
      await new TestRunRepository(n2.services.uow).finish('orphan-ghost', 'PASSED', 5, { total: 1, passed: 1, failed: 0, timedOut: 0, skipped: 0, durationMs: 4 });
      expect(await status('orphan-ghost')).toBe('INTERRUPTED');
      // The live node's run, there for the sweep that ended the other one, is left to it.
      expect(await status('running-n2')).toBe('RUNNING');
      await client.query(`UPDATE test_runs SET status = 'INTERRUPTED' WHERE id = 'running-n2'`);
    } finally {
      await client.end();
    }
  });

  it('a node that cannot load a committed version keeps serving the old one and tries again until it can', async () => {
    // n4 has a modules folder of its own, where the new version's file is not (yet) deployed.
    const ownDir = makeModulesDir();
    const n4 = await startApp(db.url, 'n4', ownDir);
    try {
      await n1.services.modules.register('admin', { name: 'late', modulePath: 'counter.js', version: 'l1' });
      await n1.services.modules.load('admin', 'late');
      await eventually(async () => n4.services.modules.activeVersion('late')?.version === 'l1', 'l1 on n4');
      addCounterCopy(modulesDir, 'counter_late.js');
      await n1.services.modules.swap('admin', 'late', { newVersionPath: 'counter_late.js', newVersion: 'l2' });
      await eventually(async () => (await served(n2, 'late')).version === 'l2', 'l2 on n2');
      // n4 reports the failure and keeps serving l1.
      await eventually(async () => {
        const a = await adminGql<NodesAnswer>(n1, NODES, { name: 'late' });
        const mine = a.module!.nodes.find((n) => n.node === 'n4');
        return mine?.version === 'l1' ? mine : null;
      }, 'n4 reporting l1');
      expect((await served(n4, 'late')).version).toBe('l1');
      // The file arrives; the next try loads it, with no command from anyone.
      addCounterCopy(ownDir, 'counter_late.js');
      await eventually(async () => (await served(n4, 'late')).version === 'l2', 'l2 on n4 after a retry', 15_000);
      expect(n4.services.modules.get('late')).toMatchObject({ version: 'l2', modulePath: 'counter_late.js', state: 'ACTIVE' });
      // Converging wrote neither the shared row nor the audit: one swap, by n1.
      expect(await count(db.url, `SELECT count(*) AS n FROM audit_log WHERE target = 'late' AND action = 'swapModule'`)).toBe(1);
    } finally {
      await n4.close();
      rmSync(ownDir, { recursive: true, force: true });
    }
  }, 40_000);
});

async function setAllOn(app: App, name: string): Promise<void> {
  const created = await adminGql<{ createFeatureFlag: { errors: unknown[] } }>(
    app, `mutation($name: String!) { createFeatureFlag(name: $name, enabled: true, strategy: ALL_ON) { errors { code message } } }`, { name },
  );
  expect(created.createFeatureFlag.errors).toEqual([]);
}

describe.skipIf(!postgresAvailable())('modules in a cluster of three processes', () => {
  let db: TestPostgres;
  let modulesDir: string;
  const nodes: ClusterNodeProcess[] = [];

  beforeAll(async () => {
    db = await createTestPostgres('cluster_modules_kill');
    modulesDir = makeModulesDir();
    addCounterCopy(modulesDir, 'counter_b.js');
    // A version whose load takes a while: the swap is under way when its node is killed.
    writeFileSync(path.join(modulesDir, 'counter_slow.js'), `
const base = (await import('./counter.js')).default;
export default { ...base, async create(ctx) { await new Promise((r) => setTimeout(r, 1500)); return base.create(ctx); } };
`);
    nodes.push(...(await Promise.all(['p1', 'p2', 'p3'].map((id) => startNode(db.url, id, { HELIOS_MODULES_DIR: modulesDir })))));
  }, 90_000);

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop().catch(() => undefined)));
    await db?.drop();
    rmSync(modulesDir, { recursive: true, force: true });
  }, 60_000);

  const INVOKE = `mutation($name: String!) { invokeModule(name: $name, method: "get") { servedBy errors { code message } } }`;
  const servedBy = async (node: ClusterNodeProcess, name: string) =>
    (await node.data<{ invokeModule: { servedBy: string | null } }>(INVOKE, { name })).invokeModule.servedBy;

  it('kill -9 of a node mid-swap: the others keep serving, and converge to what was committed', async () => {
    const [p1, p2, p3] = nodes as [ClusterNodeProcess, ClusterNodeProcess, ClusterNodeProcess];
    const reg = await p1.data<{ registerModule: { errors: unknown[] } }>(`mutation { registerModule(name: "k", modulePath: "counter.js", version: "1") { errors { code } } }`);
    expect(reg.registerModule.errors).toEqual([]);
    await p1.data(`mutation { loadModule(name: "k") { errors { code } } }`);
    for (const node of [p2, p3]) await eventually(async () => (await servedBy(node, 'k')) === '1', `k on ${node.id}`);

    // p1 starts a slow swap and dies while loading the new version: nothing was committed.
    void p1.gql(`mutation { swapModule(name: "k", newVersionPath: "counter_slow.js", newVersion: "2") { errors { code } } }`).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await p1.kill();
    const calls: Array<Promise<string | null>> = [];
    for (let i = 0; i < 20; i++) calls.push(servedBy(i % 2 ? p2 : p3, 'k'));
    expect(new Set(await Promise.all(calls))).toEqual(new Set(['1']));

    // A swap on p2 commits; p3, converging to it, is killed while it loads the (slow) new version.
    const swapped = await p2.data<{ swapModule: { errors: unknown[]; module: { version: string } } }>(
      `mutation { swapModule(name: "k", newVersionPath: "counter_slow.js", newVersion: "3") { module { version } errors { code message } } }`,
    );
    expect(swapped.swapModule.errors).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await p3.kill();
    expect(await servedBy(p2, 'k')).toBe('3');

    // p3 comes back and converges to the committed version from the shared desired state.
    const p3b = await startNode(db.url, 'p3', { HELIOS_MODULES_DIR: modulesDir });
    nodes.push(p3b);
    await eventually(async () => (await servedBy(p3b, 'k')) === '3', 'p3 back at version 3', 20_000);
    const answer = await eventually(async () => {
      const a = await p3b.data<{ module: { nodes: Array<{ node: string; state: string; version: string | null }> } }>(`{ module(name: "k") { nodes { node state version } } }`);
      return a.module.nodes.length === 2 && a.module.nodes.every((n) => n.state === 'ACTIVE' && n.version === '3') ? a : null;
    }, 'the live nodes p2 and p3 reporting 3', 20_000);
    expect(answer.module.nodes.map((n) => n.node)).toEqual(['p2', 'p3']);
  }, 90_000);
});

describe('modules on SQLite (a cluster of one)', () => {
  it('module { nodes } is this node alone, from memory; a test run records this node', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'helios-cluster-modules-'));
    const modulesDir = makeModulesDir();
    const app = await createApp(
      loadConfig({ HELIOS_DB_PATH: path.join(dir, 'helios.db'), HELIOS_NODE_ID: 'solo', HELIOS_ADMIN_TOKEN: ADMIN, HELIOS_MODULES_DIR: modulesDir, LOG_LEVEL: 'silent' }),
      { logger: createLogger('silent'), print: () => {} },
    );
    try {
      await app.services.modules.register('admin', { name: 'counter', modulePath: 'counter.js', version: '1.0.0' });
      expect((await adminGql<NodesAnswer>(app, NODES, { name: 'counter' })).module!.nodes).toMatchObject([{ node: 'solo', state: 'UNLOADED', version: null }]);
      await app.services.modules.load('admin', 'counter');
      expect((await adminGql<NodesAnswer>(app, NODES, { name: 'counter' })).module!.nodes).toMatchObject([{ node: 'solo', state: 'ACTIVE', version: '1.0.0' }]);
      const run = await app.services.testing.testModule('admin', 'counter', 'GENERIC');
      expect(run.node).toBe('solo');
      await eventually(async () => (await app.services.testing.get(run.id))?.status !== 'RUNNING', 'the run to finish');
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
      rmSync(modulesDir, { recursive: true, force: true });
    }
  });
});
