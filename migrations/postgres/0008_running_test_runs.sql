-- The runs still RUNNING, by node: the cluster leader looks for those of nodes that left on
-- every heartbeat (src/testing/service.ts, interruptOrphans), and a node at start for its own.
-- Partial, so it holds only the few unfinished runs, not the whole history.
CREATE INDEX test_runs_running ON test_runs (node) WHERE status = 'RUNNING';
