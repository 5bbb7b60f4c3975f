/** `modularityStatus`: one glance at the whole control plane, as the seed's /status did. */
import { builder } from './builder.js';
import { toDate } from './common.js';

interface StatusRoot {
  now: number;
}

const FlagCountsRef = builder.objectRef<StatusRoot>('FlagCounts').implement({
  fields: (t) => ({
    total: t.int({ resolve: (_s, _a, ctx) => ctx.services.flags.count() }),
    enabled: t.int({ resolve: (_s, _a, ctx) => ctx.services.flags.list().filter((f) => f.enabled).length }),
  }),
});

export const ModularityStatusRef = builder.objectRef<StatusRoot>('ModularityStatus').implement({
  fields: (t) => ({
    version: t.string({ resolve: (_s, _a, ctx) => ctx.services.version }),
    startedAt: t.field({ type: 'DateTime', resolve: (_s, _a, ctx) => toDate(ctx.services.startedAt) }),
    uptimeSeconds: t.float({ resolve: (s, _a, ctx) => Math.max(0, (s.now - ctx.services.startedAt) / 1000) }),
    flags: t.field({ type: FlagCountsRef, resolve: (s) => s }),
  }),
});

builder.queryField('modularityStatus', (t) =>
  t.field({
    type: ModularityStatusRef,
    resolve: (_root, _args, ctx) => ({ now: ctx.services.clock.now() }),
  }),
);
