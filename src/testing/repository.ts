/** SQL for test runs: one row per run, one per test result, written as the run goes. */
import type { Selectable } from 'kysely';
import type { TestRunsTable, TestResultsTable } from '../db/schema.js';
import type { UnitOfWork } from '../db/unit-of-work.js';
import type { ModuleType } from '../modules/contract.js';
import type { RunStatus, TestCaseResult, TestRunSummary, TestSource, TestStatus } from './engine.js';
import { isUniqueViolation } from '../db/errors.js';

export interface TestRunRecord {
  id: string;
  seq: number;
  moduleName: string;
  moduleVersion: string;
  modulePath: string;
  moduleType: ModuleType;
  status: RunStatus;
  trigger: string;
  actor: string;
  startedAt: number;
  finishedAt: number | null;
  total: number;
  passed: number;
  failed: number;
  timedOut: number;
  skipped: number;
  results: TestCaseResult[];
  /** The node that runs (or ran) it; null for runs written before clusters. */
  node: string | null;
}

/** A row as the store reads it: the table's columns (src/db/schema.ts). */
type RunRow = Selectable<TestRunsTable>;

/** A row as the store reads it: the table's columns (src/db/schema.ts). */
type ResultRow = Selectable<TestResultsTable>;

/** A run whose seq another run (another node sharing the database) took first. */
export class TestRunSeqTakenError extends Error {
  override name = 'TestRunSeqTakenError';
  constructor(readonly seq: number, options?: { cause?: unknown }) {
    super(`test run seq ${seq} is taken`, options);
  }
}


export type NewTestRun = Omit<TestRunRecord, 'status' | 'finishedAt' | 'total' | 'passed' | 'failed' | 'timedOut' | 'skipped' | 'results' | 'node'> & { node?: string | null };

export class TestRunRepository {
  constructor(private readonly uow: UnitOfWork) {}

  /** Runs per status (statuses without runs are absent). */
  async countByStatus(): Promise<Array<{ status: RunStatus; runs: number }>> {
    const rows = await this.uow.db
      .selectFrom('test_runs')
      .select((eb) => ['status', eb.fn.countAll<number>().as('runs')])
      .groupBy('status')
      .orderBy('status')
      .execute();
    // COUNT(*) is a BIGINT on PostgreSQL: parsed as a number there (db/database.ts), a number on SQLite.
    return rows.map((r) => ({ status: r.status as RunStatus, runs: Number(r.runs) }));
  }

  async nextSeq(): Promise<number> {
    const row = await this.uow.db
      .selectFrom('test_runs')
      .select((eb) => eb.fn.max('seq').as('seq'))
      .executeTakeFirst();
    return (row?.seq === null || row?.seq === undefined ? 0 : Number(row.seq)) + 1;
  }

  /** Inserts the RUNNING row; TestRunSeqTakenError when `seq` is taken (a concurrent run on another node). */
  async create(run: NewTestRun): Promise<void> {
    try {
      await this.uow.db
        .insertInto('test_runs')
        .values({
          id: run.id,
          seq: run.seq,
          module_name: run.moduleName,
          module_version: run.moduleVersion,
          module_path: run.modulePath,
          module_type: run.moduleType,
          status: 'RUNNING',
          trigger: run.trigger,
          actor: run.actor,
          started_at: run.startedAt,
          finished_at: null,
          total: 0,
          passed: 0,
          failed: 0,
          timed_out: 0,
          skipped: 0,
          node: run.node ?? null,
        })
        .execute();
    } catch (error) {
      if (isUniqueViolation(error)) throw new TestRunSeqTakenError(run.seq, { cause: error });
      throw error;
    }
  }

  async setTotal(id: string, total: number): Promise<void> {
    await this.uow.db.updateTable('test_runs').set({ total }).where('id', '=', id).execute();
  }

  async addResult(id: string, position: number, result: TestCaseResult): Promise<void> {
    await this.uow.db
      .insertInto('test_results')
      .values({
        run_id: id,
        position,
        name: result.name,
        required: result.required ? 1 : 0,
        source: result.source,
        status: result.status,
        duration_ms: result.durationMs,
        error: result.error,
      })
      .execute();
  }

