-- Rollouts: a new module version goes live step by step behind a split flag. One row per
-- rollout (the current step, its deadline and the time left when paused, so a restart resumes
-- it), and its history of events in order.
CREATE TABLE rollouts (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL UNIQUE,          -- creation order, for newest-first pagination
  module TEXT NOT NULL,
  from_version TEXT NOT NULL,
  to_version TEXT NOT NULL,
  to_module_path TEXT NOT NULL,         -- relative to HELIOS_MODULES_DIR
  flag TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('TESTING', 'RUNNING', 'HOLDING', 'PAUSED', 'PROMOTED', 'ABORTED')),
  steps_json TEXT NOT NULL,             -- percentages, strictly increasing, ending at 100
  step_index INTEGER NOT NULL CHECK (step_index >= 0),
  percentage REAL NOT NULL CHECK (percentage >= 0 AND percentage <= 100),
  step_interval_seconds INTEGER CHECK (step_interval_seconds IS NULL OR step_interval_seconds >= 1),  -- NULL: manual steps
  gates_json TEXT NOT NULL,
  auto_promote INTEGER NOT NULL CHECK (auto_promote IN (0, 1)),
  test_with TEXT,
  test_run_id TEXT,
  step_started_at INTEGER,              -- epoch ms
  next_step_at INTEGER,                 -- epoch ms; NULL while PAUSED, manual or finished
  paused_at INTEGER,
  remaining_ms INTEGER,                 -- time left in the interval when paused
  resume_status TEXT CHECK (resume_status IS NULL OR resume_status IN ('RUNNING', 'HOLDING')),
  awaiting_promotion INTEGER NOT NULL DEFAULT 0 CHECK (awaiting_promotion IN (0, 1)),
  actor TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  finished_at INTEGER,
  abort_reason TEXT,
  abort_json TEXT                       -- cause, limit, value and the figures judged
) STRICT;
CREATE INDEX rollouts_module ON rollouts (module, seq);
-- At most one unfinished rollout per module, and a flag splits one rollout at a time.
CREATE UNIQUE INDEX rollouts_active_module ON rollouts (module) WHERE status NOT IN ('PROMOTED', 'ABORTED');
CREATE UNIQUE INDEX rollouts_active_flag ON rollouts (flag) WHERE status NOT IN ('PROMOTED', 'ABORTED');

CREATE TABLE rollout_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
  type TEXT NOT NULL CHECK (type IN ('STARTED', 'STEP', 'HOLDING', 'PAUSED', 'RESUMED', 'ABORTED', 'PROMOTED')),
  at INTEGER NOT NULL,
  percentage REAL NOT NULL,
  detail TEXT
) STRICT;
CREATE INDEX rollout_events_rollout ON rollout_events (rollout_id, id);
