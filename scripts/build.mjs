// @ts-check
/**
 * `npm start`'s build step: runs `tsc -p tsconfig.build.json` (incremental, its build info in
 * dist/.tsbuildinfo) only when a source or build setting changed since the last good build, so
 * a start with nothing changed costs no compile. A failed compile removes the build info, so
 * the next start compiles (and fails) again instead of starting a stale build. The dashboard is
 * built the same way: codegen and `vite build` only when its sources, the schema or the build
 * settings are newer than dist/dashboard/index.html (a fresh clone has none: it is built).
 *
 * Then the compiled server is bundled (esbuild, `bundleServer`) into dist/bundle/, which is what
 * `npm start` runs: tsc's output with the packages it imports, in a few files instead of over a
 * thousand (the bundle's metafile lists 1,262 inputs). A CPU profile of `node dist/src/main.js`
 * spent ~750 of ~890 ms before `main()` in Node's ES module loader (resolving, reading and
 * compiling each file); the bundle starts in about half the time (issue 15, bench/RESULTS.md). It is rebuilt when tsc built, when the installed
 * packages changed (npm rewrites node_modules/.package-lock.json on every install) or when it is
 * missing; a failed bundle is removed, so the next start bundles again.
 *
 * Plain JavaScript run by plain `node`, not TypeScript through tsx: this runs before every
 * start, and tsx's own start-up (its loader compiling this file) cost about 0.5 s of a start
 * that then had nothing to build (issue 15). Its types are in build.d.mts.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

export const BUILD_INFO = 'dist/.tsbuildinfo';
export const DASHBOARD_BUILT = 'dist/dashboard/index.html';
/** The bundled server `npm start` runs, and its folder. */
export const BUNDLE_DIR = 'dist/bundle';
export const BUNDLE_ENTRY = 'dist/bundle/main.js';
/**
 * What the bundle is made from: the compiled server (its build info marks the last compile), the
 * installed packages (npm rewrites that file on every install; without it, as under another
 * package manager, a bundle is made again only after a compile) and this file (its settings).
 */
const BUNDLE_INPUTS = [BUILD_INFO, 'node_modules/.package-lock.json', 'scripts/build.mjs'];
/**
 * Not bundled: better-sqlite3 loads its native addon from its own folder. (pg is loaded with
 * `createRequire` on first use, src/db/pg.ts, which the bundler does not follow: from node_modules,
 * on PostgreSQL only.)
 */
const EXTERNAL = ['better-sqlite3'];
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

/**
 * Bundle inputs newer than the bundle (every input when there is none).
 * @param {string} root @returns {string[]}
 */
export function staleBundleInputs(root) {
  return newerThan(BUNDLE_INPUTS.map((f) => path.join(root, f)), path.join(root, BUNDLE_ENTRY));
}

/**
 * Bundles the compiled server (dist/src, tsc's output) into dist/bundle/: `main.js`, the module
 * worker's entry `worker-entry.js` beside it (src/modules/runtime/worker-version.ts finds it as
 * `./worker-entry.js` from its own module, which is now a file of this folder), and chunks for
 * what the server imports only when asked (GraphiQL's page, graphql-jit, the WebSocket server):
 * those load on first use, as they did unbundled.
 *
 * - Every package is bundled but EXTERNAL. Bundled CommonJS calls `require` for Node's built-in
 *   modules; the banner gives each file one (`createRequire` from the file itself).
 * - Two modules of src/ load a package at run time in a way the bundler cannot follow, to keep
 *   an unbundled start cheap: src/graphql/scalars.js imports two graphql-scalars files by path
 *   (the package exports only its index, ~70 ms for 70 scalars), and src/db/kysely.js takes
 *   Kysely's CommonJS build with `require` (Node's ES module loader took twice as long for its
 *   ES build). Left so, the scalars' files would bring a second copy of graphql (their own
 *   `import 'graphql'`) beside the bundled one, and Kysely would still load file by file. In
 *   the bundle each is the same exports imported statically (STATIC_IN_BUNDLE), so both are
 *   bundled, with the one graphql (test/e2e/bundle.test.ts checks what the process loads).
 * - Source maps (`.map` beside each file) lead back to src/: run with `node --enable-source-maps`
 *   for stack traces in the TypeScript sources.
 * @param {string} root
 * @returns {Promise<import('esbuild').Metafile>}
 */
