/**
 * `GET /metrics`: the Prometheus text exposition (src/metrics/prometheus.ts). The same callers
 * as GraphQL reads: a token of any role (Prometheus sends `Authorization: Bearer <token>`, its
 * `authorization` scrape setting), or no token where anonymous callers may read. Browser
 * origins are checked as for GraphQL.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AnonymousMode } from '../auth/anonymous.js';
import { resolveCaller, type CallerResolver } from '../auth/authorization.js';
import { checkRequestOrigin, type OriginPolicy } from '../hardening/browser-origin.js';
import { errorFields, type Logger } from '../logger.js';
import type { HeliosMetrics } from '../metrics/prometheus.js';

export const METRICS_PATH = '/metrics';

export interface MetricsRouteDeps {
  metrics: HeliosMetrics;
  tokens: CallerResolver;
  anonymous: AnonymousMode;
  origins: OriginPolicy;
  logger: Logger;
}

export interface MetricsRoute {
  /** Answers and returns true for /metrics, else returns false. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
}

export function createMetricsRoute(deps: MetricsRouteDeps): MetricsRoute {
  return {
    handle(req, res) {
      const url = req.url ?? '/';
      if (url !== METRICS_PATH && !url.startsWith(`${METRICS_PATH}?`)) return false;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        sendText(res, 405, 'Use GET /metrics\n', { allow: 'GET, HEAD' });
        return true;
      }
      const origin = checkRequestOrigin(req.headers, deps.origins);
      if (!origin.ok) {
        sendText(res, 403, `${origin.message}\n`);
        return true;
      }
      // Answered from memory; a promise only while the token index reloads (TokenService).
      Promise.resolve(resolveCaller(req.headers.authorization, deps.tokens, deps.anonymous))
        .then(async (caller) => {
          if (!caller.ok) {
            sendText(res, 401, `${caller.message}\n`, { 'www-authenticate': 'Bearer' });
            return;
          }
          const text = await deps.metrics.scrape();
          sendText(res, 200, text, { 'content-type': deps.metrics.contentType, 'cache-control': 'no-store' }, req.method === 'HEAD');
        })
        .catch((error: unknown) => {
          deps.logger.error('metrics scrape failed', errorFields(error));
          sendText(res, 500, 'Unexpected error.\n');
        });
      return true;
    },
  };
}

function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}, headOnly = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers, 'content-length': Buffer.byteLength(text) });
  res.end(headOnly ? undefined : text);
}
