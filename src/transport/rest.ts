/**
 * The seeds' REST API (`/api/modularity/*`) and its OpenAPI document (`/api/openapi.json`), as
 * guarded routes of the HTTP transport: the origin check and the body cap have run before any
 * of this. Each request goes through the same steps in the same order:
 *   route (404 ROUTE_NOT_FOUND, 405 METHOD_NOT_ALLOWED) -> caller (resolveCaller: 401) ->
 *   role (requireRole, the role the GraphQL mutation needs: 401 anonymous / 403) ->
 *   query and JSON body (400 MALFORMED_JSON / INVALID_ARGUMENT, every problem listed) ->
 *   handler (a service call; its UserError becomes 400/404/409 by rest/errors.ts).
 * Handlers call the services GraphQL calls, with the caller's token name as the audit actor.
 * Bodies are parsed as JSON whatever their Content-Type: the seeds' own curl examples send
 * some without one (curl then says `application/x-www-form-urlencoded`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Services } from '../app.js';
import type { AnonymousMode } from '../auth/anonymous.js';
import { requireRole, resolveCaller } from '../auth/authorization.js';
import { isUserError, UserError, userErrorsOf, type UserErrors } from '../errors.js';
import { sanitizeMessage } from '../hardening/safe-messages.js';
import type { Logger } from '../logger.js';
import { errorFields } from '../logger.js';
import { SwapRefused } from '../modules/service.js';
import { snakeField, STATUS_OF_CODE, type RestOnlyCode } from '../rest/errors.js';
import { openApiDocument } from '../rest/openapi.js';
import type { QueryValue, RestRoute } from '../rest/route.js';
import { parseQueryValue, UnknownFieldError, validateBody } from '../rest/schema.js';
import { sendJson, type HttpRoute } from './http.js';

export const REST_PREFIX = '/api/modularity/';
export const OPENAPI_PATH = '/api/openapi.json';

export interface RestTransportOptions {
  routes: readonly RestRoute[];
  services: Services;
  anonymous: AnonymousMode;
  logger: Logger;
}

interface CompiledRoute {
  route: RestRoute;
  segments: Array<{ literal: string } | { param: string }>;
  literals: number;
}

function compile(route: RestRoute): CompiledRoute {
  const segments = route.path
    .split('/')
    .filter(Boolean)
    .map((s) => (s.startsWith('{') && s.endsWith('}') ? { param: s.slice(1, -1) } : { literal: s }));
  return { route, segments, literals: segments.filter((s) => 'literal' in s).length };
}

function match(compiled: CompiledRoute, parts: string[]): Record<string, string> | null {
  if (compiled.segments.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const segment = compiled.segments[i]!;
    const part = parts[i]!;
    if ('literal' in segment) {
      if (segment.literal !== part) return null;
    } else {
      params[segment.param] = part;
    }
  }
  return params;
}

interface ErrorItem {
  code: string;
  message: string;
  field: string | null;
}

function sendError(res: ServerResponse, status: number, items: ErrorItem[], extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): void {
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  sendJson(res, status, { error: items[0], errors: items, ...extra });
}

const restError = (code: RestOnlyCode, message: string, field: string | null = null): ErrorItem => ({ code, message, field });

function itemsOf(error: UserError | UserErrors): ErrorItem[] {
  return userErrorsOf(error).map((e) => ({ code: e.code, message: sanitizeMessage(e.message), field: e instanceof UnknownFieldError ? e.field : snakeField(e.field) }));
}

/** The status of a refused request: that of its first error (validation errors are all 400). */
const statusOf = (error: UserError | UserErrors) => STATUS_OF_CODE[userErrorsOf(error)[0]!.code];

class MalformedJson extends Error {}

function readBody(req: IncomingMessage): unknown {
  const raw = (req as IncomingMessage & { body?: Buffer }).body;
  if (!raw || raw.length === 0) return {};
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch {
    throw new MalformedJson();
  }
}

