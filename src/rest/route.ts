/**
 * One REST route of the seeds' `/api/modularity/*` API: method, path template, what it reads
 * (path, query, body, each described as JSON Schema), the role it needs and its handler. The
 * same table drives the router (transport/rest.ts) and the OpenAPI document (rest/openapi.ts),
 * so a route cannot exist undocumented or be documented with other parameters than it takes.
 */
import type { Services } from '../app.js';
import type { Caller } from '../auth/authorization.js';
import type { Role } from '../auth/roles.js';
import type { JsonSchema, ObjectSchema } from './schema.js';

export type RestMethod = 'GET' | 'POST';

/** Query values after validation against their schema. */
export type QueryValue = string | number | boolean;

export interface QueryParameter {
  name: string;
  schema: JsonSchema;
  description: string;
}

export interface RestRequest {
  /** Path parameters, URL-decoded. */
  params: Record<string, string>;
  query: Record<string, QueryValue | undefined>;
  /** The JSON body, validated against the route's `body` schema ({} when the route takes none). */
  body: Record<string, unknown>;
  caller: Caller;
  services: Services;
}

export interface RestRoute {
  method: RestMethod;
  /** `/api/modularity/modules/{module_name}/status`: `{x}` is a path parameter. */
  path: string;
  operationId: string;
  summary: string;
  tag: 'modules' | 'feature-flags' | 'circuit-breakers' | 'status';
  /** Checked with requireRole before anything else, as the GraphQL field needing it does. */
  role: Role;
  query?: QueryParameter[];
  body?: ObjectSchema;
  status: 200 | 201;
  /** A `$ref` into the document's components, or an inline schema. */
  response: JsonSchema;
  /** Error statuses this route can answer besides 401, 403 and 500. */
  errors: Array<400 | 404 | 409>;
  handle(request: RestRequest): unknown;
}
