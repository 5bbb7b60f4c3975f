/** SQL for modules: the registration, the desired and current state, and the dependency list. */
import type { Db } from '../db/connection.js';
import type { ModuleType } from './contract.js';
import type { ModuleIsolation } from './runtime/index.js';
import type { DesiredModuleState, ModuleState } from './states.js';

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

interface ModuleRow {
  name: string;
  module_path: string;
  version: string;
  hot_reloadable: 0 | 1;
  isolation: ModuleIsolation;
  module_type: ModuleType | null;
  config_json: string;
  desired_state: DesiredModuleState;
  state: ModuleState;
  last_error: string | null;
  loaded_at: number | null;
  previous_version: string | null;
  previous_module_path: string | null;
  created_at: number;
  updated_at: number;
}

export class ModuleRepository {
  private readonly selectAll;
  private readonly selectDeps;
  private readonly upsert;
  private readonly deleteDeps;
  private readonly deleteModule;
  private readonly insertDep;

  constructor(private readonly db: Db) {
    this.selectAll = db.prepare<[], ModuleRow>('SELECT * FROM modules ORDER BY name');
    this.selectDeps = db.prepare<[], { module: string; dependency: string }>(
      'SELECT module, dependency FROM module_dependencies ORDER BY module, position',
    );
    this.upsert = db.prepare(`
      INSERT INTO modules (name, module_path, version, hot_reloadable, isolation, module_type, config_json,
        desired_state, state, last_error, loaded_at, previous_version, previous_module_path, created_at, updated_at)
      VALUES (@name, @modulePath, @version, @hotReloadable, @isolation, @moduleType, @config,
        @desiredState, @state, @lastError, @loadedAt, @previousVersion, @previousModulePath, @createdAt, @updatedAt)
      ON CONFLICT (name) DO UPDATE SET
        module_path = excluded.module_path, version = excluded.version,
        hot_reloadable = excluded.hot_reloadable, isolation = excluded.isolation,
        module_type = excluded.module_type, config_json = excluded.config_json,
        desired_state = excluded.desired_state, state = excluded.state, last_error = excluded.last_error,
        loaded_at = excluded.loaded_at, previous_version = excluded.previous_version,
        previous_module_path = excluded.previous_module_path, updated_at = excluded.updated_at`);
    this.deleteDeps = db.prepare('DELETE FROM module_dependencies WHERE module = ?');
    this.deleteModule = db.prepare('DELETE FROM modules WHERE name = ?');
    this.insertDep = db.prepare('INSERT INTO module_dependencies (module, dependency, position) VALUES (?, ?, ?)');
  }

  all(): ModuleRecord[] {
    const deps = new Map<string, string[]>();
    for (const row of this.selectDeps.all()) deps.set(row.module, [...(deps.get(row.module) ?? []), row.dependency]);
    return this.selectAll.all().map((row) => ({
      name: row.name,
      modulePath: row.module_path,
      version: row.version,
      dependencies: deps.get(row.name) ?? [],
      hotReloadable: row.hot_reloadable === 1,
      isolation: row.isolation,
      moduleType: row.module_type,
      config: JSON.parse(row.config_json) as Record<string, unknown>,
      desiredState: row.desired_state,
      state: row.state,
      lastError: row.last_error,
      loadedAt: row.loaded_at,
      previousVersion: row.previous_version,
      previousModulePath: row.previous_module_path,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
    }));
  }

  /** Writes the module row; `withDependencies` also replaces its dependency rows. */
  save(record: ModuleRecord, withDependencies = false): void {
    this.upsert.run({
      ...record,
      hotReloadable: record.hotReloadable ? 1 : 0,
      config: JSON.stringify(record.config),
    });
    if (withDependencies) {
      this.deleteDeps.run(record.name);
      record.dependencies.forEach((dep, i) => this.insertDep.run(record.name, dep, i));
    }
  }

  /** Removes the module row (its dependency rows go with it: ON DELETE CASCADE). */
  delete(name: string): void {
    this.deleteModule.run(name);
  }

}
