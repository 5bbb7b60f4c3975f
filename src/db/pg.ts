/**
 * The PostgreSQL driver (`pg`), loaded on first use: a server on SQLite, the default, never
 * loads it. Its CommonJS graph took ~50 ms of a ~750 ms start-up on the 2-core bench machine
 * (issue 15, `npm start` against a bare Yoga start); `require` keeps every caller synchronous.
 */
import { createRequire } from 'node:module';
import type Pg from 'pg';

let loaded: typeof Pg | null = null;

export function pgDriver(): typeof Pg {
  if (loaded === null) {
    const pg = createRequire(import.meta.url)('pg') as typeof Pg;
    // int8 (BIGINT, COUNT(*)) arrives as a string by default; Helios's values all fit a double.
    pg.types.setTypeParser(20, (value) => Number(value));
    loaded = pg;
  }
  return loaded;
}
