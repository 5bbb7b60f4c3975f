/** SQL for breakers: one row of current state per breaker, plus its transition history. */
import type { UnitOfWork } from '../db/unit-of-work.js';
import type { BreakerConfig } from './config.js';
import type { BreakerCounters, BreakerMetrics, BreakerSnapshot, BreakerState, BreakerTransition, TransitionReason } from './states.js';

/** A stored breaker: its snapshot and when its row was last written. */
export interface StoredBreaker extends BreakerSnapshot {
  updatedAt: number;
}

export class BreakerRepository {
  constructor(private readonly uow: UnitOfWork) {}

  /** Its transitions go with it (ON DELETE CASCADE). */
  async delete(name: string): Promise<void> {
    await this.uow.db.deleteFrom('circuit_breakers').where('name', '=', name).execute();
  }

  async all(): Promise<StoredBreaker[]> {
    const rows = await this.uow.db.selectFrom('circuit_breakers').selectAll().orderBy('name').execute();
    return rows.map((row) => {
      // The backoff step rides with the counters (rows written before it existed lack it: 0).
      const { openAttempts, ...counters } = JSON.parse(row.counters_json) as BreakerCounters & { openAttempts?: number };
      return {
        name: row.name,
        state: row.state as BreakerState,
        stateChangedAt: row.state_changed_at,
        openUntil: row.open_until,
        openAttempts: openAttempts ?? 0,
        config: JSON.parse(row.config_json) as BreakerConfig,
        counters,
        updatedAt: row.updated_at,
      };
    });
  }

  /** A cluster node's first row for a breaker it created: an existing row (another node's) is left alone. */
  async saveIfMissing(snapshot: BreakerSnapshot, now: number): Promise<void> {
    await this.uow.db
      .insertInto('circuit_breakers')
      .values({ name: snapshot.name, ...this.values(snapshot, now), created_at: now })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
  }

  /** What `node` last reported of its breakers (node_states), by breaker name. */
  async nodeStates(node: string): Promise<Map<string, { state: string; detail: unknown; updatedAt: number }>> {
    const rows = await this.uow.db
      .selectFrom('node_states')
      .select(['name', 'state', 'detail_json', 'updated_at'])
      .where('kind', '=', 'BREAKER')
      .where('node', '=', node)
      .execute();
    return new Map(rows.map((r) => [r.name, {
      state: r.state,
      detail: r.detail_json === null ? null : (JSON.parse(r.detail_json) as unknown),
      updatedAt: r.updated_at,
    }]));
  }

  async save(snapshot: BreakerSnapshot, now: number): Promise<void> {
    const values = this.values(snapshot, now);
    await this.uow.db
      .insertInto('circuit_breakers')
      .values({ name: snapshot.name, ...values, created_at: now })
      .onConflict((oc) => oc.column('name').doUpdateSet(values))
      .execute();
  }

  private values(snapshot: BreakerSnapshot, now: number) {
    return {
      config_json: JSON.stringify(snapshot.config),
      state: snapshot.state,
      state_changed_at: snapshot.stateChangedAt,
      open_until: snapshot.openUntil,
      counters_json: JSON.stringify({ ...snapshot.counters, openAttempts: snapshot.openAttempts ?? 0 }),
      updated_at: now,
    };
  }

  async recordTransition(event: BreakerTransition): Promise<void> {
    await this.uow.db
      .insertInto('breaker_transitions')
      .values({
        breaker: event.name,
        from_state: event.from,
        to_state: event.to,
        reason: event.reason,
        at: event.at,
        open_until: event.openUntil,
        metrics_json: JSON.stringify(event.metrics),
        node: event.node ?? null,
      })
      .execute();
  }

  /** The last `limit` transitions of a breaker (every node's), oldest first; `node` for rows written without one. */
  async transitions(name: string, limit: number, node: string): Promise<BreakerTransition[]> {
    const rows = await this.uow.db
      .selectFrom('breaker_transitions')
      .selectAll()
      .where('breaker', '=', name)
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    return rows.reverse().map((row) => ({
      name: row.breaker,
      from: row.from_state as BreakerState,
      to: row.to_state as BreakerState,
      reason: row.reason as TransitionReason,
      at: row.at,
      openUntil: row.open_until,
      metrics: JSON.parse(row.metrics_json) as BreakerMetrics,
      node: row.node ?? node,
    }));
  }
}
