/**
 * Test runs as a service: ids, persistence, live progress, history, cancellation and the gate
 * that `swapModule(testWith:)` passes through.
 *
 * - A run is stored when it starts (RUNNING), each result as it finishes, and its summary at
 *   the end. Runs that a crash left RUNNING are marked INTERRUPTED at the next start (in a
 *   cluster, a node marks only its own: each run records the node running it, and the others'
 *   may be running now), and in a cluster the leader marks those of a node that left the
 *   cluster (`watchNodes`). Runs run where they were asked for; every node reads their results
 *   from the shared tables; a run is cancelled on its node.
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
import type { ClusterEvents } from '../cluster/event-log.js';
import type { UnitOfWork } from '../db/unit-of-work.js';
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
import { TestRunRepository, TestRunSeqTakenError, type NewTestRun, type TestRunRecord } from './repository.js';

interface LiveRun {
  events: TestProgressEvent[];
  controller: AbortController;
  done: Promise<TestRunOutcome | null>;
  finished: boolean;
  /** A cancel is being written (its audit entry): a second one is refused. */
  cancelling: boolean;
}

interface TestRunServiceDeps {
  uow: UnitOfWork;
  audit: AuditRepository;
  bus: EventBus;
  clock: Clock;
  logger: Logger;
  modules: ModuleService;
  /** This node (its id goes on each run it starts) and whether others share the database. */
  node?: { id: string; clustered: boolean };
  /** The cluster's event log: a run's progress reaches `testProgress` subscribers on every node. */
  events?: ClusterEvents;
}

/** What `watchNodes` needs of the cluster's membership. */
export interface NodeWatch {
  readonly isLeader: boolean;
  /** The nodes seen within the node timeout. */
  nodes(): Promise<ReadonlyArray<{ id: string }>>;
}

/** The cluster event topic of test progress; its payload is the TestProgressEvent. */
export const TEST_PROGRESS_TOPIC = 'test.progress';

export const MAX_TEST_RUNS_PAGE = 200;
/** Attempts at a run's seq when runs of other nodes sharing the database take it first. */
const SEQ_ATTEMPTS = 5;

export class TestRunService {
  private readonly repo: TestRunRepository;
  private readonly uow: UnitOfWork;
  private readonly live = new Map<string, LiveRun>();
  private nodeWatch: NodeJS.Timeout | null = null;
  private sweeping: Promise<unknown> | null = null;

  constructor(private readonly deps: TestRunServiceDeps) {
    this.uow = deps.uow;
    this.repo = new TestRunRepository(deps.uow);
    // Another node's run: its subscribers here hear it as it goes (progress() follows them).
    deps.events?.on(TEST_PROGRESS_TOPIC, (payload) => deps.bus.publish('testProgress', payload as TestProgressEvent));
  }

  /**
   * Marks the runs this node's last stop left RUNNING as INTERRUPTED: on SQLite every RUNNING
   * run (one node; older runs have no node), in a cluster only this node's (the others' may be
   * running now).
   */
  async start(): Promise<{ interrupted: number }> {
    const node = this.deps.node;
    const interrupted = await this.repo.interruptUnfinished(this.deps.clock.now(), node?.clustered ? node.id : null);
    await this.deps.modules.setTestGate(async (actor, moduleName, target, moduleType) => {
      const record = (await this.deps.modules.get(moduleName))!;
      const { run, done } = await this.launch(actor, 'swapModule', record, target, moduleType);
      const outcome = await done;
      const summary = outcome
        ? `${outcome.summary.passed}/${outcome.summary.total} passed, ${outcome.summary.failed} failed, ${outcome.summary.timedOut} timed out`
        : 'the run did not finish';
      return { passed: outcome?.status === 'PASSED', runId: run.id, summary };
    });
    return { interrupted };
  }

