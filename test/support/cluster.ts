/**
 * Several Helios nodes, each in its own process, on one PostgreSQL database: what the cluster
 * tests start. Each node is test/support/child-server.ts with HELIOS_DATABASE_URL and its own
 * HELIOS_NODE_ID; `kill()` is kill -9 (no shutdown code runs), `stop()` is SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { graphql } from 'graphql';
import type { Client } from 'graphql-ws';
import type { App } from '../../src/app.js';
import { buildSchema } from '../../src/graphql/schema.js';
import { TEST_ADMIN_TOKEN, testWsClient } from './server.js';

export interface ClusterNodeProcess {
  id: string;
  url: string;
  wsUrl: string;
  pid: number;
  /** A GraphQL request with the admin token; returns the whole result. */
  gql<T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>): Promise<{ data?: T; errors?: Array<{ message: string; extensions?: { code?: string } }> }>;
  /** Like gql, but throws on errors and returns data. */
  data<T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>): Promise<T>;
  wsClient(token?: string | null): Client;
  /** kill -9: the node stops dead, nothing of its shutdown runs. */
  kill(): Promise<void>;
  stop(): Promise<void>;
  exited: Promise<number | null>;
}

const script = fileURLToPath(new URL('./child-server.ts', import.meta.url));

export async function startNode(databaseUrl: string, id: string, env: Record<string, string> = {}): Promise<ClusterNodeProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', script], {
    env: {
      ...process.env,
      HELIOS_CHILD_ENV: JSON.stringify({
        HELIOS_DATABASE_URL: databaseUrl,
        HELIOS_NODE_ID: id,
        HELIOS_HEARTBEAT_MS: '300',
        HELIOS_NODE_TIMEOUT_MS: '3000',
        ...env,
      }),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const first = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`node ${id} exited with ${code} before listening`)));
  });
  const { url, pid } = JSON.parse(first) as { url: string; pid: number };
  const clients: Client[] = [];
  const gql = async <T>(query: string, variables?: Record<string, unknown>) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
      body: JSON.stringify({ query, variables }),
    });
    return (await res.json()) as { data?: T; errors?: Array<{ message: string; extensions?: { code?: string } }> };
  };
  return {
    id,
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    pid,
    exited,
    gql,
    async data<T>(query: string, variables?: Record<string, unknown>) {
      const result = await gql<T>(query, variables);
      if (result.errors?.length) throw new Error(`GraphQL errors on ${id}: ${JSON.stringify(result.errors)}`);
      return result.data!;
    },
    wsClient(token: string | null = TEST_ADMIN_TOKEN) {
      const client = testWsClient(url.replace(/^http/, 'ws'), token);
      clients.push(client);
      return client;
    },
    async kill() {
      await Promise.all(clients.map((c) => c.dispose()));
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      await Promise.all(clients.map((c) => c.dispose()));
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Polls `check` until it returns a truthy value (or throws the last failure after `timeoutMs`). */
export async function eventually<T>(check: () => Promise<T | null | undefined | false>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** GraphQL on an in-process node (an App of createApp), as the admin; throws on errors. */
export async function adminGql<T>(app: App, query: string, variables?: Record<string, unknown>): Promise<T> {
  const result = await graphql({
    schema: buildSchema(),
    source: query,
    variableValues: variables ?? null,
    contextValue: { actor: 'admin', caller: { name: 'admin', role: 'ADMIN', anonymous: false }, services: app.services },
  });
  if (result.errors?.length) throw new Error(JSON.stringify(result.errors));
  return result.data as T;
}
