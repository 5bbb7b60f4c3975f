/** SQL for test runs: one row per run, one per test result, written as the run goes. */
import type { Db } from '../db/connection.js';
import type { ModuleType } from '../modules/contract.js';
import type { RunStatus, TestCaseResult, TestRunSummary, TestSource, TestStatus } from './engine.js';

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
}

interface RunRow {
  id: string;
  seq: number;
  module_name: string;
  module_version: string;
  module_path: string;
  module_type: ModuleType;
  status: RunStatus;
  trigger: string;
  actor: string;
  started_at: number;
  finished_at: number | null;
  total: number;
  passed: number;
  failed: number;
  timed_out: number;
  skipped: number;
}

interface ResultRow {
  run_id: string;
  name: string;
  required: 0 | 1;
  source: TestSource;
  status: TestStatus;
  duration_ms: number;
  error: string | null;
}

export class TestRunRepository {
  private readonly insertRun;
  private readonly updateTotal;
  private readonly finishRun;
  private readonly insertResult;
  private readonly selectRun;
  private readonly selectResults;
  private readonly selectPage;
  private readonly selectPageByModule;
  private readonly selectMaxSeq;
  private readonly interruptRunning;
  private readonly countStatuses;

  constructor(private readonly db: Db) {
    this.insertRun = db.prepare(`
      INSERT INTO test_runs (id, seq, module_name, module_version, module_path, module_type, status, trigger, actor, started_at)
      VALUES (@id, @seq, @moduleName, @moduleVersion, @modulePath, @moduleType, 'RUNNING', @trigger, @actor, @startedAt)`);
    this.updateTotal = db.prepare('UPDATE test_runs SET total = ? WHERE id = ?');
    this.finishRun = db.prepare(`
      UPDATE test_runs SET status = @status, finished_at = @finishedAt, total = @total, passed = @passed,
        failed = @failed, timed_out = @timedOut, skipped = @skipped WHERE id = @id`);
    this.insertResult = db.prepare(`
      INSERT INTO test_results (run_id, position, name, required, source, status, duration_ms, error)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    this.selectRun = db.prepare<[string], RunRow>('SELECT * FROM test_runs WHERE id = ?');
    this.selectResults = db.prepare<[string], ResultRow>('SELECT * FROM test_results WHERE run_id = ? ORDER BY position');
    this.selectPage = db.prepare<[number, number], RunRow>('SELECT * FROM test_runs WHERE seq < ? ORDER BY seq DESC LIMIT ?');
    this.selectPageByModule = db.prepare<[string, number, number], RunRow>(
      'SELECT * FROM test_runs WHERE module_name = ? AND seq < ? ORDER BY seq DESC LIMIT ?',
    );
    this.selectMaxSeq = db.prepare<[], { seq: number | null }>('SELECT MAX(seq) AS seq FROM test_runs');
    this.interruptRunning = db.prepare("UPDATE test_runs SET status = 'INTERRUPTED', finished_at = ? WHERE status = 'RUNNING'");
    this.countStatuses = db.prepare<[], { status: RunStatus; runs: number }>('SELECT status, COUNT(*) AS runs FROM test_runs GROUP BY status');
  }

  /** Runs per status (statuses without runs are absent). */
  countByStatus(): Array<{ status: RunStatus; runs: number }> {
    return this.countStatuses.all();
  }

  nextSeq(): number {
    return (this.selectMaxSeq.get()?.seq ?? 0) + 1;
  }

  create(run: Omit<TestRunRecord, 'status' | 'finishedAt' | 'total' | 'passed' | 'failed' | 'timedOut' | 'skipped' | 'results'>): void {
    this.insertRun.run(run);
  }

  setTotal(id: string, total: number): void {
    this.updateTotal.run(total, id);
  }

  addResult(id: string, position: number, result: TestCaseResult): void {
    this.insertResult.run(id, position, result.name, result.required ? 1 : 0, result.source, result.status, result.durationMs, result.error);
  }

  finish(id: string, status: RunStatus, finishedAt: number, summary: TestRunSummary): void {
    this.finishRun.run({ id, status, finishedAt, ...summary });
  }

  /** Marks runs a crash left RUNNING; returns how many. */
  interruptUnfinished(now: number): number {
    return this.interruptRunning.run(now).changes;
  }

  get(id: string): TestRunRecord | null {
    const row = this.selectRun.get(id);
    return row ? this.toRecord(row) : null;
  }

  /** Newest first, runs created before `beforeSeq`; one extra row tells whether more exist. */
  page(moduleName: string | null | undefined, limit: number, beforeSeq = Number.MAX_SAFE_INTEGER): { runs: TestRunRecord[]; hasMore: boolean } {
    const rows = moduleName ? this.selectPageByModule.all(moduleName, beforeSeq, limit + 1) : this.selectPage.all(beforeSeq, limit + 1);
    return { runs: rows.slice(0, limit).map((r) => this.toRecord(r)), hasMore: rows.length > limit };
  }


  private toRecord(row: RunRow): TestRunRecord {
    return {
      id: row.id,
      seq: row.seq,
      moduleName: row.module_name,
      moduleVersion: row.module_version,
      modulePath: row.module_path,
      moduleType: row.module_type,
      status: row.status,
      trigger: row.trigger,
      actor: row.actor,
      startedAt: row.started_at,
      finishedAt: row.finished_at,
      total: row.total,
      passed: row.passed,
      failed: row.failed,
      timedOut: row.timed_out,
      skipped: row.skipped,
      results: this.selectResults.all(row.id).map((r) => ({
        name: r.name, required: r.required === 1, source: r.source, status: r.status, durationMs: r.duration_ms, error: r.error,
      })),
    };
  }
}