  /**
   * In a cluster: every `everyMs`, while this node leads, the runs of nodes that left the cluster
   * (no heartbeat within the node timeout, or stopped) are ended (`interruptOrphans`).
   */
  watchNodes(membership: NodeWatch, everyMs: number): void {
    if (this.nodeWatch) clearInterval(this.nodeWatch);
    this.nodeWatch = setInterval(() => {
      if (!membership.isLeader || this.sweeping) return;
      this.sweeping = membership
        .nodes()
        .then((nodes) => this.interruptOrphans(nodes.map((n) => n.id)))
        .catch((error: unknown) => this.deps.logger.warn('could not end the test runs of nodes that left', errorFields(error)))
        .finally(() => {
          this.sweeping = null;
        });
    }, everyMs);
    this.nodeWatch.unref();
  }

  /**
   * Marks INTERRUPTED every RUNNING run recorded by a node other than this one and not in
   * `liveNodes`, each in its own unit of work, and sends its RUN_FINISHED (status INTERRUPTED,
   * the results stored so far) to `testProgress` on every node, so its followers end. A run whose
   * node comes back after all keeps that status: the node's later writes of it are ignored.
   * Runs with no node predate clusters and are left as they are. Returns how many were ended.
   */
  async interruptOrphans(liveNodes: readonly string[]): Promise<number> {
    const self = this.deps.node?.id;
    const orphans = await this.repo.runningElsewhere(self === undefined ? liveNodes : [...liveNodes, self]);
    let ended = 0;
    for (const id of orphans) {
      await this.uow.run(async () => {
        const now = this.deps.clock.now();
        if (!(await this.repo.interrupt(id, now))) return;
        const record = (await this.repo.get(id))!;
        const event: TestProgressEvent = {
          type: 'RUN_FINISHED', runId: id, at: now, status: 'INTERRUPTED',
          summary: summarizeResults(record.results, now - record.startedAt),
        };
        this.deps.events?.append(TEST_PROGRESS_TOPIC, event);
        this.uow.afterCommit(() => {
          ended++;
          this.deps.logger.warn('a test run of a node that left the cluster was marked INTERRUPTED', { run: id, node: record.node });
          this.deps.bus.publish('testProgress', event);
        });
      });
    }
    return ended;
  }

  /** Cancels every run in progress and waits (bounded) for them to wind down. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.nodeWatch) clearInterval(this.nodeWatch);
    this.nodeWatch = null;
    await this.sweeping;
    const runs = [...this.live.values()].filter((r) => !r.finished);
    for (const run of runs) run.controller.abort();
    await Promise.race([Promise.all(runs.map((r) => r.done)), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  // ---- reads ----

  /** Every run ever recorded, per status (for metrics; one grouped query). */
  async countByStatus(): Promise<Record<RunStatus, number>> {
    const counts = Object.fromEntries(RUN_STATUSES.map((s) => [s, 0])) as Record<RunStatus, number>;
    for (const row of await this.repo.countByStatus()) counts[row.status] = row.runs;
    return counts;
  }

  get(id: string): Promise<TestRunRecord | null> {
    return this.repo.get(id);
  }

  page(moduleName: string | null | undefined, first: number, afterSeq?: number): Promise<{ runs: TestRunRecord[]; hasMore: boolean }> {
    return this.repo.page(moduleName, Math.min(Math.max(1, first), MAX_TEST_RUNS_PAGE), afterSeq);
  }

  /**
   * Every event of the run in order, then completion (see the file comment). A live run's feed
   * is taken in the caller's turn, before anything is awaited; a run that is not live any more
   * has all its writes stored (it leaves memory only after them) and is read back.
   */
  async progress(runId: string): Promise<AsyncIterableIterator<TestProgressEvent>> {
    const live = this.live.get(runId);
    if (live) return this.follow(live, runId);
    if (!this.deps.node?.clustered) {
      const record = await this.repo.get(runId);
      if (!record) throw new UserError('TEST_RUN_NOT_FOUND', `Test run ${quoteValue(runId)} does not exist`, 'runId');
      return replay(record);
    }
    // Maybe running on another node: listen before reading, so nothing falls between the two.
    const feed = this.deps.bus.subscribe('testProgress', (event) => event.runId === runId);
    let record: TestRunRecord | null;
    try {
      record = await this.repo.get(runId);
    } catch (error) {
      void feed.return?.();
      throw error;
    }
    if (!record) {
      void feed.return?.();
      throw new UserError('TEST_RUN_NOT_FOUND', `Test run ${quoteValue(runId)} does not exist`, 'runId');
    }
    return followRemote(record, feed);
  }

