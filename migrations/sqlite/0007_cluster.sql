-- The cluster tables (see migrations/postgres/0007_cluster.sql). A SQLite Helios is one node:
-- it records itself here so clusterStatus answers the same shape, and appends no events.
CREATE TABLE cluster_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL,
  node TEXT NOT NULL,          -- the node whose change it is
  at INTEGER NOT NULL,          -- epoch ms
  payload TEXT NOT NULL        -- JSON
) STRICT;

-- Nodes heartbeat here; a node not seen for HELIOS_NODE_TIMEOUT_MS is dropped.
CREATE TABLE cluster_nodes (
  id TEXT PRIMARY KEY,
  address TEXT NOT NULL,
  version TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL,
  applied_revision INTEGER NOT NULL DEFAULT 0
) STRICT;

-- What each node runs and sees (a breaker's state on that node, a module's state and version
-- on that node), reported by the node itself.
CREATE TABLE node_states (
  kind TEXT NOT NULL CHECK (kind IN ('BREAKER', 'MODULE')),
  name TEXT NOT NULL,
  node TEXT NOT NULL,
  state TEXT NOT NULL,
  version TEXT,
  detail_json TEXT,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (kind, name, node)
) STRICT;

-- Per-node canary statistics of a rollout's current step; the scheduler sums them.
CREATE TABLE rollout_node_stats (
  rollout_id TEXT NOT NULL,
  step_index INTEGER NOT NULL,
  node TEXT NOT NULL,
  stats_json TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (rollout_id, step_index, node)
) STRICT;

-- Each node records its own breakers' transitions: which node's breaker moved (NULL: written
-- before clusters existed, by the one node there was).
ALTER TABLE breaker_transitions ADD COLUMN node TEXT;

-- Test runs run where they were asked for: the node running one (NULL: written before clusters,
-- by the one node there was). At start a node marks only its own unfinished runs INTERRUPTED.
ALTER TABLE test_runs ADD COLUMN node TEXT;
