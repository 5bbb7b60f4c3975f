/**
 * PostgreSQL for tests: each test file gets a database of its own (created here, dropped by
 * `drop()`), on the server at HELIOS_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres).
 *
 * When the server does not answer, `postgresAvailable` is false and the PostgreSQL tests are
 * skipped with a line saying so; under CI (`CI=true`) test/support/postgres-setup.ts fails the
 * run instead, so CI can never pass without them.
 */
import pg from 'pg';
import { inject } from 'vitest';
import { randomBytes } from 'node:crypto';

declare module 'vitest' {
  export interface ProvidedContext {
    postgres: boolean;
  }
}

export const ADMIN_URL = process.env.HELIOS_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export async function probePostgres(url = ADMIN_URL): Promise<string | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (error) {
    return (error as Error).message || String(error);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Whether the global setup found the server answering (call it from a test file). */
export function postgresAvailable(): boolean {
  return inject('postgres');
}

export interface TestPostgres {
  url: string;
  name: string;
  drop(): Promise<void>;
}

function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

/** A new empty database `helios_test_<tag>_<random>`; `drop()` ends its connections and drops it. */
export async function createTestPostgres(tag: string): Promise<TestPostgres> {
  const name = `helios_test_${tag.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return {
    url: withDatabase(ADMIN_URL, name),
    name,
    async drop() {
      const client = new pg.Client({ connectionString: ADMIN_URL });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