  // ---- mutations ----

  /** Starts a run of the module's current version and returns it at once (RUNNING). */
  async testModule(actor: string, rawName: string, moduleType: ModuleType): Promise<TestRunRecord> {
    const name = validateName(rawName, 'name', 'Module name');
    const record = await this.deps.modules.get(name);
    if (!record) throw new UserError('MODULE_NOT_FOUND', `Module ${quoteValue(name)} is not registered`, 'name');
    const { absolutePath } = await this.deps.modules.resolvePath(record.modulePath);
    const { run } = await this.launch(actor, 'testModule', record, { modulePath: record.modulePath, absolutePath, version: record.version }, moduleType);
    return run;
  }

  /**
   * Cancels a RUNNING run and resolves with the run once it has wound down (CANCELLED, or the
   * status it reached if its last test ended first): the test in progress and the rest end
   * SKIPPED and the staged instance is stopped, each bounded by its timeout.
   */
  async cancel(actor: string, id: string): Promise<TestRunRecord> {
    const live = this.live.get(id);
    let record = await this.repo.get(id);
    if (!record) throw new UserError('TEST_RUN_NOT_FOUND', `Test run ${quoteValue(id)} does not exist`, 'id');
    // It finished while it was read: its final row is stored by now.
    if (live?.finished) record = (await this.repo.get(id)) ?? record;
    if (!live && record.status === 'RUNNING' && record.node !== null && record.node !== (this.deps.node?.id ?? null)) {
      // Each node runs its own runs (and their staged instances): the one running it cancels it.
      throw new UserError('INVALID_ARGUMENT', `Test run ${quoteValue(id)} runs on node ${quoteValue(record.node)}; cancel it there`, 'id');
    }
    if (!live || live.finished || record.status !== 'RUNNING') {
      throw new UserError('INVALID_ARGUMENT', `Test run ${quoteValue(id)} is ${record.status}; only a RUNNING run can be cancelled`, 'id');
    }
    if (live.controller.signal.aborted || live.cancelling) {
      throw new UserError('INVALID_ARGUMENT', `Test run "${id}" is already being cancelled`, 'id');
    }
    const status = record.status;
    live.cancelling = true;
    try {
      await this.uow.run(async () => {
        await this.deps.audit.record({
          at: this.deps.clock.now(), actor, action: 'cancelTestRun', targetType: 'TEST_RUN', target: id,
          before: { status }, after: { status: 'CANCELLED' },
        });
        this.uow.afterCommit(() => live.controller.abort());
        this.uow.onRollback(() => {
          live.cancelling = false;
        });
      });
    } catch (error) {
      live.cancelling = false;
      throw error;
    }
    await live.done;
    return (await this.repo.get(id))!;
  }

  // ---- internals ----

  private async launch(
    actor: string,
    trigger: string,
    module: ModuleRecord,
    target: { modulePath: string; absolutePath: string; version: string },
    moduleType: ModuleType,
  ): Promise<{ run: TestRunRecord; done: Promise<TestRunOutcome | null> }> {
    const now = this.deps.clock.now();
    const id = randomUUID();
    const base = {
      id, moduleName: module.name, moduleVersion: target.version, modulePath: target.modulePath, moduleType, trigger, actor, startedAt: now,
      node: this.deps.node?.id ?? null,
    };
    let settle!: (outcome: Promise<TestRunOutcome | null>) => void;
    const done = new Promise<TestRunOutcome | null>((resolve) => {
      settle = resolve;
    });
    const run = await this.uow.run(async () => {
      await this.createRow(base);
      await this.deps.audit.record({
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
      return (await this.repo.get(id))!;
    });
    return { run, done };
  }

  /**
   * The RUNNING row, numbered after the newest run. Nodes sharing a PostgreSQL database may
   * number two runs alike at once: the one that loses takes the next number (each attempt in a
   * savepoint, so the failed insert does not abort the unit).
   */
  private async createRow(run: Omit<NewTestRun, 'seq'>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.uow.run(async () => {
          const seq = await this.repo.nextSeq();
          await this.repo.create({ ...run, seq });
        });
        return;
      } catch (error) {
        if (!(error instanceof TestRunSeqTakenError) || attempt >= SEQ_ATTEMPTS) throw error;
      }
    }
  }

