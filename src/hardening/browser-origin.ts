/**
 * CSRF and cross-site WebSocket prevention, for HTTP requests and WebSocket upgrades alike.
 *
 * Tokens travel in a header or the `connection_init` payload, never in cookies, so a foreign page
 * cannot borrow a user's token. What it can borrow is the *network position* of the user's
 * browser: on a laptop running Helios with anonymous VIEWER access on 127.0.0.1, any site the
 * user visits could read the state (Yoga's default CORS reflects every origin), open a
 * WebSocket to watch the feeds, or reach the port through DNS rebinding. So:
 * - a request whose `Origin` is neither this server's own origin nor listed is refused;
 * - without `Origin`, a browser's `Sec-Fetch-Site: cross-site|same-site` is refused too;
 * - with `requireLoopbackHost` (set it while listening on loopback), a `Host` that is not a
 *   loopback name is refused: that is what a DNS-rebinding page sends.
 * Requests without either header (curl, servers, the CLI) are not browsers and pass.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { VerifyClientCallbackAsync } from 'ws';
import { isLoopbackHost } from '../auth/anonymous.js';
import { quoteValue } from '../errors.js';
import { setBounded } from '../bounded-cache.js';

export interface OriginPolicy {
  /** Exact origins allowed besides the server's own, e.g. `https://ops.example.com`. */
  allowedOrigins: readonly string[];
  /** Refuse any `Host` that is not loopback (DNS rebinding) — for servers bound to loopback. */
  requireLoopbackHost: boolean;
}

export type OriginVerdict = { ok: true } | { ok: false; code: 'FORBIDDEN_ORIGIN'; message: string };

const refuse = (message: string): OriginVerdict => ({ ok: false, code: 'FORBIDDEN_ORIGIN', message });

function hostnameOf(host: string): string {
  // "[::1]:8000" -> "[::1]", "localhost:8000" -> "localhost"
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.lastIndexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

function normalizeOrigin(origin: string): string | null {
  try {
    const url = new URL(origin);
    return url.origin === 'null' ? null : url.origin;
  } catch {
    return null;
  }
}

/** Hosts whose loopback verdict is kept: every request of a client names the same one. */
const LOOPBACK_HOST_CACHE_SIZE = 64;
const loopbackHosts = new Map<string, boolean>();

function isLoopbackHostHeader(host: string): boolean {
  let loopback = loopbackHosts.get(host);
  if (loopback === undefined) {
    loopback = isLoopbackHost(hostnameOf(host));
    setBounded(loopbackHosts, host, loopback, LOOPBACK_HOST_CACHE_SIZE);
  }
  return loopback;
}

export function checkRequestOrigin(headers: IncomingHttpHeaders, policy: OriginPolicy): OriginVerdict {
  const host = headers.host;
  if (!host) return refuse('Missing Host header');
  if (policy.requireLoopbackHost && !isLoopbackHostHeader(host)) {
    return refuse(`Host ${quoteValue(host)} is not allowed`);
  }
  const originHeader = headers.origin;
  if (originHeader !== undefined) {
    const origin = normalizeOrigin(originHeader);
    if (origin === null) return refuse('Opaque or invalid Origin');
    const own = [`http://${host}`, `https://${host}`].map(normalizeOrigin);
    const allowed = policy.allowedOrigins.map(normalizeOrigin);
    if (own.includes(origin) || allowed.includes(origin)) return { ok: true };
    return refuse(`Origin ${origin} is not allowed`);
  }
  const site = headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') return refuse('Cross-site requests are not allowed');
  return { ok: true };
}

/** For `new WebSocketServer({ verifyClient })`: refuses the upgrade with HTTP 403. */
export function verifyWebSocketOrigin(policy: OriginPolicy): VerifyClientCallbackAsync<IncomingMessage> {
  return (info, callback) => {
    const verdict = checkRequestOrigin(info.req.headers, policy);
    if (verdict.ok) callback(true);
    else callback(false, 403, verdict.message);
  };
}
