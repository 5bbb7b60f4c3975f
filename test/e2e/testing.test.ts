/** Module test runs end to end: streamed progress, late subscribers, history, gated swaps. */
import { describe, expect, it } from 'vitest';
import {
  AuditLogDocument,
  CancelTestRunDocument,
  InvokeModuleDocument,
  LoadModuleDocument,
  ModuleTestRunsDocument,
  RegisterModuleDocument,
  SwapModuleDocument,
  TestModuleDocument,
  TestProgressDocument,
  TestRunDocument,
  TestRunsDocument,
} from '../gql/graphql.js';
import { serverPool } from '../support/pool.js';
import { subscribe, type TestServer } from '../support/server.js';

const pool = serverPool();
async function start(options: { dir?: string; modulesDir?: string } = {}) {
  const modulesDir = options.modulesDir ?? pool.modulesDir();
  return pool.start({ ...(options.dir ? { dir: options.dir } : {}), env: { HELIOS_MODULES_DIR: modulesDir } });
}

type Progress = Awaited<ReturnType<ReturnType<typeof subscribe<import('../gql/graphql.js').TestProgressSubscription, import('../gql/graphql.js').TestProgressSubscriptionVariables>>['next']>>['testProgress'];

async function collect(h: TestServer, runId: string): Promise<Progress[]> {
  const feed = subscribe(h.wsClient(), TestProgressDocument, { runId });
  await feed.waitForCompletion(20_000);
  expect(feed.error).toBeNull();
  return feed.events.map((e) => e.data!.testProgress);
}

function expectWellFormed(events: Progress[], runId: string) {
  expect(events.every((e) => e.runId === runId)).toBe(true);
  expect(events[0]!.type).toBe('RUN_STARTED');
  expect(events.at(-1)!.type).toBe('RUN_FINISHED');
  const finished = events.filter((e) => e.type === 'TEST_FINISHED');
  expect(finished.map((e) => e.index)).toEqual(finished.map((_, i) => i));
  expect(finished).toHaveLength(events[0]!.total!);
  // Every TEST_STARTED is followed by its own TEST_FINISHED before the next test starts.
  events.forEach((e, i) => {
    if (e.type === 'TEST_STARTED') expect(events[i + 1]).toMatchObject({ type: 'TEST_FINISHED', index: e.index });
  });
}

