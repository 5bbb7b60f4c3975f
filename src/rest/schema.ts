/**
 * The small part of JSON Schema the REST routes use, for two jobs at once: it is printed into
 * the OpenAPI document as written, and request bodies and query strings are checked against it
 * before a handler runs. Every problem is reported (`UserErrors`), each with its snake_case field.
 * Unknown body fields are refused: a camelCase `modulePath` would otherwise be silently ignored.
 */
import { UserError, UserErrors } from '../errors.js';

export type SchemaType = 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array' | 'null';

export interface JsonSchema {
  type?: SchemaType | SchemaType[];
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  enum?: readonly string[];
  format?: 'date-time';
  minimum?: number;
  maximum?: number;
  default?: unknown;
  example?: unknown;
  $ref?: string;
}

export interface ObjectSchema extends JsonSchema {
  type: 'object';
  properties: Record<string, JsonSchema>;
}

/** A problem with a field the client named itself: its `field` is reported exactly as sent. */
export class UnknownFieldError extends UserError {}

export const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });

const typesOf = (schema: JsonSchema): SchemaType[] => (schema.type === undefined ? [] : Array.isArray(schema.type) ? schema.type : [schema.type]);

function matchesType(value: unknown, type: SchemaType): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value);
    case 'array':
      return Array.isArray(value);
    case 'null':
      return value === null;
  }
}

function describeType(schema: JsonSchema): string {
  const types = typesOf(schema).map((t) => (t === 'array' && schema.items ? `array of ${describeType(schema.items)}s` : t));
  return types.join(' or ');
}

function check(value: unknown, schema: JsonSchema, field: string, issues: UserError[]): void {
  const types = typesOf(schema);
  if (types.length > 0 && !types.some((t) => matchesType(value, t))) {
    issues.push(new UserError('INVALID_ARGUMENT', `"${field}" must be a ${describeType(schema)}`, field));
    return;
  }
  if (Array.isArray(value) && schema.items) value.forEach((item, i) => check(item, schema.items!, `${field}[${i}]`, issues));
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) issues.push(new UserError('INVALID_ARGUMENT', `"${field}" must be at least ${schema.minimum}`, field));
    if (schema.maximum !== undefined && value > schema.maximum) issues.push(new UserError('INVALID_ARGUMENT', `"${field}" must be at most ${schema.maximum}`, field));
  }
}

/** Checks a parsed JSON body against an object schema; throws every problem found. */
export function validateBody(value: unknown, schema: ObjectSchema): Record<string, unknown> {
  if (!matchesType(value, 'object')) throw new UserError('INVALID_ARGUMENT', 'The request body must be a JSON object', null);
  const body = value as Record<string, unknown>;
  const issues: UserError[] = [];
  const known = Object.keys(schema.properties);
  for (const key of Object.keys(body)) {
    if (!(key in schema.properties)) {
      issues.push(new UnknownFieldError('INVALID_ARGUMENT', `Unknown field "${key}"; this endpoint takes ${known.map((k) => `"${k}"`).join(', ')}`, key));
    }
  }
  for (const key of schema.required ?? []) {
    if (body[key] === undefined) issues.push(new UserError('INVALID_ARGUMENT', `"${key}" is required`, key));
  }
  for (const [key, propertySchema] of Object.entries(schema.properties)) {
    if (body[key] !== undefined) check(body[key], propertySchema, key, issues);
  }
  if (issues.length === 1) throw issues[0]!;
  if (issues.length > 1) throw new UserErrors(issues);
  return body;
}

/** A query-string value converted by its schema (booleans `true`/`false`/`1`/`0`, numbers, strings; enums in any case). */
export function parseQueryValue(raw: string, schema: JsonSchema, field: string): string | number | boolean {
  const [type] = typesOf(schema);
  if (type === 'boolean') {
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw new UserError('INVALID_ARGUMENT', `"${field}" must be true or false`, field);
  }
  if (type === 'integer' || type === 'number') {
    const n = raw.trim() === '' ? Number.NaN : Number(raw);
    const issues: UserError[] = [];
    check(n, schema, field, issues);
    if (issues.length > 0) throw issues[0]!;
    return n;
  }
  if (schema.enum && !schema.enum.includes(raw.trim().toLowerCase())) {
    throw new UserError('INVALID_ARGUMENT', `"${field}" must be one of ${schema.enum.join(', ')}; got "${raw}"`, field);
  }
  return raw;
}
