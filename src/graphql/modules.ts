/** Modules in GraphQL: registration, lifecycle, hot swap, rollback, invocation and the state feed. */
import { GraphQLError } from 'graphql';
import { MODULE_TYPES } from '../modules/contract.js';
import { SwapRefused, type ModuleNodeState, type ModuleRecord } from '../modules/service.js';
import { MODULE_STATES, type ModuleStateEvent } from '../modules/states.js';
import { MODULE_ISOLATIONS } from '../modules/runtime/index.js';
import type { EvaluationContext } from '../flags/engine.js';
import { builder } from './builder.js';
import { CircuitBreakerRef } from './breakers.js';
import { entityPayload, runMutation, toDate, toErrorData, UserErrorRef, type Payload } from './common.js';
import { EvaluationContextInput, toEvaluationContext } from './flags.js';
import { ModularityStatusRef } from './status.js';
import { requireRole } from '../auth/authorization.js';
import { isUserError } from '../errors.js';

const ModuleStateEnum = builder.enumType('ModuleState', { values: MODULE_STATES });
export const ModuleTypeEnum = builder.enumType('ModuleType', {
  description: 'What a module is, and so which built-in test suite applies.',
  values: MODULE_TYPES,
});
const IsolationEnum = builder.enumType('ModuleIsolation', {
  description:
    'WORKER (default): each loaded version runs in its own worker thread, so it can be stopped, capped and truly unloaded. INLINE: same thread, lowest latency, for trusted modules; an inline version can never be unloaded from memory.',
  values: MODULE_ISOLATIONS,
});
const DesiredStateEnum = builder.enumType('DesiredModuleState', { values: ['UNLOADED', 'LOADED', 'ACTIVE'] as const });

const ModuleCanaryRef = builder.objectRef<{ module: string; version: string; flag: string; breakerName: string }>('ModuleCanary').implement({
  description: 'A rollout\'s new version, serving beside the stable one the calls its split flag turns on.',
  fields: (t) => ({
    version: t.exposeString('version'),
    flag: t.exposeString('flag', { description: 'The split flag: on for a call\'s context means the canary serves it.' }),
    percentage: t.float({
      description: 'The share of calls routed to the canary (the rollout\'s current step, or where the flag was moved by hand).',
      resolve: async (c, _a, ctx) => (await ctx.services.rollouts.inProgress(c.module))?.percentage ?? 0,
    }),
    breaker: t.field({
      type: CircuitBreakerRef,
      nullable: true,
      description: 'The canary\'s own breaker, module:<name>@<version>; while it is not CLOSED the stable version serves its calls.',
      resolve: (c, _a, ctx) => ctx.services.breakers.get(c.breakerName),
    }),
  }),
});

const ModuleNodeStateRef = builder.objectRef<ModuleNodeState>('ModuleNodeState').implement({
  description: 'A module on one node: each node runs its own workers and reports its own state and version.',
  fields: (t) => ({
    node: t.exposeString('node', { description: 'The node\'s id (HELIOS_NODE_ID).' }),
    state: t.field({ type: ModuleStateEnum, resolve: (n) => n.state }),
    version: t.exposeString('version', { nullable: true, description: 'The version that node serves; null when it serves none.' }),
    updatedAt: t.field({ type: 'DateTime', description: 'When that node last reported it.', resolve: (n) => toDate(n.updatedAt) }),
  }),
});

