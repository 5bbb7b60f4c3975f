-- SQLite's audit log dropped AUTOINCREMENT (see migrations/sqlite/0009_audit_log_rowid.sql);
-- PostgreSQL's identity column has no such cost. Kept so both dialects have the same versions.
SELECT 1;
