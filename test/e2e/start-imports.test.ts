/**
 * What a start on SQLite (the default) loads (issue 15, start-up): not the PostgreSQL driver
 * (src/db/pg.ts loads it on first use), and Kysely from its CommonJS build (src/db/kysely.ts),
 * which no module of Helios bypasses by importing a value from 'kysely' or 'pg' itself.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO, repoUrl, runTsxScript } from '../support/tsx-script.js';
const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function sourcesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourcesUnder(file);
    return entry.name.endsWith('.ts') ? [file] : [];
  });
}

describe('start-up imports', () => {
  it('a server on SQLite has not loaded pg, and holds Kysely from its CommonJS build', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'helios-start-imports-'));
    dirs.push(dir);
    // Its own process: this one has loaded pg already (the cluster tests' clients use it).
    const run = runTsxScript(dir, `
import { createRequire } from 'node:module';
import { loadConfig } from ${repoUrl('src/config.ts')};
import { startServer } from ${repoUrl('src/server.ts')};
const loaded = (part) => Object.keys(createRequire(import.meta.url).cache).some((f) => f.includes(part));
const server = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', HELIOS_DB_PATH: ${JSON.stringify(path.join(dir, 'helios.db'))}, HELIOS_ADMIN_TOKEN: 'test-admin-token-0123456789abcdef' }), { print: () => {} });
const answer = await fetch('http://127.0.0.1:' + server.port + '/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ featureFlags { name } }' }) }).then((r) => r.json());
console.log(JSON.stringify({ pg: loaded('/node_modules/pg/'), kyselyCjs: loaded('/node_modules/kysely/dist/cjs/'), flags: answer.data?.featureFlags?.length ?? answer }));
await server.stop();
`);
    expect(run.stderr).toBe('');
    expect(run.result).toEqual({ pg: false, kyselyCjs: true, flags: 8 });
  });

  it("no module of src/ imports a value from 'kysely' or 'pg' but the two that load them", () => {
    const allowed = new Set([path.join(REPO, 'src/db/kysely.ts'), path.join(REPO, 'src/db/pg.ts')]);
    const valueImport = /^import\s+(?!type\b)[^;]*?\bfrom\s+'(kysely|pg)'/gm;
    const offenders = sourcesUnder(path.join(REPO, 'src'))
      .filter((file) => !allowed.has(file))
      .flatMap((file) => [...readFileSync(file, 'utf8').matchAll(valueImport)].map((m) => `${path.relative(REPO, file)}: ${m[0].split('\n')[0]}`));
    expect(offenders).toEqual([]);
    // The pattern does catch one (a test that cannot fail proves nothing).
    expect("import { sql } from 'kysely';\nimport type pg from 'pg';\nimport pg2 from 'pg';".match(valueImport)).toEqual(["import { sql } from 'kysely'", "import pg2 from 'pg'"]);
  });
});
