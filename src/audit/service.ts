/** Read side of the audit log for the API; writes happen inside each domain's transactions. */
import type { AuditEntry, AuditRepository } from './repository.js';

export class AuditService {
  constructor(private readonly repo: AuditRepository) {}

  page(first: number, afterId?: number, target?: string | null): { entries: AuditEntry[]; hasMore: boolean } {
    return this.repo.page(first, afterId !== undefined && Number.isFinite(afterId) ? afterId : undefined, target);
  }
}