export function restRoutes(options: RestTransportOptions): HttpRoute[] {
  const compiled = options.routes.map(compile);
  const logger = options.logger.child({ component: 'rest' });
  let document: unknown = null;

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://helios.invalid');
    let parts: string[];
    try {
      parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    } catch {
      sendError(res, 400, [{ code: 'INVALID_ARGUMENT', message: 'The path is not valid percent-encoding', field: null }]);
      return;
    }
    const candidates = compiled
      .map((c) => ({ c, params: match(c, parts) }))
      .filter((m): m is { c: CompiledRoute; params: Record<string, string> } => m.params !== null);
    if (candidates.length === 0) {
      sendError(res, 404, [restError('ROUTE_NOT_FOUND', `No endpoint ${url.pathname}; GET ${OPENAPI_PATH} lists them`)]);
      return;
    }
    // A literal segment beats a parameter: POST /feature-flags/enable is not a flag named "enable".
    const found = candidates.filter((m) => m.c.route.method === req.method).sort((a, b) => b.c.literals - a.c.literals)[0];
    if (!found) {
      const allow = [...new Set(candidates.map((m) => m.c.route.method))].join(', ');
      sendError(res, 405, [restError('METHOD_NOT_ALLOWED', `${url.pathname} answers ${allow}`)], {}, { allow });
      return;
    }
    const { route } = found.c;

    const resolution = await resolveCaller(req.headers.authorization, options.services.tokens, options.anonymous);
    if (!resolution.ok) {
      sendError(res, 401, [{ code: resolution.code, message: resolution.message, field: null }], {}, { 'www-authenticate': 'Bearer' });
      return;
    }
    const caller = resolution.caller;
    try {
      requireRole(caller, route.role);
      const query: Record<string, QueryValue | undefined> = {};
      const issues: UserError[] = [];
      const known = new Map((route.query ?? []).map((q) => [q.name, q]));
      for (const [key, raw] of url.searchParams) {
        const spec = known.get(key);
        if (!spec) {
          const names = [...known.keys()];
          issues.push(new UserError('INVALID_ARGUMENT', `Unknown query parameter "${key}"${names.length ? `; this endpoint takes ${names.join(', ')}` : ''}`, key));
          continue;
        }
        try {
          query[key] = parseQueryValue(raw, spec.schema, key);
        } catch (error) {
          if (error instanceof UserError) issues.push(error);
          else throw error;
        }
      }
      if (issues.length > 0) {
        sendError(res, 400, issues.map((e) => ({ code: e.code, message: e.message, field: e.field })));
        return;
      }
      let body: Record<string, unknown> = {};
      const raw = readBody(req);
      if (route.body) body = validateBody(raw, route.body);
      else if (!(typeof raw === 'object' && raw !== null && !Array.isArray(raw) && Object.keys(raw).length === 0)) {
        throw new UserError('INVALID_ARGUMENT', 'This endpoint takes no request body', null);
      }
      const result = await route.handle({ params: found.params, query, body, caller, services: options.services });
      sendJson(res, route.status, result);
    } catch (error) {
      if (error instanceof MalformedJson) {
        sendError(res, 400, [restError('MALFORMED_JSON', 'The request body is not valid JSON')]);
      } else if (isUserError(error)) {
        const extra = error instanceof SwapRefused ? { test_run_id: error.testRunId } : {};
        const status = statusOf(error);
        sendError(res, status, itemsOf(error), extra, status === 401 ? { 'www-authenticate': 'Bearer' } : {});
      } else {
        logger.error('unexpected error', { method: req.method, path: url.pathname, ...errorFields(error) });
        sendError(res, 500, [restError('INTERNAL_SERVER_ERROR', 'Unexpected error.')]);
      }
    }
  };

  return [
    { path: REST_PREFIX, handle },
    {
      path: OPENAPI_PATH,
      handle: (req, res) => {
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          sendError(res, 405, [restError('METHOD_NOT_ALLOWED', `${OPENAPI_PATH} answers GET`)], {}, { allow: 'GET' });
          return;
        }
        document ??= openApiDocument(options.routes, options.services.version);
        sendJson(res, 200, document);
      },
    },
  ];
}
