/**
 * Kysely's runtime values, from its CommonJS build. Node 20's ESM loader took ~150 ms to load
 * the 145 files of kysely's `esm/` build where `require` takes ~70 ms for the same files under
 * `cjs/` (issue 15: a quarter of the start-up Helios adds to a bare Yoga's). Helios's modules
 * take Kysely's values from here and its types from 'kysely' (`import type`), so the process
 * holds one copy of Kysely; the two builds are the same code and declarations.
 */
import { createRequire } from 'node:module';
import type * as KyselyModule from 'kysely';

const kysely = createRequire(import.meta.url)('kysely') as typeof KyselyModule;

export const { CompiledQuery, Kysely, PostgresDialect, SqliteDialect, SqliteDriver, sql } = kysely;
export type Kysely<DB> = KyselyModule.Kysely<DB>;
