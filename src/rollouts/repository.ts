/** SQL for rollouts: one row per rollout (its current step and deadlines), one per history event. */
import type { Db } from '../db/connection.js';
import {
  ACTIVE_ROLLOUT_STATUSES,
  type Rollout,
  type RolloutAbort,
  type RolloutEventType,
  type RolloutGates,
  type RolloutHistoryEvent,
  type RolloutStatus,
} from './events.js';

interface RolloutRow {
  id: string;
  seq: number;
  module: string;
  from_version: string;
  to_version: string;
  to_module_path: string;
  flag: string;
  status: RolloutStatus;
  steps_json: string;
  step_index: number;
  percentage: number;
  step_interval_seconds: number | null;
  gates_json: string;
  auto_promote: 0 | 1;
  test_with: string | null;
  test_run_id: string | null;
  step_started_at: number | null;
  next_step_at: number | null;
  paused_at: number | null;
  remaining_ms: number | null;
  resume_status: 'RUNNING' | 'HOLDING' | null;
  awaiting_promotion: 0 | 1;
  actor: string;
  started_at: number;
  updated_at: number;
  finished_at: number | null;
  abort_reason: string | null;
  abort_json: string | null;
}

interface EventRow {
  type: RolloutEventType;
  at: number;
  percentage: number;
  detail: string | null;
}

const ACTIVE_SQL = ACTIVE_ROLLOUT_STATUSES.map((s) => `'${s}'`).join(', ');

export class RolloutRepository {
  private readonly insertRollout;
  private readonly updateRollout;
  private readonly insertEvent;
  private readonly selectById;
  private readonly selectLatest;
  private readonly selectActiveByModule;
  private readonly selectActiveByFlag;
  private readonly selectActive;
  private readonly selectPage;
  private readonly selectPageByModule;
  private readonly selectEvents;
  private readonly selectMaxSeq;

  constructor(db: Db) {
    const columns = `id, seq, module, from_version, to_version, to_module_path, flag, status, steps_json, step_index, percentage,
      step_interval_seconds, gates_json, auto_promote, test_with, test_run_id, step_started_at, next_step_at, paused_at, remaining_ms,
      resume_status, awaiting_promotion, actor, started_at, updated_at, finished_at, abort_reason, abort_json`;
    this.insertRollout = db.prepare(`INSERT INTO rollouts (${columns}) VALUES (@id, @seq, @module, @from_version, @to_version,
      @to_module_path, @flag, @status, @steps_json, @step_index, @percentage, @step_interval_seconds, @gates_json, @auto_promote,
      @test_with, @test_run_id, @step_started_at, @next_step_at, @paused_at, @remaining_ms, @resume_status, @awaiting_promotion,
      @actor, @started_at, @updated_at, @finished_at, @abort_reason, @abort_json)`);
    this.updateRollout = db.prepare(`UPDATE rollouts SET status = @status, step_index = @step_index, percentage = @percentage,
      test_run_id = @test_run_id, step_started_at = @step_started_at, next_step_at = @next_step_at, paused_at = @paused_at,
      remaining_ms = @remaining_ms, resume_status = @resume_status, awaiting_promotion = @awaiting_promotion,
      updated_at = @updated_at, finished_at = @finished_at, abort_reason = @abort_reason, abort_json = @abort_json
      WHERE id = @id`);
    this.insertEvent = db.prepare('INSERT INTO rollout_events (rollout_id, type, at, percentage, detail) VALUES (?, ?, ?, ?, ?)');
    this.selectById = db.prepare<[string], RolloutRow>('SELECT * FROM rollouts WHERE id = ?');
    this.selectLatest = db.prepare<[string], RolloutRow>('SELECT * FROM rollouts WHERE module = ? ORDER BY seq DESC LIMIT 1');
    this.selectActiveByModule = db.prepare<[string], RolloutRow>(`SELECT * FROM rollouts WHERE module = ? AND status IN (${ACTIVE_SQL})`);
    this.selectActiveByFlag = db.prepare<[string], RolloutRow>(`SELECT * FROM rollouts WHERE flag = ? AND status IN (${ACTIVE_SQL})`);
    this.selectActive = db.prepare<[], RolloutRow>(`SELECT * FROM rollouts WHERE status IN (${ACTIVE_SQL}) ORDER BY seq`);
    this.selectPage = db.prepare<[number, number], RolloutRow>('SELECT * FROM rollouts WHERE seq < ? ORDER BY seq DESC LIMIT ?');
    this.selectPageByModule = db.prepare<[string, number, number], RolloutRow>(
      'SELECT * FROM rollouts WHERE module = ? AND seq < ? ORDER BY seq DESC LIMIT ?',
    );
    this.selectEvents = db.prepare<[string], EventRow>('SELECT type, at, percentage, detail FROM rollout_events WHERE rollout_id = ? ORDER BY id');
    this.selectMaxSeq = db.prepare<[], { seq: number | null }>('SELECT MAX(seq) AS seq FROM rollouts');
  }

