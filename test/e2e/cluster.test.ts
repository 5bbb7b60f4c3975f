/**
 * Three Helios nodes, three processes, one PostgreSQL database (created for this file and
 * dropped after): every change made on one node is seen on the others, a dropped listening
 * connection loses nothing, a node killed with -9 loses no acknowledged write.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startNode, type ClusterNodeProcess } from '../support/cluster.js';
import { createTestPostgres, postgresAvailable, type TestPostgres } from '../support/postgres.js';

const STATUS = `{ clusterStatus { node leader revision nodes { id address version appliedRevision } } }`;
const SET_PERCENTAGE = `mutation($name: String!, $p: Float!) { setFlagPercentage(name: $name, percentage: $p) { flag { percentage } errors { code message } } }`;
const FLAG = `query($name: String!) { featureFlag(name: $name) { percentage enabled } }`;

describe.skipIf(!postgresAvailable())('a cluster of three nodes on PostgreSQL', () => {
  let db: TestPostgres;
  const nodes: ClusterNodeProcess[] = [];
  let a: ClusterNodeProcess;
  let b: ClusterNodeProcess;
  let c: ClusterNodeProcess;

  beforeAll(async () => {
    db = await createTestPostgres('cluster');
    // Started together: migrations and seeding run once (advisory locks), not three times.
    [a, b, c] = (await Promise.all(['node-a', 'node-b', 'node-c'].map((id) => startNode(db.url, id)))) as [ClusterNodeProcess, ClusterNodeProcess, ClusterNodeProcess];
    nodes.push(a, b, c);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop().catch(() => undefined)));
    await db?.drop();
  }, 60_000);

  const status = (node: ClusterNodeProcess) =>
    node.data<{ clusterStatus: { node: string; leader: string | null; revision: number; nodes: Array<{ id: string; appliedRevision: number }> } }>(STATUS);

  it('clusterStatus lists the three nodes and one leader, the same on every node', async () => {
    const seen = await eventually(async () => {
      const all = await Promise.all([a, b, c].map(status));
      return all.every((s) => s.clusterStatus.nodes.length === 3 && s.clusterStatus.leader !== null) ? all : null;
    }, 'three nodes and a leader');
    expect(seen.map((s) => s.clusterStatus.node)).toEqual(['node-a', 'node-b', 'node-c']);
    expect(seen[0]!.clusterStatus.nodes.map((n) => n.id)).toEqual(['node-a', 'node-b', 'node-c']);
    const leaders = new Set(seen.map((s) => s.clusterStatus.leader));
    expect(leaders.size).toBe(1);
    expect(['node-a', 'node-b', 'node-c']).toContain([...leaders][0]);
    // The default flags were imported once, not once per node.
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM audit_log WHERE action = 'importFeatureFlags'`);
      const flags = await client.query<{ n: string }>('SELECT count(*) AS n FROM feature_flags');
      expect(Number(flags.rows[0]!.n)).toBe(8);
      expect(Number(rows[0]!.n)).toBe(8);
    } finally {
      await client.end();
    }
  });

  it('a flag changed on node A reaches a subscriber on node C, and C evaluates the new definition', async () => {
    const ws = c.wsClient();
    const events: Array<{ name: string; flag: { percentage: number } | null; action: string }> = [];
    const subscribed = new Promise<void>((resolve, reject) => {
      ws.on('connected', () => resolve());
      setTimeout(() => reject(new Error('no connection')), 10_000);
    });
    const dispose = ws.subscribe<{ featureFlagChanged: (typeof events)[number] }>(
      { query: 'subscription { featureFlagChanged(name: "neural_network_v2") { name action flag { percentage } } }' },
      { next: (v) => v.data && events.push(v.data.featureFlagChanged), error: () => undefined, complete: () => undefined },
    );
    await subscribed;
    await new Promise((resolve) => setTimeout(resolve, 200)); // the subscribe message reaches C
    const result = await a.data<{ setFlagPercentage: { flag: { percentage: number }; errors: unknown[] } }>(SET_PERCENTAGE, { name: 'neural_network_v2', p: 37 });
    expect(result.setFlagPercentage.errors).toEqual([]);
    await eventually(async () => events.length > 0, 'the change on C');
    expect(events[0]).toMatchObject({ name: 'neural_network_v2', action: 'setFlagPercentage', flag: { percentage: 37 } });
    for (const node of [b, c]) {
      const flag = await node.data<{ featureFlag: { percentage: number } }>(FLAG, { name: 'neural_network_v2' });
      expect(flag.featureFlag.percentage).toBe(37);
    }
    dispose();
  });

  it('evaluations are the same on every node (the bucket is a pure function)', async () => {
    const query = `query($ctx: EvaluationContextInput) { evaluateFlag(name: "neural_network_v2", context: $ctx) { enabled bucket } }`;
    for (let i = 0; i < 20; i++) {
      const ctx = { userId: `user-${i}` };
      const answers = await Promise.all([a, b, c].map((n) => n.data<{ evaluateFlag: { enabled: boolean; bucket: number } }>(query, { ctx })));
      expect(new Set(answers.map((x) => JSON.stringify(x.evaluateFlag))).size).toBe(1);
    }
  });

  it('pg_terminate_backend on a node\'s listening connection loses no event: it reconnects and catches up', async () => {
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      const killed = await admin.query(`SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'helios-listen:node-c'`);
      expect(killed.rowCount).toBe(1);
      // Changes made while C is not listening.
      for (const p of [11, 12, 13]) await a.data(SET_PERCENTAGE, { name: 'neural_network_v2', p });
      await eventually(async () => {
        const flag = await c.data<{ featureFlag: { percentage: number } }>(FLAG, { name: 'neural_network_v2' });
        return flag.featureFlag.percentage === 13;
      }, 'C to catch up');
      const [sa, sc] = await Promise.all([status(a), status(c)]);
      expect(sc.clusterStatus.revision).toBeGreaterThanOrEqual(sa.clusterStatus.revision - 0);
      // It listens again.
      await eventually(async () => {
        const { rowCount } = await admin.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'helios-listen:node-c'`);
        return rowCount === 1;
      }, 'a new listening connection');
    } finally {
      await admin.end();
    }
  });

  it('a token created on A is accepted on B; revoking it on B closes its socket on C', async () => {
    const created = await a.data<{ createApiToken: { token: string | null; errors: unknown[] } }>(
      `mutation { createApiToken(name: "cluster-viewer", role: VIEWER) { token errors { code message } } }`,
    );
    const token = created.createApiToken.token!;
    expect(token).toBeTruthy();
    const asViewer = async (node: ClusterNodeProcess) => {
      const res = await fetch(node.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query: '{ me { name role } }' }),
      });
      return (await res.json()) as { data?: { me: { name: string; role: string } }; errors?: unknown[] };
    };
    await eventually(async () => (await asViewer(b)).data?.me.name === 'cluster-viewer', 'B to know the token');
    const ws = c.wsClient(token);
    let closed: { code: number } | null = null;
    ws.on('closed', (event) => {
      closed = event as { code: number };
    });
    await eventually(async () => (await asViewer(c)).data?.me.name === 'cluster-viewer', 'C to know the token');
    const dispose = ws.subscribe(
      { query: 'subscription { featureFlagChanged { name } }' },
      { next: () => undefined, error: () => undefined, complete: () => undefined },
    );
    await new Promise((resolve, reject) => {
      ws.on('connected', resolve);
      setTimeout(() => reject(new Error('no connection')), 10_000);
    });
    const revoked = await b.data<{ revokeApiToken: { errors: unknown[] } }>(`mutation { revokeApiToken(name: "cluster-viewer") { errors { code } } }`);
    expect(revoked.revokeApiToken.errors).toEqual([]);
    await eventually(async () => closed !== null, 'the socket on C to close');
    expect(closed!.code).toBe(4403);
    expect((await asViewer(a)).data?.me.role ?? null).not.toBe('VIEWER');
    dispose();
  });

  it('a module registered, loaded and swapped on node A is serving the new version on all three', async () => {
    const register = `mutation($name: String!, $path: String!, $v: String!, $deps: [String!]) {
      registerModule(name: $name, modulePath: $path, version: $v, dependencies: $deps) { errors { code message } } }`;
    const load = `mutation($name: String!) { loadModule(name: $name) { errors { code message } } }`;
    const invoke = `mutation { invokeModule(name: "cluster_predictor", method: "predict", args: { prices: [1, 2, 3] }) { servedBy result errors { code message } } }`;
    const nodesOf = `{ module(name: "cluster_predictor") { version nodes { node state version } } }`;
    const ok = (payload: Record<string, { errors: unknown[] }>) => expect(Object.values(payload)[0]!.errors).toEqual([]);
    // The predictor calls its dependency by the name it was registered with: feature_extractor.
    const features = await a.data<{ registerModule: { errors: Array<{ code: string }> } }>(register, { name: 'feature_extractor', path: 'feature_extractor.js', v: '1.0.0', deps: [] });
    expect(features.registerModule.errors.filter((e) => e.code !== 'MODULE_ALREADY_EXISTS')).toEqual([]);
    ok(await a.data(register, { name: 'cluster_predictor', path: 'ml/neural_predictor.js', v: '1.0.0', deps: ['feature_extractor'] }));
    ok(await a.data(load, { name: 'cluster_predictor' }));
    type Nodes = { module: { version: string; nodes: Array<{ node: string; state: string; version: string | null }> } };
    await eventually(async () => {
      const { module } = await b.data<Nodes>(nodesOf);
      return module.nodes.length === 3 && module.nodes.every((n) => n.state === 'ACTIVE' && n.version === '1.0.0');
    }, 'three nodes ACTIVE at 1.0.0');
    ok(await a.data(`mutation { swapModule(name: "cluster_predictor", newVersionPath: "ml/neural_predictor_v2.js", newVersion: "2.0.0") { errors { code message } } }`));
    await eventually(async () => {
      const { module } = await c.data<Nodes>(nodesOf);
      return module.nodes.length === 3 && module.nodes.every((n) => n.state === 'ACTIVE' && n.version === '2.0.0');
    }, 'three nodes ACTIVE at 2.0.0');
    // Each node's own worker answers with the new version.
    for (const node of [a, b, c]) {
      const { invokeModule } = await node.data<{ invokeModule: { servedBy: string; errors: unknown[] } }>(invoke);
      expect(invokeModule.errors).toEqual([]);
      expect(invokeModule.servedBy).toBe('2.0.0');
    }
  });

  it('kill -9 of a node under write load loses no acknowledged write', async () => {
    const victim = await startNode(db.url, 'node-d');
    nodes.push(victim);
    const acknowledged: number[] = [];
    let running = true;
    const writer = (async () => {
      for (let i = 1; running && i < 10_000; i++) {
        try {
          const result = await victim.gql<{ setFlagPercentage: { flag: { percentage: number } | null } }>(SET_PERCENTAGE, { name: 'advanced_risk_engine', p: i % 100 });
          if (result.data?.setFlagPercentage.flag) acknowledged.push(i);
        } catch {
          return; // the node is gone
        }
      }
    })();
    await eventually(async () => acknowledged.length >= 20, 'some acknowledged writes');
    await victim.kill();
    running = false;
    await writer;
    const last = acknowledged.at(-1)!;
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      // Every acknowledged write is in the audit log (one row per write, same transaction).
      const { rows } = await client.query<{ n: string }>(
        `SELECT count(*) AS n FROM audit_log WHERE actor = 'bootstrap-admin' AND action = 'setFlagPercentage' AND target = 'advanced_risk_engine'`,
      );
      expect(Number(rows[0]!.n)).toBeGreaterThanOrEqual(acknowledged.length);
    } finally {
      await client.end();
    }
    // The others saw the last acknowledged value (or a later one that committed before the kill).
    await eventually(async () => {
      const flag = await a.data<{ featureFlag: { percentage: number } }>(FLAG, { name: 'advanced_risk_engine' });
      return flag.featureFlag.percentage === last % 100 || flag.featureFlag.percentage === (last + 1) % 100;
    }, 'A to show the last write');
    // And the killed node drops out of clusterStatus after the timeout.
    await eventually(async () => !(await status(a)).clusterStatus.nodes.some((n) => n.id === 'node-d'), 'node-d to drop out', 15_000);
  }, 60_000);
});
