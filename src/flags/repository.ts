/** The feature flag store: one row per flag plus its whitelist rows, always written together. */
import type { Selectable } from 'kysely';
import type { FeatureFlagsTable } from '../db/schema.js';
import type { Dialect } from '../db/database.js';
import type { UnitOfWork } from '../db/unit-of-work.js';
import type { FlagDefinition, RolloutStrategy, WhitelistEntry } from './engine.js';
import { isUniqueViolation } from '../db/errors.js';
import { statement } from '../db/statement.js';

/** A row as the store reads it: the table's columns (src/db/schema.ts). */
type FlagRow = Selectable<FeatureFlagsTable>;

interface WhitelistRow {
  flag: string;
  attribute: string;
  value: string;
}

/** A flag saved as new (no stored row) found one already there: another unit created it first. */
export class FlagRowExistsError extends Error {
  override name = 'FlagRowExistsError';

  constructor(readonly flag: string, options?: { cause: unknown }) {
    super(`feature flag row "${flag}" already exists`, options);
  }
}


/**
 * The statements every change of a flag runs (src/db/statement.ts), written as `withWhitelist`,
 * `get`'s lock and `save`'s upsert build them with Kysely: the same columns, the same rows.
 */
const SELECT_FLAG = statement(
  'select "feature_flags".*, "flag_whitelist"."attribute" as "wl_attribute", "flag_whitelist"."value" as "wl_value" ' +
    'from "feature_flags" left join "flag_whitelist" on "flag_whitelist"."flag" = "feature_flags"."name" ' +
    'where "feature_flags"."name" = ? order by "flag_whitelist"."position"',
);
const LOCK_FLAG = statement('select "name" from "feature_flags" where "name" = ? for update');
const FLAG_COLUMNS = [
  'name', 'description', 'enabled', 'strategy', 'percentage', 'stickiness', 'gradual_start_percentage',
  'gradual_target_percentage', 'gradual_start_at', 'gradual_duration_seconds', 'created_at', 'updated_at',
] as const;
/** Every column but the key and `created_at` is replaced when the row exists. */
const UPSERT_FLAG = statement(
  `insert into "feature_flags" (${FLAG_COLUMNS.map((c) => `"${c}"`).join(', ')}) values (${FLAG_COLUMNS.map(() => '?').join(', ')}) ` +
    `on conflict ("name") do update set ${FLAG_COLUMNS.filter((c) => c !== 'name' && c !== 'created_at').map((c) => `"${c}" = "excluded"."${c}"`).join(', ')}`,
);

/** Whitelist rows per INSERT statement (four parameters each). */
const WHITELIST_BATCH = 500;
/** Names per `IN (...)` list. */
const NAMES_BATCH = 500;

/**
 * Flags from `withWhitelist` rows, which come ordered by flag name and whitelist position: a
 * flag's rows are adjacent.
 */
type WithWhitelistRow = FlagRow & { wl_attribute: string | null; wl_value: string | null };

function assemble(rows: readonly WithWhitelistRow[]): FlagDefinition[] {
  const flags: FlagDefinition[] = [];
  let i = 0;
  while (i < rows.length) {
    const row = rows[i]!;
    const whitelistRows: WhitelistRow[] = [];
    for (; i < rows.length && rows[i]!.name === row.name; i++) {
      const { wl_attribute: attribute, wl_value: value } = rows[i]!;
      if (attribute !== null && value !== null) whitelistRows.push({ flag: row.name, attribute, value });
    }
    flags.push(toDefinition(row, whitelistRows));
  }
  return flags;
}

function flagRow(def: FlagDefinition) {
  return {
    name: def.name,
    description: def.description,
    enabled: def.enabled ? 1 : 0,
    strategy: def.strategy,
    percentage: def.percentage,
    stickiness: def.stickiness,
    gradual_start_percentage: def.gradual?.startPercentage ?? null,
    gradual_target_percentage: def.gradual?.targetPercentage ?? null,
    gradual_start_at: def.gradual?.startAt ?? null,
    gradual_duration_seconds: def.gradual?.durationSeconds ?? null,
    created_at: def.createdAt,
    updated_at: def.updatedAt,
  };
}

/** `flagRow`'s values in FLAG_COLUMNS order (UPSERT_FLAG's parameters). */
function flagValues(def: FlagDefinition): unknown[] {
  const row = flagRow(def);
  return FLAG_COLUMNS.map((column) => row[column]);
}

export interface FlagRepositoryOptions {
  /**
   * The database's dialect. On PostgreSQL, units run side by side: `get(name, { lock: true })`
   * then locks the flag's row (FOR UPDATE) until the unit ends, so two changes of one flag read
   * and write one after the other, as they do on SQLite (where there is nothing to lock).
   */
  dialect?: Dialect;
}

