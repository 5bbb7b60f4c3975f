/**
 * Test runs as a service: ids, persistence, live progress, history, cancellation and the gate
 * that `swapModule(testWith:)` passes through.
 *
 * - A run is stored when it starts (RUNNING), each result as it finishes, and its summary at
 *   the end. Runs that a crash left RUNNING are marked INTERRUPTED at the next start.
 * - Progress: each event is stored, then published on the bus's `testProgress` topic after its
 *   write commits. While a run is in memory its events are also kept in order; a subscriber
 *   first gets the events so far, then the live ones from the bus (bounded queue, SLOW_CONSUMER
 *   past it, like every feed), with no gap and no duplicate, and the feed completes after
 *   RUN_FINISHED. A finished run is replayed from its stored results (RUN_STARTED, each
 *   test's TEST_STARTED/TEST_FINISHED, RUN_FINISHED), then completes.
 * - Starting and cancelling a run are units of work: inside a caller's unit, the run starts
 *   (or is cancelled) only after the outermost commit, and never if it rolls back.
 * - Runs stage their own instance (see engine.ts) and may run side by side.
 */
import { randomUUID } from 'node:crypto';
import type { AuditRepository } from '../audit/repository.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/connection.js';
import { unitOfWorkFor, type UnitOfWork } from '../db/unit-of-work.js';
import { quoteValue, UserError } from '../errors.js';
import type { EventBus } from '../events.js';
import { storedErrorMessage } from '../hardening/safe-messages.js';
import type { Logger } from '../logger.js';
import { errorFields } from '../logger.js';
import type { ModuleType } from '../modules/contract.js';
import type { ModuleRecord, ModuleService } from '../modules/service.js';
import { validateName } from '../validation.js';
import { RUN_STATUSES, runTestRun, summarizeResults, type RunStatus, type TestRunEvent, type TestRunOutcome } from './engine.js';
import type { TestProgressEvent } from './events.js';
import { TestRunRepository, type TestRunRecord } from './repository.js';

interface LiveRun {
  events: TestProgressEvent[];
  controller: AbortController;
  done: Promise<TestRunOutcome | null>;
  finished: boolean;
}

interface TestRunServiceDeps {
  db: Db;
  audit: AuditRepository;
  bus: EventBus;
  clock: Clock;
  logger: Logger;
  modules: ModuleService;
}

export const MAX_TEST_RUNS_PAGE = 200;

export class TestRunService {
  private readonly repo: TestRunRepository;
  private readonly uow: UnitOfWork;
  private readonly live = new Map<string, LiveRun>();

  constructor(private readonly deps: TestRunServiceDeps) {
    this.repo = new TestRunRepository(deps.db);
    this.uow = unitOfWorkFor(deps.db);
  }

  start(): { interrupted: number } {
    const interrupted = this.repo.interruptUnfinished(this.deps.clock.now());
    this.deps.modules.setTestGate(async (actor, moduleName, target, moduleType) => {
      const record = this.deps.modules.get(moduleName)!;
      const { run, done } = this.launch(actor, 'swapModule', record, target, moduleType);
      const outcome = await done;
      const summary = outcome
        ? `${outcome.summary.passed}/${outcome.summary.total} passed, ${outcome.summary.failed} failed, ${outcome.summary.timedOut} timed out`
        : 'the run did not finish';
      return { passed: outcome?.status === 'PASSED', runId: run.id, summary };
    });
    return { interrupted };
  }

