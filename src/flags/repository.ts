/** SQL for feature flags: one row per flag plus its whitelist rows, always written together. */
import type { Db } from '../db/connection.js';
import type { FlagDefinition, RolloutStrategy, WhitelistEntry } from './engine.js';

interface FlagRow {
  name: string;
  description: string;
  enabled: 0 | 1;
  strategy: RolloutStrategy;
  percentage: number;
  stickiness: string;
  gradual_start_percentage: number | null;
  gradual_target_percentage: number | null;
  gradual_start_at: number | null;
  gradual_duration_seconds: number | null;
  created_at: number;
  updated_at: number;
}

interface WhitelistRow {
  flag: string;
  attribute: string;
  value: string;
}

export class FlagRepository {
  private readonly selectAll;
  private readonly selectOne;
  private readonly selectWhitelistAll;
  private readonly selectWhitelist;
  private readonly upsertRow;
  private readonly deleteWhitelist;
  private readonly insertWhitelist;
  private readonly deleteRow;

  constructor(private readonly db: Db) {
    this.selectAll = db.prepare<[], FlagRow>('SELECT * FROM feature_flags ORDER BY name');
    this.selectOne = db.prepare<[string], FlagRow>('SELECT * FROM feature_flags WHERE name = ?');
    this.selectWhitelistAll = db.prepare<[], WhitelistRow>('SELECT flag, attribute, value FROM flag_whitelist ORDER BY flag, position');
    this.selectWhitelist = db.prepare<[string], WhitelistRow>(
      'SELECT flag, attribute, value FROM flag_whitelist WHERE flag = ? ORDER BY position',
    );
    this.upsertRow = db.prepare(`
      INSERT INTO feature_flags (name, description, enabled, strategy, percentage, stickiness,
        gradual_start_percentage, gradual_target_percentage, gradual_start_at, gradual_duration_seconds,
        created_at, updated_at)
      VALUES (@name, @description, @enabled, @strategy, @percentage, @stickiness,
        @gradualStart, @gradualTarget, @gradualStartAt, @gradualDuration, @createdAt, @updatedAt)
      ON CONFLICT (name) DO UPDATE SET
        description = excluded.description, enabled = excluded.enabled, strategy = excluded.strategy,
        percentage = excluded.percentage, stickiness = excluded.stickiness,
        gradual_start_percentage = excluded.gradual_start_percentage,
        gradual_target_percentage = excluded.gradual_target_percentage,
        gradual_start_at = excluded.gradual_start_at,
        gradual_duration_seconds = excluded.gradual_duration_seconds,
        updated_at = excluded.updated_at`);
    this.deleteWhitelist = db.prepare('DELETE FROM flag_whitelist WHERE flag = ?');
    this.insertWhitelist = db.prepare(
      'INSERT INTO flag_whitelist (flag, attribute, value, position) VALUES (?, ?, ?, ?)',
    );
    this.deleteRow = db.prepare('DELETE FROM feature_flags WHERE name = ?');
  }

  all(): FlagDefinition[] {
    const lists = new Map<string, WhitelistRow[]>();
    for (const row of this.selectWhitelistAll.all()) {
      const list = lists.get(row.flag) ?? [];
      list.push(row);
      lists.set(row.flag, list);
    }
    return this.selectAll.all().map((row) => toDefinition(row, lists.get(row.name) ?? []));
  }

  get(name: string): FlagDefinition | null {
    const row = this.selectOne.get(name);
    return row ? toDefinition(row, this.selectWhitelist.all(name)) : null;
  }

  /**
   * Writes the flag and replaces its whitelist; callers run it inside their transaction.
   * `stored`, when given, is the flag as this transaction read it: when its whitelist is the
   * same as `def`'s, the whitelist rows are left as they are (a percentage change rewrote them
   * all, a delete and an insert per value, for nothing).
   */
  save(def: FlagDefinition, stored: FlagDefinition | null = null): void {
    this.upsertRow.run({
      name: def.name,
      description: def.description,
      enabled: def.enabled ? 1 : 0,
      strategy: def.strategy,
      percentage: def.percentage,
      stickiness: def.stickiness,
      gradualStart: def.gradual?.startPercentage ?? null,
      gradualTarget: def.gradual?.targetPercentage ?? null,
      gradualStartAt: def.gradual?.startAt ?? null,
      gradualDuration: def.gradual?.durationSeconds ?? null,
      createdAt: def.createdAt,
      updatedAt: def.updatedAt,
    });
    if (stored && stored.name === def.name && sameWhitelist(stored.whitelist, def.whitelist)) return;
    this.deleteWhitelist.run(def.name);
    let position = 0;
    for (const entry of def.whitelist) {
      for (const value of entry.values) this.insertWhitelist.run(def.name, entry.attribute, value, position++);
    }
  }

  delete(name: string): boolean {
    return this.deleteRow.run(name).changes > 0;
  }

}

function sameWhitelist(a: readonly WhitelistEntry[], b: readonly WhitelistEntry[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  return a.every((entry, i) => {
    const other = b[i]!;
    return entry.attribute === other.attribute && entry.values.length === other.values.length && entry.values.every((v, k) => v === other.values[k]);
  });
}

function toDefinition(row: FlagRow, whitelistRows: readonly WhitelistRow[]): FlagDefinition {
  const whitelist: WhitelistEntry[] = [];
  for (const { attribute, value } of whitelistRows) {
    const entry = whitelist.find((e) => e.attribute === attribute);
    if (entry) entry.values.push(value);
    else whitelist.push({ attribute, values: [value] });
  }
  const gradual =
    row.gradual_start_percentage !== null &&
    row.gradual_target_percentage !== null &&
    row.gradual_start_at !== null &&
    row.gradual_duration_seconds !== null
      ? {
          startPercentage: row.gradual_start_percentage,
          targetPercentage: row.gradual_target_percentage,
          startAt: row.gradual_start_at,
          durationSeconds: row.gradual_duration_seconds,
        }
      : null;
  return {
    name: row.name,
    description: row.description,
    enabled: row.enabled === 1,
    strategy: row.strategy,
    percentage: row.percentage,
    stickiness: row.stickiness,
    whitelist,
    gradual,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
