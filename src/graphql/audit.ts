/** The audit log in GraphQL: newest first, cursor-paginated, optionally for one target. */
import { AUDIT_TARGET_TYPES, type AuditEntry } from '../audit/repository.js';
import { builder } from './builder.js';
import { decodeCursor, encodeCursor, PageInfoRef, toDate, validateFirst } from './common.js';

const CURSOR_KIND = 'audit';

const AuditTargetTypeEnum = builder.enumType('AuditTargetType', { values: AUDIT_TARGET_TYPES });

const AuditEntryRef = builder.objectRef<AuditEntry>('AuditEntry').implement({
  description: 'One change: who made it, what it touched, when, and the state before and after.',
  fields: (t) => ({
    id: t.exposeID('id'),
    at: t.field({ type: 'DateTime', resolve: (e) => toDate(e.at) }),
    actor: t.exposeString('actor'),
    action: t.exposeString('action', { description: 'The mutation, e.g. setFlagPercentage.' }),
    targetType: t.field({ type: AuditTargetTypeEnum, resolve: (e) => e.targetType }),
    target: t.exposeString('target'),
    before: t.field({ type: 'JSON', nullable: true, description: 'Null when the target was created.', resolve: (e) => e.before }),
    after: t.field({ type: 'JSON', nullable: true, description: 'Null when the target was deleted.', resolve: (e) => e.after }),
  }),
});

const AuditEdgeRef = builder.objectRef<AuditEntry>('AuditLogEdge').implement({
  fields: (t) => ({
    cursor: t.string({ resolve: (e) => encodeCursor(CURSOR_KIND, e.id) }),
    node: t.field({ type: AuditEntryRef, resolve: (e) => e }),
  }),
});

const AuditConnectionRef = builder
  .objectRef<{ entries: AuditEntry[]; hasMore: boolean }>('AuditLogConnection')
  .implement({
    fields: (t) => ({
      edges: t.field({ type: [AuditEdgeRef], resolve: (c) => c.entries }),
      nodes: t.field({ type: [AuditEntryRef], resolve: (c) => c.entries }),
      pageInfo: t.field({
        type: PageInfoRef,
        resolve: (c) => ({
          hasNextPage: c.hasMore,
          endCursor: c.entries.length > 0 ? encodeCursor(CURSOR_KIND, c.entries[c.entries.length - 1]!.id) : null,
        }),
      }),
    }),
  });

builder.queryField('auditLog', (t) =>
  t.field({
    type: AuditConnectionRef,
    description: 'Who changed what and when, newest first. `target` narrows it to one flag, breaker or module name. Entries about API tokens are shown to ADMIN only.',
    args: {
      first: t.arg.int({ defaultValue: 50 }),
      after: t.arg.string(),
      target: t.arg.string(),
    },
    resolve: async (_root, args, ctx) => {
      const first = validateFirst(args.first ?? 50);
      const afterId = args.after ? Number(decodeCursor(CURSOR_KIND, args.after)) : undefined;
      return await ctx.services.audit.page(ctx.caller.role, first, afterId, args.target);
    },
  }),
);