describe('testModule and testProgress', () => {
  it('returns a run id at once and streams the whole run in order, then completes', async () => {
    const h = await start();
    await h.query(RegisterModuleDocument, { name: 'feature_extractor', modulePath: 'feature_extractor.js', version: '1.0.0' });
    const started = await h.query(TestModuleDocument, { name: 'feature_extractor', moduleType: 'DATA_PIPELINE' });
    expect(started.testModule.errors).toEqual([]);
    const run = started.testModule.testRun!;
    expect(run).toMatchObject({ status: 'RUNNING', moduleName: 'feature_extractor', moduleVersion: '1.0.0', moduleType: 'DATA_PIPELINE', trigger: 'testModule', actor: 'bootstrap-admin' });

    const events = await collect(h, run.id);
    expectWellFormed(events, run.id);
    expect(events[0]!.tests).toEqual([
      'creates', 'health check', 'answers within timeout', 'has process', 'one result per item', 'empty batch',
      'momentum of a rising series is positive', 'disposes cleanly',
    ]);
    expect(events.at(-1)!.status).toBe('PASSED');

    const stored = (await h.query(TestRunDocument, { id: run.id })).testRun!;
    expect(stored).toMatchObject({ status: 'PASSED', total: 8, failed: 0, timedOut: 0 });
    expect(stored.results.find((r) => r.name === 'health check')).toMatchObject({ status: 'SKIPPED' });
    expect(stored.results.find((r) => r.name === 'momentum of a rising series is positive')).toMatchObject({ source: 'MODULE', status: 'PASSED' });

    // A subscriber to a finished run receives the whole run, then completion.
    const replay = await collect(h, run.id);
    expectWellFormed(replay, run.id);
    expect(replay.filter((e) => e.type === 'TEST_FINISHED').map((e) => [e.name, e.result!.status])).toEqual(
      events.filter((e) => e.type === 'TEST_FINISHED').map((e) => [e.name, e.result!.status]),
    );
  });

  it('a late subscriber gets the events so far, then the live ones, with no gap or duplicate; an optional hanging test times out and the run still passes', async () => {
    const h = await start();
    await h.query(RegisterModuleDocument, { name: 'slowpoke', modulePath: 'testing/generic_configurable.js', version: '1', config: { hangOptional: true } });
    const run = (await h.query(TestModuleDocument, { name: 'slowpoke', moduleType: 'GENERIC' })).testModule.testRun!;
    // Join once some tests have finished (the optional test then hangs for its 3 s timeout).
    for (let i = 0; i < 400; i++) {
      const now = (await h.query(TestRunDocument, { id: run.id })).testRun!;
      if (now.results.length >= 2) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const [late, other] = await Promise.all([collect(h, run.id), collect(h, run.id)]);
    expectWellFormed(late, run.id);
    expect(late).toEqual(other);
    const optional = late.find((e) => e.type === 'TEST_FINISHED' && e.name === 'optional check')!;
    expect(optional.result).toMatchObject({ status: 'TIMED_OUT', required: false });
    expect(late.at(-1)!.status).toBe('PASSED');
    expect((await h.query(TestRunDocument, { id: run.id })).testRun).toMatchObject({ status: 'PASSED', timedOut: 1 });
  });

  it('keeps two concurrent runs apart', async () => {
    const h = await start();
    await h.query(RegisterModuleDocument, { name: 'a', modulePath: 'testing/generic_configurable.js', version: '1' });
    await h.query(RegisterModuleDocument, { name: 'b', modulePath: 'testing/generic_configurable.js', version: '1', config: { failRequired: true } });
    const [ra, rb] = await Promise.all([
      h.query(TestModuleDocument, { name: 'a', moduleType: 'GENERIC' }),
      h.query(TestModuleDocument, { name: 'b', moduleType: 'GENERIC' }),
    ]);
    const idA = ra.testModule.testRun!.id;
    const idB = rb.testModule.testRun!.id;
    expect(idA).not.toBe(idB);
    const [ea, eb] = await Promise.all([collect(h, idA), collect(h, idB)]);
    expectWellFormed(ea, idA);
    expectWellFormed(eb, idB);
    expect(ea.at(-1)!.status).toBe('PASSED');
    expect(eb.at(-1)!.status).toBe('FAILED');
    expect(eb.find((e) => e.name === 'fails when asked' && e.type === 'TEST_FINISHED')!.result!.status).toBe('FAILED');
  });

  it('cancels a run once: a second cancel while it winds down is refused and not audited', async () => {
    const h = await start();
    await h.query(RegisterModuleDocument, { name: 'slowpoke', modulePath: 'testing/generic_configurable.js', version: '1', config: { hangOptional: true } });
    const run = (await h.query(TestModuleDocument, { name: 'slowpoke', moduleType: 'GENERIC' })).testModule.testRun!;
    const feed = subscribe(h.wsClient(), TestProgressDocument, { runId: run.id });
    for (let i = 0; i < 400 && !feed.events.some((e) => e.data?.testProgress.name === 'optional check'); i++) await new Promise((r) => setTimeout(r, 10));
    const answers = await Promise.all([h.query(CancelTestRunDocument, { id: run.id }), h.query(CancelTestRunDocument, { id: run.id })]);
    const codes = answers.map((a) => a.cancelTestRun.errors.map((e) => e.code));
    expect(codes.sort()).toEqual([[], ['INVALID_ARGUMENT']]);
    expect(answers.find((a) => a.cancelTestRun.errors.length === 0)!.cancelTestRun.testRun!.status).toBe('CANCELLED');
    const audit = (await h.query(AuditLogDocument, { first: 10, target: run.id })).auditLog.edges.map((e) => e.node.action);
    expect(audit).toEqual(['cancelTestRun', 'testModule']);
  });

  it('cancels a run and refuses unknown modules and runs', async () => {
    const h = await start();
    await h.query(RegisterModuleDocument, { name: 'slowpoke', modulePath: 'testing/generic_configurable.js', version: '1', config: { hangOptional: true } });
    const run = (await h.query(TestModuleDocument, { name: 'slowpoke', moduleType: 'GENERIC' })).testModule.testRun!;
    const feed = subscribe(h.wsClient(), TestProgressDocument, { runId: run.id });
    for (let i = 0; i < 400 && !feed.events.some((e) => e.data?.testProgress.name === 'optional check'); i++) await new Promise((r) => setTimeout(r, 10));
    const cancelled = await h.query(CancelTestRunDocument, { id: run.id });
    expect(cancelled.cancelTestRun.errors).toEqual([]);
    // The answer is the run after cancelling: final status, end time and every result.
    const final = cancelled.cancelTestRun.testRun!;
    expect(final).toMatchObject({ id: run.id, status: 'CANCELLED' });
    expect(final.finishedAt).not.toBeNull();
    expect(final.results).toHaveLength(final.total!);
    expect(final.results.find((r) => r.name === 'optional check')).toMatchObject({ status: 'SKIPPED', error: 'cancelled' });
    expect(final).toEqual((await h.query(TestRunDocument, { id: run.id })).testRun);
    await feed.waitForCompletion();
    expect(feed.events.at(-1)!.data!.testProgress).toMatchObject({ type: 'RUN_FINISHED', status: 'CANCELLED' });
    expect((await h.query(CancelTestRunDocument, { id: run.id })).cancelTestRun.errors[0]!.code).toBe('INVALID_ARGUMENT');
    expect((await h.query(CancelTestRunDocument, { id: 'nope' })).cancelTestRun.errors[0]!.code).toBe('TEST_RUN_NOT_FOUND');
    expect((await h.query(TestModuleDocument, { name: 'ghost', moduleType: 'ML' })).testModule.errors[0]!.code).toBe('MODULE_NOT_FOUND');
    const unknown = subscribe(h.wsClient(), TestProgressDocument, { runId: 'nope' });
    await unknown.waitForCompletion();
    expect(JSON.stringify(unknown.error ?? unknown.events)).toContain('TEST_RUN_NOT_FOUND');
  });
});

describe('gated swaps', () => {
  async function storyWithPredictor(h: TestServer) {
    await h.query(RegisterModuleDocument, { name: 'feature_extractor', modulePath: 'feature_extractor.js', version: '1.0.0' });
    await h.query(RegisterModuleDocument, { name: 'predictor', modulePath: 'ml/neural_predictor.js', version: '1.0.0', dependencies: ['feature_extractor'] });
    expect((await h.query(LoadModuleDocument, { name: 'predictor' })).loadModule.errors).toEqual([]);
  }

  it('refuses to switch traffic when a required test fails, and links the run that blocked it', async () => {
    const h = await start();
    await storyWithPredictor(h);
    const swap = await h.query(SwapModuleDocument, { name: 'predictor', newVersionPath: 'testing/ml_overconfident.js', newVersion: '6.6.6', testWith: 'ML' });
    expect(swap.swapModule.errors[0]).toMatchObject({ code: 'TESTS_FAILED', field: 'testWith' });
    expect(swap.swapModule.module).toMatchObject({ version: '1.0.0', state: 'ACTIVE' });
    const runId = swap.swapModule.testRunId!;
    const run = (await h.query(TestRunDocument, { id: runId })).testRun!;
    expect(run).toMatchObject({ status: 'FAILED', trigger: 'swapModule', moduleVersion: '6.6.6', modulePath: 'testing/ml_overconfident.js' });
    expect(run.results.find((r) => r.status === 'FAILED')!.name).toBe('prediction with confidence');
    const served = await h.query(InvokeModuleDocument, { name: 'predictor', method: 'predict', args: { prices: [1, 2] } });
    expect(served.invokeModule.servedBy).toBe('1.0.0');
  });

  it('switches when the run passes, and the payload references it', async () => {
    const h = await start();
    await storyWithPredictor(h);
    const swap = await h.query(SwapModuleDocument, { name: 'predictor', newVersionPath: 'ml/neural_predictor_v2.js', newVersion: '2.0.0', testWith: 'ML' });
    expect(swap.swapModule.errors).toEqual([]);
    expect(swap.swapModule.module).toMatchObject({ version: '2.0.0', previousVersion: '1.0.0' });
    expect((await h.query(TestRunDocument, { id: swap.swapModule.testRunId! })).testRun).toMatchObject({ status: 'PASSED', moduleVersion: '2.0.0' });
  });
});

describe('history', () => {
  it('survives a restart, newest first with cursors, and marks runs a crash left unfinished as INTERRUPTED', async () => {
    const modulesDir = pool.modulesDir();
    const first = await start({ modulesDir });
    await first.query(RegisterModuleDocument, { name: 'fe', modulePath: 'feature_extractor.js', version: '1' });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const id = (await first.query(TestModuleDocument, { name: 'fe', moduleType: 'DATA_PIPELINE' })).testModule.testRun!.id;
      await collect(first, id);
      ids.push(id);
    }
    // As if the process had died mid-run.
    await first.server.app.database.kysely
      .insertInto('test_runs')
      .values({
        id: 'crashed', seq: 99, module_name: 'fe', module_version: '1', module_path: 'feature_extractor.js', module_type: 'GENERIC',
        status: 'RUNNING', trigger: 'testModule', actor: 'x', started_at: 0,
        finished_at: null, total: 0, passed: 0, failed: 0, timed_out: 0, skipped: 0,
      })
      .execute();
    await pool.stop(first);

    const second = await start({ dir: first.dir, modulesDir });
    const page1 = await second.query(TestRunsDocument, { moduleName: 'fe', first: 2 });
    expect(page1.testRuns.edges.map((e) => e.node.id)).toEqual(['crashed', ids[2]]);
    expect(page1.testRuns.edges[0]!.node.status).toBe('INTERRUPTED');
    expect(page1.testRuns.pageInfo.hasNextPage).toBe(true);
    const page2 = await second.query(TestRunsDocument, { moduleName: 'fe', first: 2, after: page1.testRuns.pageInfo.endCursor });
    expect(page2.testRuns.edges.map((e) => e.node.id)).toEqual([ids[1], ids[0]]);
    expect(page2.testRuns.edges.every((e) => e.node.status === 'PASSED' && e.node.results.length === 8)).toBe(true);
    expect((await second.query(ModuleTestRunsDocument, { name: 'fe' })).module!.testRuns.map((r) => r.id)).toEqual(['crashed', ids[2], ids[1], ids[0]]);
  });
});
