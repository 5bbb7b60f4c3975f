-- Registered modules and their desired state, so a restart converges back to it.
CREATE TABLE modules (
  name TEXT PRIMARY KEY,
  module_path TEXT NOT NULL,            -- relative to HELIOS_MODULES_DIR, file form
  version TEXT NOT NULL,                -- the version that is (or will be) active
  hot_reloadable BIGINT NOT NULL CHECK (hot_reloadable IN (0, 1)),
  isolation TEXT NOT NULL CHECK (isolation IN ('WORKER', 'INLINE')),
  module_type TEXT CHECK (module_type IN ('GENERIC', 'TRADING', 'ML', 'DATA_PIPELINE')),
  config_json TEXT NOT NULL DEFAULT '{}',
  desired_state TEXT NOT NULL CHECK (desired_state IN ('UNLOADED', 'LOADED', 'ACTIVE')),
  state TEXT NOT NULL,
  last_error TEXT,
  loaded_at BIGINT,
  previous_version TEXT,
  previous_module_path TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);

-- A dependency may name a module registered later; loading resolves it.
CREATE TABLE module_dependencies (
  module TEXT NOT NULL REFERENCES modules (name) ON DELETE CASCADE,
  dependency TEXT NOT NULL,
  position BIGINT NOT NULL,
  PRIMARY KEY (module, dependency)
);
CREATE INDEX module_dependencies_dependency ON module_dependencies (dependency);
