/** SQL for breakers: one row of current state per breaker, plus its transition history. */
import type { Db } from '../db/connection.js';
import type { BreakerConfig } from './config.js';
import type { BreakerCounters, BreakerMetrics, BreakerSnapshot, BreakerState, BreakerTransition, TransitionReason } from './states.js';

interface BreakerRow {
  name: string;
  config_json: string;
  state: BreakerState;
  state_changed_at: number;
  open_until: number | null;
  counters_json: string;
}

interface TransitionRow {
  breaker: string;
  from_state: BreakerState;
  to_state: BreakerState;
  reason: TransitionReason;
  at: number;
  open_until: number | null;
  metrics_json: string;
}

export class BreakerRepository {
  private readonly selectAll;
  private readonly upsert;
  private readonly insertTransition;
  private readonly selectTransitions;
  private readonly deleteOne;

  constructor(private readonly db: Db) {
    this.selectAll = db.prepare<[], BreakerRow>('SELECT * FROM circuit_breakers ORDER BY name');
    this.upsert = db.prepare(`
      INSERT INTO circuit_breakers (name, config_json, state, state_changed_at, open_until, counters_json, created_at, updated_at)
      VALUES (@name, @config, @state, @stateChangedAt, @openUntil, @counters, @now, @now)
      ON CONFLICT (name) DO UPDATE SET
        config_json = excluded.config_json, state = excluded.state,
        state_changed_at = excluded.state_changed_at, open_until = excluded.open_until,
        counters_json = excluded.counters_json, updated_at = excluded.updated_at`);
    this.insertTransition = db.prepare(`
      INSERT INTO breaker_transitions (breaker, from_state, to_state, reason, at, open_until, metrics_json)
      VALUES (@name, @from, @to, @reason, @at, @openUntil, @metrics)`);
    // Its transitions go with it (ON DELETE CASCADE).
    this.deleteOne = db.prepare<[string]>('DELETE FROM circuit_breakers WHERE name = ?');
    this.selectTransitions = db.prepare<[string, number], TransitionRow>(
      'SELECT * FROM (SELECT * FROM breaker_transitions WHERE breaker = ? ORDER BY id DESC LIMIT ?) ORDER BY id ASC',
    );
  }

  delete(name: string): void {
    this.deleteOne.run(name);
  }

  all(): BreakerSnapshot[] {
    return this.selectAll.all().map((row) => {
      // The backoff step rides with the counters (rows written before it existed lack it: 0).
      const { openAttempts, ...counters } = JSON.parse(row.counters_json) as BreakerCounters & { openAttempts?: number };
      return {
        name: row.name,
        state: row.state,
        stateChangedAt: row.state_changed_at,
        openUntil: row.open_until,
        openAttempts: openAttempts ?? 0,
        config: JSON.parse(row.config_json) as BreakerConfig,
        counters,
      };
    });
  }

  save(snapshot: BreakerSnapshot, now: number): void {
    this.upsert.run({
      name: snapshot.name,
      config: JSON.stringify(snapshot.config),
      state: snapshot.state,
      stateChangedAt: snapshot.stateChangedAt,
      openUntil: snapshot.openUntil,
      counters: JSON.stringify({ ...snapshot.counters, openAttempts: snapshot.openAttempts ?? 0 }),
      now,
    });
  }

  recordTransition(event: BreakerTransition): void {
    this.insertTransition.run({
      name: event.name,
      from: event.from,
      to: event.to,
      reason: event.reason,
      at: event.at,
      openUntil: event.openUntil,
      metrics: JSON.stringify(event.metrics),
    });
  }

  /** The last `limit` transitions of a breaker, oldest first. */
  transitions(name: string, limit: number): BreakerTransition[] {
    return this.selectTransitions.all(name, limit).map((row) => ({
      name: row.breaker,
      from: row.from_state,
      to: row.to_state,
      reason: row.reason,
      at: row.at,
      openUntil: row.open_until,
      metrics: JSON.parse(row.metrics_json) as BreakerMetrics,
    }));
  }

}
