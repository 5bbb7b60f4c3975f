/**
 * The HTTP layer: one node:http server, a small route table, and the guards every request to a
 * route passes before its handler runs.
 *
 * - Probes (`/health`, `/ready`) are answered first, without origin check or body guard, so a
 *   monitor never waits behind anything and a hostile Origin cannot hide the server's health.
 * - Every other request is origin-checked (browser-origin.ts), counted as in flight until its
 *   response finishes, and has its body read under the byte cap (request-body.ts) before the
 *   handler sees it.
 * - A request whose path matches no route goes to the fallback handler (Yoga, which answers
 *   /graphql and 404s the rest).
 *
 * Another adapter (OFREP, REST, /metrics, an asset route) is one more file calling `route()`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { checkRequestOrigin, type OriginPolicy } from '../hardening/browser-origin.js';
import { readRequestBody, sendGraphQLError } from '../hardening/request-body.js';

export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface HttpRoute {
  /** Exact path (`/ofrep/v1/evaluate`) or a prefix ending in `/` (`/api/modularity/`). */
  path: string;
  handle: HttpHandler;
  /**
   * `probe`: answered before the guards and not counted as in flight (health checks).
   * `guarded` (default): origin check, in-flight tracking and the body cap apply.
   * `self-guarded`: counted in flight (shutdown waits for it), but the handler checks origin,
   * caller and body itself, to answer in its own protocol's error shape (OFREP, Prometheus).
   */
  kind?: 'probe' | 'guarded' | 'self-guarded';
}

export interface HttpTransportOptions {
  origins: OriginPolicy;
  maxRequestBodyBytes: number;
  /** Requests no route claims (Yoga). */
  fallback: HttpHandler;
}

export interface HttpTransport {
  readonly server: Server;
  /** Registers a route; later registrations of the same path win. */
  route(route: HttpRoute): void;
  listen(port: number, host: string): Promise<number>;
  /** Guarded requests whose responses have not finished yet. */
  inFlight(): ServerResponse[];
  /** Stops accepting connections and closes idle keep-alive ones. */
  stopAccepting(): void;
  /** Waits until no request outside `except` is in flight, or until `deadline` (epoch ms). */
  drain(deadline: number, except?: (res: ServerResponse) => boolean): Promise<number>;
  /** Destroys every remaining connection. */
  closeAll(): void;
}

function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

export function createHttpTransport(options: HttpTransportOptions): HttpTransport {
  const routes = new Map<string, HttpRoute>();
  const prefixes: HttpRoute[] = [];
  const inFlight = new Set<ServerResponse>();

  const find = (path: string): HttpRoute | undefined => routes.get(path) ?? prefixes.find((r) => path.startsWith(r.path));

  const fail = (res: ServerResponse, error: unknown) => {
    // A handler that throws gets a coded 500; its error is the handler's to log.
    if (!res.headersSent) sendGraphQLError(res, 500, 'INTERNAL_SERVER_ERROR', 'Unexpected error.');
    else res.destroy(error instanceof Error ? error : undefined);
  };

  // 'close' follows every response once, finished or cut short (keep-alive included): one
  // listener, the same function for every response (no closure or `once` wrapper per request).
  function untrack(this: ServerResponse): void {
    inFlight.delete(this);
  }
  const track = (res: ServerResponse) => {
    inFlight.add(res);
    res.on('close', untrack);
  };

  const run = (handler: HttpHandler, req: IncomingMessage, res: ServerResponse) => {
    try {
      const pending = handler(req, res);
      if (pending) pending.catch((error: unknown) => fail(res, error));
    } catch (error) {
      fail(res, error);
    }
  };

  const server = createServer((req, res) => {
    const route = find(pathOf(req.url ?? '/'));
    if (route?.kind === 'probe') {
      run(route.handle, req, res);
      return;
    }
    if (route?.kind === 'self-guarded') {
      track(res);
      run(route.handle, req, res);
      return;
    }
    const origin = checkRequestOrigin(req.headers, options.origins);
    if (!origin.ok) {
      sendGraphQLError(res, 403, origin.code, origin.message);
      return;
    }
    track(res);
    readRequestBody(req, res, options.maxRequestBodyBytes, (accepted) => {
      if (accepted) run(route?.handle ?? options.fallback, req, res);
    });
  });

  return {
    server,
    route(route) {
      if (route.path.endsWith('/') && route.path !== '/') {
        const existing = prefixes.findIndex((r) => r.path === route.path);
        if (existing !== -1) prefixes.splice(existing, 1);
        prefixes.push(route);
        // Longest prefix first, so `/api/a/` wins over `/api/`.
        prefixes.sort((a, b) => b.path.length - a.path.length);
      } else {
        routes.set(route.path, route);
      }
    },
    listen(port, host) {
      return new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve((server.address() as AddressInfo).port);
        });
      });
    },
    inFlight: () => [...inFlight],
    stopAccepting() {
      server.close();
      server.closeIdleConnections();
    },
    async drain(deadline, except = () => false) {
      const waitingFor = () => [...inFlight].filter((res) => !except(res)).length;
      while (waitingFor() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      return waitingFor();
    },
    closeAll() {
      server.closeAllConnections();
    },
  };
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** `/health` (the process answers) and `/ready` (accepting work), as probe routes. */
export function probeRoutes(state: { ready: () => boolean; version: string }): HttpRoute[] {
  return [
    { path: '/health', kind: 'probe', handle: (_req, res) => sendJson(res, 200, { status: 'ok' }) },
    {
      path: '/ready',
      kind: 'probe',
      handle: (_req, res) => {
        const ready = state.ready();
        sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', version: state.version });
      },
    },
  ];
}