  async finish(id: string, status: RunStatus, finishedAt: number, summary: TestRunSummary): Promise<void> {
    await this.uow.db
      .updateTable('test_runs')
      .set({
        status,
        finished_at: finishedAt,
        total: summary.total,
        passed: summary.passed,
        failed: summary.failed,
        timed_out: summary.timedOut,
        skipped: summary.skipped,
      })
      .where('id', '=', id)
      // A run the cluster's leader marked INTERRUPTED (its node was taken for dead) stays so.
      .where('status', '=', 'RUNNING')
      .execute();
  }

  /** The RUNNING runs recorded by a node not in `nodes` (runs with no node predate clusters: not listed), in no order. */
  async runningElsewhere(nodes: readonly string[]): Promise<string[]> {
    let query = this.uow.db.selectFrom('test_runs').select('id').where('status', '=', 'RUNNING').where('node', 'is not', null);
    if (nodes.length > 0) query = query.where('node', 'not in', nodes);
    // No ORDER BY: it would make SQLite walk the seq index over the whole history instead of the
    // partial index of running runs (migrations 0008); each run is ended on its own anyway.
    return (await query.execute()).map((r) => r.id);
  }

  /** Marks one run INTERRUPTED if it is still RUNNING; whether it was. */
  async interrupt(id: string, now: number): Promise<boolean> {
    const result = await this.uow.db
      .updateTable('test_runs')
      .set({ status: 'INTERRUPTED', finished_at: now })
      .where('id', '=', id)
      .where('status', '=', 'RUNNING')
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  /**
   * Marks runs a crash left RUNNING; returns how many. `node` given: only that node's runs
   * (other nodes sharing the database may be running theirs); null: every RUNNING run.
   */
  async interruptUnfinished(now: number, node: string | null = null): Promise<number> {
    let query = this.uow.db
      .updateTable('test_runs')
      .set({ status: 'INTERRUPTED', finished_at: now })
      .where('status', '=', 'RUNNING');
    if (node !== null) query = query.where('node', '=', node);
    const result = await query.executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async get(id: string): Promise<TestRunRecord | null> {
    const row = await this.uow.db.selectFrom('test_runs').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? this.toRecord(row) : null;
  }

  /** Newest first, runs created before `beforeSeq`; one extra row tells whether more exist. */
  async page(moduleName: string | null | undefined, limit: number, beforeSeq = Number.MAX_SAFE_INTEGER): Promise<{ runs: TestRunRecord[]; hasMore: boolean }> {
    let query = this.uow.db.selectFrom('test_runs').selectAll().where('seq', '<', beforeSeq);
    if (moduleName) query = query.where('module_name', '=', moduleName);
    const rows = await query.orderBy('seq', 'desc').limit(limit + 1).execute();
    const runs: TestRunRecord[] = [];
    // One after the other: inside a unit, statements share one connection.
    for (const row of rows.slice(0, limit)) runs.push(await this.toRecord(row));
    return { runs, hasMore: rows.length > limit };
  }

  private async toRecord(row: RunRow): Promise<TestRunRecord> {
    const results = (await this.uow.db
      .selectFrom('test_results')
      .selectAll()
      .where('run_id', '=', row.id)
      .orderBy('position')
      .execute()) as ResultRow[];
    return {
      id: row.id,
      seq: row.seq,
      moduleName: row.module_name,
      moduleVersion: row.module_version,
      modulePath: row.module_path,
      moduleType: row.module_type as ModuleType,
      status: row.status as RunStatus,
      trigger: row.trigger,
      actor: row.actor,
      startedAt: row.started_at,
      finishedAt: row.finished_at,
      total: row.total,
      passed: row.passed,
      failed: row.failed,
      timedOut: row.timed_out,
      skipped: row.skipped,
      node: row.node,
      results: results.map((r) => ({
        name: r.name,
        required: r.required === 1,
        source: r.source as TestSource,
        status: r.status as TestStatus,
        durationMs: r.duration_ms,
        error: r.error,
      })),
    };
  }
}
