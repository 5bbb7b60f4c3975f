/** npm start builds only what changed: the staleness check, the build step (scripts/build.mjs) and npm start itself (scripts/start.mjs). */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { BUILD_INFO, BUNDLE_DIR, BUNDLE_ENTRY, DASHBOARD_BUILT, staleBundleInputs, staleDashboardInputs, staleInputs } from '../../scripts/build.mjs';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPTS = path.join(REPO, 'scripts');

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function project(): string {
  const root = mkdtempSync(path.join(tmpdir(), 'helios-build-'));
  dirs.push(root);
  mkdirSync(path.join(root, 'src/flags'), { recursive: true });
  for (const file of ['src/main.ts', 'src/flags/engine.ts', 'tsconfig.json', 'tsconfig.build.json', 'package.json']) writeFileSync(path.join(root, file), '');
  return root;
}

const at = (root: string, file: string, seconds: number) => utimesSync(path.join(root, file), seconds, seconds);

describe('the build step of npm start', () => {
  it('compiles everything without a previous build, nothing when up to date, and again after any change', () => {
    const root = project();
    expect(staleInputs(root)).toHaveLength(5);
    for (const file of ['src/main.ts', 'src/flags/engine.ts', 'tsconfig.json', 'tsconfig.build.json', 'package.json']) at(root, file, 1000);
    mkdirSync(path.join(root, 'dist'));
    writeFileSync(path.join(root, BUILD_INFO), '{}');
    at(root, BUILD_INFO, 2000);
    expect(staleInputs(root)).toEqual([]);
    at(root, 'src/flags/engine.ts', 3000);
    expect(staleInputs(root)).toEqual([path.join(root, 'src/flags/engine.ts')]);
    at(root, 'src/flags/engine.ts', 1000);
    at(root, 'tsconfig.build.json', 3000);
    expect(staleInputs(root)).toEqual([path.join(root, 'tsconfig.build.json')]);
    writeFileSync(path.join(root, 'src/new.ts'), '');
    expect(staleInputs(root)).toContain(path.join(root, 'src/new.ts'));
  });

  it('builds the dashboard on a fresh clone and when its sources or the schema changed, never for its generated code', () => {
    const root = project();
    mkdirSync(path.join(root, 'dashboard/src/gql'), { recursive: true });
    mkdirSync(path.join(root, 'schema'));
    for (const file of ['dashboard/index.html', 'dashboard/src/app.ts', 'dashboard/src/gql/graphql.ts', 'schema/schema.graphql', 'codegen.ts']) writeFileSync(path.join(root, file), '');
    expect(staleDashboardInputs(root)).toContain(path.join(root, 'dashboard/src/app.ts'));
    for (const file of ['dashboard/index.html', 'dashboard/src/app.ts', 'schema/schema.graphql', 'codegen.ts', 'package.json']) at(root, file, 1000);
    at(root, 'dashboard/src/gql/graphql.ts', 5000);
    mkdirSync(path.join(root, 'dist/dashboard'), { recursive: true });
    writeFileSync(path.join(root, DASHBOARD_BUILT), '');
    at(root, DASHBOARD_BUILT, 2000);
    expect(staleDashboardInputs(root)).toEqual([]);
    at(root, 'schema/schema.graphql', 3000);
    expect(staleDashboardInputs(root)).toEqual([path.join(root, 'schema/schema.graphql')]);
  });

  it('npm start is one plain node process: no tsx, no prestart process of its own', () => {
    const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe('node scripts/start.mjs');
    expect(pkg.scripts.prestart).toBeUndefined();
  });
});

/**
 * The build step as `npm start` runs it (`node scripts/start.mjs` in the project; the step alone
 * is `node scripts/build.mjs`), on a project whose compiler, dashboard build and compiled server
 * are stand-ins that log each run to build.log: what it builds on a fresh clone, after a change,
 * and when nothing changed, and that the server starts after the build, in the same process.
 */
