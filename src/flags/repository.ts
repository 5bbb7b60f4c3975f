/** The feature flag store: one row per flag plus its whitelist rows, always written together. */
import type { Selectable } from 'kysely';
import type { FeatureFlagsTable } from '../db/schema.js';
import type { Dialect } from '../db/database.js';
import type { UnitOfWork } from '../db/unit-of-work.js';
import type { FlagDefinition, RolloutStrategy, WhitelistEntry } from './engine.js';
import { isUniqueViolation } from '../db/errors.js';
import { statement, type Statement } from '../db/statement.js';

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
const FLAG_EXISTS = statement('select "name" from "feature_flags" where "name" = ?');
const FLAG_COLUMNS = [
  'name', 'description', 'enabled', 'strategy', 'percentage', 'stickiness', 'gradual_start_percentage',
  'gradual_target_percentage', 'gradual_start_at', 'gradual_duration_seconds', 'created_at', 'updated_at',
] as const;
/** The columns `save` replaces: every one but the key and `created_at`. */
const UPDATED_COLUMNS = FLAG_COLUMNS.filter((c) => c !== 'name' && c !== 'created_at');
/** `save` without the stored flag: the row may or may not exist. */
const UPSERT_FLAG = statement(
  `insert into "feature_flags" (${FLAG_COLUMNS.map((c) => `"${c}"`).join(', ')}) values (${FLAG_COLUMNS.map(() => '?').join(', ')}) ` +
    `on conflict ("name") do update set ${UPDATED_COLUMNS.map((c) => `"${c}" = "excluded"."${c}"`).join(', ')}`,
);
/**
 * `save` with the stored flag, a row its unit read (and locked, on PostgreSQL), so it exists: an
 * UPDATE, not the upsert (SQLite's upsert tries the insert first: ~1.5 us more per change), of
 * the columns that differ from the stored row only (a percentage change writes the percentage
 * and `updated_at`, not ten columns: ~1.5 us less on SQLite). One statement per set of columns,
 * made on first use; the sets a running server meets are few (one per kind of change).
 */
const updateStatements = new Map<number, Statement>();

function updateStatementFor(columns: number): Statement {
  let update = updateStatements.get(columns);
  if (update === undefined) {
    const set = UPDATED_COLUMNS.filter((_, i) => (columns & (1 << i)) !== 0).map((c) => `"${c}" = ?`);
    update = statement(`update "feature_flags" set ${set.join(', ')} where "name" = ?`);
    updateStatements.set(columns, update);
  }
  return update;
}

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

/**
 * The UPDATE that turns the stored row of `stored` into `def`'s (same name) and its parameters:
 * the columns whose values differ, in UPDATED_COLUMNS order, then the name. `updated_at` is
 * among them whenever the flag changed; null when no column differs.
 */
function updateOf(def: FlagDefinition, stored: FlagDefinition): { update: Statement; values: unknown[] } | null {
  const row = flagRow(def);
  const before = flagRow(stored);
  const values: unknown[] = [];
  let columns = 0;
  UPDATED_COLUMNS.forEach((column, i) => {
    if (row[column] === before[column]) return;
    columns |= 1 << i;
    values.push(row[column]);
  });
  if (columns === 0) return null;
  values.push(def.name);
  return { update: updateStatementFor(columns), values };
}

/** The whitelist rows `insertWhitelist` writes for `def`, in position order. */
function whitelistRowsOf(def: FlagDefinition): WhitelistRow[] {
  const rows: WhitelistRow[] = [];
  for (const entry of def.whitelist) for (const value of entry.values) rows.push({ flag: def.name, attribute: entry.attribute, value });
  return rows;
}

/**
 * The flag as the store reads it back once `def` is written (`toDefinition` of the rows written),
 * frozen all the way down: the form `FlagRepository.stored` gives and the known-state map keeps.
 */
function storedForm(def: FlagDefinition): FlagDefinition {
  return storedForms.has(def) ? def : deepFreeze(toDefinition(flagRow(def), whitelistRowsOf(def)));
}

/** Every stored form made here (`storedForm`, or a row read and frozen). */
const storedForms = new WeakSet<FlagDefinition>();

