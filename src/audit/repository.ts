/**
 * The audit log: who changed what, when, with the state before and after. Services call
 * `record` inside the same transaction as the change it describes, so the log and the data
 * can never disagree.
 */
import type { Db } from '../db/connection.js';

export const AUDIT_TARGET_TYPES = ['FEATURE_FLAG', 'CIRCUIT_BREAKER', 'MODULE', 'TEST_RUN', 'API_TOKEN', 'ROLLOUT'] as const;
export type AuditTargetType = (typeof AUDIT_TARGET_TYPES)[number];

export interface AuditEntry {
  id: number;
  at: number;
  actor: string;
  action: string;
  targetType: AuditTargetType;
  target: string;
  before: unknown;
  after: unknown;
}

export interface NewAuditEntry {
  at: number;
  actor: string;
  action: string;
  targetType: AuditTargetType;
  target: string;
  before: unknown;
  after: unknown;
}

interface AuditRow {
  id: number;
  at: number;
  actor: string;
  action: string;
  target_type: AuditTargetType;
  target: string;
  before_json: string | null;
  after_json: string | null;
}

const toEntry = (row: AuditRow): AuditEntry => ({
  id: row.id,
  at: row.at,
  actor: row.actor,
  action: row.action,
  targetType: row.target_type,
  target: row.target,
  before: row.before_json === null ? null : (JSON.parse(row.before_json) as unknown),
  after: row.after_json === null ? null : (JSON.parse(row.after_json) as unknown),
});

const jsonOrNull = (value: unknown) => (value === null || value === undefined ? null : JSON.stringify(value));

export class AuditRepository {
  private readonly insert;
  private readonly pageAll;
  private readonly pageByTarget;

  constructor(db: Db) {
    this.insert = db.prepare(
      `INSERT INTO audit_log (at, actor, action, target_type, target, before_json, after_json)
       VALUES (@at, @actor, @action, @targetType, @target, @before, @after)`,
    );
    this.pageAll = db.prepare<[number, number], AuditRow>(
      'SELECT * FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?',
    );
    this.pageByTarget = db.prepare<[string, number, number], AuditRow>(
      'SELECT * FROM audit_log WHERE target = ? AND id < ? ORDER BY id DESC LIMIT ?',
    );
  }

  record(entry: NewAuditEntry): void {
    this.insert.run({ ...entry, before: jsonOrNull(entry.before), after: jsonOrNull(entry.after) });
  }

  /** Newest first, entries older than `beforeId`; fetches one extra row to tell if more exist. */
  page(limit: number, beforeId: number = Number.MAX_SAFE_INTEGER, target?: string | null): { entries: AuditEntry[]; hasMore: boolean } {
    const rows = target
      ? this.pageByTarget.all(target, beforeId, limit + 1)
      : this.pageAll.all(beforeId, limit + 1);
    return { entries: rows.slice(0, limit).map(toEntry), hasMore: rows.length > limit };
  }
}