export const ModuleRef = builder.objectRef<ModuleRecord>('Module').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    modulePath: t.exposeString('modulePath', { description: 'Relative to the modules folder, file form.' }),
    version: t.exposeString('version', { description: 'The version serving (or to serve) traffic.' }),
    state: t.field({ type: ModuleStateEnum, description: 'On the node answering (see nodes for every node).', resolve: (m) => m.state }),
    nodes: t.field({
      type: [ModuleNodeStateRef],
      description: 'The module\'s state and version on every live node of the cluster (one entry on SQLite), sorted by node.',
      resolve: (m, _a, ctx) => ctx.services.modules.nodeStates(m.name),
    }),
    desiredState: t.field({ type: DesiredStateEnum, description: 'What a restart converges back to.', resolve: (m) => m.desiredState }),
    dependencies: t.exposeStringList('dependencies'),
    dependents: t.stringList({ resolve: (m, _a, ctx) => ctx.services.modules.dependents(m.name) }),
    hotReloadable: t.exposeBoolean('hotReloadable'),
    isolation: t.field({ type: IsolationEnum, resolve: (m) => m.isolation }),
    moduleType: t.field({ type: ModuleTypeEnum, nullable: true, resolve: (m) => m.moduleType }),
    config: t.field({ type: 'JSON', resolve: (m) => m.config }),
    // Sanitized and cut when written (modules/service.ts), so a read costs nothing.
    lastError: t.exposeString('lastError', { nullable: true }),
    loadedAt: t.field({ type: 'DateTime', nullable: true, resolve: (m) => toDate(m.loadedAt) }),
    previousVersion: t.exposeString('previousVersion', { nullable: true, description: 'What rollbackModule returns to.' }),
    previousModulePath: t.exposeString('previousModulePath', { nullable: true }),
    methods: t.stringList({
      description: 'Methods invokeModule can call on the serving version (empty when not loaded).',
      resolve: (m, _a, ctx) => [...(ctx.services.modules.activeVersion(m.name)?.methods ?? [])],
    }),
    inFlight: t.int({ description: 'Calls running on the serving version now.', resolve: (m, _a, ctx) => ctx.services.modules.activeVersion(m.name)?.inFlight ?? 0 }),
    breaker: t.field({
      type: CircuitBreakerRef,
      nullable: true,
      description: 'The breaker every invocation runs through.',
      resolve: (m, _a, ctx) => ctx.services.breakers.get(ctx.services.modules.breakerName(m.name)),
    }),
    canary: t.field({
      type: ModuleCanaryRef,
      nullable: true,
      description: 'The new version a rollout is routing a share of calls to; null without a rollout.',
      resolve: (m, _a, ctx) => ctx.services.modules.canaryOf(m.name),
    }),
    createdAt: t.field({ type: 'DateTime', resolve: (m) => toDate(m.createdAt) }),
    updatedAt: t.field({ type: 'DateTime', resolve: (m) => toDate(m.updatedAt) }),
  }),
});

const ModuleStateCountsRef = builder.objectRef<Record<string, number>>('ModuleStateCounts').implement({
  fields: (t) => ({
    total: t.int({ resolve: (c) => Object.values(c).reduce((a, b) => a + b, 0) }),
    unloaded: t.int({ resolve: (c) => c.UNLOADED ?? 0 }),
    loading: t.int({ resolve: (c) => c.LOADING ?? 0 }),
    loaded: t.int({ resolve: (c) => c.LOADED ?? 0 }),
    active: t.int({ resolve: (c) => c.ACTIVE ?? 0 }),
    failed: t.int({ resolve: (c) => c.FAILED ?? 0 }),
    unloading: t.int({ resolve: (c) => c.UNLOADING ?? 0 }),
  }),
});

builder.objectField(ModularityStatusRef, 'modules', (t) =>
  t.field({ type: ModuleStateCountsRef, resolve: (_s, _a, ctx) => ctx.services.modules.countByState() }),
);

const ModuleStateChangeRef = builder.objectRef<ModuleStateEvent>('ModuleStateChange').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    from: t.field({ type: ModuleStateEnum, resolve: (e) => e.from }),
    to: t.field({ type: ModuleStateEnum, resolve: (e) => e.to }),
    version: t.exposeString('version'),
    action: t.exposeString('action', { description: 'registerModule, loadModule, unloadModule, swapModule, rollbackModule, unregisterModule, recovery, crash, restart, or converge (in a cluster, this node trying again to reach a change it could not).' }),
    actor: t.exposeString('actor', { nullable: true }),
    error: t.string({
      nullable: true,
      description: 'Set when the operation failed; the old version may still be serving.',
      resolve: (e) => e.error,
    }),
    at: t.field({ type: 'DateTime', resolve: (e) => toDate(e.at) }),
    module: t.field({ type: ModuleRef, nullable: true, resolve: (e, _a, ctx) => ctx.services.modules.get(e.name) }),
  }),
});

