/**
 * Start-up, idle memory, and memory across module load/unload cycles.
 *
 * - startServer until /ready answers 200, in this process (code already imported), on a new
 *   database each time (migrations and the seed import included); and a whole process, spawned
 *   with `src/main` (compiled, as `npm start` runs it) until /ready answers, against the bare
 *   graphql-yoga server spawned the same way until `{ hello }` answers. One discarded warm-up
 *   run each (disk cache). And `npm start` itself in the checkout (its build step
 *   included) on an unchanged build, against the same bare start (goal: <= 2x, issue 15).
 *   `npm start` runs the bundled server (scripts/build.mjs bundles tsc's output with its
 *   packages); for a like-for-like contrast the bare Yoga server is also bundled by the same
 *   bundler and spawned the same way (rows without a goal).
 * - Idle memory: RSS and heap of a started Helios, after a forced GC, against the bare server.
 * - Cycles: a module holding 4 MB at module scope (support/modules.ts) loaded and unloaded in
 *   WORKER isolation, up to 1,000 times or as many as fit the time budget, RSS and heap sampled
 *   after a forced GC every 100 cycles (this process runs with --expose-gc). Goal: no growth
 *   beyond noise from cycle 100 to the last. For contrast, INLINE_CYCLES cycles of the same
 *   module in INLINE isolation, where Node keeps every imported copy.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { packageRoot } from '../src/paths.js';
import { startServer } from '../src/server.js';
import type { BenchReport, BenchRow } from './report.js';
import { memorySample, type MemorySample } from './support/memory.js';
import { BALLAST_MB, makeBenchModulesDir } from './support/modules.js';
import { siblingScript } from './support/rpc.js';
import { BENCH_ADMIN_TOKEN, startBareYoga, startHelios } from './support/servers.js';
import { MB, median, ratio, round, sleep } from './support/stats.js';

const STARTS = 5;
/** `npm start` runs its build step (the staleness check) each time; as many runs as the other starts. */
const NPM_STARTS = STARTS;
const MAX_CYCLES = 1_000;
const CYCLE_BUDGET_MS = 70_000;
const SAMPLE_EVERY = 100;
const INLINE_CYCLES = 30;
/** Growth from cycle 100 to the last that still counts as noise (see the notes for the spread measured). */
const NOISE_MB = 8;

/** The project root, or the compiled copy of it the runner made (see support/build.ts). */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
/** tsx's loader when run from the sources; nothing when compiled. */
const loaderArgs = process.execArgv.filter((a) => a !== '--expose-gc');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function untilOk(url: string, deadlineMs: number, exited: () => boolean = () => false): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  for (;;) {
    if (exited()) throw new Error(`the process serving ${url} exited`);
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (performance.now() > deadline) throw new Error(`${url} not ready within ${deadlineMs} ms`);
    await sleep(5);
  }
}

/** Milliseconds from spawning `script` until `probe(port)` answers 200. */
async function spawnToReady(script: string, env: Record<string, string>, probe: (port: number) => string): Promise<number> {
  const port = await freePort();
  const start = performance.now();
  const child = spawn(process.execPath, [...loaderArgs, script], {
    // The project folder, as `npm start` runs (default flags file, modules folder).
    cwd: packageRoot(),
    env: { ...process.env, ...env, PORT: String(port), BENCH_PORT: String(port) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  let gone = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    gone = true;
    resolve();
  }));
  try {
    await untilOk(probe(port), 30_000, () => gone);
    return performance.now() - start;
  } finally {
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  }
}

/**
 * Milliseconds from `npm start` (its build step included) in the checkout until /ready
 * answers; the npm process group is ended afterwards. The build output (dist/) is the
 * checkout's own, already up to date from the discarded first run: an unchanged build.
 */
