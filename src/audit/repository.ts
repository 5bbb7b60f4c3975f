/**
 * The audit log: who changed what, when, with the state before and after. Services call
 * `record` inside the unit of work of the change it describes (src/db/unit-of-work.ts), so the
 * log and the data can never disagree: it refuses to write outside a transaction.
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

  constructor(private readonly db: Db) {
    this.insert = db.prepare(
      `INSERT INTO audit_log (at, actor, action, target_type, target, before_json, after_json)
       VALUES (@at, @actor, @action, @targetType, @target, @before, @after)`,
    );
    // `@tokens` 0 leaves out entries about API tokens in SQL, before LIMIT, so a page of them
    // is never short (see AuditService).
    this.pageAll = db.prepare<[{ before: number; limit: number; tokens: number }], AuditRow>(
      `SELECT * FROM audit_log WHERE id < @before AND (@tokens = 1 OR target_type <> 'API_TOKEN')
       ORDER BY id DESC LIMIT @limit`,
    );
    this.pageByTarget = db.prepare<[{ target: string; before: number; limit: number; tokens: number }], AuditRow>(
      `SELECT * FROM audit_log WHERE target = @target AND id < @before AND (@tokens = 1 OR target_type <> 'API_TOKEN')
       ORDER BY id DESC LIMIT @limit`,
    );
  }

  record(entry: NewAuditEntry): void {
    if (!this.db.inTransaction) throw new Error(`audit entry "${entry.action}" written outside the change's unit of work`);
    this.insert.run({ ...entry, before: jsonOrNull(entry.before), after: jsonOrNull(entry.after) });
  }

  /**
   * Newest first, entries older than `beforeId`; fetches one extra row to tell if more exist.
   * `includeTokens: false` leaves out entries whose target is an API token.
   */
  page(
    limit: number,
    beforeId: number = Number.MAX_SAFE_INTEGER,
    target?: string | null,
    { includeTokens = true }: { includeTokens?: boolean } = {},
  ): { entries: AuditEntry[]; hasMore: boolean } {
    const query = { before: beforeId, limit: limit + 1, tokens: includeTokens ? 1 : 0 };
    const rows = target ? this.pageByTarget.all({ ...query, target }) : this.pageAll.all(query);
    return { entries: rows.slice(0, limit).map(toEntry), hasMore: rows.length > limit };
  }
}