// ---- queries ----

builder.queryFields((t) => ({
  modules: t.field({ type: [ModuleRef], description: 'Every registered module, sorted by name.', resolve: (_r, _a, ctx) => ctx.services.modules.list() }),
  module: t.field({
    type: ModuleRef,
    nullable: true,
    args: { name: t.arg.string({ required: true }) },
    resolve: (_r, args, ctx) => ctx.services.modules.get(args.name),
  }),
}));

// ---- mutations ----

const modulePayload = (name: string, description: string) => entityPayload(name, 'module', ModuleRef, description);

const RegisterModulePayload = modulePayload('RegisterModulePayload', 'The registered module (UNLOADED).');
const LoadModulePayload = modulePayload('LoadModulePayload', 'The module after loading. On failure `errors` says why and the module is FAILED with lastError.');
const RollbackModulePayload = modulePayload('RollbackModulePayload', 'The module, serving its previous version.');
const UnregisterModulePayload = modulePayload('UnregisterModulePayload', 'The module as it was registered; it is no longer.');

const UnloadModulePayload = builder.objectRef<Payload<{ record: ModuleRecord; unloaded: string[] }>>('UnloadModulePayload').implement({
  fields: (t) => ({
    module: t.field({ type: ModuleRef, nullable: true, resolve: (p) => p.value?.record ?? null }),
    unloaded: t.stringList({ description: 'Every module unloaded, dependents first.', resolve: (p) => p.value?.unloaded ?? [] }),
    errors: t.field({ type: [UserErrorRef], resolve: (p) => p.errors }),
  }),
});

interface SwapOutcome {
  module: ModuleRecord | null;
  testRunId: string | null;
  errors: Payload<unknown>['errors'];
}

export const SwapModulePayload = builder.objectRef<SwapOutcome>('SwapModulePayload').implement({
  description: 'The module after the swap; on failure `errors` says why and the old version keeps serving.',
  fields: (t) => ({
    module: t.field({ type: ModuleRef, nullable: true, resolve: (p) => p.module }),
    testRunId: t.exposeID('testRunId', { nullable: true, description: 'The test run that gated the swap (with testWith).' }),
    errors: t.field({ type: [UserErrorRef], resolve: (p) => p.errors }),
  }),
});

const InvokeModulePayload = builder.objectRef<Payload<{ result: unknown; servedBy: string }>>('InvokeModulePayload').implement({
  fields: (t) => ({
    result: t.field({ type: 'JSON', nullable: true, resolve: (p) => p.value?.result ?? null }),
    servedBy: t.string({ nullable: true, description: 'The version that answered.', resolve: (p) => p.value?.servedBy ?? null }),
    errors: t.field({ type: [UserErrorRef], resolve: (p) => p.errors }),
  }),
});