export class FlagRepository {
  private readonly rowLocks: boolean;

  constructor(
    private readonly uow: UnitOfWork,
    options: FlagRepositoryOptions = {},
  ) {
    this.rowLocks = options.dialect === 'postgres';
  }

  async all(): Promise<FlagDefinition[]> {
    return assemble(await this.withWhitelist().orderBy('feature_flags.name').orderBy('flag_whitelist.position').execute());
  }

  /** `lock`: the unit is about to write the flag; see FlagRepositoryOptions. */
  async get(name: string, { lock = false }: { lock?: boolean } = {}): Promise<FlagDefinition | null> {
    if (lock && this.rowLocks && this.uow.active) {
      // The lock first, in a statement of its own: a locking read that waited for another unit
      // sees that unit's flag row, but a join in it would still show the whitelist as it was.
      // The read below starts after the lock is held, so it sees the flag whole.
      const locked = await this.uow.query(LOCK_FLAG, [name]);
      if (locked.length === 0) return null;
    }
    return assemble(await this.uow.query<WithWhitelistRow>(SELECT_FLAG, [name]))[0] ?? null;
  }

  /**
   * Flags with their whitelist values, one row per value (or one row with null values): one
   * statement, so a change committed meanwhile is seen whole or not at all, as the two
   * statements of a read outside a unit on PostgreSQL would not guarantee.
   */
  private withWhitelist() {
    return this.uow.db
      .selectFrom('feature_flags')
      .leftJoin('flag_whitelist', 'flag_whitelist.flag', 'feature_flags.name')
      .selectAll('feature_flags')
      .select(['flag_whitelist.attribute as wl_attribute', 'flag_whitelist.value as wl_value']);
  }

  /** The stored flags among `names` (any order; names without a flag are left out). */
  async getMany(names: readonly string[]): Promise<FlagDefinition[]> {
    const found: FlagDefinition[] = [];
    for (let i = 0; i < names.length; i += NAMES_BATCH) {
      const batch = names.slice(i, i + NAMES_BATCH);
      const rows = await this.withWhitelist()
        .where('feature_flags.name', 'in', batch)
        .orderBy('feature_flags.name')
        .orderBy('flag_whitelist.position')
        .execute();
      found.push(...assemble(rows));
    }
    return found;
  }

  /**
   * Writes the flag and replaces its whitelist; callers run it inside their unit of work.
   * `stored`, when given, is the flag as this unit read it: when its whitelist is the same as
   * `def`'s, the whitelist rows are left as they are (a percentage change rewrote them all, a
   * delete and an insert per value, for nothing).
   */
  async save(def: FlagDefinition, stored: FlagDefinition | null = null): Promise<void> {
    await this.uow.write(UPSERT_FLAG, flagValues(def));
    if (stored && stored.name === def.name && sameWhitelist(stored.whitelist, def.whitelist)) return;
    await this.uow.db.deleteFrom('flag_whitelist').where('flag', '=', def.name).execute();
    await this.insertWhitelist(def);
  }

  /**
   * Writes a flag this unit read as missing. If another unit created it since (PostgreSQL runs
   * units side by side), the insert fails with FlagRowExistsError instead of overwriting it.
   */
  async insert(def: FlagDefinition): Promise<void> {
    try {
      await this.uow.db.insertInto('feature_flags').values(flagRow(def)).execute();
    } catch (error) {
      if (isUniqueViolation(error)) throw new FlagRowExistsError(def.name, { cause: error });
      throw error;
    }
    await this.insertWhitelist(def);
  }

  private async insertWhitelist(def: FlagDefinition): Promise<void> {
    const rows: Array<{ flag: string; attribute: string; value: string; position: number }> = [];
    for (const entry of def.whitelist) {
      for (const value of entry.values) rows.push({ flag: def.name, attribute: entry.attribute, value, position: rows.length });
    }
    // In batches: a statement's bound parameters are limited (SQLite 32766, PostgreSQL 65535).
    for (let i = 0; i < rows.length; i += WHITELIST_BATCH) {
      await this.uow.db.insertInto('flag_whitelist').values(rows.slice(i, i + WHITELIST_BATCH)).execute();
    }
  }

  async delete(name: string): Promise<boolean> {
    const result = await this.uow.db.deleteFrom('feature_flags').where('name', '=', name).executeTakeFirst();
    return result.numDeletedRows > 0n;
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
    strategy: row.strategy as RolloutStrategy,
    percentage: row.percentage,
    stickiness: row.stickiness,
    whitelist,
    gradual,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
