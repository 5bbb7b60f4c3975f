// @ts-check
/**
 * `npm start`'s build step: runs `tsc -p tsconfig.build.json` (incremental, its build info in
 * dist/.tsbuildinfo) only when a source or build setting changed since the last good build, so
 * a start with nothing changed costs no compile. A failed compile removes the build info, so
 * the next start compiles (and fails) again instead of starting a stale build. The dashboard is
 * built the same way: codegen and `vite build` only when its sources, the schema or the build
 * settings are newer than dist/dashboard/index.html (a fresh clone has none: it is built).
 *
 * Plain JavaScript run by plain `node`, not TypeScript through tsx: this runs before every
 * start, and tsx's own start-up (its loader compiling this file) cost about 0.5 s of a start
 * that then had nothing to build (issue 15). Its types are in build.d.mts.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

export const BUILD_INFO = 'dist/.tsbuildinfo';
export const DASHBOARD_BUILT = 'dist/dashboard/index.html';
/** What the dashboard's build reads. */
const DASHBOARD_SETTINGS = ['schema/schema.graphql', 'codegen.ts', 'package.json'];
/** What the build reads besides the sources. */
const SETTINGS = ['tsconfig.json', 'tsconfig.build.json', 'package.json'];

/** @param {string} dir @returns {string[]} */
function filesUnder(dir) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

/**
 * The `inputs` newer than the file `built` (every input when it does not exist yet).
 * @param {string[]} inputs @param {string} built @returns {string[]}
 */
function newerThan(inputs, built) {
  let builtAt;
  try {
    builtAt = statSync(built).mtimeMs;
  } catch {
    return inputs;
  }
  return inputs.filter((file) => {
    try {
      return statSync(file).mtimeMs > builtAt;
    } catch {
      return false;
    }
  });
}

/**
 * Files under `root` newer than the last good build (every input when there is none).
 * @param {string} root @returns {string[]}
 */
export function staleInputs(root) {
  return newerThan([...filesUnder(path.join(root, 'src')), ...SETTINGS.map((f) => path.join(root, f))], path.join(root, BUILD_INFO));
}

/**
 * Dashboard inputs newer than its last build (every input when there is none); generated code left out.
 * @param {string} root @returns {string[]}
 */
export function staleDashboardInputs(root) {
  const generated = path.join(root, 'dashboard', 'src', 'gql') + path.sep;
  const inputs = [
    ...filesUnder(path.join(root, 'dashboard')).filter((f) => !f.startsWith(generated)),
    ...DASHBOARD_SETTINGS.map((f) => path.join(root, f)),
  ];
  return newerThan(inputs, path.join(root, DASHBOARD_BUILT));
}

/** @param {string} root @param {string} script */
function npmRun(root, script) {
  const run = spawnSync('npm', ['run', '--silent', script], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  if (run.status !== 0) process.exit(run.status ?? 1);
}

/**
 * Builds in the project at `root` what is stale (nothing when nothing is); a failed step ends
 * the process with that step's exit status.
 * @param {string} root
 */
export function buildStale(root) {
  const stale = staleInputs(root);
  if (stale.length === 0) {
    console.log('build: server up to date');
  } else {
    const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
    if (tsc.status !== 0) {
      rmSync(path.join(root, BUILD_INFO), { force: true });
      process.exit(tsc.status ?? 1);
    }
    // tsc leaves its build info untouched when a changed file's content is the same (a touch,
    // a checkout): mark this build as the last good one all the same.
    const now = new Date();
    utimesSync(path.join(root, BUILD_INFO), now, now);
  }
  if (staleDashboardInputs(root).length === 0) {
    console.log('build: dashboard up to date');
  } else {
    // The dashboard's typed documents are generated from the committed schema, then bundled.
    npmRun(root, 'codegen');
    npmRun(root, 'build:dashboard');
  }
}

// `node scripts/build.mjs`: the build step alone, in the current folder.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) buildStale(process.cwd());
