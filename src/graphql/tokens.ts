/** API tokens in GraphQL (admins only): create (the secret is shown once), revoke, list. */
import type { Caller } from '../auth/authorization.js';
import { ROLES } from '../auth/roles.js';
import type { ApiTokenRecord } from '../auth/service.js';
import { builder } from './builder.js';
import { entityPayload, requireRoleOrThrow, runMutation, toDate, UserErrorRef, type Payload } from './common.js';

const RoleEnum = builder.enumType('Role', {
  description: 'VIEWER reads and subscribes; OPERATOR also changes flags, breakers and modules; ADMIN also registers modules and manages tokens.',
  values: ROLES,
});

const ApiTokenRef = builder.objectRef<ApiTokenRecord>('ApiToken').implement({
  description: 'A token\'s identity; the secret itself is never stored or shown again.',
  fields: (t) => ({
    name: t.exposeString('name'),
    role: t.field({ type: RoleEnum, resolve: (r) => r.role }),
    createdAt: t.field({ type: 'DateTime', resolve: (r) => toDate(r.createdAt) }),
    createdBy: t.exposeString('createdBy'),
    lastUsedAt: t.field({ type: 'DateTime', nullable: true, description: 'To the minute.', resolve: (r) => toDate(r.lastUsedAt) }),
    revokedAt: t.field({ type: 'DateTime', nullable: true, resolve: (r) => toDate(r.revokedAt) }),
  }),
});

const CreateApiTokenPayload = builder.objectRef<Payload<{ token: string; record: ApiTokenRecord }>>('CreateApiTokenPayload').implement({
  fields: (t) => ({
    token: t.string({ nullable: true, description: 'The secret: shown this once, stored only as a hash.', resolve: (p) => p.value?.token ?? null }),
    apiToken: t.field({ type: ApiTokenRef, nullable: true, resolve: (p) => p.value?.record ?? null }),
    errors: t.field({ type: [UserErrorRef], resolve: (p) => p.errors }),
  }),
});
const RevokeApiTokenPayload = entityPayload('RevokeApiTokenPayload', 'apiToken', ApiTokenRef, 'The revoked token.');

const CallerRef = builder.objectRef<Caller>('Caller').implement({
  description: 'Who is asking: a token\'s name and role, or the anonymous caller.',
  fields: (t) => ({
    name: t.exposeString('name', { description: 'The token\'s name (the audit actor), or anonymous.' }),
    role: t.field({ type: RoleEnum, resolve: (c) => c.role }),
    anonymous: t.exposeBoolean('anonymous'),
  }),
});

builder.queryField('me', (t) =>
  t.field({
    type: CallerRef,
    description: 'The caller behind this request, so a client (the dashboard) offers only what its role may do.',
    resolve: (_r, _a, ctx) => ctx.caller,
  }),
);

builder.queryField('apiTokens', (t) =>
  t.field({
    type: [ApiTokenRef],
    description: 'Every token, revoked ones included (admins only).',
    resolve: async (_r, _a, ctx) => {
      requireRoleOrThrow(ctx, 'ADMIN');
      return await ctx.services.tokens.list();
    },
  }),
);

builder.mutationFields((t) => ({
  createApiToken: t.field({
    type: CreateApiTokenPayload,
    args: { name: t.arg.string({ required: true }), role: t.arg({ type: RoleEnum, required: true }) },
    resolve: (_r, args, ctx) => runMutation(ctx, 'ADMIN', async () => await ctx.services.tokens.create(ctx.actor, args.name, args.role)),
  }),
  revokeApiToken: t.field({
    type: RevokeApiTokenPayload,
    description: 'Revokes at once: the next request with the token is refused.',
    args: { name: t.arg.string({ required: true }) },
    resolve: (_r, args, ctx) => runMutation(ctx, 'ADMIN', async () => await ctx.services.tokens.revoke(ctx.actor, args.name)),
  }),
}));