describe('the build step, run', () => {
  const FAKE_TSC = `import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
appendFileSync('build.log', 'tsc ' + process.argv.slice(2).join(' ') + '\\n');
if (process.env.FAKE_TSC_FAIL) { console.error('error TS2322: fake'); process.exit(2); }
mkdirSync('dist/src/modules/runtime', { recursive: true });
// The stand-in server names the script its process was started with and the folder it runs from
// (bundle: the bundled copy). FAKE_TSC_UNBUNDLABLE: it imports a package that is not installed.
const missing = process.env.FAKE_TSC_UNBUNDLABLE ? "import 'helios-no-such-package';" : '';
writeFileSync('dist/src/main.js', missing + "import { appendFileSync } from 'node:fs'; import path from 'node:path'; import { fileURLToPath } from 'node:url'; appendFileSync('build.log', 'main ' + path.basename(process.argv[1]) + ' ' + path.basename(path.dirname(fileURLToPath(import.meta.url))) + '\\\\n');\\n");
writeFileSync('dist/src/modules/runtime/worker-entry.js', 'export {};\\n');
writeFileSync('dist/.tsbuildinfo', '{}');
`;
  const LOG = (what: string) => `node -e "require('fs').appendFileSync('build.log', '${what}\\\\n')"`;

  function runnable(): string {
    const root = project();
    mkdirSync(path.join(root, 'node_modules/typescript/bin'), { recursive: true });
    writeFileSync(path.join(root, 'node_modules/typescript/bin/tsc'), FAKE_TSC);
    writeFileSync(path.join(root, 'node_modules/typescript/package.json'), '{ "type": "module" }');
    mkdirSync(path.join(root, 'dashboard/src'), { recursive: true });
    mkdirSync(path.join(root, 'schema'));
    for (const file of ['dashboard/index.html', 'dashboard/src/app.ts', 'schema/schema.graphql', 'codegen.ts']) writeFileSync(path.join(root, file), '');
    const buildDashboard = `${LOG('vite')} && node -e "require('fs').mkdirSync('dist/dashboard', { recursive: true }); require('fs').writeFileSync('dist/dashboard/index.html', '')"`;
    writeFileSync(path.join(root, 'package.json'), JSON.stringify({ private: true, scripts: { codegen: LOG('codegen'), 'build:dashboard': buildDashboard } }));
    // Every input older than any build the step makes.
    for (const file of ['src/main.ts', 'src/flags/engine.ts', 'tsconfig.json', 'tsconfig.build.json', 'package.json', 'dashboard/index.html', 'dashboard/src/app.ts', 'schema/schema.graphql', 'codegen.ts']) at(root, file, 1000);
    return root;
  }

  /**
   * Runs scripts/start.mjs (or build.mjs) in `root`, from the repository's scripts/ or another
   * copy of them; what it printed and what build.log says ran.
   */
  function build(root: string, env: Record<string, string> = {}, script = 'build.mjs', scripts = SCRIPTS): { status: number | null; stdout: string; stderr: string; log: string[] } {
    const log = path.join(root, 'build.log');
    rmSync(log, { force: true });
    const run = spawnSync(process.execPath, [path.join(scripts, script)], { cwd: root, encoding: 'utf8', env: { ...process.env, ...env } });
    return { status: run.status, stdout: run.stdout, stderr: run.stderr, log: existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter(Boolean) : [] };
  }
  /** start.mjs; the stand-in server logs `main start.mjs` when it runs in the process that built. */
  const start = (root: string, env: Record<string, string> = {}) => build(root, env, 'start.mjs');

  it('builds the server and the dashboard on a fresh clone, then nothing until something changes', () => {
    const root = runnable();
    const fresh = build(root);
    expect(fresh.status).toBe(0);
    expect(fresh.log).toEqual(['tsc -p tsconfig.build.json', 'codegen', 'vite']);
    expect(fresh.stdout).toMatch(/^build: compiling the server \(5 inputs changed since the last build\)\nbuild: server compiled in \d+ ms\nbuild: server bundled \(dist\/bundle\) in \d+ ms$/m);
    expect(existsSync(path.join(root, BUILD_INFO))).toBe(true);
    expect(existsSync(path.join(root, BUNDLE_ENTRY))).toBe(true);
    expect(existsSync(path.join(root, BUNDLE_DIR, 'worker-entry.js'))).toBe(true);
    expect(existsSync(path.join(root, DASHBOARD_BUILT))).toBe(true);

    const unchanged = build(root);
    expect(unchanged.status).toBe(0);
    expect(unchanged.log).toEqual([]);
    expect(unchanged.stdout).toBe('build: server up to date\nbuild: bundle up to date\nbuild: dashboard up to date\n');

    // Every build made at t=2000, then a source changed at t=3000: the server compiles and is
    // bundled again, nothing else, and its build info is marked as the newest build.
    at(root, BUILD_INFO, 2000);
    at(root, BUNDLE_ENTRY, 2000);
    at(root, DASHBOARD_BUILT, 2000);
    at(root, 'src/flags/engine.ts', 3000);
    const changed = build(root);
    expect(changed.log).toEqual(['tsc -p tsconfig.build.json']);
    expect(changed.stdout).toMatch(/^build: server bundled/m);
    expect(statSync(path.join(root, BUILD_INFO)).mtimeMs).toBeGreaterThan(3000_000);
    expect(statSync(path.join(root, BUNDLE_ENTRY)).mtimeMs).toBeGreaterThan(3000_000);
    expect(build(root).log).toEqual([]);

    // A changed schema rebuilds the dashboard only (codegen first).
    at(root, 'schema/schema.graphql', 3000);
    expect(build(root).log).toEqual(['codegen', 'vite']);
    expect(build(root).log).toEqual([]);
  });

  it('a failed compile fails the start and leaves no build info, so the next start compiles again', () => {
    const root = runnable();
    expect(build(root).status).toBe(0);
    at(root, BUILD_INFO, 2000);
    at(root, 'src/main.ts', 3000);
    const failed = build(root, { FAKE_TSC_FAIL: '1' });
    expect(failed.status).toBe(2);
    expect(failed.log).toEqual(['tsc -p tsconfig.build.json']);
    expect(existsSync(path.join(root, BUILD_INFO))).toBe(false);
    // Even with the source put back as it was (older than the last good build): it compiles.
    at(root, 'src/main.ts', 1000);
    expect(build(root).log).toEqual(['tsc -p tsconfig.build.json']);
  });

  it('npm start builds what is stale, then runs the server in the same process; nothing but the server when nothing changed', () => {
    const root = runnable();
    const fresh = start(root);
    expect(fresh.status).toBe(0);
    expect(fresh.log).toEqual(['tsc -p tsconfig.build.json', 'codegen', 'vite', 'main start.mjs bundle']);
    const unchanged = start(root);
    expect(unchanged.log).toEqual(['main start.mjs bundle']);
    expect(unchanged.stdout).toBe('build: server up to date\nbuild: bundle up to date\nbuild: dashboard up to date\n');
    at(root, BUILD_INFO, 2000);
    at(root, BUNDLE_ENTRY, 2000);
    at(root, 'src/main.ts', 3000);
    expect(start(root).log).toEqual(['tsc -p tsconfig.build.json', 'main start.mjs bundle']);
  });

  it('npm start does not start a server whose compile failed', () => {
    const root = runnable();
    expect(start(root).status).toBe(0);
    at(root, BUILD_INFO, 2000);
    at(root, 'src/main.ts', 3000);
    const failed = start(root, { FAKE_TSC_FAIL: '1' });
    expect(failed.status).toBe(2);
    expect(failed.log).toEqual(['tsc -p tsconfig.build.json']);
  });

  it('bundles again, without compiling, when the installed packages changed or the bundle is missing', () => {
    const root = runnable();
    expect(build(root).status).toBe(0);
    for (const file of [BUILD_INFO, BUNDLE_ENTRY, DASHBOARD_BUILT]) at(root, file, 2000);
    expect(staleBundleInputs(root)).toEqual([]);
    // npm rewrites node_modules/.package-lock.json on every install.
    writeFileSync(path.join(root, 'node_modules/.package-lock.json'), '{}');
    at(root, 'node_modules/.package-lock.json', 3000);
    expect(staleBundleInputs(root)).toEqual([path.join(root, 'node_modules/.package-lock.json')]);
    const installed = build(root);
    expect(installed.log).toEqual([]);
    expect(installed.stdout).toMatch(/^build: server up to date\nbuild: server bundled/);
    expect(staleBundleInputs(root)).toEqual([]);
    rmSync(path.join(root, BUNDLE_DIR), { recursive: true });
    expect(build(root).stdout).toMatch(/^build: server bundled/m);
    expect(existsSync(path.join(root, BUNDLE_ENTRY))).toBe(true);
  });

  it('a failed bundle fails the start and leaves no bundle, so the next start bundles again', () => {
    const root = runnable();
    expect(start(root).status).toBe(0);
    at(root, BUILD_INFO, 2000);
    at(root, BUNDLE_ENTRY, 2000);
    at(root, 'src/main.ts', 3000);
    const failed = start(root, { FAKE_TSC_UNBUNDLABLE: '1' });
    expect(failed.status).toBe(1);
    expect(failed.log).toEqual(['tsc -p tsconfig.build.json']);
    expect(existsSync(path.join(root, BUNDLE_DIR))).toBe(false);
    // The compile itself succeeded (its build info is the newest): only the bundle is made again,
    // from the stand-in compiler's output, which now imports nothing missing.
    writeFileSync(path.join(root, 'dist/src/main.js'), readFileSync(path.join(root, 'dist/src/main.js'), 'utf8').replace("import 'helios-no-such-package';", ''));
    const next = start(root);
    expect(next.status).toBe(0);
    expect(next.log).toEqual(['main start.mjs bundle']);
  });

  it('without esbuild installed (devDependencies left out) npm start warns and runs the unbundled build', () => {
    const root = runnable();
    // The scripts copied into the project, where 'esbuild' does not resolve (the repository's
    // node_modules is not above it): as after `npm ci --omit=dev`.
    const copied = path.join(root, 'scripts');
    mkdirSync(copied);
    for (const file of ['build.mjs', 'start.mjs']) writeFileSync(path.join(copied, file), readFileSync(path.join(SCRIPTS, file)));
    const run = build(root, {}, 'start.mjs', copied);
    expect(run.status).toBe(0);
    expect(run.stderr).toContain('build: esbuild is not installed');
    expect(run.log).toEqual(['tsc -p tsconfig.build.json', 'codegen', 'vite', 'main start.mjs src']);
    expect(existsSync(path.join(root, BUNDLE_DIR))).toBe(false);
  });
});
