/**
 * Starts the real server on an ephemeral port with a temporary SQLite file, and talks to it
 * the way clients do: HTTP POST for queries and mutations, graphql-ws for subscriptions.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type ExecutionResult } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import type { Clock } from '../../src/clock.js';
import { loadConfig, type HeliosConfig } from '../../src/config.js';
import type { EventMap } from '../../src/events.js';
import { createLogger, type Logger } from '../../src/logger.js';
import { startServer, type HeliosServer, type ServerOptions } from '../../src/server.js';

/** Every test server bootstraps this admin token; `request` and `wsClient` send it unless told otherwise. */
export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

export interface TestServer {
  server: HeliosServer;
  url: string;
  wsUrl: string;
  dbPath: string;
  dir: string;
  config: HeliosConfig;
  /** Sends a typed operation over HTTP; returns the whole GraphQL result. */
  request<R, V>(doc: TypedDocumentNode<R, V>, variables?: V, headers?: Record<string, string>): Promise<ExecutionResult<R>>;
  /** Like request, but fails the test on GraphQL errors and returns `data`. */
  query<R, V>(doc: TypedDocumentNode<R, V>, variables?: V): Promise<R>;
  /** A graphql-ws client; `token: null` connects without one. */
  wsClient(options?: { token?: string | null }): Client;
  stop(): Promise<void>;
}

export interface TestServerOptions {
  /** Reuse a directory (and its database) from an earlier server, to test restarts. */
  dir?: string;
  clock?: Clock;
  random?: () => number;
  env?: Record<string, string>;
  /** Receives a first-start admin token banner (default: discarded). */
  print?: (text: string) => void;
  /** Default: a logger at HELIOS_TEST_LOG_LEVEL (silent). */
  logger?: Logger;
  /** The HTTP GraphQL lane (src/server.ts ServerOptions); default on. */
  graphqlHttpLane?: ServerOptions['graphqlHttpLane'];
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const dir = options.dir ?? mkdtempSync(path.join(tmpdir(), 'helios-test-'));
  const dbPath = path.join(dir, 'helios.db');
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    HELIOS_DB_PATH: dbPath,
    LOG_LEVEL: process.env.HELIOS_TEST_LOG_LEVEL ?? 'silent',
    HELIOS_SHUTDOWN_TIMEOUT_MS: '5000',
    HELIOS_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    ...options.env,
  });
  const server = await startServer(config, {
    logger: options.logger ?? createLogger(config.logLevel),
    print: options.print ?? (() => {}),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.random ? { random: options.random } : {}),
    ...(options.graphqlHttpLane !== undefined ? { graphqlHttpLane: options.graphqlHttpLane } : {}),
  });
  const url = server.url;
  const wsUrl = url.replace(/^http/, 'ws');
  const clients: Client[] = [];

  const request = async <R, V>(doc: TypedDocumentNode<R, V>, variables?: V, headers: Record<string, string> = { authorization: `Bearer ${TEST_ADMIN_TOKEN}` }) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json', ...headers },
      body: JSON.stringify({ query: print(doc), variables }),
    });
    return (await res.json()) as ExecutionResult<R>;
  };

  return {
    server,
    url,
    wsUrl,
    dbPath,
    dir,
    config,
    request,
    async query(doc, variables) {
      const result = await request(doc, variables);
      if (result.errors?.length) throw new Error(`GraphQL errors: ${JSON.stringify(result.errors)}`);
      return result.data!;
    },
    wsClient({ token = TEST_ADMIN_TOKEN }: { token?: string | null } = {}) {
      const client = testWsClient(wsUrl, token);
      clients.push(client);
      return client;
    },
    async stop() {
      await Promise.all(clients.map((c) => c.dispose()));
      await server.stop();
    },
  };
}

/** A graphql-ws client as the tests use it: no retries, lazy, the token (if any) in connectionParams. */
export function testWsClient(wsUrl: string, token: string | null): Client {
  return createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: true,
    ...(token ? { connectionParams: { authorization: `Bearer ${token}` } } : {}),
  });
}

/** Resolves once `ws` is open (at once if it already is); rejects on its first error before that. */
export function webSocketOpen(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.OPEN) return Promise.resolve();
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Subscribes and collects events; `next()` waits for the next one (failing after a timeout so
 * a missing event fails the test instead of hanging it).
 */
export function subscribe<R, V>(client: Client, doc: TypedDocumentNode<R, V>, variables?: V) {
  const events: ExecutionResult<R>[] = [];
  const waiters: Array<() => void> = [];
  let completed = false;
  let error: unknown = null;
  const dispose = client.subscribe<R>(
    { query: print(doc), variables: variables as Record<string, unknown> | undefined },
    {
      next: (value) => {
        events.push(value as ExecutionResult<R>);
        waiters.splice(0).forEach((w) => w());
      },
      error: (e) => {
        error = e;
        waiters.splice(0).forEach((w) => w());
      },
      complete: () => {
        completed = true;
        waiters.splice(0).forEach((w) => w());
      },
    },
  );
  let read = 0;
  const waitFor = (condition: () => boolean, what: string, timeoutMs = 5000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (condition()) {
          clearTimeout(timer);
          resolve();
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => reject(new Error(`Timed out waiting for ${what}; got ${JSON.stringify(events)}`)), timeoutMs);
      if (check()) return;
      const loop = () => {
        if (!check()) waiters.push(loop);
      };
      waiters.push(loop);
    });
  return {
    events,
    get completed() {
      return completed;
    },
    get error() {
      return error;
    },
    async next(timeoutMs?: number): Promise<R> {
      await waitFor(() => events.length > read || error !== null || completed, 'an event', timeoutMs);
      if (events.length > read) {
        const event = events[read++]!;
        if (event.errors?.length) throw new Error(`Subscription errors: ${JSON.stringify(event.errors)}`);
        return event.data!;
      }
      throw new Error(`Subscription ended: ${error ? JSON.stringify(error) : 'completed'}`);
    },
    async waitForCompletion(timeoutMs?: number) {
      await waitFor(() => completed || error !== null, 'completion', timeoutMs);
    },
    dispose,
  };
}

/**
 * Waits until the server has registered `count` listeners on a topic, so a test publishes only
 * after its subscription is live (graphql-ws subscribes asynchronously).
 */
export async function untilListening(server: TestServer, topic: keyof EventMap, count = 1): Promise<void> {
  const bus = server.server.app.services.bus;
  const deadline = Date.now() + 5000;
  while (bus.listenerCount(topic) < count) {
    if (Date.now() > deadline) throw new Error(`no subscriber on ${topic}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
