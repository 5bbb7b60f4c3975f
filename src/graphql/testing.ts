/** Module test runs in GraphQL: start, cancel, live progress, history. */
import { GraphQLError } from 'graphql';
import { isUserError, userErrorsOf } from '../errors.js';
import { RUN_STATUSES, TEST_SOURCES, TEST_STATUSES, type TestCaseResult } from '../testing/engine.js';
import type { TestRunRecord } from '../testing/repository.js';
import type { TestProgressEvent } from '../testing/events.js';
import { builder } from './builder.js';
import { decodeCursor, encodeCursor, entityPayload, PageInfoRef, runMutation, toDate, validateFirst } from './common.js';
import { ModuleRef, ModuleTypeEnum } from './modules.js';

const CURSOR_KIND = 'testrun';

const TestRunStatusEnum = builder.enumType('TestRunStatus', {
  description: 'INTERRUPTED: the run was in progress when Helios stopped or crashed.',
  values: RUN_STATUSES,
});
const TestStatusEnum = builder.enumType('TestStatus', { values: TEST_STATUSES });
const TestSourceEnum = builder.enumType('TestSource', { description: 'BUILT_IN: the suite of the module type; MODULE: shipped by the module.', values: TEST_SOURCES });
const TestProgressEventTypeEnum = builder.enumType('TestProgressEventType', {
  values: ['RUN_STARTED', 'TEST_STARTED', 'TEST_FINISHED', 'RUN_FINISHED'] as const,
});

const TestResultRef = builder.objectRef<TestCaseResult>('TestResult').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    required: t.exposeBoolean('required'),
    source: t.field({ type: TestSourceEnum, resolve: (r) => r.source }),
    status: t.field({ type: TestStatusEnum, resolve: (r) => r.status }),
    durationMs: t.exposeFloat('durationMs'),
    // Sanitized and cut when stored (testing/service.ts): served as stored.
    error: t.exposeString('error', { nullable: true }),
  }),
});

export const TestRunRef = builder.objectRef<TestRunRecord>('TestRun').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    moduleName: t.exposeString('moduleName'),
    moduleVersion: t.exposeString('moduleVersion'),
    modulePath: t.exposeString('modulePath'),
    moduleType: t.field({ type: ModuleTypeEnum, resolve: (r) => r.moduleType }),
    status: t.field({ type: TestRunStatusEnum, resolve: (r) => r.status }),
    trigger: t.exposeString('trigger', { description: 'testModule, or swapModule for a run that gated a swap.' }),
    actor: t.exposeString('actor'),
    node: t.exposeString('node', { nullable: true, description: 'The node that runs (or ran) it; its results are visible on every node. Null for runs recorded before clusters.' }),
    startedAt: t.field({ type: 'DateTime', resolve: (r) => toDate(r.startedAt) }),
    finishedAt: t.field({ type: 'DateTime', nullable: true, resolve: (r) => toDate(r.finishedAt) }),
    total: t.exposeInt('total'),
    passed: t.exposeInt('passed'),
    failed: t.exposeInt('failed'),
    timedOut: t.exposeInt('timedOut'),
    skipped: t.exposeInt('skipped'),
    results: t.field({ type: [TestResultRef], resolve: (r) => r.results }),
  }),
});

const TestRunEdgeRef = builder.objectRef<TestRunRecord>('TestRunEdge').implement({
  fields: (t) => ({
    cursor: t.string({ resolve: (r) => encodeCursor(CURSOR_KIND, r.seq) }),
    node: t.field({ type: TestRunRef, resolve: (r) => r }),
  }),
});

const TestRunConnectionRef = builder.objectRef<{ runs: TestRunRecord[]; hasMore: boolean }>('TestRunConnection').implement({
  fields: (t) => ({
    edges: t.field({ type: [TestRunEdgeRef], resolve: (c) => c.runs }),
    nodes: t.field({ type: [TestRunRef], resolve: (c) => c.runs }),
    pageInfo: t.field({
      type: PageInfoRef,
      resolve: (c) => ({ hasNextPage: c.hasMore, endCursor: c.runs.length ? encodeCursor(CURSOR_KIND, c.runs[c.runs.length - 1]!.seq) : null }),
    }),
  }),
});

