-- The audit log's id without AUTOINCREMENT. AUTOINCREMENT keeps a row in sqlite_sequence that
-- every insert rewrites, one more page per unit of work (about 10 us, 17-21% of a bare
-- upsert-and-audit transaction, on the 2-core VM of bench/RESULTS.md). Without it an id is one
-- more than the largest; audit rows are never deleted, so ids still only grow and the
-- `beforeId` cursor of auditLog is unchanged. SQLite cannot drop AUTOINCREMENT in place: the
-- table is rebuilt, rows and ids kept (this runs in the migration's one transaction).
CREATE TABLE audit_log_rowid (
  id INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,            -- epoch ms
  actor TEXT NOT NULL,
  action TEXT NOT NULL,           -- the mutation's name, e.g. setFlagPercentage
  target_type TEXT NOT NULL,      -- FEATURE_FLAG, CIRCUIT_BREAKER, MODULE, ...
  target TEXT NOT NULL,
  before_json TEXT,               -- state before (NULL when created)
  after_json TEXT                 -- state after (NULL when deleted)
) STRICT;
INSERT INTO audit_log_rowid (id, at, actor, action, target_type, target, before_json, after_json)
  SELECT id, at, actor, action, target_type, target, before_json, after_json FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_rowid RENAME TO audit_log;
CREATE INDEX audit_log_target ON audit_log (target, id);
DELETE FROM sqlite_sequence WHERE name = 'audit_log';
