/**
 * Circuit breakers in a cluster: three in-process servers on one PostgreSQL database (created for
 * this file and dropped after). Each node has its own instance of every breaker; an operator's
 * command issued on any node applies on every node; every node's transitions reach subscribers
 * on every node, stamped with their node; `circuitBreaker { nodes }` lists every node's state.
 */
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { parse } from 'graphql';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CircuitOpenError } from '../../src/breakers/errors.js';
import { createTestPostgres, postgresAvailable, type TestPostgres } from '../support/postgres.js';
import { startTestServer, subscribe, untilListening, type TestServer } from '../support/server.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const doc = (text: string) => parse(text) as TypedDocumentNode<any, Record<string, unknown>>;

const BREAKER = doc(`query($name: String!) { circuitBreaker(name: $name) {
  name state config { failureThreshold resetTimeoutSeconds }
  nodes { node state metrics { calls failures rejections } updatedAt }
  transitions(last: 50) { node from to reason }
} }`);
const CONFIGURE = doc(`mutation($name: String!, $failureThreshold: Int, $resetTimeoutSeconds: Float) {
  configureCircuitBreaker(name: $name, failureThreshold: $failureThreshold, resetTimeoutSeconds: $resetTimeoutSeconds) { created breaker { state } errors { code message } } }`);
const OPEN = doc(`mutation($name: String!) { openCircuitBreaker(name: $name) { breaker { state } errors { code } } }`);
const RESET = doc(`mutation($name: String!) { resetCircuitBreaker(name: $name) { breaker { state } errors { code } } }`);
const DISABLE = doc(`mutation($name: String!) { disableCircuitBreaker(name: $name) { breaker { state } errors { code } } }`);
const ENABLE = doc(`mutation($name: String!) { enableCircuitBreaker(name: $name) { breaker { state } errors { code } } }`);
const RESET_ALL = doc(`mutation { resetAllCircuitBreakers { breakers { name state } errors { code } } }`);
const CHANGED = doc(`subscription($name: String) { breakerStateChanged(name: $name) { node name from to reason } }`);

interface Transition { node: string; name: string; from: string; to: string; reason: string }
interface BreakerView {
  name: string;
  state: string;
  config: { failureThreshold: number; resetTimeoutSeconds: number };
  nodes: Array<{ node: string; state: string; metrics: { calls: number; failures: number; rejections: number } | null; updatedAt: string }>;
  transitions: Transition[];
}

const fail = () => Promise.reject(new Error('upstream down'));
const succeed = () => Promise.resolve('ok');