const TestProgressEventRef = builder.objectRef<TestProgressEvent>('TestProgressEvent').implement({
  fields: (t) => ({
    runId: t.exposeID('runId'),
    type: t.field({ type: TestProgressEventTypeEnum, resolve: (e) => e.type }),
    at: t.field({ type: 'DateTime', resolve: (e) => toDate(e.at) }),
    index: t.int({ nullable: true, description: 'The test\'s position (TEST_STARTED, TEST_FINISHED).', resolve: (e) => ('index' in e ? e.index : null) }),
    name: t.string({
      nullable: true,
      description: 'The test (TEST_STARTED, TEST_FINISHED).',
      resolve: (e) => (e.type === 'TEST_STARTED' ? e.name : e.type === 'TEST_FINISHED' ? e.result.name : null),
    }),
    total: t.int({ nullable: true, description: 'Tests planned (RUN_STARTED).', resolve: (e) => (e.type === 'RUN_STARTED' ? e.total : null) }),
    tests: t.stringList({ nullable: true, description: 'Names of the planned tests (RUN_STARTED).', resolve: (e) => (e.type === 'RUN_STARTED' ? e.tests.map((x) => x.name) : null) }),
    result: t.field({ type: TestResultRef, nullable: true, description: 'TEST_FINISHED.', resolve: (e) => (e.type === 'TEST_FINISHED' ? e.result : null) }),
    status: t.field({ type: TestRunStatusEnum, nullable: true, description: 'The run\'s outcome (RUN_FINISHED).', resolve: (e) => (e.type === 'RUN_FINISHED' ? e.status : null) }),
    run: t.field({ type: TestRunRef, nullable: true, description: 'The run as stored now.', resolve: (e, _a, ctx) => ctx.services.testing.get(e.runId) }),
  }),
});

builder.objectField(ModuleRef, 'testRuns', (t) =>
  t.field({
    type: [TestRunRef],
    description: 'The newest test runs of this module.',
    args: { first: t.arg.int({ defaultValue: 10 }) },
    resolve: async (m, args, ctx) => (await ctx.services.testing.page(m.name, validateFirst(args.first ?? 10, 200))).runs,
  }),
);

builder.queryFields((t) => ({
  testRun: t.field({
    type: TestRunRef,
    nullable: true,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => ctx.services.testing.get(String(args.id)),
  }),
  testRuns: t.field({
    type: TestRunConnectionRef,
    description: 'Test runs, newest first; `moduleName` narrows them to one module.',
    args: { moduleName: t.arg.string(), first: t.arg.int({ defaultValue: 20 }), after: t.arg.string() },
    resolve: (_r, args, ctx) => {
      const first = validateFirst(args.first ?? 20, 200);
      const after = args.after ? Number(decodeCursor(CURSOR_KIND, args.after)) : undefined;
      return ctx.services.testing.page(args.moduleName, first, after);
    },
  }),
}));

const TestModulePayload = entityPayload('TestModulePayload', 'testRun', TestRunRef, 'The run, RUNNING: follow it on testProgress(runId).');
const CancelTestRunPayload = entityPayload('CancelTestRunPayload', 'testRun', TestRunRef, 'The run after cancelling it: CANCELLED, with its final results.');

builder.mutationFields((t) => ({
  testModule: t.field({
    type: TestModulePayload,
    description: 'Tests the module\'s current version on a staged instance (never the one serving) with the suite of `moduleType` plus its own tests. Returns at once.',
    args: { name: t.arg.string({ required: true }), moduleType: t.arg({ type: ModuleTypeEnum, required: true }) },
    resolve: (_r, args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.testing.testModule(ctx.actor, args.name, args.moduleType)),
  }),
  cancelTestRun: t.field({
    type: CancelTestRunPayload,
    description: 'Stops a RUNNING run: the test in progress and the rest end SKIPPED, the run CANCELLED. Answers once the run has wound down.',
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => runMutation(ctx, 'OPERATOR', () => ctx.services.testing.cancel(ctx.actor, String(args.id))),
  }),
}));

builder.subscriptionField('testProgress', (t) =>
  t.field({
    type: TestProgressEventRef,
    description: 'RUN_STARTED, TEST_STARTED, TEST_FINISHED ..., RUN_FINISHED, then completes. A late subscriber first receives what already happened.',
    args: { runId: t.arg.id({ required: true }) },
    subscribe: async (_r, args, ctx) => {
      try {
        return await ctx.services.testing.progress(String(args.runId));
      } catch (error) {
        if (isUserError(error)) {
          const [first] = userErrorsOf(error);
          throw new GraphQLError(first!.message, { extensions: { code: first!.code } });
        }
        throw error;
      }
    },
    resolve: (event) => event,
  }),
);

builder.subscriptionField('testRunStarted', (t) =>
  t.field({
    type: TestProgressEventRef,
    description: 'The RUN_STARTED event of every new run (of any module), so a client can follow runs it did not start on testProgress(runId).',
    subscribe: (_r, _a, ctx) => ctx.services.bus.subscribe('testProgress', (e) => e.type === 'RUN_STARTED'),
    resolve: (event) => event,
  }),
);
