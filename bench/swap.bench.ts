/**
 * Hot swap under load, with the `echo` module (support/modules.ts) in WORKER isolation.
 *
 * In process: LOOPS concurrent loops call `modules.invoke('echo', 'echo', n)` without pause
 * while the benchmark swaps to echo_v2.js and rolls back, SWAPS times in all. Every call's
 * outcome is checked (its answer must be its argument); the module's call counter travels
 * through exportState/importState, so at the end it must equal the number of calls that
 * succeeded, which shows no call was lost or served twice. Swap latency is the duration of
 * `swapModule`/`rollbackModule`, against a cold `loadModule` of the same file measured in the
 * same run (a swap loads a new worker too, then drains and moves state).
 *
 * Over HTTP: Helios in a child process, autocannon (32 connections) sending invokeModule while
 * this process sends swapModule/rollbackModule mutations; a response counts as failed unless it
 * is exactly an echo with `errors: []`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type autocannon from 'autocannon';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import type { BenchReport, BenchRow } from './report.js';
import { HTTP_CONNECTIONS, runLoad } from './support/load.js';
import { makeBenchModulesDir } from './support/modules.js';
import { BENCH_ADMIN_TOKEN, authHeaders, graphqlData, startHelios } from './support/servers.js';
import { median, percentile, ratio, round, sleep, sortedCopy } from './support/stats.js';

const LOOPS = 16;
const SWAPS = 40;
const COLD_LOADS = 10;
const PAUSE_BETWEEN_SWAPS_MS = 50;
const HTTP_SWAPS = 20;
const HTTP_LOAD_S = 12;

export default async function run(): Promise<BenchReport> {
  const modules = makeBenchModulesDir();
  const dbDir = mkdtempSync(path.join(tmpdir(), 'helios-bench-swap-'));
  const notes: string[] = [];
  const app = await createApp(loadConfig({
    HELIOS_DB_PATH: path.join(dbDir, 'helios.db'),
    HELIOS_MODULES_DIR: modules.dir,
    LOG_LEVEL: 'silent',
    HELIOS_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
  }));
  const swapMs: number[] = [];
  const coldMs: number[] = [];
  let ok = 0;
  let failed = 0;
  let wrong = 0;
  let duringSwaps = 0;
  let firstFailure: string | null = null;
  let counted = Number.NaN;
  const servedBy = new Map<string, number>();
  try {
    const service = app.services.modules;
    await service.register('bench', { name: 'echo', modulePath: 'echo.js', version: '1.0.0', isolation: 'WORKER' });
    await service.load('bench', 'echo');
    await service.register('bench', { name: 'echo_cold', modulePath: 'echo.js', version: '1.0.0', isolation: 'WORKER' });
    for (let k = 0; k < COLD_LOADS; k++) {
      const start = performance.now();
      await service.load('bench', 'echo_cold');
      coldMs.push(performance.now() - start);
      await service.unload('bench', 'echo_cold');
    }

    let running = true;
    let swapping = false;
    let seq = 0;
    const loop = async () => {
      while (running) {
        const n = seq++;
        try {
          const answer = await service.invoke('echo', 'echo', n);
          if (answer.result !== n) wrong++;
          else ok++;
          servedBy.set(answer.servedBy, (servedBy.get(answer.servedBy) ?? 0) + 1);
          if (swapping) duringSwaps++;
        } catch (error) {
          failed++;
          firstFailure ??= error instanceof Error ? error.message : String(error);
        }
      }
    };
    const loops = Array.from({ length: LOOPS }, loop);
    await sleep(300);
    for (let k = 0; k < SWAPS; k++) {
      swapping = true;
      const start = performance.now();
      if (k % 2 === 0) await service.swap('bench', 'echo', { newVersionPath: 'echo_v2.js', newVersion: '2.0.0' });
      else await service.rollback('bench', 'echo');
      swapMs.push(performance.now() - start);
      swapping = false;
      await sleep(PAUSE_BETWEEN_SWAPS_MS);
    }
    running = false;
    await Promise.all(loops);
    const which = await service.invoke('echo', 'which', null);
    counted = (which.result as { calls: number }).calls;
    notes.push(
      `In process: ${LOOPS} invocation loops, ${SWAPS} swaps (swap to 2.0.0 / rollback to 1.0.0, ${PAUSE_BETWEEN_SWAPS_MS} ms apart); ${ok} calls succeeded (${duringSwaps} of them completed while a swap was running), ${failed} failed, ${wrong} answered wrongly${firstFailure ? ` (first failure: ${firstFailure})` : ''}; served by ${[...servedBy].map(([v, n]) => `${v}: ${n}`).join(', ')}.`,
      `State carried across all swaps: the module counted ${counted} echo calls, ${ok + wrong} were answered (equal means none lost or doubled).`,
    );
  } finally {
    await app.close();
    rmSync(dbDir, { recursive: true, force: true });
  }

  // ---- over HTTP ----
  const server = await startHelios({ HELIOS_MODULES_DIR: modules.dir });
  let httpOk = 0;
  let httpBad = 0;
  let httpFirstBad: string | null = null;
  const httpSwapMs: number[] = [];
  let httpRequests = 0;
  try {
    const url = server.ready.url;
    await graphqlData(url, 'mutation { registerModule(name: "echo", modulePath: "echo.js", version: "1.0.0", isolation: WORKER) { errors { code message } } }');
    await graphqlData(url, 'mutation { loadModule(name: "echo") { errors { code message } } }');
    const body = JSON.stringify({ query: 'mutation { invokeModule(name: "echo", method: "echo", args: 7) { result servedBy errors { code } } }' });
    const onResponse = (status: number, text: string) => {
      if (status === 200 && text.includes('"result":7,') && text.includes('"errors":[]')) httpOk++;
      else {
        httpBad++;
        httpFirstBad ??= `${status} ${text.slice(0, 200)}`;
      }
    };
    const requests: autocannon.Request[] = [{ method: 'POST', body, onResponse }];
    const load = runLoad({ url, headers: authHeaders, durationS: HTTP_LOAD_S, requests });
    await sleep(1_000);
    for (let k = 0; k < HTTP_SWAPS; k++) {
      const mutation = k % 2 === 0
        ? 'mutation { swapModule(name: "echo", newVersionPath: "echo_v2.js", newVersion: "2.0.0") { module { version } errors { code message } } }'
        : 'mutation { rollbackModule(name: "echo") { module { version } errors { code message } } }';
      const start = performance.now();
      const data = await graphqlData<Record<string, { errors: unknown[] }>>(url, mutation);
      httpSwapMs.push(performance.now() - start);
      const payload = Object.values(data)[0];
      if (payload && payload.errors.length > 0) throw new Error(`swap refused: ${JSON.stringify(payload.errors)}`);
      await sleep(200);
    }
    const result = await load;
    httpRequests = result.total;
    notes.push(
      `HTTP: autocannon ${HTTP_CONNECTIONS} connections for ${HTTP_LOAD_S} s of invokeModule while ${HTTP_SWAPS} swap/rollback mutations ran (200 ms apart); ${httpOk} good answers, ${httpBad} failed${httpFirstBad ? ` (first: ${httpFirstBad})` : ''}, ${result.errors} connection errors; invoke latency p50 ${result.latencyP50Ms} ms, p99 ${result.latencyP99Ms} ms.`,
    );
    httpBad += result.errors + result.non2xx;
  } finally {
    await server.stop();
    modules.remove();
  }

  const swaps = sortedCopy(swapMs);
  const cold = median(coldMs);
  const httpSwaps = sortedCopy(httpSwapMs);
  const total = ok + failed + wrong;
  const rows: BenchRow[] = [
    { case: 'calls failed during swaps (in process)', value: failed + wrong, unit: 'calls', baseline: `all ${total} calls`, ratio: ratio(failed + wrong, total, 6), goal: '0', met: failed + wrong === 0 && counted === ok + wrong },
    { case: 'calls failed during swaps (HTTP)', value: httpBad, unit: 'calls', baseline: `all ${httpRequests} requests`, ratio: ratio(httpBad, httpRequests, 6), goal: '0', met: httpBad === 0 },
    { case: 'cold loadModule, WORKER (baseline)', value: round(cold, 2), unit: 'ms', baseline: 'cold loadModule', ratio: 1 },
    { case: 'swap/rollback under load: p50', value: round(percentile(swaps, 50), 2), unit: 'ms', baseline: 'cold loadModule median', ratio: ratio(percentile(swaps, 50), cold) },
    { case: 'swap/rollback under load: p99', value: round(percentile(swaps, 99), 2), unit: 'ms', baseline: 'cold loadModule median', ratio: ratio(percentile(swaps, 99), cold) },
    { case: 'swap/rollback over HTTP under load: p50', value: round(percentile(httpSwaps, 50), 2), unit: 'ms', baseline: 'in-process swap p50', ratio: ratio(percentile(httpSwaps, 50), percentile(swaps, 50)) },
    { case: 'swap/rollback over HTTP under load: p99', value: round(percentile(httpSwaps, 99), 2), unit: 'ms', baseline: 'in-process swap p99', ratio: ratio(percentile(httpSwaps, 99), percentile(swaps, 99)) },
  ];
  notes.push(`p99 of ${swaps.length} in-process swaps is their maximum but one; cold loads: ${coldMs.map((m) => round(m, 1)).join(', ')} ms.`);
  return { name: 'swap', rows, notes };
}
