/** Feature flags in GraphQL: types, queries, mutations and the change feed, side by side. */
import { GraphQLError } from 'graphql';
import {
  EVALUATION_REASONS,
  ROLLOUT_STRATEGIES,
  type EvaluationContext,
  type FlagDefinition,
  type FlagEvaluation,
  type GradualSchedule,
  type WhitelistEntry,
} from '../flags/engine.js';
import { FLAG_CHANGE_KINDS, type FlagChangeEvent } from '../flags/events.js';
import { builder } from './builder.js';
import { entityPayload, runMutation, toDate, UserErrorRef, type Payload } from './common.js';

export const RolloutStrategyEnum = builder.enumType('RolloutStrategy', {
  description: 'How a flag decides for a context. PERCENTAGE and GRADUAL bucket sticky values deterministically.',
  values: ROLLOUT_STRATEGIES,
});

const EvaluationReasonEnum = builder.enumType('EvaluationReason', {
  description:
    "Why an evaluation came out as it did, in OpenFeature's vocabulary where it fits; RANDOM means no sticky value was in the context.",
  values: EVALUATION_REASONS,
});

const FlagChangeKindEnum = builder.enumType('FlagChangeKind', { values: FLAG_CHANGE_KINDS });

const WhitelistEntryRef = builder.objectRef<WhitelistEntry>('WhitelistEntry').implement({
  description: 'Contexts whose `attribute` has one of `values` are targeted.',
  fields: (t) => ({
    attribute: t.exposeString('attribute'),
    values: t.exposeStringList('values'),
  }),
});

const GradualRolloutRef = builder
  .objectRef<{ schedule: GradualSchedule; current: number | null }>('GradualRollout')
  .implement({
    description: 'A time-based rollout moving from start to target percentage in whole-point steps.',
    fields: (t) => ({
      startPercentage: t.float({ resolve: (g) => g.schedule.startPercentage }),
      targetPercentage: t.float({ resolve: (g) => g.schedule.targetPercentage }),
      startAt: t.field({ type: 'DateTime', resolve: (g) => toDate(g.schedule.startAt) }),
      durationSeconds: t.int({ resolve: (g) => g.schedule.durationSeconds }),
      endsAt: t.field({ type: 'DateTime', resolve: (g) => toDate(g.schedule.startAt + g.schedule.durationSeconds * 1000) }),
      currentPercentage: t.float({ description: 'The schedule\'s percentage now (whether or not the flag is enabled).', resolve: (g) => g.current ?? g.schedule.startPercentage }),
    }),
  });

export const FeatureFlagRef = builder.objectRef<FlagDefinition>('FeatureFlag').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    description: t.exposeString('description'),
    enabled: t.exposeBoolean('enabled'),
    strategy: t.field({ type: RolloutStrategyEnum, resolve: (f) => f.strategy }),
    percentage: t.exposeFloat('percentage', { description: 'The configured percentage used by the PERCENTAGE strategy.' }),
    effectivePercentage: t.float({
      nullable: true,
      description:
        'The percentage of contexts the flag is on for now: PERCENTAGE and GRADUAL flags only (null for others); 0 while the flag is disabled, whatever its strategy.',
      resolve: (f, _args, ctx) => ctx.services.flags.effectivePercentage(f),
    }),
    stickiness: t.exposeString('stickiness', {
      description: 'Context attribute whose value keeps a context in its bucket; "default" means sessionId, then userId.',
    }),
    whitelist: t.field({ type: [WhitelistEntryRef], resolve: (f) => f.whitelist }),
    gradual: t.field({
      type: GradualRolloutRef,
      nullable: true,
      resolve: (f, _args, ctx) =>
        f.gradual ? { schedule: f.gradual, current: ctx.services.flags.scheduledPercentage({ ...f, strategy: 'GRADUAL' }) } : null,
    }),
    createdAt: t.field({ type: 'DateTime', resolve: (f) => toDate(f.createdAt) }),
    updatedAt: t.field({ type: 'DateTime', resolve: (f) => toDate(f.updatedAt) }),
  }),
});

const FlagEvaluationRef = builder.objectRef<FlagEvaluation>('FlagEvaluation').implement({
  fields: (t) => ({
    flag: t.exposeString('flag', { description: 'The flag name asked for.' }),
    enabled: t.exposeBoolean('enabled'),
    reason: t.field({ type: EvaluationReasonEnum, resolve: (e) => e.reason }),
    strategy: t.field({ type: RolloutStrategyEnum, nullable: true, resolve: (e) => e.strategy }),
    percentage: t.float({ nullable: true, description: 'Effective percentage, for PERCENTAGE and GRADUAL.', resolve: (e) => e.percentage }),
    bucket: t.int({ nullable: true, description: 'The context bucket in 0..9999, for PERCENTAGE and GRADUAL.', resolve: (e) => e.bucket }),
  }),
});

