/**
 * The tables as Kysely sees them: one description for both dialects. Columns are the
 * migrations' (`migrations/sqlite`, `migrations/postgres`); 0/1 flags are integers on both,
 * epoch milliseconds are numbers (PostgreSQL's BIGINT is parsed as a number, see database.ts).
 */
import type { ColumnType, Generated } from 'kysely';

export interface MetaTable {
  key: string;
  value: string;
}

export interface AuditLogTable {
  id: Generated<number>;
  at: number;
  actor: string;
  action: string;
  target_type: string;
  target: string;
  before_json: string | null;
  after_json: string | null;
}

export interface FeatureFlagsTable {
  name: string;
  description: string;
  enabled: number;
  strategy: string;
  percentage: number;
  stickiness: string;
  gradual_start_percentage: number | null;
  gradual_target_percentage: number | null;
  gradual_start_at: number | null;
  gradual_duration_seconds: number | null;
  created_at: number;
  updated_at: number;
}

export interface FlagWhitelistTable {
  flag: string;
  attribute: string;
  value: string;
  position: number;
}

export interface CircuitBreakersTable {
  name: string;
  config_json: string;
  state: string;
  state_changed_at: number;
  open_until: number | null;
  counters_json: string;
  created_at: number;
  updated_at: number;
}

export interface BreakerTransitionsTable {
  id: Generated<number>;
  breaker: string;
  from_state: string;
  to_state: string;
  reason: string;
  at: number;
  open_until: number | null;
  metrics_json: string;
  /** The node whose breaker moved (null: written before clusters, by this node). */
  node: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface ModulesTable {
  name: string;
  module_path: string;
  version: string;
  hot_reloadable: number;
  isolation: string;
  module_type: string | null;
  config_json: string;
  desired_state: string;
  state: string;
  last_error: string | null;
  loaded_at: number | null;
  previous_version: string | null;
  previous_module_path: string | null;
  created_at: number;
  updated_at: number;
}

export interface ModuleDependenciesTable {
  module: string;
  dependency: string;
  position: number;
}

export interface TestRunsTable {
  id: string;
  seq: number;
  module_name: string;
  module_version: string;
  module_path: string;
  module_type: string;
  status: string;
  trigger: string;
  actor: string;
  started_at: number;
  finished_at: number | null;
  total: number;
  passed: number;
  failed: number;
  timed_out: number;
  skipped: number;
  /** The node that ran it (null: written before clusters, by the one node there was). */
  node: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface TestResultsTable {
  run_id: string;
  position: number;
  name: string;
  required: number;
  source: string;
  status: string;
  duration_ms: number;
  error: string | null;
}

export interface ApiTokensTable {
  name: string;
  role: string;
  token_hash: string;
  created_at: number;
  created_by: string;
  last_used_at: number | null;
  revoked_at: number | null;
}

export interface RolloutsTable {
  id: string;
  seq: number;
  module: string;
  from_version: string;
  to_version: string;
  to_module_path: string;
  flag: string;
  status: string;
  steps_json: string;
  step_index: number;
  percentage: number;
  step_interval_seconds: number | null;
  gates_json: string;
  auto_promote: number;
  test_with: string | null;
  test_run_id: string | null;
  step_started_at: number | null;
  next_step_at: number | null;
  paused_at: number | null;
  remaining_ms: number | null;
  resume_status: string | null;
  awaiting_promotion: number;
  actor: string;
  started_at: number;
  updated_at: number;
  finished_at: number | null;
  abort_reason: string | null;
  abort_json: string | null;
}

export interface RolloutEventsTable {
  id: Generated<number>;
  rollout_id: string;
  type: string;
  at: number;
  percentage: number;
  detail: string | null;
}

export interface SchemaMigrationsTable {
  version: number;
  name: string;
  applied_at: string;
}

export interface ClusterEventsTable {
  id: Generated<number>;
  topic: string;
  node: string;
  at: number;
  payload: string;
}

export interface ClusterNodesTable {
  id: string;
  address: string;
  version: string;
  started_at: number;
  last_seen_at: number;
  applied_revision: Generated<number>;
}

export interface NodeStatesTable {
  kind: 'BREAKER' | 'MODULE';
  name: string;
  node: string;
  state: string;
  version: string | null;
  detail_json: string | null;
  updated_at: number;
}

export interface RolloutNodeStatsTable {
  rollout_id: string;
  step_index: number;
  node: string;
  stats_json: string;
  updated_at: number;
}

export interface Schema {
  cluster_events: ClusterEventsTable;
  cluster_nodes: ClusterNodesTable;
  node_states: NodeStatesTable;
  rollout_node_stats: RolloutNodeStatsTable;
  meta: MetaTable;
  audit_log: AuditLogTable;
  feature_flags: FeatureFlagsTable;
  flag_whitelist: FlagWhitelistTable;
  circuit_breakers: CircuitBreakersTable;
  breaker_transitions: BreakerTransitionsTable;
  modules: ModulesTable;
  module_dependencies: ModuleDependenciesTable;
  test_runs: TestRunsTable;
  test_results: TestResultsTable;
  api_tokens: ApiTokensTable;
  rollouts: RolloutsTable;
  rollout_events: RolloutEventsTable;
  schema_migrations: SchemaMigrationsTable;
}
