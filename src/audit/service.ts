/**
 * Read side of the audit log for the API; writes happen inside each domain's transactions.
 * Entries about API tokens (their names, roles, creators, revocations) are for ADMIN only, as
 * `apiTokens` is: below ADMIN they are left out of the log as if they did not exist.
 */
import { roleAllows, type Role } from '../auth/roles.js';
import type { AuditEntry, AuditRepository } from './repository.js';

export class AuditService {
  constructor(private readonly repo: AuditRepository) {}

  /** The page `role` may see (null: no role, as for an in-process caller with no token). */
  page(role: Role | null, first: number, afterId?: number, target?: string | null): { entries: AuditEntry[]; hasMore: boolean } {
    return this.repo.page(first, afterId !== undefined && Number.isFinite(afterId) ? afterId : undefined, target, {
      includeTokens: roleAllows(role, 'ADMIN'),
    });
  }
}