  /**
   * Runs a stored (committed) run: keeps its events, stores and publishes each one. The engine
   * reports events synchronously; their writes are queued and run one after the other, each
   * published once stored, so subscribers and the database see them in order. The run leaves
   * memory (and `done` resolves) only after its last write.
   */
  private begin(
    id: string,
    now: number,
    module: ModuleRecord,
    target: { modulePath: string; absolutePath: string; version: string },
    moduleType: ModuleType,
  ): Promise<TestRunOutcome | null> {
    const controller = new AbortController();
    const live: LiveRun = { events: [], controller, done: Promise.resolve(null), finished: false, cancelling: false };
    this.live.set(id, live);
    let position = 0;
    let finishReported = false;
    let writes: Promise<void> = Promise.resolve();
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
      if (event.type === 'RUN_FINISHED') finishReported = true;
      const at = event.type === 'TEST_FINISHED' ? position++ : -1;
      writes = writes.then(async () => {
        if (event.type === 'TEST_STARTED' && !this.deps.node?.clustered) {
          publish(); // nothing to store
          return;
        }
        try {
          await this.uow.run(async () => {
            // In a cluster every event goes to the other nodes' subscribers too (TEST_STARTED only that).
            this.deps.events?.append(TEST_PROGRESS_TOPIC, progress);
            if (event.type === 'TEST_STARTED') {
              // nothing to store
            } else if (event.type === 'RUN_STARTED') await this.repo.setTotal(id, event.total);
            else if (event.type === 'TEST_FINISHED') await this.repo.addResult(id, at, event.result);
            else await this.repo.finish(id, event.status, event.at, event.summary);
            this.uow.afterCommit(publish);
          });
        } catch (error) {
          // The run goes on in memory; its subscribers still hear about it.
          this.deps.logger.error('could not store a test run event', { run: id, ...errorFields(error) });
          publish();
        }
      });
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
        if (!finishReported) {
          onEvent({ type: 'RUN_FINISHED', at: finishedAt, status: 'FAILED', summary: summarizeResults([], finishedAt - now) });
        }
        return null;
      })
      .then(async (outcome) => {
        await writes;
        return outcome;
      })
      .finally(() => {
        live.finished = true;
        // Late subscribers replay from the database from now on.
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
/**
 * A run that is not live on this node: what is stored, then, while it is RUNNING (on another
 * node), the events that node sends through the cluster log, from the first one the stored
 * record does not hold, until RUN_FINISHED. When the node died, that RUN_FINISHED is the
 * leader's INTERRUPTED one (`interruptOrphans`).
 */
async function* followRemote(
  record: TestRunRecord,
  feed: AsyncIterableIterator<TestProgressEvent>,
): AsyncGenerator<TestProgressEvent, void, undefined> {
  try {
    yield* replay(record);
    if (record.status !== 'RUNNING') return;
    const stored = record.results.length;
    for (;;) {
      const next = await feed.next();
      if (next.done) return;
      const event = next.value;
      // Already in the replay: the start and every test whose result was stored.
      if (event.type === 'RUN_STARTED') continue;
      if ((event.type === 'TEST_STARTED' || event.type === 'TEST_FINISHED') && event.index < stored) continue;
      yield event;
      if (event.type === 'RUN_FINISHED') return;
    }
  } finally {
    await feed.return?.();
  }
}

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
