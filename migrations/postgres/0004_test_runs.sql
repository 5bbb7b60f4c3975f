-- Module test runs and their per-test results.
CREATE TABLE test_runs (
  id TEXT PRIMARY KEY,
  seq BIGINT NOT NULL UNIQUE,        -- creation order, for newest-first pagination
  module_name TEXT NOT NULL,
  module_version TEXT NOT NULL,
  module_path TEXT NOT NULL,
  module_type TEXT NOT NULL CHECK (module_type IN ('GENERIC', 'TRADING', 'ML', 'DATA_PIPELINE')),
  status TEXT NOT NULL CHECK (status IN ('RUNNING', 'PASSED', 'FAILED', 'CANCELLED', 'INTERRUPTED')),
  trigger TEXT NOT NULL,              -- testModule or swapModule
  actor TEXT NOT NULL,
  started_at BIGINT NOT NULL,
  finished_at BIGINT,
  total BIGINT NOT NULL DEFAULT 0,
  passed BIGINT NOT NULL DEFAULT 0,
  failed BIGINT NOT NULL DEFAULT 0,
  timed_out BIGINT NOT NULL DEFAULT 0,
  skipped BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX test_runs_module ON test_runs (module_name, seq);

CREATE TABLE test_results (
  run_id TEXT NOT NULL REFERENCES test_runs (id) ON DELETE CASCADE,
  position BIGINT NOT NULL,
  name TEXT NOT NULL,
  required BIGINT NOT NULL CHECK (required IN (0, 1)),
  source TEXT NOT NULL CHECK (source IN ('BUILT_IN', 'MODULE')),
  status TEXT NOT NULL CHECK (status IN ('PASSED', 'FAILED', 'TIMED_OUT', 'SKIPPED')),
  duration_ms DOUBLE PRECISION NOT NULL,
  error TEXT,
  PRIMARY KEY (run_id, position)
);