export const EvaluationContextInput = builder.inputType('EvaluationContextInput', {
  description: 'Who or what a flag is evaluated for. `attributes` holds any further key/value pairs.',
  fields: (t) => ({
    sessionId: t.string(),
    userId: t.string(),
    symbol: t.string(),
    system: t.string(),
    attributes: t.field({ type: 'JSON' }),
  }),
});

type ContextInput = typeof EvaluationContextInput.$inferInput;

export function toEvaluationContext(input: ContextInput | null | undefined): EvaluationContext {
  if (!input) return {};
  const { attributes } = input;
  if (attributes !== null && attributes !== undefined && (typeof attributes !== 'object' || Array.isArray(attributes))) {
    throw new GraphQLError('context.attributes must be a JSON object', { extensions: { code: 'INVALID_ARGUMENT' } });
  }
  return {
    sessionId: input.sessionId ?? null,
    userId: input.userId ?? null,
    symbol: input.symbol ?? null,
    system: input.system ?? null,
    attributes: (attributes as Record<string, unknown> | null | undefined) ?? null,
  };
}

const FeatureFlagChangeRef = builder.objectRef<FlagChangeEvent>('FeatureFlagChange').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    kind: t.field({ type: FlagChangeKindEnum, resolve: (e) => e.kind }),
    action: t.exposeString('action', { description: 'The mutation that made the change, or gradualRollout for a scheduled step.' }),
    actor: t.exposeString('actor', { nullable: true }),
    at: t.field({ type: 'DateTime', resolve: (e) => toDate(e.at) }),
    flag: t.field({ type: FeatureFlagRef, nullable: true, description: 'The flag after the change; null when deleted.', resolve: (e) => e.flag }),
    previous: t.field({ type: FeatureFlagRef, nullable: true, resolve: (e) => e.previous }),
  }),
});

// ---- queries ----