function deepFreeze(def: FlagDefinition): FlagDefinition {
  storedForms.add(def);
  for (const entry of def.whitelist) {
    Object.freeze(entry.values);
    Object.freeze(entry);
  }
  Object.freeze(def.whitelist);
  if (def.gradual) Object.freeze(def.gradual);
  return Object.freeze(def);
}

/**
 * `JSON.stringify` of a stored form (frozen, so its JSON never changes), kept per object: the
 * audit row's `after` of one change is the `before` of the next change of the same flag.
 */
const storedJson = new WeakMap<FlagDefinition, string>();

/** The JSON of a flag the store gave (`get`, `stored`), serialised once per stored form. */
export function flagJson(def: FlagDefinition): string {
  let json = storedJson.get(def);
  if (json === undefined) {
    json = JSON.stringify(def);
    if (storedForms.has(def)) storedJson.set(def, json);
  }
  return json;
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
  /**
   * SQLite only (null on PostgreSQL, where other nodes write the table): each flag as the
   * database holds it for the unit that holds the connection, this unit's own uncommitted writes
   * included, so a change reads its flag from here instead of the database. It is exact because
   * (1) on SQLite one Helios process serves a database (src/db/lock.ts) and every write of a
   * flag row goes through this repository, which updates the map as it writes; (2) a unit holds
   * the one connection from BEGIN IMMEDIATE to COMMIT, so no other unit writes in between; (3) a
   * commit by any other connection (another process: a CLI, a hand edit) moves
   * `PRAGMA data_version`, read at every use inside the unit (after BEGIN IMMEDIATE, so no other
   * writer can commit until the unit ends): the map is then emptied and flags are read again;
   * (4) a unit or savepoint that rolls back removes the entries of every flag it wrote, which
   * are then read again. Only used inside a unit: outside one, another unit's uncommitted write
   * may be in the map, and reads wait for the connection and see the committed row.
   */
  private readonly known: Map<string, FlagDefinition> | null;
  private knownVersion: number | null = null;

  constructor(
    private readonly uow: UnitOfWork,
    options: FlagRepositoryOptions = {},
  ) {
    this.rowLocks = options.dialect === 'postgres';
    this.known = this.rowLocks ? null : new Map();
  }

  /**
   * `def` as the store holds it once written (frozen; see `storedForm`): what `get` will answer
   * for it. A change writes, audits and publishes this form, so memory, events and the audit
   * row are the database's row exactly.
   */
  stored(def: FlagDefinition): FlagDefinition {
    return storedForm(def);
  }

  /** The known-state map when it may be used now (inside a unit on SQLite), emptied if another connection committed. */
  private knownNow(): Map<string, FlagDefinition> | null {
    if (this.known === null || !this.uow.active) return null;
    const version = this.uow.dataVersion();
    if (version !== this.knownVersion) {
      this.known.clear();
      this.knownVersion = version;
    }
    return this.known;
  }

  /** Before a write of `name` in a unit: if the unit (or savepoint) rolls back, the flag is read again. */
  private forgetOnRollback(name: string): void {
    const known = this.known;
    if (known === null) return;
    this.uow.onRollback(() => known.delete(name));
  }

  /**
   * After a write of `name`: the map holds what was written (nothing, if the write was not in a
   * unit). No `data_version` read here: a commit by another connection leaves this entry right
   * (it was just written) and still empties the map at the next `get`.
   */
  private remember(name: string, def: FlagDefinition | null): void {
    const known = this.known;
    if (known === null) return;
    if (def === null || !this.uow.active) known.delete(name);
    else known.set(name, storedForm(def));
  }

  async all(): Promise<FlagDefinition[]> {
    return assemble(await this.withWhitelist().orderBy('feature_flags.name').orderBy('flag_whitelist.position').execute());
  }

  /** `lock`: the unit is about to write the flag; see FlagRepositoryOptions. */
  async get(name: string, { lock = false }: { lock?: boolean } = {}): Promise<FlagDefinition | null> {
    const known = this.knownNow();
    const hit = known?.get(name);
    if (hit !== undefined) return hit;
    if (lock && this.rowLocks && this.uow.active) {
      // The lock first, in a statement of its own: a locking read that waited for another unit
      // sees that unit's flag row, but a join in it would still show the whitelist as it was.
      // The read below starts after the lock is held, so it sees the flag whole.
      const locked = await this.uow.query(LOCK_FLAG, [name]);
      if (locked.length === 0) return null;
    }
    return this.rememberRead(name, known, await this.uow.query<WithWhitelistRow>(SELECT_FLAG, [name]));
  }

  /**
   * `get(name, { lock: true })` inside a synchronous unit on SQLite (`uow.runSync`): the flag as
   * the unit sees it, from the known-state map or read at once.
   */
  getSync(name: string): FlagDefinition | null {
    const known = this.knownNow();
    const hit = known?.get(name);
    if (hit !== undefined) return hit;
    return this.rememberRead(name, known, this.uow.querySync<WithWhitelistRow>(SELECT_FLAG, [name]));
  }

  /** The flag of SELECT_FLAG's rows, frozen and kept in the known-state map when there is one. */
  private rememberRead(name: string, known: Map<string, FlagDefinition> | null, rows: readonly WithWhitelistRow[]): FlagDefinition | null {
    const read = assemble(rows)[0] ?? null;
    if (read === null || known === null) return read;
    const frozen = deepFreeze(read);
    known.set(name, frozen);
    return frozen;
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
   * `stored`, when given, is the flag as this unit read it, so its row exists: it is updated
   * (and a row found missing fails the save), and when its whitelist is the same as `def`'s,
   * the whitelist rows are left as they are (a percentage change rewrote them all, a delete and
   * an insert per value, for nothing). Without it the row is inserted or replaced.
   */
  async save(def: FlagDefinition, stored: FlagDefinition | null = null): Promise<void> {
    this.forgetOnRollback(def.name);
    let changed: number;
    if (stored && stored.name === def.name) {
      const update = updateOf(def, stored);
      // Nothing to write (the row already holds `def`): its existence is still checked.
      changed = update ? await this.uow.write(update.update, update.values) : (await this.uow.query(FLAG_EXISTS, [def.name])).length;
    } else {
      changed = await this.uow.write(UPSERT_FLAG, flagValues(def));
    }
    this.checkWritten(def.name, changed);
    if (!(stored && stored.name === def.name && sameWhitelist(stored.whitelist, def.whitelist))) {
      await this.uow.db.deleteFrom('flag_whitelist').where('flag', '=', def.name).execute();
      await this.insertWhitelist(def);
    }
    this.remember(def.name, def);
  }

  /**
   * `save(def, stored)` inside a synchronous unit on SQLite (`uow.runSync`) for a change that
   * keeps the whitelist (a percentage, a switch, a strategy, a schedule): updates the row and
   * answers true. Answers false and writes nothing when the whitelist differs (or the names do),
   * whose rows `save` rewrites.
   */
  updateSync(def: FlagDefinition, stored: FlagDefinition): boolean {
    if (stored.name !== def.name || !sameWhitelist(stored.whitelist, def.whitelist)) return false;
    this.forgetOnRollback(def.name);
    const update = updateOf(def, stored);
    this.checkWritten(def.name, update ? this.uow.writeSync(update.update, update.values) : this.uow.querySync(FLAG_EXISTS, [def.name]).length);
    this.remember(def.name, def);
    return true;
  }

  /** After the write of a flag's row: exactly one row, or the row is missing (and read again). */
  private checkWritten(name: string, changed: number): void {
    if (changed === 1) return;
    this.known?.delete(name);
    throw new Error(`feature flag row "${name}" to update is missing`);
  }

  /**
   * Writes a flag this unit read as missing. If another unit created it since (PostgreSQL runs
   * units side by side), the insert fails with FlagRowExistsError instead of overwriting it.
   */
  async insert(def: FlagDefinition): Promise<void> {
    this.forgetOnRollback(def.name);
    try {
      await this.uow.db.insertInto('feature_flags').values(flagRow(def)).execute();
    } catch (error) {
      if (isUniqueViolation(error)) throw new FlagRowExistsError(def.name, { cause: error });
      throw error;
    }
    await this.insertWhitelist(def);
    this.remember(def.name, def);
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
    this.forgetOnRollback(name);
    const result = await this.uow.db.deleteFrom('feature_flags').where('name', '=', name).executeTakeFirst();
    this.remember(name, null);
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
