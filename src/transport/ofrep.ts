/**
 * OFREP over HTTP: `POST /ofrep/v1/evaluate/flags/{key}` and bulk `POST /ofrep/v1/evaluate/flags`
 * (open-feature/protocol, service/openapi.yaml). A thin adapter: the caller is resolved as for
 * GraphQL (same tokens, anonymous rule and 401), browser origins are checked as for GraphQL
 * (403), the body is capped by the same guard (413), and flags are evaluated by the flags
 * service from memory, the engine behind GraphQL's `evaluateFlag`. The mapping is
 * src/flags/ofrep.ts.
 *
 * A browser page on an origin HELIOS_ALLOWED_ORIGINS lets in gets CORS answers (a preflight
 * `OPTIONS` 204 and `Access-Control-Allow-Origin` on every answer, `ETag` exposed).
 *
 * Bulk answers carry a strong ETag: a digest of the flag definitions (their revision, read
 * from content, so it needs no listener and survives restarts), of the request's context and
 * of the answer itself. `If-None-Match` with it gives 304 only when the client holds exactly
 * this answer to this context under these definitions, so no cached answer is ever wrong for
 * anyone, gradual steps and per-context splits included: nothing is cached on the server, the
 * answer is computed every time (an evaluation is well under a microsecond).
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AnonymousMode } from '../auth/anonymous.js';
import { isPromise, resolveCaller, thenMaybe, type CallerResolution, type CallerResolver } from '../auth/authorization.js';
import type { FlagService } from '../flags/service.js';
import { ifNoneMatchHits, ofrepAnswer, ofrepBulkFlags, parseOfrepRequest, type OfrepRequestFailure } from '../flags/ofrep.js';
import { checkRequestOrigin, type OriginPolicy } from '../hardening/browser-origin.js';
import { readRequestBody } from '../hardening/request-body.js';
import { errorFields, type Logger } from '../logger.js';

export const OFREP_PREFIX = '/ofrep/';
const SINGLE_PREFIX = '/ofrep/v1/evaluate/flags/';
const BULK_PATH = '/ofrep/v1/evaluate/flags';

export interface OfrepRouteDeps {
  flags: Pick<FlagService, 'evaluate' | 'evaluateMany' | 'get' | 'definitions'>;
  tokens: CallerResolver;
  anonymous: AnonymousMode;
  origins: OriginPolicy;
  maxRequestBodyBytes: number;
  logger: Logger;
}

export interface OfrepRoute {
  /** Answers the request and returns true when its path is under /ofrep/, else returns false. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
}

export function createOfrepRoute(deps: OfrepRouteDeps): OfrepRoute {
  // Every step below is a plain call: a request whose caller is known at once (a cached token,
  // or anonymous) creates no promise on its way, the body is read with a callback, and the
  // answer is written synchronously when it has ended. `fail` answers whatever throws.
  const fail = (res: ServerResponse, error: unknown) => {
    deps.logger.error('OFREP request failed', errorFields(error));
    if (!res.headersSent) sendJson(res, 500, { errorDetails: 'Unexpected error.' });
    else res.destroy();
  };

  const serve = (req: IncomingMessage, res: ServerResponse, path: string): void => {
    const single = path.startsWith(SINGLE_PREFIX) && path.length > SINGLE_PREFIX.length;
    if (!single && path !== BULK_PATH) {
      sendJson(res, 404, { errorDetails: `No OFREP endpoint at ${path}` });
      return;
    }
    const origin = checkRequestOrigin(req.headers, deps.origins);
    // CORS for browser SDKs (OpenFeature's web OFREP provider) on an origin HELIOS_ALLOWED_ORIGINS
    // lets in: every answer names it, and the bulk ETag is readable by the page.
    const corsOrigin = origin.ok ? req.headers.origin : undefined;
    if (corsOrigin !== undefined) {
      res.setHeader('access-control-allow-origin', corsOrigin);
      res.setHeader('access-control-expose-headers', 'ETag');
      res.setHeader('vary', 'Origin');
    }
    if (req.method === 'OPTIONS') {
      // A preflight: same origin rule as the request itself; no token is needed to ask.
      if (!origin.ok) {
        sendJson(res, 403, { errorDetails: origin.message });
        return;
      }
      res.writeHead(204, {
        allow: 'POST, OPTIONS',
        'access-control-allow-methods': 'POST',
        'access-control-allow-headers': 'authorization, content-type, if-none-match',
        'access-control-max-age': '600',
      });
      res.end();
      return;
    }
    if (req.method !== 'POST') {
      sendJson(res, 405, { errorDetails: 'OFREP evaluations are POST requests' }, { allow: 'POST, OPTIONS' });
      return;
    }
    if (!origin.ok) {
      sendJson(res, 403, { errorDetails: origin.message });
      return;
    }
    // Usually known at once (a cached token, or anonymous): a promise only when it is not.
    const after = thenMaybe(resolveCaller(req.headers.authorization, deps.tokens, deps.anonymous), (resolution) => authorized(req, res, path, single, resolution));
    if (isPromise(after)) after.catch((error: unknown) => fail(res, error));
  };

  const authorized = (req: IncomingMessage, res: ServerResponse, path: string, single: boolean, resolution: CallerResolution): void => {
    if (!resolution.ok) {
      sendJson(res, 401, { errorDetails: resolution.message }, { 'www-authenticate': 'Bearer' });
      return;
    }
    readRequestBody(req, res, deps.maxRequestBodyBytes, (accepted) => {
      if (!accepted) return;
      try {
        answer(req, res, path, single);
      } catch (error) {
        fail(res, error);
      }
    });
  };

  const answer = (req: IncomingMessage, res: ServerResponse, path: string, single: boolean): void => {
    const request = parseOfrepRequest((req as IncomingMessage & { body?: Buffer }).body);

    if (single) {
      let key: string;
      try {
        key = decodeURIComponent(path.slice(SINGLE_PREFIX.length));
      } catch {
        sendJson(res, 400, { key: path.slice(SINGLE_PREFIX.length), errorCode: 'PARSE_ERROR', errorDetails: 'The flag key is not valid percent-encoding' });
        return;
      }
      if (!request.ok) {
        sendJson(res, 400, { key, errorCode: request.errorCode, errorDetails: request.errorDetails });
        return;
      }
      const result = ofrepAnswer(deps.flags.evaluate(key, request.context), deps.flags.get(key)?.stickiness ?? null);
      sendJson(res, result.status, result.body);
      return;
    }

    if (!request.ok) {
      sendJson(res, 400, { errorCode: request.errorCode, errorDetails: request.errorDetails } satisfies OfrepRequestFailure);
      return;
    }
    const text = JSON.stringify({
      flags: ofrepBulkFlags(deps.flags.evaluateMany(request.context), (name) => deps.flags.get(name)?.stickiness ?? null),
    });
    // The definitions in memory order (no second sort: evaluateMany already listed them sorted).
    const hash = createHash('sha256');
    for (const definition of deps.flags.definitions()) hash.update(JSON.stringify(definition));
    const etag = `"${hash
      .update('\n')
      .update(JSON.stringify(request.raw))
      .update('\n')
      .update(text)
      .digest('base64url')
      .slice(0, 32)}"`;
    const headers = { etag, 'cache-control': 'private, no-cache' };
    if (ifNoneMatchHits(headerValue(req.headers['if-none-match']), etag)) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    sendText(res, 200, text, headers);
  };

  return {
    handle(req, res) {
      const url = req.url ?? '/';
      if (!url.startsWith(OFREP_PREFIX)) return false;
      const query = url.indexOf('?');
      try {
        serve(req, res, query === -1 ? url : url.slice(0, query));
      } catch (error) {
        fail(res, error);
      }
      return true;
    },
  };
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendText(res, status, JSON.stringify(body), headers);
}

function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string>): void {
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