  nextSeq(): number {
    return (this.selectMaxSeq.get()?.seq ?? 0) + 1;
  }

  insert(rollout: Rollout): void {
    this.insertRollout.run(toRow(rollout));
  }

  /** Writes the mutable columns; the plan (steps, interval, gates, versions, flag) never changes. */
  update(rollout: Rollout): void {
    const row = toRow(rollout);
    this.updateRollout.run({
      id: row.id, status: row.status, step_index: row.step_index, percentage: row.percentage, test_run_id: row.test_run_id,
      step_started_at: row.step_started_at, next_step_at: row.next_step_at, paused_at: row.paused_at,
      remaining_ms: row.remaining_ms, resume_status: row.resume_status, awaiting_promotion: row.awaiting_promotion,
      updated_at: row.updated_at, finished_at: row.finished_at, abort_reason: row.abort_reason, abort_json: row.abort_json,
    });
  }

  appendEvent(rolloutId: string, event: RolloutHistoryEvent): void {
    this.insertEvent.run(rolloutId, event.type, event.at, event.percentage, event.detail);
  }

  get(id: string): Rollout | null {
    const row = this.selectById.get(id);
    return row ? fromRow(row) : null;
  }

  /** The module's current rollout, or its last one. */
  latest(module: string): Rollout | null {
    const row = this.selectLatest.get(module);
    return row ? fromRow(row) : null;
  }

  activeForModule(module: string): Rollout | null {
    const row = this.selectActiveByModule.get(module);
    return row ? fromRow(row) : null;
  }

  activeForFlag(flag: string): Rollout | null {
    const row = this.selectActiveByFlag.get(flag);
    return row ? fromRow(row) : null;
  }

  /** Every unfinished rollout, oldest first (restart recovery). */
  active(): Rollout[] {
    return this.selectActive.all().map(fromRow);
  }

  /** Newest first, rollouts created before `beforeSeq`; one extra row tells whether more exist. */
  page(module: string | null | undefined, limit: number, beforeSeq = Number.MAX_SAFE_INTEGER): { rollouts: Rollout[]; hasMore: boolean } {
    const rows = module ? this.selectPageByModule.all(module, beforeSeq, limit + 1) : this.selectPage.all(beforeSeq, limit + 1);
    return { rollouts: rows.slice(0, limit).map(fromRow), hasMore: rows.length > limit };
  }

  events(rolloutId: string): RolloutHistoryEvent[] {
    return this.selectEvents.all(rolloutId).map((r) => ({ type: r.type, at: r.at, percentage: r.percentage, detail: r.detail }));
  }
}

function toRow(r: Rollout): RolloutRow {
  return {
    id: r.id,
    seq: r.seq,
    module: r.module,
    from_version: r.fromVersion,
    to_version: r.toVersion,
    to_module_path: r.toModulePath,
    flag: r.flag,
    status: r.status,
    steps_json: JSON.stringify(r.steps),
    step_index: r.stepIndex,
    percentage: r.percentage,
    step_interval_seconds: r.stepIntervalSeconds,
    gates_json: JSON.stringify(r.gates),
    auto_promote: r.autoPromote ? 1 : 0,
    test_with: r.testWith,
    test_run_id: r.testRunId,
    step_started_at: r.stepStartedAt,
    next_step_at: r.nextStepAt,
    paused_at: r.pausedAt,
    remaining_ms: r.remainingMs,
    resume_status: r.resumeStatus,
    awaiting_promotion: r.awaitingPromotion ? 1 : 0,
    actor: r.actor,
    started_at: r.startedAt,
    updated_at: r.updatedAt,
    finished_at: r.finishedAt,
    abort_reason: r.abortReason,
    abort_json: r.abort === null ? null : JSON.stringify(r.abort),
  };
}

function fromRow(row: RolloutRow): Rollout {
  return {
    id: row.id,
    seq: row.seq,
    module: row.module,
    fromVersion: row.from_version,
    toVersion: row.to_version,
    toModulePath: row.to_module_path,
    flag: row.flag,
    status: row.status,
    steps: JSON.parse(row.steps_json) as number[],
    stepIndex: row.step_index,
    percentage: row.percentage,
    stepIntervalSeconds: row.step_interval_seconds,
    gates: JSON.parse(row.gates_json) as RolloutGates,
    autoPromote: row.auto_promote === 1,
    testWith: row.test_with,
    testRunId: row.test_run_id,
    stepStartedAt: row.step_started_at,
    nextStepAt: row.next_step_at,
    pausedAt: row.paused_at,
    remainingMs: row.remaining_ms,
    resumeStatus: row.resume_status,
    awaitingPromotion: row.awaiting_promotion === 1,
    actor: row.actor,
    startedAt: row.started_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
    abortReason: row.abort_reason,
    abort: row.abort_json === null ? null : (JSON.parse(row.abort_json) as RolloutAbort),
  };
}
