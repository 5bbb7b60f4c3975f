/**
 * The OpenAPI 3.1 document of the REST API, generated from the route table (rest/routes.ts), so
 * every route is documented with exactly the parameters and bodies it accepts.
 */
import type { RestRoute } from './route.js';
import { ref, type JsonSchema } from './schema.js';
import { COMPONENT_SCHEMAS } from './views.js';

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid input (malformed JSON, a missing, unknown or ill-typed field, a value the service refuses).',
  401: 'No valid token where one is needed (or a malformed, unknown or revoked one).',
  403: 'The token\'s role is too low.',
  404: 'Unknown module, flag or breaker.',
  409: 'The current state refuses the change (e.g. invalid_module_state, dependents_loaded).',
  500: 'Unexpected error (logged on the server).',
};

const pathParameters = (path: string) => [...path.matchAll(/\{([a-z_]+)\}/g)].map((m) => m[1]!);

function operation(route: RestRoute) {
  const errorResponse = (status: number) => [String(status), { $ref: `#/components/responses/E${status}` }] as const;
  const statuses = [...new Set([...route.errors, ...(route.role === 'VIEWER' ? [401] : [401, 403]), 500])].sort();
  return {
    operationId: route.operationId,
    summary: route.summary,
    tags: [route.tag],
    'x-helios-role': route.role,
    parameters: [
      ...pathParameters(route.path).map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } })),
      ...(route.query ?? []).map((q) => ({ name: q.name, in: 'query', required: false, description: q.description, schema: q.schema })),
    ],
    ...(route.body
      ? {
          requestBody: {
            required: (route.body.required ?? []).length > 0,
            content: { 'application/json': { schema: { ...route.body, additionalProperties: false } } },
          },
        }
      : {}),
    responses: {
      [String(route.status)]: { description: route.status === 201 ? 'Created' : 'OK', content: { 'application/json': { schema: route.response } } },
      ...Object.fromEntries(statuses.map(errorResponse)),
    },
  };
}

export function openApiDocument(routes: readonly RestRoute[], version: string) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) (paths[route.path] ??= {})[route.method.toLowerCase()] = operation(route);
  const errorSchema: JsonSchema = ref('Error');
  return {
    openapi: '3.1.0',
    info: {
      title: 'Helios REST API (seed compatibility)',
      version,
      description:
        'The seeds\' /api/modularity/* endpoints, a thin adapter over the services GraphQL (/graphql) uses: same tokens, roles, limits and audit. ' +
        'Field names are snake_case, enum values lower case, times ISO-8601. Reads need no token while anonymous access is on; changes need Authorization: Bearer <token>.',
    },
    tags: [{ name: 'modules' }, { name: 'feature-flags' }, { name: 'circuit-breakers' }, { name: 'status' }],
    security: [{ bearer: [] }, {}],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: COMPONENT_SCHEMAS,
      responses: Object.fromEntries(
        Object.entries(ERROR_DESCRIPTIONS).map(([status, description]) => [
          `E${status}`,
          { description, content: { 'application/json': { schema: errorSchema } } },
        ]),
      ),
    },
  };
}
