/**
 * Audit entries about API tokens (created, revoked: names, roles, creators) are for ADMIN only,
 * over HTTP, for every role below it and the anonymous caller on loopback; filtered in SQL, so
 * pages stay full and cursors and `hasNextPage` stay right.
 */
import type { ExecutionResult } from 'graphql';
import { describe, expect, it } from 'vitest';
import {
  AuditLogDocument,
  CreateApiTokenDocument,
  RevokeApiTokenDocument,
  SetFlagPercentageDocument,
  type AuditLogQuery,
} from '../gql/graphql.js';
import { serverPool } from '../support/pool.js';
import { TEST_ADMIN_TOKEN, type TestServer } from '../support/server.js';

const pool = serverPool();
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

type Entry = AuditLogQuery['auditLog']['edges'][number]['node'];

/** Every entry the caller sees, page by page (`first` at a time), checking each page is full. */
async function readAll(h: TestServer, headers: Record<string, string>, first: number, target?: string): Promise<Entry[]> {
  const entries: Entry[] = [];
  let after: string | null = null;
  for (let page = 0; page < 100; page++) {
    const result: ExecutionResult<AuditLogQuery> = await h.request(AuditLogDocument, { first, ...(after ? { after } : {}), ...(target ? { target } : {}) }, headers);
    expect(result.errors).toBeUndefined();
    const { edges, pageInfo } = result.data!.auditLog;
    entries.push(...edges.map((e) => e.node));
    if (!pageInfo.hasNextPage) {
      expect(edges.length).toBeLessThanOrEqual(first);
      return entries;
    }
    expect(edges).toHaveLength(first); // never short: the filter is in SQL, before LIMIT
    after = pageInfo.endCursor;
  }
  throw new Error('auditLog never ended');
}

describe('auditLog and API tokens', () => {
  it('shows entries about tokens to ADMIN only; other callers get full pages without them', async () => {
    const h = await pool.start();
    const viewer = (await h.query(CreateApiTokenDocument, { name: 'dashboard', role: 'VIEWER' })).createApiToken.token!;
    const operator = (await h.query(CreateApiTokenDocument, { name: 'ops', role: 'OPERATOR' })).createApiToken.token!;
    // Token entries between ordinary ones, so that a page cut around them would show.
    for (let i = 0; i < 4; i++) {
      expect((await h.request(SetFlagPercentageDocument, { name: 'audited', percentage: i * 10 }, bearer(operator))).data!.setFlagPercentage.errors).toEqual([]);
      await h.query(CreateApiTokenDocument, { name: `temp_${i}`, role: 'ADMIN' });
      if (i % 2 === 0) await h.query(RevokeApiTokenDocument, { name: `temp_${i}` });
    }
    await h.query(SetFlagPercentageDocument, { name: 'audited', percentage: 99 });

    const admin = await readAll(h, bearer(TEST_ADMIN_TOKEN), 500);
    const aboutTokens = admin.filter((e) => e.targetType === 'API_TOKEN');
    expect(aboutTokens.map((e) => [e.action, e.target])).toEqual([
      ['createApiToken', 'temp_3'], ['revokeApiToken', 'temp_2'], ['createApiToken', 'temp_2'], ['createApiToken', 'temp_1'],
      ['revokeApiToken', 'temp_0'], ['createApiToken', 'temp_0'], ['createApiToken', 'ops'], ['createApiToken', 'dashboard'],
    ]);
    expect(aboutTokens.at(-1)!.after).toMatchObject({ name: 'dashboard', role: 'VIEWER', createdBy: 'bootstrap-admin' });
    const visible = admin.filter((e) => e.targetType !== 'API_TOKEN');
    expect(visible.filter((e) => e.action === 'setFlagPercentage')).toHaveLength(5);
    // Paging the admin's view in small pages gives the same log.
    expect(await readAll(h, bearer(TEST_ADMIN_TOKEN), 3)).toEqual(admin);

    const callers: Array<[string, Record<string, string>]> = [
      ['anonymous (loopback)', {}],
      ['VIEWER', bearer(viewer)],
      ['OPERATOR', bearer(operator)],
    ];
    for (const [who, headers] of callers) {
      for (const first of [1, 2, 3, 500]) {
        const seen = await readAll(h, headers, first);
        expect(seen, `${who}, first: ${first}`).toEqual(visible);
        expect(JSON.stringify(seen)).not.toMatch(/ApiToken|temp_|"role"/);
      }
      // Asked for one token by name: as if it had no history.
      const result = await h.request(AuditLogDocument, { first: 10, target: 'temp_0' }, headers);
      expect(result.data!.auditLog, who).toEqual({ edges: [], pageInfo: { hasNextPage: false, endCursor: null } });
      // A target that is not a token still pages through its own entries.
      expect((await readAll(h, headers, 2, 'audited')).map((e) => e.id)).toEqual(visible.filter((e) => e.target === 'audited').map((e) => e.id));
    }
    expect((await readAll(h, bearer(TEST_ADMIN_TOKEN), 1, 'temp_0')).map((e) => e.action)).toEqual(['revokeApiToken', 'createApiToken']);
  });
});
