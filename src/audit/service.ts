/**
 * Read side of the audit log for the API; writes happen inside each domain's transactions.
 * Entries about API tokens (their names, roles, creators, revocations) are for ADMIN only, as
 * `apiTokens` is: below ADMIN they are left out of the log as if they did not exist.
 * `before`/`after` are stored as the domains keep their state (times in epoch ms) and shown
 * with times as ISO-8601 strings, as the API shows them everywhere else: every numeric field
 * named `...At` or `openUntil`, at any depth (`createdAt`, `gradual.startAt`, `metrics.lastFailureAt`).
 */
import { roleAllows, type Role } from '../auth/roles.js';
import type { AuditEntry, AuditRepository } from './repository.js';

export class AuditService {
  constructor(private readonly repo: AuditRepository) {}

  /** The page `role` may see (null: no role, as for an in-process caller with no token). */
  async page(role: Role | null, first: number, afterId?: number, target?: string | null): Promise<{ entries: AuditEntry[]; hasMore: boolean }> {
    const page = await this.repo.page(first, afterId !== undefined && Number.isFinite(afterId) ? afterId : undefined, target, {
      includeTokens: roleAllows(role, 'ADMIN'),
    });
    return { ...page, entries: page.entries.map((e) => ({ ...e, before: withIsoTimes(e.before), after: withIsoTimes(e.after) })) };
  }
}

const TIME_KEY = /(?:At|^openUntil)$/;

/** A copy of a stored state with its epoch-ms time fields as ISO-8601 strings. */
export function withIsoTimes(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withIsoTimes);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).map(([key, v]) => [
      key,
      TIME_KEY.test(key) && typeof v === 'number' && Number.isFinite(v) ? new Date(v).toISOString() : withIsoTimes(v),
    ]),
  );
}