builder.queryFields((t) => ({
  featureFlags: t.field({
    type: [FeatureFlagRef],
    description: 'Every flag, sorted by name.',
    resolve: (_root, _args, ctx) => ctx.services.flags.list(),
  }),
  featureFlag: t.field({
    type: FeatureFlagRef,
    nullable: true,
    args: { name: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => ctx.services.flags.get(args.name),
  }),
  evaluateFlag: t.field({
    type: FlagEvaluationRef,
    args: { name: t.arg.string({ required: true }), context: t.arg({ type: EvaluationContextInput }) },
    resolve: (_root, args, ctx) => ctx.services.flags.evaluate(args.name, toEvaluationContext(args.context)),
  }),
  evaluateFlags: t.field({
    type: [FlagEvaluationRef],
    description: 'Evaluates many flags for one context; all flags when `names` is omitted.',
    args: { context: t.arg({ type: EvaluationContextInput }), names: t.arg.stringList() },
    resolve: (_root, args, ctx) => ctx.services.flags.evaluateMany(toEvaluationContext(args.context), args.names),
  }),
}));

// ---- mutations ----

const flagPayload = (name: string, description: string) => entityPayload(name, 'flag', FeatureFlagRef, description);

const CreateFeatureFlagPayload = flagPayload('CreateFeatureFlagPayload', 'The created flag.');
const EnableFeatureFlagPayload = flagPayload('EnableFeatureFlagPayload', 'The enabled flag (created when it did not exist).');
const SetFlagPercentagePayload = flagPayload('SetFlagPercentagePayload', 'The flag now on PERCENTAGE (created when it did not exist).');
const DisableFeatureFlagPayload = flagPayload('DisableFeatureFlagPayload', 'The disabled flag.');
const AddToWhitelistPayload = flagPayload('AddToWhitelistPayload', 'The flag with its whitelist.');
const RemoveFromWhitelistPayload = flagPayload('RemoveFromWhitelistPayload', 'The flag with its whitelist.');
const ConfigureGradualRolloutPayload = flagPayload('ConfigureGradualRolloutPayload', 'The flag now on GRADUAL.');
const DeleteFeatureFlagPayload = flagPayload('DeleteFeatureFlagPayload', 'The flag as it was before deletion.');

const ReloadFeatureFlagsPayload = builder.objectRef<Payload<FlagDefinition[]>>('ReloadFeatureFlagsPayload').implement({
  description: 'The flags the file created or changed.',
  fields: (t) => ({
    changed: t.field({ type: [FeatureFlagRef], resolve: (p) => p.value ?? [] }),
    errors: t.field({ type: [UserErrorRef], resolve: (p) => p.errors }),
  }),
});

builder.mutationFields((t) => ({
  createFeatureFlag: t.field({
    type: CreateFeatureFlagPayload,
    args: {
      name: t.arg.string({ required: true }),
      description: t.arg.string(),
      strategy: t.arg({ type: RolloutStrategyEnum, description: 'Defaults to PERCENTAGE when a percentage is given, else ALL_ON.' }),
      percentage: t.arg.float(),
      enabled: t.arg.boolean({ description: 'Defaults to false: a new flag starts off.' }),
      stickiness: t.arg.string(),
    },
    resolve: (_root, args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.flags.create(ctx.actor, args)),
  }),
  enableFeatureFlag: t.field({
    type: EnableFeatureFlagPayload,
    args: { name: t.arg.string({ required: true }), strategy: t.arg({ type: RolloutStrategyEnum }) },
    resolve: (_root, args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.flags.enable(ctx.actor, args.name, args.strategy)),
  }),
  setFlagPercentage: t.field({
    type: SetFlagPercentagePayload,
    args: { name: t.arg.string({ required: true }), percentage: t.arg.float({ required: true }) },
    resolve: (_root, args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.flags.setPercentage(ctx.actor, args.name, args.percentage)),
  }),
  disableFeatureFlag: t.field({
    type: DisableFeatureFlagPayload,
    args: { name: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.flags.disable(ctx.actor, args.name)),
  }),
  addToWhitelist: t.field({
    type: AddToWhitelistPayload,
    args: {
      name: t.arg.string({ required: true }),
      attribute: t.arg.string({ required: true, description: 'sessionId, userId, symbol, system (or the seed\'s users, symbols, systems), or any context attribute.' }),
      value: t.arg.string({ required: true }),
    },
    resolve: (_root, args, ctx) =>
      runMutation(ctx, 'OPERATOR', () => ctx.services.flags.addToWhitelist(ctx.actor, args.name, args.attribute, args.value)),
  }),
  removeFromWhitelist: t.field({
    type: RemoveFromWhitelistPayload,
    args: { name: t.arg.string({ required: true }), attribute: t.arg.string({ required: true }), value: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) =>
      runMutation(ctx, 'OPERATOR', () => ctx.services.flags.removeFromWhitelist(ctx.actor, args.name, args.attribute, args.value)),
  }),
  configureGradualRollout: t.field({
    type: ConfigureGradualRolloutPayload,
    args: {
      name: t.arg.string({ required: true }),
      startPercentage: t.arg.float({ required: true }),
      targetPercentage: t.arg.float({ required: true }),
      startAt: t.arg({ type: 'DateTime', description: 'Defaults to now.' }),
      durationSeconds: t.arg.int({ required: true }),
    },
    resolve: (_root, args, ctx) =>
      runMutation(ctx, 'OPERATOR', () =>
        ctx.services.flags.configureGradual(ctx.actor, args.name, {
          startPercentage: args.startPercentage,
          targetPercentage: args.targetPercentage,
          startAt: args.startAt ? args.startAt.getTime() : null,
          durationSeconds: args.durationSeconds,
        }),
      ),
  }),
  deleteFeatureFlag: t.field({
    type: DeleteFeatureFlagPayload,
    args: { name: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.flags.delete(ctx.actor, args.name)),
  }),
  reloadFeatureFlags: t.field({
    type: ReloadFeatureFlagsPayload,
    description:
      'Applies the flags file again: each flag it names is created or replaced by the file\'s version; other flags are kept. An invalid file changes nothing.',
    resolve: (_root, _args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.flags.reload(ctx.actor)),
  }),
}));

// ---- subscriptions ----

builder.subscriptionField('featureFlagChanged', (t) =>
  t.field({
    type: FeatureFlagChangeRef,
    description: 'Every change of a flag (or of all flags when `name` is omitted), including gradual rollout steps.',
    args: { name: t.arg.string() },
    subscribe: (_root, args, ctx) =>
      ctx.services.bus.subscribe('featureFlagChanged', (event) => !args.name || event.name === args.name),
    resolve: (event) => event,
  }),
);
