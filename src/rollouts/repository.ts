/** SQL for rollouts: one row per rollout (its current step and deadlines), one per history event. */
import type { UnitOfWork } from '../db/unit-of-work.js';
import {
  ACTIVE_ROLLOUT_STATUSES,
  type Rollout,
  type RolloutAbort,
  type RolloutEventType,
  type RolloutGates,
  type RolloutHistoryEvent,
  type RolloutStatus,
} from './events.js';
import { isUniqueViolation } from '../db/errors.js';

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
  type: string;
  at: number;
  percentage: number;
  detail: string | null;
}

/** The unique constraint a failed insert ran into, as better-sqlite3 and pg report it. */
export type RolloutConflict = 'id' | 'seq' | 'module' | 'flag';

/**
 * Which of the rollouts table's unique constraints `error` is the violation of; null for any
 * other error. SQLite names the columns ("UNIQUE constraint failed: rollouts.module"),
 * PostgreSQL the constraint (`rollouts_active_module`, `rollouts_seq_key`, `rollouts_pkey`).
 */
export function rolloutConflictOf(error: unknown): RolloutConflict | null {
  if (!isUniqueViolation(error)) return null;
  const { code, constraint, message } = error as { code: string; constraint?: unknown; message?: unknown };
  if (code === '23505' && typeof constraint === 'string') {
    if (constraint === 'rollouts_active_module') return 'module';
    if (constraint === 'rollouts_active_flag') return 'flag';
    if (constraint === 'rollouts_seq_key') return 'seq';
    if (constraint === 'rollouts_pkey') return 'id';
    return null;
  }
  if (code !== '23505' && typeof message === 'string') {
    const column = /constraint failed: rollouts\.(\w+)/.exec(message)?.[1];
    return column === 'module' || column === 'flag' || column === 'seq' || column === 'id' ? column : null;
  }
  return null;
}

export class RolloutRepository {
  constructor(private readonly uow: UnitOfWork) {}

  async nextSeq(): Promise<number> {
    const row = await this.uow.db.selectFrom('rollouts').select((eb) => eb.fn.max('seq').as('seq')).executeTakeFirst();
    return (row?.seq ?? 0) + 1;
  }

  async insert(rollout: Rollout): Promise<void> {
    await this.uow.db.insertInto('rollouts').values(toRow(rollout)).execute();
  }

  /** Writes the mutable columns; the plan (steps, interval, gates, versions, flag) never changes. */
  async update(rollout: Rollout): Promise<void> {
    const row = toRow(rollout);
    await this.uow.db
      .updateTable('rollouts')
      .set({
        status: row.status, step_index: row.step_index, percentage: row.percentage, test_run_id: row.test_run_id,
        step_started_at: row.step_started_at, next_step_at: row.next_step_at, paused_at: row.paused_at,
        remaining_ms: row.remaining_ms, resume_status: row.resume_status, awaiting_promotion: row.awaiting_promotion,
        updated_at: row.updated_at, finished_at: row.finished_at, abort_reason: row.abort_reason, abort_json: row.abort_json,
      })
      .where('id', '=', row.id)
      .execute();
  }

  async appendEvent(rolloutId: string, event: RolloutHistoryEvent): Promise<void> {
    await this.uow.db
      .insertInto('rollout_events')
      .values({ rollout_id: rolloutId, type: event.type, at: event.at, percentage: event.percentage, detail: event.detail })
      .execute();
  }

  async get(id: string): Promise<Rollout | null> {
    const row = await this.uow.db.selectFrom('rollouts').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? fromRow(row as RolloutRow) : null;
  }

  /** The module's current rollout, or its last one. */
  async latest(module: string): Promise<Rollout | null> {
    const row = await this.uow.db.selectFrom('rollouts').selectAll().where('module', '=', module)
      .orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return row ? fromRow(row as RolloutRow) : null;
  }

  /** At most one (a unique index keeps it so). */
  async activeForModule(module: string): Promise<Rollout | null> {
    const row = await this.uow.db.selectFrom('rollouts').selectAll().where('module', '=', module)
      .where('status', 'in', ACTIVE_ROLLOUT_STATUSES).orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return row ? fromRow(row as RolloutRow) : null;
  }