/** Polls `check` until it returns a value other than null/false (10 s), failing with `what`. */
async function eventually<T>(check: () => Promise<T | null | false> | T | null | false, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const value = await check();
      if (value !== null && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe.skipIf(!postgresAvailable())('circuit breakers on a cluster of in-process nodes', () => {
  let db: TestPostgres;
  const servers: TestServer[] = [];
  let n1: TestServer;
  let n2: TestServer;

  const startNode = async (id: string) => {
    const server = await startTestServer({
      env: { HELIOS_DATABASE_URL: db.url, HELIOS_NODE_ID: id, HELIOS_HEARTBEAT_MS: '200', HELIOS_NODE_TIMEOUT_MS: '2000' },
    });
    servers.push(server);
    return server;
  };
  const stopNode = async (server: TestServer) => {
    servers.splice(servers.indexOf(server), 1);
    await server.stop();
  };
  const breaker = async (node: TestServer, name: string): Promise<BreakerView | null> =>
    ((await node.query(BREAKER, { name })) as { circuitBreaker: BreakerView | null }).circuitBreaker;
  const engine = (node: TestServer, name: string) => node.server.app.services.breakers.get(name) ?? undefined;
  /** Until every node's own instance is in `state`. */
  const untilState = (nodes: TestServer[], name: string, state: string) =>
    eventually(() => nodes.every((n) => engine(n, name)?.state === state), `${name} ${state} on ${nodes.map((n) => n.config.nodeId).join(', ')}`);
  const sql = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      return (await client.query<R>(text, values)).rows;
    } finally {
      await client.end();
    }
  };

  beforeAll(async () => {
    db = await createTestPostgres('cluster_breakers');
    n1 = await startNode('n1');
    n2 = await startNode('n2');
  }, 60_000);

  afterAll(async () => {
    for (const server of [...servers].reverse()) await server.stop().catch(() => undefined);
    await db?.drop();
  }, 60_000);

  it('configure on n1 creates the breaker on n2 with its config, and a change of config follows', async () => {
    const created = (await n1.query(CONFIGURE, { name: 'valr_api', failureThreshold: 3, resetTimeoutSeconds: 60 })) as {
      configureCircuitBreaker: { created: boolean; errors: unknown[] };
    };
    expect(created.configureCircuitBreaker).toMatchObject({ created: true, errors: [] });
    await eventually(() => engine(n2, 'valr_api')?.config.failureThreshold === 3, 'valr_api on n2');
    expect(engine(n2, 'valr_api')!.config.resetTimeoutSeconds).toBe(60);

    await n2.query(CONFIGURE, { name: 'valr_api', failureThreshold: 2 });
    await eventually(() => engine(n1, 'valr_api')?.config.failureThreshold === 2, 'the new threshold on n1');
    expect(engine(n1, 'valr_api')!.config.resetTimeoutSeconds).toBe(60);
    // One audit entry per command, on the node that issued it; one row.
    const audit = await sql<{ action: string }>(`SELECT action FROM audit_log WHERE target = 'valr_api' ORDER BY id`);
    expect(audit.map((r) => r.action)).toEqual(['configureCircuitBreaker', 'configureCircuitBreaker']);
    const rows = await sql<{ config_json: string }>(`SELECT config_json FROM circuit_breakers WHERE name = 'valr_api'`);
    expect(rows).toHaveLength(1);
    expect(JSON.parse(rows[0]!.config_json)).toMatchObject({ failureThreshold: 2, resetTimeoutSeconds: 60 });
  });

  it('openCircuitBreaker on n1 forces n2 open too (a call on n2 is rejected); resetCircuitBreaker on n2 closes both', async () => {
    const feed = subscribe(n2.wsClient(), CHANGED, { name: 'valr_api' });
    await untilListening(n2, 'breakerStateChanged');

    const opened = (await n1.query(OPEN, { name: 'valr_api' })) as { openCircuitBreaker: { breaker: { state: string } } };
    expect(opened.openCircuitBreaker.breaker.state).toBe('FORCED_OPEN');
    await untilState([n2], 'valr_api', 'FORCED_OPEN');
    const rejection = await engine(n2, 'valr_api')!.call(succeed).catch((e: unknown) => e);
    expect(rejection).toBeInstanceOf(CircuitOpenError);

    // n2's subscribers see both nodes' transitions, each with its node.
    const seen: Transition[] = [];
    for (let i = 0; i < 2; i++) seen.push(((await feed.next()) as { breakerStateChanged: Transition }).breakerStateChanged);
    expect(seen.map((t) => `${t.node}:${t.from}->${t.to}:${t.reason}`).sort()).toEqual([
      'n1:CLOSED->FORCED_OPEN:MANUAL_OPEN',
      'n2:CLOSED->FORCED_OPEN:MANUAL_OPEN',
    ]);

    const reset = (await n2.query(RESET, { name: 'valr_api' })) as { resetCircuitBreaker: { breaker: { state: string } } };
    expect(reset.resetCircuitBreaker.breaker.state).toBe('CLOSED');
    await untilState([n1, n2], 'valr_api', 'CLOSED');
    expect(await engine(n2, 'valr_api')!.call(succeed)).toBe('ok');
    for (let i = 0; i < 2; i++) seen.push(((await feed.next()) as { breakerStateChanged: Transition }).breakerStateChanged);
    expect(seen.slice(2).map((t) => `${t.node}:${t.to}:${t.reason}`).sort()).toEqual(['n1:CLOSED:MANUAL_RESET', 'n2:CLOSED:MANUAL_RESET']);
    feed.dispose();

    // Audited once each, by the node that was asked.
    const audit = await sql<{ action: string }>(`SELECT action FROM audit_log WHERE target = 'valr_api' AND action IN ('openCircuitBreaker', 'resetCircuitBreaker') ORDER BY id`);
    expect(audit.map((r) => r.action)).toEqual(['openCircuitBreaker', 'resetCircuitBreaker']);
  });

  it('a failure-driven open on n1 changes n1 only; n2 subscribers see it with node n1; nodes lists both', async () => {
    await n1.query(CONFIGURE, { name: 'luno_api', failureThreshold: 2, resetTimeoutSeconds: 600 });
    await eventually(() => engine(n2, 'luno_api') !== undefined, 'luno_api on n2');
    const feed = subscribe(n2.wsClient(), CHANGED, { name: 'luno_api' });
    await untilListening(n2, 'breakerStateChanged');

    const b1 = engine(n1, 'luno_api')!;
    for (let i = 0; i < 2; i++) await expect(b1.call(fail)).rejects.toThrow('upstream down');
    expect(b1.state).toBe('OPEN');

    const event = ((await feed.next()) as { breakerStateChanged: Transition }).breakerStateChanged;
    expect(event).toEqual({ node: 'n1', name: 'luno_api', from: 'CLOSED', to: 'OPEN', reason: 'FAILURE_THRESHOLD' });
    // n2's own instance is untouched: it still lets calls through.
    expect(engine(n2, 'luno_api')!.state).toBe('CLOSED');
    expect(await engine(n2, 'luno_api')!.call(succeed)).toBe('ok');

    // Each node answers with its own state, and `nodes` lists every node's.
    const view = await eventually(async () => {
      const v = await breaker(n2, 'luno_api');
      const one = v?.nodes.find((n) => n.node === 'n1');
      return v && one?.state === 'OPEN' && one.metrics?.failures === 2 && v.nodes.length === 2 ? v : null;
    }, "n1's OPEN in n2's nodes");
    expect(view.state).toBe('CLOSED');
    expect(view.nodes.map((n) => [n.node, n.state, n.metrics?.calls])).toEqual([['n1', 'OPEN', 2], ['n2', 'CLOSED', 1]]);
    expect((await breaker(n1, 'luno_api'))!.state).toBe('OPEN');
    // The history holds every node's transitions, each with its node.
    expect(view.transitions.map((t) => `${t.node}:${t.to}:${t.reason}`)).toEqual(['n1:OPEN:FAILURE_THRESHOLD']);
    // The shared row keeps the operator's state (the last command's); n1's own is in node_states.
    const [row] = await sql<{ state: string }>(`SELECT state FROM circuit_breakers WHERE name = 'luno_api'`);
    expect(row!.state).toBe('CLOSED');
    const own = await sql<{ node: string; state: string }>(`SELECT node, state FROM node_states WHERE kind = 'BREAKER' AND name = 'luno_api' ORDER BY node`);
    expect(own).toEqual([{ node: 'n1', state: 'OPEN' }, { node: 'n2', state: 'CLOSED' }]);

    // resetAll issued on n2 closes n1's.
    const all = (await n2.query(RESET_ALL)) as { resetAllCircuitBreakers: { errors: unknown[] } };
    expect(all.resetAllCircuitBreakers.errors).toEqual([]);
    await untilState([n1], 'luno_api', 'CLOSED');
    const closed = ((await feed.next()) as { breakerStateChanged: Transition }).breakerStateChanged;
    expect(closed).toMatchObject({ node: 'n1', from: 'OPEN', to: 'CLOSED', reason: 'RESET_ALL' });
    feed.dispose();
  });

  it('disable and enable issued on one node apply on the other', async () => {
    await n2.query(DISABLE, { name: 'luno_api' });
    await untilState([n1, n2], 'luno_api', 'DISABLED');
    await n1.query(ENABLE, { name: 'luno_api' });
    await untilState([n1, n2], 'luno_api', 'CLOSED');
  });

  it('a node that joins later takes the operator\'s FORCED_OPEN; a restarted node comes back in its own state, or the command it missed', async () => {
    await n1.query(CONFIGURE, { name: 'kraken_api', failureThreshold: 1, resetTimeoutSeconds: 600 });
    await n1.query(OPEN, { name: 'kraken_api' });
    await untilState([n2], 'kraken_api', 'FORCED_OPEN');
    const n3 = await startNode('n3');
    expect(engine(n3, 'kraken_api')!.state).toBe('FORCED_OPEN');
    // Commands reach n3 too.
    await n3.query(RESET, { name: 'kraken_api' });
    await untilState([n1, n2, n3], 'kraken_api', 'CLOSED');

    // n3 opens on its own failure, is stopped and restarted: it comes back OPEN (its node_states row), n1 and n2 CLOSED.
    await expect(engine(n3, 'kraken_api')!.call(fail)).rejects.toThrow('upstream down');
    expect(engine(n3, 'kraken_api')!.state).toBe('OPEN');
    await stopNode(n3);
    const again = await startNode('n3');
    expect(engine(again, 'kraken_api')!.state).toBe('OPEN');
    expect(engine(again, 'kraken_api')!.metrics.failures).toBe(1);
    expect(engine(n1, 'kraken_api')!.state).toBe('CLOSED');

    // Stopped again; a reset issued while it is down is not lost: it restarts CLOSED.
    await stopNode(again);
    await n1.query(RESET, { name: 'kraken_api' });
    const third = await startNode('n3');
    expect(engine(third, 'kraken_api')!.state).toBe('CLOSED');
    expect(engine(third, 'kraken_api')!.metrics.failures).toBe(1); // its own counters are kept
    await stopNode(third);
  }, 60_000);

  it('a retired breaker is removed on every node, and by a node that was down then', async () => {
    const n3 = await startNode('n3');
    await n1.query(CONFIGURE, { name: 'module:pricing:canary', failureThreshold: 5 });
    await eventually(() => engine(n2, 'module:pricing:canary') !== undefined && engine(n3, 'module:pricing:canary') !== undefined, 'the canary breaker on n2 and n3');
    const nodeRows = () => sql<{ node: string }>(`SELECT node FROM node_states WHERE kind = 'BREAKER' AND name = 'module:pricing:canary' ORDER BY node`);
    await eventually(async () => (await nodeRows()).length === 3, 'three node_states rows');
    await stopNode(n3);
    expect(await n1.server.app.services.breakers.retire('test', 'module:pricing:canary')).toBe(true);
    await eventually(() => engine(n2, 'module:pricing:canary') === undefined, 'the breaker gone on n2');
    expect(await breaker(n2, 'module:pricing:canary')).toBeNull();
    await eventually(async () => (await nodeRows()).map((r) => r.node).join() === 'n3', 'only n3\'s row left');
    const back = await startNode('n3');
    expect(engine(back, 'module:pricing:canary')).toBeUndefined();
    await stopNode(back);
    expect(await nodeRows()).toEqual([]); // n3 removed its own leftover row at start
    await eventually(async () => (await sql(`SELECT 1 FROM node_states WHERE kind = 'BREAKER' AND name = 'module:pricing:canary'`)).length === 0, 'node_states rows gone');
  });
});