builder.mutationFields((t) => ({
  registerModule: t.field({
    type: RegisterModulePayload,
    args: {
      name: t.arg.string({ required: true }),
      modulePath: t.arg.string({ required: true, description: 'Inside the modules folder: `ml/neural_predictor_v2.js` or the dotted `ml.neural_predictor_v2`.' }),
      version: t.arg.string({ required: true }),
      dependencies: t.arg.stringList({ description: 'Modules loaded (and active) before this one.' }),
      hotReloadable: t.arg.boolean({ description: 'Default true; false refuses swapModule.' }),
      isolation: t.arg({ type: IsolationEnum, description: 'Default WORKER.' }),
      moduleType: t.arg({ type: ModuleTypeEnum }),
      config: t.arg({ type: 'JSON', description: 'Handed to the module as ctx.config.' }),
    },
    // Registering chooses the code the server will run: admins only.
    resolve: (_r, args, ctx) => runMutation(ctx, 'ADMIN', () => ctx.services.modules.register(ctx.actor, args)),
  }),
  loadModule: t.field({
    type: LoadModulePayload,
    description: 'Loads the module (dependencies first) and makes it serve. forceReload re-reads its file as a swap to the same version.',
    args: {
      name: t.arg.string({ required: true }),
      forceReload: t.arg.boolean({ defaultValue: false }),
      activate: t.arg.boolean({ defaultValue: true, description: 'false loads it without serving (LOADED).' }),
    },
    resolve: async (_r, args, ctx) => {
      const payload = await runMutation(ctx, 'OPERATOR', () =>
        ctx.services.modules.load(ctx.actor, args.name, { forceReload: args.forceReload ?? false, activate: args.activate ?? true }),
      );
      // A failed load leaves the module FAILED with its error: show it.
      return payload.value ? payload : { ...payload, value: ctx.services.modules.get(args.name) };
    },
  }),
  unloadModule: t.field({
    type: UnloadModulePayload,
    args: {
      name: t.arg.string({ required: true }),
      cascade: t.arg.boolean({ defaultValue: false, description: 'Also unload loaded dependents (they go first).' }),
    },
    resolve: (_r, args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.modules.unload(ctx.actor, args.name, args.cascade ?? false)),
  }),
  swapModule: t.field({
    type: SwapModulePayload,
    description:
      'Hot-swaps an ACTIVE module to a new file: loads it beside the old version, checks its health (and runs its tests with testWith), moves state, switches traffic, drains and disposes the old version. Any failure leaves the old version serving.',
    args: {
      name: t.arg.string({ required: true }),
      newVersionPath: t.arg.string({ required: true }),
      newVersion: t.arg.string({ description: 'Defaults to the file name (ml/neural_predictor_v2.js -> neural_predictor_v2).' }),
      testWith: t.arg({ type: ModuleTypeEnum, description: 'Run this suite on a staged instance first; switch only if it passes.' }),
    },
    resolve: async (_r, args, ctx): Promise<SwapOutcome> => {
      try {
        requireRole(ctx.caller, 'OPERATOR');
        const { record, testRunId } = await ctx.services.modules.swap(ctx.actor, args.name, args);
        return { module: record, testRunId, errors: [] };
      } catch (error) {
        if (!isUserError(error)) throw error;
        return {
          module: ctx.services.modules.get(args.name),
          testRunId: error instanceof SwapRefused ? error.testRunId : null,
          errors: toErrorData(error),
        };
      }
    },
  }),
  rollbackModule: t.field({
    type: RollbackModulePayload,
    args: { name: t.arg.string({ required: true }) },
    resolve: (_r, args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.modules.rollback(ctx.actor, args.name)),
  }),
  unregisterModule: t.field({
    type: UnregisterModulePayload,
    description:
      'Removes a module registered by mistake. Refused while it is not UNLOADED (unload it first) and while another module depends on it (MODULE_HAS_DEPENDENTS). Its test runs, breaker and audit entries are kept.',
    args: { name: t.arg.string({ required: true }) },
    // The counterpart of registerModule: admins only.
    resolve: (_r, args, ctx) => runMutation(ctx, 'ADMIN', () => ctx.services.modules.unregister(ctx.actor, args.name)),
  }),
  invokeModule: t.field({
    type: InvokeModulePayload,
    description: 'Calls `method(args)` on the serving version through the module\'s circuit breaker. `context` reaches the method as its second argument.',
    args: {
      name: t.arg.string({ required: true }),
      method: t.arg.string({ required: true }),
      args: t.arg({ type: 'JSON', description: 'The method\'s single argument.' }),
      context: t.arg({ type: EvaluationContextInput }),
    },
    resolve: (_r, args, ctx) => {
      const context: EvaluationContext | null = args.context ? toEvaluationContext(args.context) : null;
      return runMutation(ctx, 'OPERATOR', () => ctx.services.modules.invoke(args.name, args.method, args.args ?? null, context));
    },
  }),
}));

// ---- subscriptions ----

builder.subscriptionField('moduleStateChanged', (t) =>
  t.field({
    type: ModuleStateChangeRef,
    description: 'Every state change of a module (all modules when `name` is omitted), and failed swaps.',
    args: { name: t.arg.string() },
    subscribe: (_r, args, ctx) => {
      if (args.name === '') throw new GraphQLError('name must not be empty', { extensions: { code: 'INVALID_ARGUMENT' } });
      return ctx.services.bus.subscribe('moduleStateChanged', (e) => !args.name || e.name === args.name);
    },
    resolve: (event) => event,
  }),
);
