/**
 * The audit log: who changed what, when, with the state before and after. Services call
 * `record` inside the unit of work of the change it describes (src/db/unit-of-work.ts), so the
 * log and the data can never disagree: it refuses to write outside a transaction.
 */
import { statement } from '../db/statement.js';
import type { UnitOfWork } from '../db/unit-of-work.js';

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

/** Every change writes one (src/db/statement.ts). */
const INSERT_ENTRY = statement(
  'insert into "audit_log" ("at", "actor", "action", "target_type", "target", "before_json", "after_json") values (?, ?, ?, ?, ?, ?, ?)',
);

const jsonOrNull = (value: unknown) => (value === null || value === undefined ? null : JSON.stringify(value));

export class AuditRepository {
  constructor(private readonly uow: UnitOfWork) {}

  async record(entry: NewAuditEntry): Promise<void> {
    await this.recordJson(entry, jsonOrNull(entry.before), jsonOrNull(entry.after));
  }

  /**
   * `record` with the states already serialised (`JSON.stringify` of `before` and `after`, or
   * null for none): a domain that keeps the JSON of its stored state gives it instead of
   * serialising the same state again (the flag store, src/flags/repository.ts).
   */
  async recordJson(entry: Omit<NewAuditEntry, 'before' | 'after'>, beforeJson: string | null, afterJson: string | null): Promise<void> {
    await this.uow.write(INSERT_ENTRY, this.entryValues(entry, beforeJson, afterJson));
  }

  /** `recordJson` inside a synchronous unit on SQLite (`uow.runSync`). */
  recordJsonSync(entry: Omit<NewAuditEntry, 'before' | 'after'>, beforeJson: string | null, afterJson: string | null): void {
    this.uow.writeSync(INSERT_ENTRY, this.entryValues(entry, beforeJson, afterJson));
  }

  private entryValues(entry: Omit<NewAuditEntry, 'before' | 'after'>, beforeJson: string | null, afterJson: string | null): unknown[] {
    if (!this.uow.active) throw new Error(`audit entry "${entry.action}" written outside the change's unit of work`);
    return [entry.at, entry.actor, entry.action, entry.targetType, entry.target, beforeJson, afterJson];
  }

  /**
   * Newest first, entries older than `beforeId`; fetches one extra row to tell if more exist.
   * `includeTokens: false` leaves out entries whose target is an API token, in SQL before
   * LIMIT, so a page of them is never short (see AuditService).
   */
  async page(
    limit: number,
    beforeId: number = Number.MAX_SAFE_INTEGER,
    target?: string | null,
    { includeTokens = true }: { includeTokens?: boolean } = {},
  ): Promise<{ entries: AuditEntry[]; hasMore: boolean }> {
    let query = this.uow.db.selectFrom('audit_log').selectAll().where('id', '<', beforeId);
    if (target) query = query.where('target', '=', target);
    if (!includeTokens) query = query.where('target_type', '<>', 'API_TOKEN');
    const rows = (await query.orderBy('id', 'desc').limit(limit + 1).execute()) as AuditRow[];
    return { entries: rows.slice(0, limit).map(toEntry), hasMore: rows.length > limit };
  }
}