async function npmStartToReady(checkout: string, env: Record<string, string>): Promise<number> {
  const port = await freePort();
  const start = performance.now();
  const child = spawn('npm', ['start', '--silent'], {
    cwd: checkout,
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'inherit'],
    detached: true,
  });
  let gone = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    gone = true;
    resolve();
  }));
  const group = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
  };
  try {
    await untilOk(`http://127.0.0.1:${port}/ready`, 120_000, () => gone);
    return performance.now() - start;
  } finally {
    group('SIGTERM');
    const killer = setTimeout(() => group('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  }
}

/**
 * `script` bundled into `dir` by scripts/build.mjs's bundler, with the settings it bundles the
 * server with (npm start's server): the path of the bundled entry.
 */
async function bundled(script: string, dir: string): Promise<string> {
  const build = (await import(pathToFileURL(path.join(packageRoot(), 'scripts', 'build.mjs')).href)) as typeof import('../scripts/build.mjs');
  const name = path.basename(script).replace(/\.[cm]?[jt]s$/, '');
  const outdir = path.join(dir, `${name}-bundle`);
  await build.bundleNodeProgram(packageRoot(), { [name]: script }, outdir);
  // Outside the package: its ES modules need a package.json of their own to say so.
  writeFileSync(path.join(outdir, 'package.json'), '{ "type": "module", "private": true }\n');
  return path.join(outdir, `${name}.js`);
}

function heliosEnv(dir: string): Record<string, string> {
  return { HOST: '127.0.0.1', HELIOS_DB_PATH: path.join(dir, 'helios.db'), LOG_LEVEL: 'silent', HELIOS_ADMIN_TOKEN: BENCH_ADMIN_TOKEN };
}

/** What `npm start` runs (its prestart step, if any, then start), from the checkout's package.json. */
function npmStartScripts(checkout: string): string {
  const pkg = JSON.parse(readFileSync(path.join(checkout, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
  return `prestart: ${pkg.scripts?.prestart ?? 'none'}; start: ${pkg.scripts?.start ?? 'none'}`;
}

const mb = (bytes: number) => round(bytes / MB, 1);

export default async function run(): Promise<BenchReport> {
  const notes: string[] = [];
  const tmp = mkdtempSync(path.join(tmpdir(), 'helios-bench-life-'));
  const modules = makeBenchModulesDir();
  try {
    // ---- start-up ----
    const inProcess: number[] = [];
    for (let k = 0; k <= STARTS; k++) {
      const dir = mkdtempSync(path.join(tmp, 'start-'));
      const config = loadConfig({ ...heliosEnv(dir), PORT: '0' });
      const start = performance.now();
      const server = await startServer(config);
      await untilOk(`http://127.0.0.1:${server.port}/ready`, 30_000);
      const ms = performance.now() - start;
      await server.stop();
      if (k > 0) inProcess.push(ms);
    }
    const mainScript = path.join(ROOT, 'src', `main${EXT}`);
    const yogaScript = siblingScript(import.meta.url, './support/yoga-hello-server');
    const spawnedFirst: number[] = [];
    const spawnedRestart: number[] = [];
    const spawnedYoga: number[] = [];
    const yogaBundle = await bundled(yogaScript, tmp);
    const spawnedYogaBundled: number[] = [];
    const restartDir = mkdtempSync(path.join(tmp, 'restart-'));
    for (let k = 0; k <= STARTS; k++) {
      const fresh = mkdtempSync(path.join(tmp, 'first-'));
      const first = await spawnToReady(mainScript, heliosEnv(fresh), (p) => `http://127.0.0.1:${p}/ready`);
      const restart = await spawnToReady(mainScript, heliosEnv(restartDir), (p) => `http://127.0.0.1:${p}/ready`);
      const yoga = await spawnToReady(yogaScript, {}, (p) => `http://127.0.0.1:${p}/graphql?query=%7Bhello%7D`);
      const yogaBundled = await spawnToReady(yogaBundle, {}, (p) => `http://127.0.0.1:${p}/graphql?query=%7Bhello%7D`);
      if (k > 0) {
        spawnedFirst.push(first);
        spawnedRestart.push(restart);
        spawnedYoga.push(yoga);
        spawnedYogaBundled.push(yogaBundled);
      }
    }
    // `npm start` as an operator runs it: its build step (nothing to build here), then the compiled server (scripts/start.mjs).
    const checkout = process.env.HELIOS_BENCH_CHECKOUT;
    const npmStarts: number[] = [];
    if (checkout) {
      for (let k = 0; k <= NPM_STARTS; k++) {
        const ms = await npmStartToReady(checkout, heliosEnv(restartDir));
        if (k > 0) npmStarts.push(ms);
      }
      notes.push(`npm start in ${checkout} (${npmStartScripts(checkout)}) until /ready, ${NPM_STARTS} runs after one discarded run that brings dist/ up to date: ${npmStarts.map((m) => round(m, 0)).join(', ')} ms.`);
    }
    notes.push(
      `Start-up, ${STARTS} runs each after one discarded warm-up, median: startServer -> /ready in process ${inProcess.map((m) => round(m, 1)).join(', ')} ms; spawned src/main on a new database ${spawnedFirst.map((m) => round(m, 0)).join(', ')} ms, restarted on an existing one ${spawnedRestart.map((m) => round(m, 0)).join(', ')} ms; bare yoga ${spawnedYoga.map((m) => round(m, 0)).join(', ')} ms; bare yoga bundled ${spawnedYogaBundled.map((m) => round(m, 0)).join(', ')} ms.`,
    );

    // ---- idle memory ----
    const helios = await startHelios();
    const heliosIdle = await helios.call<MemorySample>('memory');
    await helios.stop();
    const yoga = await startBareYoga();
    const yogaIdle = await yoga.call<MemorySample>('memory');
    await yoga.stop();
    notes.push(
      `Idle memory after a forced GC: Helios RSS ${mb(heliosIdle.rss)} MB, heap ${mb(heliosIdle.heapUsed)} MB; bare yoga RSS ${mb(yogaIdle.rss)} MB, heap ${mb(yogaIdle.heapUsed)} MB (both forked the same way).`,
    );

    // ---- load/unload cycles ----
    const app = await createApp(loadConfig({ ...heliosEnv(mkdtempSync(path.join(tmp, 'cycles-'))), HELIOS_MODULES_DIR: modules.dir }));
    const samples: Array<{ cycle: number; mem: MemorySample }> = [];
    let cycles = 0;
    let inlineBefore: MemorySample | null = null;
    let inlineAfter: MemorySample | null = null;
    const cycleMs: number[] = [];
    try {
      const service = app.services.modules;
      await service.register('bench', { name: 'ballast', modulePath: 'ballast.js', version: '1.0.0', isolation: 'WORKER' });
      samples.push({ cycle: 0, mem: await memorySample() });
      const started = performance.now();
      while (cycles < MAX_CYCLES && performance.now() - started < CYCLE_BUDGET_MS) {
        const t = performance.now();
        await service.load('bench', 'ballast');
        const answer = await service.invoke('ballast', 'size', null);
        if (answer.result !== BALLAST_MB * 131072) throw new Error(`ballast answered ${JSON.stringify(answer)}`);
        await service.unload('bench', 'ballast');
        cycleMs.push(performance.now() - t);
        cycles++;
        if (cycles % SAMPLE_EVERY === 0) samples.push({ cycle: cycles, mem: await memorySample() });
      }
      if (cycles % SAMPLE_EVERY !== 0) samples.push({ cycle: cycles, mem: await memorySample() });

      await service.register('bench', { name: 'ballast_inline', modulePath: 'ballast.js', version: '1.0.0', isolation: 'INLINE' });
      inlineBefore = await memorySample();
      for (let k = 0; k < INLINE_CYCLES; k++) {
        await service.load('bench', 'ballast_inline');
        await service.unload('bench', 'ballast_inline');
      }
      inlineAfter = await memorySample();
    } finally {
      await app.close();
    }

    const at100 = samples.find((s) => s.cycle === SAMPLE_EVERY) ?? samples[0]!;
    const last = samples.at(-1)!;
    const later = samples.filter((s) => s.cycle >= SAMPLE_EVERY).map((s) => s.mem.rss);
    const spread = later.length > 0 ? Math.max(...later) - Math.min(...later) : 0;
    const growth = last.mem.rss - at100.mem.rss;
    const heapGrowth = last.mem.heapUsed - at100.mem.heapUsed;
    const inlineGrowth = inlineAfter && inlineBefore ? inlineAfter.rss - inlineBefore.rss : Number.NaN;
    notes.push(
      `Cycles: ${cycles} load/unload cycles of a module holding ${BALLAST_MB} MB in ${round(cycleMs.reduce((a, b) => a + b, 0) / 1000, 1)} s (median cycle ${round(median(cycleMs), 1)} ms)${cycles < MAX_CYCLES ? `; stopped at the ${CYCLE_BUDGET_MS / 1000} s budget, short of ${MAX_CYCLES}` : ''}.`,
      `RSS / heap after GC by cycle: ${samples.map((s) => `${s.cycle}: ${mb(s.mem.rss)}/${mb(s.mem.heapUsed)}`).join(', ')} MB; spread of RSS from cycle ${SAMPLE_EVERY} on ${mb(spread)} MB. Goal: growth from cycle ${SAMPLE_EVERY} to the last <= ${NOISE_MB} MB of RSS (allocator and JIT noise; one leaked worker would be >= ${BALLAST_MB} MB each).`,
      `INLINE contrast: ${INLINE_CYCLES} cycles of the same module grew RSS by ${mb(inlineGrowth)} MB (${round(inlineGrowth / MB / INLINE_CYCLES, 2)} MB per cycle): an imported ES module is never freed.`,
    );

    const first = median(spawnedFirst);
    const rows: BenchRow[] = [
      { case: 'spawned bare graphql-yoga until { hello } answers (baseline)', value: round(median(spawnedYoga), 0), unit: 'ms', baseline: 'bare yoga process start', ratio: 1 },
      { case: 'spawned helios (src/main) until /ready, new database', value: round(first, 0), unit: 'ms', baseline: 'bare yoga process start', ratio: ratio(first, median(spawnedYoga)) },
      { case: 'spawned helios until /ready, existing database', value: round(median(spawnedRestart), 0), unit: 'ms', baseline: 'bare yoga process start', ratio: ratio(median(spawnedRestart), median(spawnedYoga)) },
      ...(npmStarts.length > 0
        ? [{
            case: '`npm start` on an unchanged build until /ready',
            value: round(median(npmStarts), 0),
            unit: 'ms',
            baseline: 'bare yoga process start',
            ratio: ratio(median(npmStarts), median(spawnedYoga)),
            goal: 'ratio <= 2',
            met: ratio(median(npmStarts), median(spawnedYoga)) <= 2,
          }, {
            case: '`npm start` vs the bare yoga bundled the same way',
            value: round(median(npmStarts), 0),
            unit: 'ms',
            baseline: 'bare yoga bundled',
            ratio: ratio(median(npmStarts), median(spawnedYogaBundled)),
          }]
        : []),
      { case: 'spawned bare graphql-yoga bundled (as npm start bundles Helios)', value: round(median(spawnedYogaBundled), 0), unit: 'ms', baseline: 'bare yoga process start', ratio: ratio(median(spawnedYogaBundled), median(spawnedYoga)) },
      { case: 'startServer() until /ready, in process, new database', value: round(median(inProcess), 1), unit: 'ms', baseline: 'spawned helios, new database', ratio: ratio(median(inProcess), first) },
      { case: 'idle RSS, bare graphql-yoga (baseline)', value: mb(yogaIdle.rss), unit: 'MB', baseline: 'bare yoga', ratio: 1 },
      { case: 'idle RSS, helios', value: mb(heliosIdle.rss), unit: 'MB', baseline: 'bare yoga idle RSS', ratio: ratio(heliosIdle.rss, yogaIdle.rss) },
      { case: 'idle JS heap, helios', value: mb(heliosIdle.heapUsed), unit: 'MB', baseline: 'bare yoga idle heap', ratio: ratio(heliosIdle.heapUsed, yogaIdle.heapUsed) },
      { case: `RSS after ${at100.cycle} WORKER load/unload cycles (baseline)`, value: mb(at100.mem.rss), unit: 'MB', baseline: `RSS after ${at100.cycle} cycles`, ratio: 1 },
      { case: `RSS after ${cycles} WORKER load/unload cycles`, value: mb(last.mem.rss), unit: 'MB', baseline: `RSS after ${at100.cycle} cycles`, ratio: ratio(last.mem.rss, at100.mem.rss) },
      {
        case: `RSS growth, cycle ${at100.cycle} -> ${cycles} (WORKER)`,
        value: mb(growth),
        unit: 'MB',
        baseline: `RSS after ${at100.cycle} cycles`,
        ratio: ratio(growth, at100.mem.rss),
        goal: `<= ${NOISE_MB} MB (noise)`,
        met: growth <= NOISE_MB * MB && cycles >= 2 * SAMPLE_EVERY,
      },
      { case: `JS heap growth, cycle ${at100.cycle} -> ${cycles} (WORKER)`, value: mb(heapGrowth), unit: 'MB', baseline: `heap after ${at100.cycle} cycles`, ratio: ratio(heapGrowth, at100.mem.heapUsed) },
      { case: `RSS growth over ${INLINE_CYCLES} INLINE cycles (contrast)`, value: mb(inlineGrowth), unit: 'MB', baseline: `${INLINE_CYCLES} x ${BALLAST_MB} MB module`, ratio: ratio(inlineGrowth, INLINE_CYCLES * BALLAST_MB * MB) },
    ];
    return { name: 'lifecycle', rows, notes };
  } finally {
    modules.remove();
    rmSync(tmp, { recursive: true, force: true });
  }
}
