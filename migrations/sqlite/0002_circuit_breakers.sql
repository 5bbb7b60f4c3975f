-- Circuit breakers: config, current state with its deadline, and lifetime counters.
CREATE TABLE circuit_breakers (
  name TEXT PRIMARY KEY,
  config_json TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('CLOSED', 'OPEN', 'HALF_OPEN', 'FORCED_OPEN', 'DISABLED')),
  state_changed_at INTEGER NOT NULL,   -- epoch ms
  open_until INTEGER,                  -- epoch ms, when OPEN
  counters_json TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;

-- Every transition, in order per breaker.
CREATE TABLE breaker_transitions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  breaker TEXT NOT NULL REFERENCES circuit_breakers (name) ON DELETE CASCADE,
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  reason TEXT NOT NULL,
  at INTEGER NOT NULL,
  open_until INTEGER,
  metrics_json TEXT NOT NULL
) STRICT;
CREATE INDEX breaker_transitions_breaker ON breaker_transitions (breaker, id);
