-- Key/value facts about this database (for example whether the default flags were imported).
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

-- Every mutation writes one row here in the same transaction as its change.
CREATE TABLE audit_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,            -- epoch ms
  actor TEXT NOT NULL,
  action TEXT NOT NULL,           -- the mutation's name, e.g. setFlagPercentage
  target_type TEXT NOT NULL,      -- FEATURE_FLAG, CIRCUIT_BREAKER, MODULE, ...
  target TEXT NOT NULL,
  before_json TEXT,               -- state before (NULL when created)
  after_json TEXT                 -- state after (NULL when deleted)
) STRICT;
CREATE INDEX audit_log_target ON audit_log (target, id);

CREATE TABLE feature_flags (
  name TEXT PRIMARY KEY,
  description TEXT NOT NULL DEFAULT '',
  enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
  strategy TEXT NOT NULL CHECK (strategy IN ('ALL_ON', 'ALL_OFF', 'PERCENTAGE', 'WHITELIST', 'GRADUAL')),
  percentage REAL NOT NULL DEFAULT 0 CHECK (percentage >= 0 AND percentage <= 100),
  stickiness TEXT NOT NULL DEFAULT 'default',
  gradual_start_percentage REAL,
  gradual_target_percentage REAL,
  gradual_start_at INTEGER,
  gradual_duration_seconds INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE flag_whitelist (
  flag TEXT NOT NULL REFERENCES feature_flags (name) ON DELETE CASCADE,
  attribute TEXT NOT NULL,
  value TEXT NOT NULL,
  position INTEGER NOT NULL,
  PRIMARY KEY (flag, attribute, value)
) STRICT;
