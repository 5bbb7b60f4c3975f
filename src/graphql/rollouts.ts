/**
 * Rollouts in GraphQL: start and steer a rollout, its history, and the live `rolloutProgress`
 * feed. The types are defined by `defineRolloutSchema(access)`, which schema.ts calls once with
 * the accessors (the rollout service in `Services`, the bus's `rolloutProgress` topic), so a test
 * can build the same types over a service of its own.
 */
import { GraphQLError } from 'graphql';
import { feed } from '../events.js';
import { sanitizeMessage } from '../hardening/safe-messages.js';
import { isModuleType } from '../modules/contract.js';
import {
  ROLLOUT_ABORT_CAUSES,
  ROLLOUT_EVENT_TYPES,
  ROLLOUT_STATUSES,
  type Rollout,
  type RolloutAbort,
  type RolloutGates,
  type RolloutProgressEvent,
  type VersionStats,
} from '../rollouts/events.js';
import type { RolloutService } from '../rollouts/service.js';
import { builder } from './builder.js';
import { decodeCursor, encodeCursor, entityPayload, PageInfoRef, runMutation, toDate, validateFirst, type UserErrorData } from './common.js';
import type { GraphQLContext } from './context.js';
import { ModuleTypeEnum } from './modules.js';

export interface RolloutSchemaAccess {
  service(ctx: GraphQLContext): RolloutService;
  /** Listens to the bus's `rolloutProgress` topic; returns the unsubscribe. */
  onProgress(ctx: GraphQLContext, listener: (event: RolloutProgressEvent) => void): () => void;
}

const CURSOR_KIND = 'rollout';
/** A late subscriber's replay is capped below the feed's queue bound (a long HOLDING rollout can have many events). */
const MAX_REPLAY = 500;

let defined = false;

