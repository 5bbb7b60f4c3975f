/**
 * Launchers for the servers benchmarks measure, each in its own child process: Helios
 * (helios-server.ts) and the bare graphql-yoga floor (yoga-hello-server.ts). Both are forked
 * with the same loader and answer `memory` and `stop` over IPC.
 */
import { randomBytes } from 'node:crypto';
import { forkRpc, siblingScript, type RpcChild } from './rpc.js';

export interface HeliosServerReady {
  url: string;
  port: number;
  /** Milliseconds from the child's process start (performance.timeOrigin) to listening. */
  startedInMs: number;
  /** The temporary folder holding its SQLite file (empty for the bare server). */
  dir: string;
}

export type ServerChild = RpcChild<HeliosServerReady>;

/**
 * One admin token per benchmark process, passed as HELIOS_ADMIN_TOKEN: mutations carry it as a
 * Bearer token, so the benchmarks work whether or not the server enforces roles.
 */
export const BENCH_ADMIN_TOKEN = `bench-${randomBytes(24).toString('hex')}`;

export const authHeaders: Record<string, string> = { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` };

/**
 * BENCH_CPU_PROF=<folder>: every Helios server child writes a V8 CPU profile there when it
 * stops (`node --cpu-prof`), to find where a benchmark's time goes.
 */
const profileArgs = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];

export function startHelios(env: Record<string, string> = {}): Promise<ServerChild> {
  return forkRpc<HeliosServerReady>(siblingScript(import.meta.url, './helios-server'), {
    args: [JSON.stringify({ HELIOS_ADMIN_TOKEN: BENCH_ADMIN_TOKEN, ...env })],
    execArgv: [...process.execArgv, ...profileArgs],
  });
}

/** The bare server with Yoga's defaults, or (`bodyLimit: false`) without its request body limiter. */
export function startBareYoga(options: { bodyLimit?: boolean } = {}): Promise<ServerChild> {
  return forkRpc<HeliosServerReady>(siblingScript(import.meta.url, './yoga-hello-server'), {
    env: { BENCH_YOGA_BODY_LIMIT: options.bodyLimit === false ? 'off' : 'on' },
  });
}

/**
 * The physical floor (raw-http-server.ts): a bare node:http server answering, per path, a canned
 * body with a content type, e.g. exactly what Helios answered to the request it stands in for.
 */
export function startRawHttp(routes: Record<string, { body: string; contentType: string }>): Promise<ServerChild> {
  return forkRpc<HeliosServerReady>(siblingScript(import.meta.url, './raw-http-server'), { args: [JSON.stringify(routes)] });
}

/** POSTs a GraphQL operation and returns the raw body text (for autocannon's expectBody). */
export async function postGraphql(url: string, query: string, headers: Record<string, string> = {}, variables?: Record<string, unknown>): Promise<{ status: number; text: string }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(variables ? { query, variables } : { query }),
  });
  return { status: res.status, text: await res.text() };
}

/** Like postGraphql, but throws on HTTP or GraphQL errors and returns `data`. */
export async function graphqlData<T>(url: string, query: string, headers: Record<string, string> = authHeaders, variables?: Record<string, unknown>): Promise<T> {
  const { status, text } = await postGraphql(url, query, headers, variables);
  const body = JSON.parse(text) as { data?: T; errors?: unknown[] };
  if (status !== 200 || body.errors?.length || body.data === undefined) {
    throw new Error(`GraphQL request failed (${status}): ${text.slice(0, 500)}`);
  }
  return body.data;
}