describe('circuit breakers on SQLite: a cluster of one', () => {
  it('transitions carry this node\'s id, and nodes lists this node from memory', async () => {
    const h = await startTestServer({ env: { HELIOS_NODE_ID: 'solo' } });
    try {
      await h.query(CONFIGURE, { name: 'valr_api', failureThreshold: 3 });
      const feed = subscribe(h.wsClient(), CHANGED, { name: 'valr_api' });
      await untilListening(h, 'breakerStateChanged');
      await h.query(OPEN, { name: 'valr_api' });
      expect(((await feed.next()) as { breakerStateChanged: Transition }).breakerStateChanged).toEqual({
        node: 'solo', name: 'valr_api', from: 'CLOSED', to: 'FORCED_OPEN', reason: 'MANUAL_OPEN',
      });
      feed.dispose();
      const view = ((await h.query(BREAKER, { name: 'valr_api' })) as { circuitBreaker: BreakerView }).circuitBreaker;
      expect(view.nodes).toEqual([{ node: 'solo', state: 'FORCED_OPEN', metrics: { calls: 0, failures: 0, rejections: 0 }, updatedAt: expect.any(String) }]);
      expect(view.transitions).toEqual([{ node: 'solo', from: 'CLOSED', to: 'FORCED_OPEN', reason: 'MANUAL_OPEN' }]);
      // SQLite keeps its one row as before: its state is the breaker's.
      const row = h.server.app.db!.prepare(`SELECT state FROM circuit_breakers WHERE name = 'valr_api'`).get() as { state: string };
      expect(row.state).toBe('FORCED_OPEN');
    } finally {
      await h.stop();
    }
  });
});
