/** SQL for breakers: one row of current state per breaker, plus its transition history. */
import type { UnitOfWork } from '../db/unit-of-work.js';
import type { BreakerConfig } from './config.js';
import type { BreakerCounters, BreakerMetrics, BreakerSnapshot, BreakerState, BreakerTransition, TransitionReason } from './states.js';

export class BreakerRepository {
  constructor(private readonly uow: UnitOfWork) {}

  /** Its transitions go with it (ON DELETE CASCADE). */
  async delete(name: string): Promise<void> {
    await this.uow.db.deleteFrom('circuit_breakers').where('name', '=', name).execute();
  }

  async all(): Promise<BreakerSnapshot[]> {
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
      };
    });
  }

  async save(snapshot: BreakerSnapshot, now: number): Promise<void> {
    const values = {
      config_json: JSON.stringify(snapshot.config),
      state: snapshot.state,
      state_changed_at: snapshot.stateChangedAt,
      open_until: snapshot.openUntil,
      counters_json: JSON.stringify({ ...snapshot.counters, openAttempts: snapshot.openAttempts ?? 0 }),
      updated_at: now,
    };
    await this.uow.db
      .insertInto('circuit_breakers')
      .values({ name: snapshot.name, ...values, created_at: now })
      .onConflict((oc) => oc.column('name').doUpdateSet(values))
      .execute();
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
      })
      .execute();
  }

  /** The last `limit` transitions of a breaker, oldest first. */
  async transitions(name: string, limit: number): Promise<BreakerTransition[]> {
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
    }));
  }
}
