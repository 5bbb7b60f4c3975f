/** SQL for modules: the registration, the desired and current state, and the dependency list. */
import type { Selectable } from 'kysely';
import type { ModulesTable } from '../db/schema.js';
import type { UnitOfWork } from '../db/unit-of-work.js';
import type { ModuleType } from './contract.js';
import type { ModuleIsolation } from './runtime/index.js';
import type { DesiredModuleState, ModuleState } from './states.js';
import { isUniqueViolation } from '../db/errors.js';

export interface ModuleRecord {
  name: string;
  /** Relative to the modules root, file form (`ml/neural_predictor_v2.js`). */
  modulePath: string;
  version: string;
  dependencies: string[];
  hotReloadable: boolean;
  isolation: ModuleIsolation;
  moduleType: ModuleType | null;
  config: Record<string, unknown>;
  desiredState: DesiredModuleState;
  state: ModuleState;
  lastError: string | null;
  loadedAt: number | null;
  previousVersion: string | null;
  previousModulePath: string | null;
  createdAt: number;
  updatedAt: number;
}

/** A row as the store reads it: the table's columns (src/db/schema.ts). */
type ModuleRow = Selectable<ModulesTable>;

/** A module row that already exists (another node registered the same name first). */
export class ModuleRowExistsError extends Error {
  override name = 'ModuleRowExistsError';
  constructor(readonly moduleName: string, options?: { cause?: unknown }) {
    super(`module row "${moduleName}" already exists`, options);
  }
}


const toRecord = (row: ModuleRow, dependencies: string[]): ModuleRecord => ({
  name: row.name,
  modulePath: row.module_path,
  version: row.version,
  dependencies,
  hotReloadable: row.hot_reloadable === 1,
  isolation: row.isolation as ModuleIsolation,
  moduleType: row.module_type as ModuleType | null,
  config: JSON.parse(row.config_json) as Record<string, unknown>,
  desiredState: row.desired_state as DesiredModuleState,
  state: row.state as ModuleState,
  lastError: row.last_error,
  loadedAt: row.loaded_at,
  previousVersion: row.previous_version,
  previousModulePath: row.previous_module_path,
  createdAt: row.created_at,
  updatedAt: row.updated_at,
});

const toRow = (record: ModuleRecord): ModuleRow => ({
  name: record.name,
  module_path: record.modulePath,
  version: record.version,
  hot_reloadable: record.hotReloadable ? 1 : 0,
  isolation: record.isolation,
  module_type: record.moduleType,
  config_json: JSON.stringify(record.config),
  desired_state: record.desiredState,
  state: record.state,
  last_error: record.lastError,
  loaded_at: record.loadedAt,
  previous_version: record.previousVersion,
  previous_module_path: record.previousModulePath,
  created_at: record.createdAt,
  updated_at: record.updatedAt,
});

export class ModuleRepository {
  constructor(private readonly uow: UnitOfWork) {}

  /** Every registration, sorted by name, with its dependencies in declared order. */
  async all(): Promise<ModuleRecord[]> {
    const depRows = await this.uow.db
      .selectFrom('module_dependencies')
      .select(['module', 'dependency'])
      .orderBy('module')
      .orderBy('position')
      .execute();
    const deps = new Map<string, string[]>();
    for (const row of depRows) deps.set(row.module, [...(deps.get(row.module) ?? []), row.dependency]);
    const rows = await this.uow.db.selectFrom('modules').selectAll().orderBy('name').execute();
    return rows.map((row) => toRecord(row, deps.get(row.name) ?? []));
  }

  /** One registration with its dependencies in declared order; null when there is none. */
  async get(name: string): Promise<ModuleRecord | null> {
    const row = await this.uow.db.selectFrom('modules').selectAll().where('name', '=', name).executeTakeFirst();
    if (!row) return null;
    const depRows = await this.uow.db
      .selectFrom('module_dependencies')
      .select('dependency')
      .where('module', '=', name)
      .orderBy('position')
      .execute();
    return toRecord(row, depRows.map((r) => r.dependency));
  }

  /** A new registration and its dependency rows; ModuleRowExistsError when the name is taken. */
  async insert(record: ModuleRecord): Promise<void> {
    try {
      await this.uow.db.insertInto('modules').values(toRow(record)).execute();
    } catch (error) {
      if (isUniqueViolation(error)) throw new ModuleRowExistsError(record.name, { cause: error });
      throw error;
    }
    await this.replaceDependencies(record);
  }

  /** Writes the module row; `withDependencies` also replaces its dependency rows. */
  async save(record: ModuleRecord, withDependencies = false): Promise<void> {
    const { name: _name, created_at: _createdAt, ...changes } = toRow(record);
    await this.uow.db
      .insertInto('modules')
      .values(toRow(record))
      .onConflict((oc) => oc.column('name').doUpdateSet(changes))
      .execute();
    if (withDependencies) await this.replaceDependencies(record);
  }

  /** Removes the module row (its dependency rows go with it: ON DELETE CASCADE). */
  async delete(name: string): Promise<void> {
    await this.uow.db.deleteFrom('modules').where('name', '=', name).execute();
  }

  private async replaceDependencies(record: ModuleRecord): Promise<void> {
    await this.uow.db.deleteFrom('module_dependencies').where('module', '=', record.name).execute();
    if (record.dependencies.length === 0) return;
    await this.uow.db
      .insertInto('module_dependencies')
      .values(record.dependencies.map((dependency, position) => ({ module: record.name, dependency, position })))
      .execute();
  }
}