  /** At most one (a unique index keeps it so). */
  async activeForFlag(flag: string): Promise<Rollout | null> {
    const row = await this.uow.db.selectFrom('rollouts').selectAll().where('flag', '=', flag)
      .where('status', 'in', ACTIVE_ROLLOUT_STATUSES).orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return row ? fromRow(row as RolloutRow) : null;
  }

  /** Every unfinished rollout, oldest first (restart recovery). */
  async active(): Promise<Rollout[]> {
    const rows = await this.uow.db.selectFrom('rollouts').selectAll().where('status', 'in', ACTIVE_ROLLOUT_STATUSES)
      .orderBy('seq', 'asc').execute();
    return rows.map((row) => fromRow(row as RolloutRow));
  }

  /** The row, locked until the unit ends (PostgreSQL `FOR UPDATE`): two nodes never both transition a rollout. */
  async lockForUpdate(id: string): Promise<Rollout | null> {
    const row = await this.uow.db.selectFrom('rollouts').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
    return row ? fromRow(row as RolloutRow) : null;
  }

  /** How many history events the rollout has. */
  async eventCount(rolloutId: string): Promise<number> {
    const row = await this.uow.db.selectFrom('rollout_events').select((eb) => eb.fn.countAll<number>().as('n'))
      .where('rollout_id', '=', rolloutId).executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  /** This node's figures of a rollout's step (rollout_node_stats). */
  async writeNodeStats(rolloutId: string, stepIndex: number, node: string, stats: unknown, at: number): Promise<void> {
    const statsJson = JSON.stringify(stats);
    await this.uow.db.insertInto('rollout_node_stats')
      .values({ rollout_id: rolloutId, step_index: stepIndex, node, stats_json: statsJson, updated_at: at })
      .onConflict((oc) => oc.columns(['rollout_id', 'step_index', 'node']).doUpdateSet({ stats_json: statsJson, updated_at: at }))
      .execute();
  }

  /** Every node's figures of a rollout's step, from the nodes in `nodes`. */
  async nodeStats(rolloutId: string, stepIndex: number, nodes: readonly string[]): Promise<Array<{ node: string; stats: unknown }>> {
    if (nodes.length === 0) return [];
    const rows = await this.uow.db.selectFrom('rollout_node_stats').select(['node', 'stats_json'])
      .where('rollout_id', '=', rolloutId).where('step_index', '=', stepIndex).where('node', 'in', nodes).execute();
    return rows.map((r) => ({ node: r.node, stats: JSON.parse(r.stats_json) as unknown }));
  }

  /** A finished rollout's per-node figures (all nodes', or one node's). */
  async deleteNodeStats(rolloutId: string, node?: string): Promise<void> {
    let query = this.uow.db.deleteFrom('rollout_node_stats').where('rollout_id', '=', rolloutId);
    if (node !== undefined) query = query.where('node', '=', node);
    await query.execute();
  }

  /** Newest first, rollouts created before `beforeSeq`; one extra row tells whether more exist. */
  async page(module: string | null | undefined, limit: number, beforeSeq = Number.MAX_SAFE_INTEGER): Promise<{ rollouts: Rollout[]; hasMore: boolean }> {
    let query = this.uow.db.selectFrom('rollouts').selectAll().where('seq', '<', beforeSeq);
    if (module) query = query.where('module', '=', module);
    const rows = (await query.orderBy('seq', 'desc').limit(limit + 1).execute()) as RolloutRow[];
    return { rollouts: rows.slice(0, limit).map(fromRow), hasMore: rows.length > limit };
  }

  /** Oldest first. */
  async events(rolloutId: string): Promise<RolloutHistoryEvent[]> {
    const rows: EventRow[] = await this.uow.db.selectFrom('rollout_events').select(['type', 'at', 'percentage', 'detail'])
      .where('rollout_id', '=', rolloutId).orderBy('id', 'asc').execute();
    return rows.map((r) => ({ type: r.type as RolloutEventType, at: r.at, percentage: r.percentage, detail: r.detail }));
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
