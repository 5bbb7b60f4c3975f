/**
 * graphql-http's server audits (as graphql-yoga runs them on itself): the GraphQL-over-HTTP
 * spec's MUSTs must all pass; SHOULDs and MAYs are reported, not enforced.
 */
import { serverAudits } from 'graphql-http';
import { describe, expect, it } from 'vitest';
import { serverPool } from '../support/pool.js';
import { TEST_ADMIN_TOKEN } from '../support/server.js';

const pool = serverPool();

describe('GraphQL over HTTP compliance', () => {
  it('passes every MUST of graphql-http\'s server audits', async () => {
    const h = await pool.start();
    const audits = serverAudits({
      url: h.url,
      fetchFn: (input: RequestInfo | URL, init?: RequestInit) =>
        fetch(input, { ...init, headers: { ...Object.fromEntries(new Headers(init?.headers)), authorization: `Bearer ${TEST_ADMIN_TOKEN}` } }),
    });
    const failures: string[] = [];
    let ran = 0;
    for (const audit of audits) {
      if (!audit.name.startsWith('MUST')) continue;
      ran++;
      const result = await audit.fn();
      if (result.status !== 'ok') failures.push(`${audit.name}: ${result.reason}`);
    }
    expect(ran).toBeGreaterThan(10);
    expect(failures).toEqual([]);
  });
});