export async function bundleServer(root) {
  /** @type {import('esbuild').Plugin} */
  const staticInBundle = {
    name: 'helios-static-in-bundle',
    setup(plugin) {
      // Only the modules STATIC_IN_BUNDLE names reach this callback (esbuild matches the filter natively).
      const names = Object.keys(STATIC_IN_BUNDLE).map((file) => file.replace(/[.]/g, '\\.').replace(/\//g, '[\\\\/]'));
      const filter = new RegExp(`[\\\\/]dist[\\\\/]src[\\\\/](${names.join('|')})$`);
      plugin.onLoad({ filter }, (args) => {
        const file = path.relative(path.join(root, 'dist', 'src'), args.path).split(path.sep).join('/');
        const contents = STATIC_IN_BUNDLE[file]?.(root);
        if (contents === undefined) throw new Error(`no static form for ${file}`);
        return { contents, loader: 'js', resolveDir: root };
      });
    },
  };
  return bundleNodeProgram(root, { main: 'dist/src/main.js', 'worker-entry': 'dist/src/modules/runtime/worker-entry.js' }, path.join(root, BUNDLE_DIR), {
    external: EXTERNAL,
    plugins: [staticInBundle],
  });
}

/**
 * Bundles `entryPoints` (output name -> file, relative to `root`) with what they import into
 * `outdir` (emptied first), as `bundleServer` bundles the server: ES modules for Node 20, split
 * into chunks where an import is dynamic, `require` given to bundled CommonJS, source maps
 * beside. The benchmarks bundle the bare Yoga server with it too, to compare like with like.
 * @param {string} root
 * @param {Record<string, string>} entryPoints
 * @param {string} outdir
 * @param {{ external?: string[], plugins?: import('esbuild').Plugin[] }} [options]
 * @returns {Promise<import('esbuild').Metafile>}
 */
export async function bundleNodeProgram(root, entryPoints, outdir, options = {}) {
  const { build } = await import('esbuild');
  rmSync(outdir, { recursive: true, force: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints,
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: options.external ?? [],
    banner: { js: "import { createRequire as __heliosCreateRequire } from 'node:module'; const require = __heliosCreateRequire(import.meta.url);" },
    plugins: options.plugins ?? [],
    sourcemap: 'linked',
    metafile: true,
    logLevel: 'warning',
    // The input is tsc's JavaScript: the project's tsconfig.json has nothing to say to the bundler.
    tsconfigRaw: {},
  });
  return result.metafile;
}

/** The compiled server unbundled: what runs when there is no bundler to bundle it (see `bundleOrUnbundled`). */
export const UNBUNDLED_ENTRY = 'dist/src/main.js';

/** Whether `error` says the bundler itself is not installed (a production install: `npm ci --omit=dev`). */
function isBundlerMissing(error) {
  return error instanceof Error && /** @type {{ code?: unknown }} */ (error).code === 'ERR_MODULE_NOT_FOUND' && /'esbuild'/.test(error.message);
}

/**
 * `bundleServer`; resolves to the entry to run. Without esbuild installed (devDependencies left
 * out), it warns and answers the unbundled build, the same code, which then starts as it did
 * before bundling. Any other failure removes the bundle, so the next start bundles again, and
 * ends the process (exit 1).
 * @param {string} root
 * @returns {Promise<string>}
 */
async function bundleOrUnbundled(root) {
  const started = performance.now();
  try {
    await bundleServer(root);
    console.log(`build: server bundled (${BUNDLE_DIR}) in ${Math.round(performance.now() - started)} ms`);
    return BUNDLE_ENTRY;
  } catch (error) {
    rmSync(path.join(root, BUNDLE_DIR), { recursive: true, force: true });
    if (isBundlerMissing(error)) {
      console.warn(`build: esbuild is not installed (devDependencies left out?): starting the unbundled server, ${UNBUNDLED_ENTRY}, which starts more slowly`);
      return UNBUNDLED_ENTRY;
    }
    console.error('build: bundling the server failed:', error instanceof Error ? error.message : error);
    process.exit(1);
  }
}

/**
 * What the bundle takes instead of a module of dist/src that loads a package at run time (see
 * `bundleServer`): the same exports, imported statically. Keyed by the module's path under dist/src.
 * @type {Record<string, (root: string) => string>}
 */
const STATIC_IN_BUNDLE = {
  'graphql/scalars.js': (root) => {
    // As src/graphql/scalars.ts finds them: `esm/scalars/` beside the package's require entry.
    const scalars = path.join(path.dirname(createRequire(path.join(root, 'package.json')).resolve('graphql-scalars')), '..', 'esm', 'scalars');
    return (
      `export { GraphQLDateTimeISO as DateTimeISOResolver } from ${JSON.stringify(path.join(scalars, 'iso-date', 'DateTimeISO.js'))};\n` +
      `export { GraphQLJSON as JSONResolver } from ${JSON.stringify(path.join(scalars, 'json', 'JSON.js'))};\n`
    );
  },
  'db/kysely.js': () => "export { CompiledQuery, Kysely, PostgresDialect, SqliteDialect, SqliteDriver, sql } from 'kysely';\n",
};

/** @param {string} root @param {string} script */
function npmRun(root, script) {
  const run = spawnSync('npm', ['run', '--silent', script], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  if (run.status !== 0) process.exit(run.status ?? 1);
}

/**
 * Builds in the project at `root` what is stale (nothing when nothing is); a failed step ends
 * the process with that step's exit status. Resolves to the server entry to run (relative to
 * `root`): the bundle, or the unbundled build when no bundler is installed.
 * @param {string} root
 * @returns {Promise<string>}
 */
export async function buildStale(root) {
  const stale = staleInputs(root);
  if (stale.length === 0) {
    console.log('build: server up to date');
  } else {
    // A first compile takes a while (~20 s on 2 cores) and tsc prints nothing when it succeeds.
    console.log(`build: compiling the server (${stale.length} input${stale.length === 1 ? '' : 's'} changed since the last build)`);
    const started = performance.now();
    const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
    if (tsc.status !== 0) {
      rmSync(path.join(root, BUILD_INFO), { force: true });
      process.exit(tsc.status ?? 1);
    }
    // tsc leaves its build info untouched when a changed file's content is the same (a touch,
    // a checkout): mark this build as the last good one all the same.
    const now = new Date();
    utimesSync(path.join(root, BUILD_INFO), now, now);
    console.log(`build: server compiled in ${Math.round(performance.now() - started)} ms`);
  }
  let entry = BUNDLE_ENTRY;
  if (staleBundleInputs(root).length === 0) {
    console.log('build: bundle up to date');
  } else {
    entry = await bundleOrUnbundled(root);
  }
  if (staleDashboardInputs(root).length === 0) {
    console.log('build: dashboard up to date');
  } else {
    // The dashboard's typed documents are generated from the committed schema, then bundled.
    npmRun(root, 'codegen');
    npmRun(root, 'build:dashboard');
  }
  return entry;
}

// `node scripts/build.mjs`: the build step alone, in the current folder.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await buildStale(process.cwd());