export function defineRolloutSchema(access: RolloutSchemaAccess): void {
  if (defined) return;
  defined = true;
  const service = access.service;

  const RolloutStatusEnum = builder.enumType('RolloutStatus', {
    description:
      'TESTING: the new version is loading (and its tests run), no traffic yet. RUNNING: the split flag routes `percentage` to the canary. HOLDING: too few canary calls for a verdict, judged again next interval. PAUSED: no judgement or step until resumed (the split and the breaker watch stay). PROMOTED, ABORTED: finished.',
    values: ROLLOUT_STATUSES,
  });
  const RolloutEventTypeEnum = builder.enumType('RolloutEventType', { values: ROLLOUT_EVENT_TYPES });
  const RolloutAbortCauseEnum = builder.enumType('RolloutAbortCause', { values: ROLLOUT_ABORT_CAUSES });

  const RolloutGatesRef = builder.objectRef<RolloutGates>('RolloutGates').implement({
    description: 'Judged on the canary\'s calls in the current step.',
    fields: (t) => ({
      maxFailureRate: t.exposeFloat('maxFailureRate', { description: '0..1; above it the rollout aborts.' }),
      maxP99LatencyMs: t.exposeInt('maxP99LatencyMs', { nullable: true }),
      maxLatencyRatio: t.exposeFloat('maxLatencyRatio', { nullable: true, description: 'Canary p99 / stable p99 in the same step.' }),
      minCalls: t.exposeInt('minCalls', { description: 'Fewer canary calls in a step: HOLDING.' }),
    }),
  });

  const RolloutGatesInput = builder.inputType('RolloutGatesInput', {
    fields: (t) => ({
      maxFailureRate: t.float({ defaultValue: 0.05 }),
      maxP99LatencyMs: t.int(),
      maxLatencyRatio: t.float(),
      minCalls: t.int({ defaultValue: 20 }),
    }),
  });

  const RolloutVersionStatsRef = builder.objectRef<VersionStats>('RolloutVersionStats').implement({
    description: 'One version\'s calls in the current step; latencies are histogram estimates (within ~5%).',
    fields: (t) => ({
      calls: t.exposeInt('calls'),
      failures: t.exposeInt('failures'),
      failureRate: t.exposeFloat('failureRate', { nullable: true, description: '0..1; null without calls.' }),
      p50Ms: t.exposeFloat('p50Ms', { nullable: true }),
      p99Ms: t.exposeFloat('p99Ms', { nullable: true }),
    }),
  });

  const RolloutAbortRef = builder.objectRef<RolloutAbort>('RolloutAbort').implement({
    description: 'What ended the rollout, with the figures judged.',
    fields: (t) => ({
      cause: t.field({ type: RolloutAbortCauseEnum, resolve: (a) => a.cause }),
      limit: t.exposeFloat('limit', { nullable: true, description: 'The gate\'s limit (gate causes only).' }),
      value: t.exposeFloat('value', { nullable: true, description: 'The measured value over the limit (gate causes only).' }),
      stable: t.field({ type: RolloutVersionStatsRef, nullable: true, resolve: (a) => a.stats?.stable ?? null }),
      canary: t.field({ type: RolloutVersionStatsRef, nullable: true, resolve: (a) => a.stats?.canary ?? null }),
    }),
  });

  const RolloutRef = builder.objectRef<Rollout>('Rollout');

  const RolloutEventRef = builder.objectRef<RolloutProgressEvent>('RolloutEvent').implement({
    fields: (t) => ({
      type: t.field({ type: RolloutEventTypeEnum, resolve: (e) => e.type }),
      at: t.field({ type: 'DateTime', resolve: (e) => toDate(e.at) }),
      percentage: t.exposeFloat('percentage', { description: 'The canary\'s share after the event.' }),
      detail: t.string({ nullable: true, resolve: (e) => (e.detail === null ? null : sanitizeMessage(e.detail)) }),
      rollout: t.field({ type: RolloutRef, description: 'The rollout right after the event.', resolve: (e) => e.rollout }),
    }),
  });

  RolloutRef.implement({
    description: 'A new module version going live step by step behind a split flag, watched by its own breaker.',
    fields: (t) => ({
      id: t.exposeID('id'),
      module: t.exposeString('module'),
      fromVersion: t.exposeString('fromVersion', { description: 'The stable version (the rollback target after promotion).' }),
      toVersion: t.exposeString('toVersion', { description: 'The canary.' }),
      flag: t.exposeString('flag', { description: 'The split flag: on for a call\'s context means the canary serves it.' }),
      status: t.field({ type: RolloutStatusEnum, resolve: (r) => r.status }),
      percentage: t.exposeFloat('percentage'),
      stepIndex: t.exposeInt('stepIndex'),
      steps: t.exposeFloatList('steps'),
      stepIntervalSeconds: t.exposeInt('stepIntervalSeconds', { nullable: true, description: 'null: manual steps.' }),
      nextStepAt: t.field({ type: 'DateTime', nullable: true, description: 'When the gates are next judged (automatic steps).', resolve: (r) => toDate(r.nextStepAt) }),
      remainingSeconds: t.int({
        nullable: true,
        description: 'PAUSED: the time that was left in the step, restored by resumeRollout.',
        resolve: (r) => (r.remainingMs === null ? null : Math.ceil(r.remainingMs / 1000)),
      }),
      gates: t.field({ type: RolloutGatesRef, resolve: (r) => r.gates }),
      autoPromote: t.exposeBoolean('autoPromote'),
      awaitingPromotion: t.exposeBoolean('awaitingPromotion', { description: 'The last step passed; autoPromote is off: promoteRollout.' }),
      testWith: t.field({ type: ModuleTypeEnum, nullable: true, resolve: (r) => (r.testWith !== null && isModuleType(r.testWith) ? r.testWith : null) }),
      testRunId: t.exposeID('testRunId', { nullable: true }),
      stable: t.field({ type: RolloutVersionStatsRef, nullable: true, description: 'This step (unfinished rollouts only); in a cluster, every node\'s calls as last reported.', resolve: async (r, _a, ctx) => (await service(ctx).clusterStatsNow(r.module))?.stable ?? null }),
      canary: t.field({ type: RolloutVersionStatsRef, nullable: true, description: 'This step (unfinished rollouts only); in a cluster, every node\'s calls as last reported.', resolve: async (r, _a, ctx) => (await service(ctx).clusterStatsNow(r.module))?.canary ?? null }),
      actor: t.exposeString('actor'),
      startedAt: t.field({ type: 'DateTime', resolve: (r) => toDate(r.startedAt) }),
      finishedAt: t.field({ type: 'DateTime', nullable: true, resolve: (r) => toDate(r.finishedAt) }),
      abortReason: t.string({ nullable: true, resolve: (r) => (r.abortReason === null ? null : sanitizeMessage(r.abortReason)) }),
      abort: t.field({ type: RolloutAbortRef, nullable: true, resolve: (r) => r.abort }),
      events: t.field({
        type: [RolloutEventRef],
        description: 'Everything that happened, oldest first.',
        resolve: async (r, _a, ctx) => (await service(ctx).events(r.id)).map((e) => ({ ...e, module: r.module, rollout: r })),
      }),
    }),
  });

  const RolloutEdgeRef = builder.objectRef<Rollout>('RolloutEdge').implement({
    fields: (t) => ({
      cursor: t.string({ resolve: (r) => encodeCursor(CURSOR_KIND, r.seq) }),
      node: t.field({ type: RolloutRef, resolve: (r) => r }),
    }),
  });

  const RolloutConnectionRef = builder.objectRef<{ rollouts: Rollout[]; hasMore: boolean }>('RolloutConnection').implement({
    fields: (t) => ({
      edges: t.field({ type: [RolloutEdgeRef], resolve: (c) => c.rollouts }),
      nodes: t.field({ type: [RolloutRef], resolve: (c) => c.rollouts }),
      pageInfo: t.field({
        type: PageInfoRef,
        resolve: (c) => ({ hasNextPage: c.hasMore, endCursor: c.rollouts.length ? encodeCursor(CURSOR_KIND, c.rollouts[c.rollouts.length - 1]!.seq) : null }),
      }),
    }),
  });

  builder.queryFields((t) => ({
    rollout: t.field({
      type: RolloutRef,
      nullable: true,
      description: 'The module\'s current rollout, or its last one.',
      args: { module: t.arg.string({ required: true }) },
      resolve: (_r, args, ctx) => service(ctx).current(args.module),
    }),
    rollouts: t.field({
      type: RolloutConnectionRef,
      description: 'Rollout history, newest first; `module` narrows it to one module.',
      args: { module: t.arg.string(), first: t.arg.int({ defaultValue: 20 }), after: t.arg.string() },
      resolve: (_r, args, ctx) => {
        const first = validateFirst(args.first ?? 20, 100);
        const after = args.after ? Number(decodeCursor(CURSOR_KIND, args.after)) : undefined;
        return service(ctx).page(args.module, first, after);
      },
    }),
  }));

  const payload = (name: string, description: string) => entityPayload(name, 'rollout', RolloutRef, description);
  const StartRolloutPayload = payload('StartRolloutPayload', 'The rollout: RUNNING at its first step, or ABORTED when the new version failed to load or test (see abortReason; `errors` then holds MODULE_LOAD_FAILED or TESTS_FAILED too).');
  const AdvanceRolloutPayload = payload('AdvanceRolloutPayload', 'The rollout at its next step.');
  const PauseRolloutPayload = payload('PauseRolloutPayload', 'The rollout, PAUSED.');
  const ResumeRolloutPayload = payload('ResumeRolloutPayload', 'The rollout, RUNNING or HOLDING again.');
  const PromoteRolloutPayload = payload('PromoteRolloutPayload', 'The rollout, PROMOTED (or ABORTED if the promotion failed).');
  const AbortRolloutPayload = payload('AbortRolloutPayload', 'The rollout, ABORTED.');

  builder.mutationFields((t) => ({
    startRollout: t.field({
      type: StartRolloutPayload,
      description:
        'Loads `newVersionPath` beside the module\'s active version and moves traffic to it step by step through a split flag, judging the gates at each interval; aborts at the first failing gate or when the canary\'s breaker opens.',
      args: {
        module: t.arg.string({ required: true }),
        newVersionPath: t.arg.string({ required: true }),
        newVersion: t.arg.string(),
        flag: t.arg.string({ description: 'The split flag; default: the module\'s name.' }),
        steps: t.arg.floatList({ description: 'Percentages, strictly increasing within (0, 100], ending at 100. Default [1, 2, 5, 10, 25, 50, 100].' }),
        stepIntervalSeconds: t.arg.int({ description: 'Default 3600; null: manual steps (advanceRollout, or move the flag).' }),
        gates: t.arg({ type: RolloutGatesInput }),
        testWith: t.arg({ type: ModuleTypeEnum, description: 'Run this suite on the new version first (TESTING).' }),
        autoPromote: t.arg.boolean({ defaultValue: true }),
      },
      resolve: async (_r, args, ctx) => {
        // An omitted stepIntervalSeconds (or an unset variable) takes the default; an explicit null
        // means manual steps. graphql-js leaves omitted arguments out of `args` altogether.
        const intervalGiven = Object.prototype.hasOwnProperty.call(args, 'stepIntervalSeconds');
        const payload = await runMutation(ctx, 'OPERATOR', () => service(ctx).startRollout(ctx.actor, {
          module: args.module,
          newVersionPath: args.newVersionPath,
          newVersion: args.newVersion ?? null,
          flag: args.flag ?? null,
          steps: args.steps ?? null,
          ...(intervalGiven ? { stepIntervalSeconds: args.stepIntervalSeconds ?? null } : {}),
          gates: args.gates ?? null,
          testWith: args.testWith ?? null,
          autoPromote: args.autoPromote ?? true,
        }));
        // The rollout is recorded either way; a new version that did not load or pass its tests is also an error.
        const rollout = payload.value;
        if (rollout?.status === 'ABORTED' && (rollout.abort?.cause === 'TESTS_FAILED' || rollout.abort?.cause === 'CANARY_FAILED')) {
          const code = rollout.abort.cause === 'TESTS_FAILED' ? 'TESTS_FAILED' : 'MODULE_LOAD_FAILED';
          const error: UserErrorData = { code, message: sanitizeMessage(rollout.abortReason ?? 'the new version failed'), field: code === 'TESTS_FAILED' ? 'testWith' : 'newVersionPath' };
          return { ...payload, errors: [error] };
        }
        return payload;
      },
    }),
    advanceRollout: t.field({
      type: AdvanceRolloutPayload,
      description: 'Moves to the next step now, without judging.',
      args: { module: t.arg.string({ required: true }) },
      resolve: (_r, args, ctx) => runMutation(ctx, 'OPERATOR', () => service(ctx).advance(ctx.actor, args.module)),
    }),
    pauseRollout: t.field({
      type: PauseRolloutPayload,
      description: 'Stops judging and stepping, keeping the time left in the step; the split and the breaker watch stay.',
      args: { module: t.arg.string({ required: true }) },
      resolve: (_r, args, ctx) => runMutation(ctx, 'OPERATOR', () => service(ctx).pause(ctx.actor, args.module)),
    }),
    resumeRollout: t.field({
      type: ResumeRolloutPayload,
      args: { module: t.arg.string({ required: true }) },
      resolve: (_r, args, ctx) => runMutation(ctx, 'OPERATOR', () => service(ctx).resume(ctx.actor, args.module)),
    }),
    promoteRollout: t.field({
      type: PromoteRolloutPayload,
      description: 'Makes the canary the active version now; the old one becomes its previousVersion.',
      args: { module: t.arg.string({ required: true }) },
      resolve: (_r, args, ctx) => runMutation(ctx, 'OPERATOR', () => service(ctx).promote(ctx.actor, args.module)),
    }),
    abortRollout: t.field({
      type: AbortRolloutPayload,
      description: 'Sends every call to the stable version, then drains and unloads the canary.',
      args: { module: t.arg.string({ required: true }), reason: t.arg.string() },
      resolve: (_r, args, ctx) => runMutation(ctx, 'OPERATOR', () => service(ctx).abort(ctx.actor, args.module, args.reason ?? null)),
    }),
  }));

  builder.subscriptionField('rolloutProgress', (t) =>
    t.field({
      type: RolloutEventRef,
      description: 'STARTED, STEP, HOLDING, PAUSED, RESUMED, ABORTED, PROMOTED of every rollout (one module\'s with `module`). A late subscriber first receives the current rollout\'s events so far.',
      args: { module: t.arg.string() },
      subscribe: (_r, args, ctx) => {
        if (args.module === '') throw new GraphQLError('module must not be empty', { extensions: { code: 'INVALID_ARGUMENT' } });
        const module = args.module ?? null;
        // Replay and attach run in one synchronous turn: the service's memory takes each event in
        // the same turn as it publishes it, so none can fall between what was read and what is
        // heard, nor be heard twice.
        return feed<RolloutProgressEvent>((push) => {
          for (const event of service(ctx).replay(module).slice(-MAX_REPLAY)) push(event);
          return access.onProgress(ctx, (event) => {
            if (module === null || event.module === module) push(event);
          });
        });
      },
      resolve: (event) => event,
    }),
  );
}
