/**
 * Shared schema pieces: root types, scalars, the `UserError` type every payload carries, and
 * `runMutation`, which turns a service's `UserError` into payload data (unexpected errors are
 * re-thrown for Yoga to mask and log).
 */
import { DateTimeISOResolver, JSONResolver } from './scalars.js';
import { GraphQLError, GraphQLScalarType } from 'graphql';
import { requireRole } from '../auth/authorization.js';
import type { Role } from '../auth/roles.js';
import { ERROR_CODES, isUserError, quoteValue, UserError, userErrorsOf, type ErrorCode, type UserErrors } from '../errors.js';
import { exceedsJsonDepth, MAX_JSON_DEPTH } from '../hardening/json-depth.js';
import { storedErrorMessage } from '../hardening/safe-messages.js';
import type { GraphQLContext } from './context.js';
import type { ObjectRef } from '@pothos/core';
import { builder, type HeliosSchemaTypes } from './builder.js';

builder.addScalarType('DateTime', DateTimeISOResolver);
builder.addScalarType('JSON', depthLimited(JSONResolver));

/**
 * The JSON scalar, refusing values nested deeper than MAX_JSON_DEPTH (hardening/json-depth.ts)
 * with INVALID_ARGUMENT. Variables (parseValue) and inline literals (parseLiteral) both pass
 * here, on both transports. graphql-js keeps a GraphQLError thrown here as the `originalError`
 * of the variable or validation error it reports, and maskError hands that one to the client.
 */
function depthLimited(scalar: GraphQLScalarType): GraphQLScalarType {
  const config = scalar.toConfig();
  const check = (value: unknown): unknown => {
    if (exceedsJsonDepth(value)) {
      throw new GraphQLError(`JSON input is nested deeper than ${MAX_JSON_DEPTH} levels`, { extensions: { code: 'INVALID_ARGUMENT' } });
    }
    return value;
  };
  return new GraphQLScalarType({
    ...config,
    parseValue: (value) => check(config.parseValue ? config.parseValue(value) : value),
    parseLiteral: (ast, variables) => check(config.parseLiteral ? config.parseLiteral(ast, variables) : undefined),
  });
}

builder.queryType({ description: 'Read the state of the control plane.' });
builder.mutationType({ description: 'Change the live system. Every mutation is audited and returns typed errors.' });
builder.subscriptionType({ description: 'Live feeds over graphql-ws (and SSE).' });

export const ErrorCodeEnum = builder.enumType('ErrorCode', {
  description: 'Machine-readable reason a mutation was refused.',
  values: ERROR_CODES,
});

/** Plain data: graphql-js treats an Error instance returned by a resolver as a field error. */
export interface UserErrorData {
  code: ErrorCode;
  message: string;
  field: string | null;
}

export const UserErrorRef = builder.objectRef<UserErrorData>('UserError').implement({
  description: 'A business error: the mutation changed nothing.',
  fields: (t) => ({
    code: t.field({ type: ErrorCodeEnum, resolve: (e) => e.code }),
    message: t.exposeString('message'),
    field: t.string({ nullable: true, description: 'The argument at fault, when one is.', resolve: (e) => e.field }),
  }),
});

export interface Payload<T> {
  value: T | null;
  errors: UserErrorData[];
}

/**
 * Runs a mutation for a caller who needs `need`; business errors (including FORBIDDEN and
 * UNAUTHENTICATED) become payload errors, with file paths and SQL stripped from messages.
 */
export async function runMutation<T>(ctx: GraphQLContext, need: Role, fn: () => T | Promise<T>): Promise<Payload<T>> {
  try {
    requireRole(ctx.caller, need);
    return { value: await fn(), errors: [] };
  } catch (error) {
    if (isUserError(error)) return { value: null, errors: toErrorData(error) };
    throw error;
  }
}

export function toErrorData(error: UserError | UserErrors): UserErrorData[] {
  // Cut like a stored error: a module's call failure can carry any message it likes.
  return userErrorsOf(error).map(({ code, message, field }) => ({ code, message: storedErrorMessage(message), field }));
}

/** For queries and subscriptions: a role check that fails the field with a typed GraphQL error. */
export function requireRoleOrThrow(ctx: GraphQLContext, need: Role): void {
  try {
    requireRole(ctx.caller, need);
  } catch (error) {
    if (error instanceof UserError) throw new GraphQLError(error.message, { extensions: { code: error.code } });
    throw error;
  }
}

/**
 * `<Mutation>Payload { <field>: <Type>, errors: [UserError!]! }` for a mutation that returns one
 * object: the shape most mutations share.
 */
export function entityPayload<T>(name: string, field: string, type: ObjectRef<PothosSchemaTypes.ExtendDefaultTypes<HeliosSchemaTypes>, T>, description: string) {
  return builder.objectRef<Payload<T>>(name).implement({
    description,
    fields: (t) => ({
      // Pothos cannot narrow its output-shape types through the generic T; the ref guarantees them.
      [field]: t.field({ type, nullable: true, resolve: (p) => p.value as never }),
      errors: t.field({ type: [UserErrorRef], resolve: (p) => p.errors }),
    }),
  });
}

/** Epoch milliseconds to the DateTime scalar; null stays null. */
export function toDate(ms: number): Date;
export function toDate(ms: number | null | undefined): Date | null;
export function toDate(ms: number | null | undefined): Date | null {
  return ms === null || ms === undefined ? null : new Date(ms);
}

/** Relay-style opaque cursor over a numeric id. */
export function encodeCursor(kind: string, id: number | string): string {
  return Buffer.from(`${kind}:${id}`, 'utf8').toString('base64url');
}

export function decodeCursor(kind: string, cursor: string): string {
  const decoded = Buffer.from(cursor, 'base64url').toString('utf8');
  const prefix = `${kind}:`;
  if (!decoded.startsWith(prefix)) {
    throw new GraphQLError(`Invalid cursor ${quoteValue(cursor)}`, { extensions: { code: 'INVALID_CURSOR' } });
  }
  return decoded.slice(prefix.length);
}

export function validateFirst(first: number, max = 500): number {
  if (!Number.isInteger(first) || first < 1 || first > max) {
    throw new GraphQLError(`"first" must be between 1 and ${max}`, { extensions: { code: 'INVALID_ARGUMENT' } });
  }
  return first;
}

export const PageInfoRef = builder
  .objectRef<{ hasNextPage: boolean; endCursor: string | null }>('PageInfo')
  .implement({
    fields: (t) => ({
      hasNextPage: t.exposeBoolean('hasNextPage'),
      endCursor: t.exposeString('endCursor', { nullable: true }),
    }),
  });