  /** Cancels every run in progress and waits (bounded) for them to wind down. */
  async stop(timeoutMs = 5000): Promise<void> {
    const runs = [...this.live.values()].filter((r) => !r.finished);
    for (const run of runs) run.controller.abort();
    await Promise.race([Promise.all(runs.map((r) => r.done)), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  // ---- reads ----

  /** Every run ever recorded, per status (for metrics; one grouped query). */
  countByStatus(): Record<RunStatus, number> {
    const counts = Object.fromEntries(RUN_STATUSES.map((s) => [s, 0])) as Record<RunStatus, number>;
    for (const row of this.repo.countByStatus()) counts[row.status] = row.runs;
    return counts;
  }

  get(id: string): TestRunRecord | null {
    return this.repo.get(id);
  }

  page(moduleName: string | null | undefined, first: number, afterSeq?: number): { runs: TestRunRecord[]; hasMore: boolean } {
    return this.repo.page(moduleName, Math.min(Math.max(1, first), MAX_TEST_RUNS_PAGE), afterSeq);
  }

  /** Every event of the run in order, then completion (see the file comment). */
  progress(runId: string): AsyncIterableIterator<TestProgressEvent> {
    const live = this.live.get(runId);
    if (live) return this.follow(live, runId);
    const record = this.repo.get(runId);
    if (!record) throw new UserError('TEST_RUN_NOT_FOUND', `Test run ${quoteValue(runId)} does not exist`, 'runId');
    return replay(record);
  }

  // ---- mutations ----

  /** Starts a run of the module's current version and returns it at once (RUNNING). */
  testModule(actor: string, rawName: string, moduleType: ModuleType): TestRunRecord {
    const name = validateName(rawName, 'name', 'Module name');
    const record = this.deps.modules.get(name);
    if (!record) throw new UserError('MODULE_NOT_FOUND', `Module ${quoteValue(name)} is not registered`, 'name');
    const { absolutePath } = this.deps.modules.resolvePath(record.modulePath);
    const { run } = this.launch(actor, 'testModule', record, { modulePath: record.modulePath, absolutePath, version: record.version }, moduleType);
    return run;
  }

  /**
   * Cancels a RUNNING run and resolves with the run once it has wound down (CANCELLED, or the
   * status it reached if its last test ended first): the test in progress and the rest end
   * SKIPPED and the staged instance is stopped, each bounded by its timeout.
   */
  async cancel(actor: string, id: string): Promise<TestRunRecord> {
    const live = this.live.get(id);
    const record = this.repo.get(id);
    if (!record) throw new UserError('TEST_RUN_NOT_FOUND', `Test run ${quoteValue(id)} does not exist`, 'id');
    if (!live || live.finished || record.status !== 'RUNNING') {
      throw new UserError('INVALID_ARGUMENT', `Test run ${quoteValue(id)} is ${record.status}; only a RUNNING run can be cancelled`, 'id');
    }
    if (live.controller.signal.aborted) {
      throw new UserError('INVALID_ARGUMENT', `Test run "${id}" is already being cancelled`, 'id');
    }
    this.uow.run(() => {
      this.deps.audit.record({
        at: this.deps.clock.now(), actor, action: 'cancelTestRun', targetType: 'TEST_RUN', target: id,
        before: { status: record.status }, after: { status: 'CANCELLED' },
      });
      this.uow.afterCommit(() => live.controller.abort());
    });
    await live.done;
    return this.repo.get(id)!;
  }

  // ---- internals ----

  private launch(
    actor: string,
    trigger: string,
    module: ModuleRecord,
    target: { modulePath: string; absolutePath: string; version: string },
    moduleType: ModuleType,
  ): { run: TestRunRecord; done: Promise<TestRunOutcome | null> } {
    const now = this.deps.clock.now();
    const id = randomUUID();
    const base = {
      id, moduleName: module.name, moduleVersion: target.version, modulePath: target.modulePath, moduleType, trigger, actor, startedAt: now,
    };
    let settle!: (outcome: Promise<TestRunOutcome | null>) => void;
    const done = new Promise<TestRunOutcome | null>((resolve) => {
      settle = resolve;
    });
    const run = this.uow.run(() => {
      this.repo.create({ ...base, seq: this.repo.nextSeq() });
      this.deps.audit.record({
        at: now, actor, action: trigger === 'testModule' ? 'testModule' : 'testModule(swap)', targetType: 'TEST_RUN', target: id,
        before: null, after: { module: module.name, version: target.version, moduleType },
      });
      this.uow.afterCommit(() => {
        try {
          settle(this.begin(id, now, module, target, moduleType));
        } catch (error) {
          settle(Promise.resolve(null));
          throw error;
        }
      });
      this.uow.onRollback(() => settle(Promise.resolve(null)));
      return this.repo.get(id)!;
    });
    return { run, done };
  }

  /** Runs a stored (committed) run: keeps its events, stores and publishes each one. */
  private begin(
    id: string,
    now: number,
    module: ModuleRecord,
    target: { modulePath: string; absolutePath: string; version: string },
    moduleType: ModuleType,
  ): Promise<TestRunOutcome | null> {
    const controller = new AbortController();
    const live: LiveRun = { events: [], controller, done: Promise.resolve(null), finished: false };
    this.live.set(id, live);
    let position = 0;
    const onEvent = (raw: TestRunEvent) => {
      // A result's error is stored (and streamed) sanitized and cut, once, here.
      const event: TestRunEvent = raw.type === 'TEST_FINISHED' && raw.result.error !== null
        ? { ...raw, result: { ...raw.result, error: storedErrorMessage(raw.result.error) } }
        : raw;
      const progress: TestProgressEvent = { ...event, runId: id };
      const publish = () => {
        live.events.push(progress);
        this.deps.bus.publish('testProgress', progress);
      };
      try {
        this.uow.run(() => {
          if (event.type === 'RUN_STARTED') this.repo.setTotal(id, event.total);
          else if (event.type === 'TEST_FINISHED') this.repo.addResult(id, position++, event.result);
          else if (event.type === 'RUN_FINISHED') this.repo.finish(id, event.status, event.at, event.summary);
          this.uow.afterCommit(publish);
        });
      } catch (error) {
        // The run goes on in memory; its subscribers still hear about it.
        this.deps.logger.error('could not store a test run event', { run: id, ...errorFields(error) });
        publish();
      }
    };
    live.done = runTestRun({
      moduleType,
      stage: () => this.deps.modules.stage(module, { absolutePath: target.absolutePath, version: target.version }),
      clock: this.deps.clock,
      onEvent,
      signal: controller.signal,
    })
      .catch((error: unknown) => {
        this.deps.logger.error('test run crashed', { run: id, ...errorFields(error) });
        const finishedAt = this.deps.clock.now();
        if (!live.events.some((e) => e.type === 'RUN_FINISHED')) {
          onEvent({ type: 'RUN_FINISHED', at: finishedAt, status: 'FAILED', summary: summarizeResults([], finishedAt - now) });
        }
        return null;
      })
      .finally(() => {
        live.finished = true;
        // Late subscribers replay from SQLite from now on.
        this.live.delete(id);
      });
    return live.done;
  }

  /**
   * The events so far, then the bus's. Both are taken in the same synchronous step, so no event
   * falls between them and none comes twice; RUN_FINISHED ends the feed.
   */
  private follow(live: LiveRun, runId: string): AsyncIterableIterator<TestProgressEvent> {
    const backlog = [...live.events];
    const feed = this.deps.bus.subscribe('testProgress', (event) => event.runId === runId);
    let closed = false;
    const close = () => {
      closed = true;
      void feed.return?.();
    };
    const iterator: AsyncIterableIterator<TestProgressEvent> = {
      next: async () => {
        if (closed) return { value: undefined, done: true };
        let event = backlog.shift();
        if (event === undefined) {
          const next = await feed.next();
          if (next.done) {
            closed = true;
            return { value: undefined, done: true };
          }
          event = next.value;
        }
        if (event.type === 'RUN_FINISHED') close();
        return { value: event, done: false };
      },
      return: async () => {
        close();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }
}

/** The events of a stored run, as they were sent. */
async function* replay(record: TestRunRecord): AsyncGenerator<TestProgressEvent, void, undefined> {
  const events: TestProgressEvent[] = [];
  const runId = record.id;
  events.push({
    type: 'RUN_STARTED', runId, at: record.startedAt, total: record.total,
    tests: record.results.map((r) => ({ name: r.name, required: r.required, source: r.source, timeoutMs: 0 })),
  });
  let at = record.startedAt;
  record.results.forEach((result, index) => {
    if (result.status !== 'SKIPPED') events.push({ type: 'TEST_STARTED', runId, at, index, name: result.name });
    at += result.durationMs;
    events.push({ type: 'TEST_FINISHED', runId, at, index, result });
  });
  if (record.status !== 'RUNNING') {
    events.push({
      type: 'RUN_FINISHED', runId, at: record.finishedAt ?? at, status: record.status,
      summary: summarizeResults(record.results, (record.finishedAt ?? at) - record.startedAt),
    });
  }
  yield* events;
}
