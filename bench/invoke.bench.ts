/**
 * Module invocation cost, with a trivial `echo` module (support/modules.ts):
 *
 * - in process, `services.modules.invoke(name, 'echo', arg)` (breaker permit, call, result)
 *   for a WORKER-isolated and an INLINE-isolated registration, against a direct call of the
 *   same module's `echo` (imported and created in this process): sequential awaited calls,
 *   cases interleaved round by round, median round; then throughput with 32 calls in flight;
 *   beside them the channel's floor, a bare worker thread echoing the same message shape over
 *   postMessage (goal, issue 15: WORKER <= 6x INLINE), a second floor, the same bare echo
 *   with the worker blocked in `Atomics.wait` instead of its event loop (the best a
 *   shared-memory wake-up can do while the server's thread itself never blocks), and a third,
 *   the same echo with both threads waiting awake for each other up to Helios's spin budget
 *   (the hand-off Helios's WORKER calls use, spin-wait.ts, without anything else of Helios);
 * - over HTTP, `invokeModule` with autocannon (32 connections, Helios in a child process,
 *   admin Bearer token) for both isolations, next to a Helios `evaluateFlag` query on the same
 *   server as the HTTP floor.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { createApp, type App } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { DEFAULT_SPIN_MICROS } from '../src/modules/runtime/spin-wait.js';
import type { BenchReport, BenchRow } from './report.js';
import { HTTP_CONNECTIONS, HTTP_DURATION_S, describeFailures, isClean, warmAndLoad, type LoadResult } from './support/load.js';
import { makeBenchModulesDir } from './support/modules.js';
import { BENCH_ADMIN_TOKEN, authHeaders, graphqlData, postGraphql, startHelios } from './support/servers.js';
import { median, ratio, round } from './support/stats.js';

const CALLS_PER_ROUND = 5_000;
const ROUNDS = 7;
const IN_FLIGHT = 32;
const CONCURRENT_CALLS = 40_000;
const ARG = { n: 1 };

type Op = () => Promise<unknown>;

async function timeSequential(op: Op, calls: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) await op();
  return Number(process.hrtime.bigint() - start) / calls;
}

/** What the process (every thread) spent over the timed rounds of one case. */
interface Usage {
  calls: number;
  cpuUs: number;
  voluntarySwitches: number;
}

/** `timeSequential`, adding the process's CPU time and voluntary context switches over it to `usage`. */
async function timeSequentialCounted(op: Op, calls: number, usage: Usage): Promise<number> {
  const cpu = process.cpuUsage();
  const switches = process.resourceUsage().voluntaryContextSwitches;
  const perCall = await timeSequential(op, calls);
  const spent = process.cpuUsage(cpu);
  usage.cpuUs += spent.user + spent.system;
  usage.voluntarySwitches += process.resourceUsage().voluntaryContextSwitches - switches;
  usage.calls += calls;
  return perCall;
}

async function timeConcurrent(op: Op, calls: number): Promise<number> {
  let next = 0;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next++ < calls) await op();
    }),
  );
  return calls / (Number(process.hrtime.bigint() - start) / 1e9);
}

interface EchoInstance {
  echo(arg: unknown): unknown;
}

async function directEcho(file: string): Promise<EchoInstance> {
  const mod = (await import(pathToFileURL(file).href)) as { default?: { create?: (ctx: unknown) => Promise<unknown> } };
  const instance = await mod.default?.create?.({ previousState: null });
  if (!instance || typeof (instance as Partial<EchoInstance>).echo !== 'function') throw new Error('echo module has no echo()');
  return instance as EchoInstance;
}

interface EchoChannel {
  call: (arg: unknown) => Promise<unknown>;
  close: () => Promise<number>;
}

/**
 * Calls a bare echo worker with the message shape Helios posts for a call (`{ t, id, method,
 * arg }`), one awaited round trip at a time; `afterPost` runs after each post.
 */
function echoChannel(worker: Worker, afterPost: () => void = () => {}): EchoChannel {
  const waiting = new Map<number, (value: unknown) => void>();
  let id = 0;
  worker.on('message', (m: { id: number; value: unknown }) => {
    const resolve = waiting.get(m.id);
    waiting.delete(m.id);
    resolve?.(m.value);
  });
  return {
    call: (arg) => new Promise((resolve) => {
      const next = ++id;
      waiting.set(next, resolve);
      worker.postMessage({ t: 'call', id: next, method: 'echo', arg });
      afterPost();
    }),
    close: () => worker.terminate(),
  };
}

/**
 * The channel's own floor: a bare worker thread that posts back every message it gets. Nothing
 * of Helios runs on either side.
 */
function rawWorkerEcho(): EchoChannel {
  return echoChannel(new Worker("const { parentPort } = require('node:worker_threads'); parentPort.on('message', (m) => parentPort.postMessage({ t: 'ok', id: m.id, value: m.arg }));", { eval: true }));
}

/**
 * The shared-memory wake-up floor: the same messages, but the worker never returns to its event
 * loop. It blocks in `Atomics.wait` on a shared word, the host bumps and notifies it after each
 * post, the worker takes the messages with `receiveMessageOnPort` and posts the answers back
 * (the host's thread cannot block, so it still wakes from its event loop). No module could run
 * like this (its timers and I/O would never run): it bounds what any shared-memory channel
 * could win over postMessage.
 */
function rawAtomicsEcho(): EchoChannel {
  const wake = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const { parentPort, workerData, receiveMessageOnPort } = require('node:worker_threads');
    const wake = new Int32Array(workerData);
    for (let seen = 0; ; ) {
      Atomics.wait(wake, 0, seen);
      seen = Atomics.load(wake, 0);
      for (let r = receiveMessageOnPort(parentPort); r; r = receiveMessageOnPort(parentPort)) parentPort.postMessage({ t: 'ok', id: r.message.id, value: r.message.arg });
    }`,
    { eval: true, workerData: wake.buffer },
  );
  return echoChannel(worker, () => {
    Atomics.add(wake, 0, 1);
    Atomics.notify(wake, 0);
  });
}

/**
 * The spinning floor: the same bare echo, each side waiting awake for the other's message for
 * up to `DEFAULT_SPIN_MICROS` (Helios's default, spin-wait.ts) before it sleeps, with the same
 * counters bumped after each post and `receiveMessageOnPort` to take what arrived. None of
 * Helios's bounds (back-off, event-loop turns, bursts only) and nothing else of Helios: what
 * Helios's WORKER path costs over the hand-off it uses.
 */
function rawSpinEcho(): EchoChannel {
  const counters = new Int32Array(new SharedArrayBuffer(8)); // [0] posts to the worker, [1] answers
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(
    `const { workerData, receiveMessageOnPort } = require('node:worker_threads');
    const { port, counters, budgetMs } = workerData;
    let taken = 0;
    const answer = (m) => {
      taken++;
      port.postMessage({ t: 'ok', id: m.id, value: m.arg });
      Atomics.add(counters, 1, 1);
    };
    port.on('message', (m) => {
      answer(m);
      const end = performance.now() + budgetMs;
      while (performance.now() < end) {
        if (Atomics.load(counters, 0) === taken) continue;
        for (let r = receiveMessageOnPort(port); r; r = receiveMessageOnPort(port)) answer(r.message);
        break;
      }
    });`,
    { eval: true, workerData: { port: port2, counters, budgetMs: DEFAULT_SPIN_MICROS / 1000 }, transferList: [port2] },
  );
  const waiting = new Map<number, (value: unknown) => void>();
  let id = 0;
  let answers = 0;
  const settle = (m: { id: number; value: unknown }) => {
    answers++;
    const resolve = waiting.get(m.id);
    waiting.delete(m.id);
    resolve?.(m.value);
  };
  port1.on('message', settle);
  return {
    call: (arg) => new Promise((resolve) => {
      const next = ++id;
      waiting.set(next, resolve);
      port1.postMessage({ t: 'call', id: next, method: 'echo', arg });
      Atomics.add(counters, 0, 1);
      queueMicrotask(() => {
        const end = performance.now() + DEFAULT_SPIN_MICROS / 1000;
        while (waiting.has(next) && performance.now() < end) {
          if (Atomics.load(counters, 1) === answers) continue;
          for (let r = receiveMessageOnPort(port1); r; r = receiveMessageOnPort(port1)) settle(r.message as { id: number; value: unknown });
        }
      });
    }),
    close: async () => {
      port1.close();
      return worker.terminate();
    },
  };
}

async function registerAndLoad(app: App, name: string, isolation: 'WORKER' | 'INLINE'): Promise<void> {
  await app.services.modules.register('bench', { name, modulePath: 'echo.js', version: '1.0.0', isolation });
  await app.services.modules.load('bench', name);
}

export default async function run(): Promise<BenchReport> {
  const modules = makeBenchModulesDir();
  const dbDir = mkdtempSync(path.join(tmpdir(), 'helios-bench-invoke-'));
  const notes: string[] = [];
  type Case = 'direct' | 'inline' | 'worker' | 'rawWorker' | 'rawAtomics' | 'rawSpin';
  const seq: Record<Case, number[]> = { direct: [], inline: [], worker: [], rawWorker: [], rawAtomics: [], rawSpin: [] };
  const conc: Record<Case, number> = { direct: 0, inline: 0, worker: 0, rawWorker: 0, rawAtomics: 0, rawSpin: 0 };
  const noUsage = (): Usage => ({ calls: 0, cpuUs: 0, voluntarySwitches: 0 });
  const usage: Record<Case, Usage> = { direct: noUsage(), inline: noUsage(), worker: noUsage(), rawWorker: noUsage(), rawAtomics: noUsage(), rawSpin: noUsage() };
  const raw = rawWorkerEcho();
  const rawAtomics = rawAtomicsEcho();
  const rawSpin = rawSpinEcho();
  const app = await createApp(loadConfig({
    HELIOS_DB_PATH: path.join(dbDir, 'helios.db'),
    HELIOS_MODULES_DIR: modules.dir,
    LOG_LEVEL: 'silent',
    HELIOS_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
  }));
  try {
    await registerAndLoad(app, 'echo_worker', 'WORKER');
    await registerAndLoad(app, 'echo_inline', 'INLINE');
    const direct = await directEcho(path.join(modules.dir, 'echo.js'));
    const { modules: service } = app.services;
    const ops: Record<keyof typeof seq, Op> = {
      direct: async () => direct.echo(ARG),
      inline: () => service.invoke('echo_inline', 'echo', ARG),
      worker: () => service.invoke('echo_worker', 'echo', ARG),
      rawWorker: () => raw.call(ARG),
      rawAtomics: () => rawAtomics.call(ARG),
      rawSpin: () => rawSpin.call(ARG),
    };
    const check = await service.invoke('echo_worker', 'echo', ARG);
    if (JSON.stringify(check.result) !== JSON.stringify(ARG)) throw new Error(`worker echo answered ${JSON.stringify(check)}`);
    const names = Object.keys(ops) as Array<keyof typeof seq>;
    for (const name of names) await timeSequential(ops[name], 2_000);
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < names.length; k++) {
        const name = names[(k + r) % names.length]!;
        seq[name].push(await timeSequentialCounted(ops[name], CALLS_PER_ROUND, usage[name]));
      }
    }
    for (const name of names) conc[name] = await timeConcurrent(ops[name], CONCURRENT_CALLS);
    const breaker = app.services.breakers.get('module:echo_worker');
    notes.push(
      `In process: ${ROUNDS} rounds x ${CALLS_PER_ROUND} sequential awaited calls per case, interleaved, median round; throughput: ${CONCURRENT_CALLS} calls with ${IN_FLIGHT} in flight. Breaker module:echo_worker counted ${breaker?.metrics.calls ?? '?'} calls, ${breaker?.metrics.failures ?? '?'} failures (sanity).`,
    );
  } finally {
    await raw.close();
    await rawAtomics.close();
    await rawSpin.close();
    await app.close();
    rmSync(dbDir, { recursive: true, force: true });
  }

  // ---- over HTTP ----
  const server = await startHelios({ HELIOS_MODULES_DIR: modules.dir });
  const http: Record<'floor' | 'inline' | 'worker', LoadResult | null> = { floor: null, inline: null, worker: null };
  try {
    const url = server.ready.url;
    for (const [name, isolation] of [['echo_worker', 'WORKER'], ['echo_inline', 'INLINE']] as const) {
      await graphqlData(url, `mutation { registerModule(name: "${name}", modulePath: "echo.js", version: "1.0.0", isolation: ${isolation}) { errors { code message } } }`);
      const loaded = await graphqlData<{ loadModule: { module: { state: string } | null } }>(url, `mutation { loadModule(name: "${name}") { module { state } errors { code message } } }`);
      if (loaded.loadModule.module?.state !== 'ACTIVE') throw new Error(`${name} did not load: ${JSON.stringify(loaded)}`);
    }
    const measure = async (query: string): Promise<LoadResult> => {
      const probe = await postGraphql(url, query, authHeaders);
      if (probe.status !== 200 || probe.text.includes('"code"') || probe.text.includes('"errors":[{')) {
        throw new Error(`unexpected answer to ${query}: ${probe.text.slice(0, 300)}`);
      }
      return warmAndLoad({ url, body: JSON.stringify({ query }), headers: authHeaders, expectBody: probe.text });
    };
    http.floor = await measure('{ evaluateFlag(name: "neural_network_v2", context: {sessionId: "abc"}) { enabled reason bucket } }');
    http.inline = await measure('mutation { invokeModule(name: "echo_inline", method: "echo", args: {n: 1}) { result servedBy errors { code } } }');
    http.worker = await measure('mutation { invokeModule(name: "echo_worker", method: "echo", args: {n: 1}) { result servedBy errors { code } } }');
  } finally {
    await server.stop();
    modules.remove();
  }

  const d = median(seq.direct);
  const i = median(seq.inline);
  const w = median(seq.worker);
  const rw = median(seq.rawWorker);
  const ra = median(seq.rawAtomics);
  const rs = median(seq.rawSpin);
  const floor = http.floor!;
  const hi = http.inline!;
  const hw = http.worker!;
  const rows: BenchRow[] = [
    { case: 'direct call of echo (baseline)', value: round(d, 1), unit: 'ns/call', baseline: 'direct call', ratio: 1 },
    { case: 'modules.invoke, INLINE', value: round(i, 1), unit: 'ns/call', baseline: 'direct call', ratio: ratio(i, d) },
    { case: 'modules.invoke, WORKER', value: round(w, 1), unit: 'ns/call', baseline: 'direct call', ratio: ratio(w, d) },
    { case: 'modules.invoke, WORKER vs INLINE', value: round(w, 1), unit: 'ns/call', baseline: 'INLINE', ratio: ratio(w, i), goal: 'ratio <= 6', met: ratio(w, i) <= 6 },
    { case: 'raw worker_threads postMessage echo round trip (channel floor)', value: round(rw, 1), unit: 'ns/call', baseline: 'INLINE', ratio: ratio(rw, i) },
    { case: 'modules.invoke, WORKER vs the raw postMessage round trip', value: round(w, 1), unit: 'ns/call', baseline: 'raw postMessage round trip', ratio: ratio(w, rw) },
    { case: 'raw echo, worker blocked in Atomics.wait, woken by Atomics.notify (shared-memory wake floor)', value: round(ra, 1), unit: 'ns/call', baseline: 'INLINE', ratio: ratio(ra, i) },
    { case: 'shared-memory wake floor vs the raw postMessage round trip', value: round(ra, 1), unit: 'ns/call', baseline: 'raw postMessage round trip', ratio: ratio(ra, rw) },
    { case: `raw echo, both threads waiting awake up to ${DEFAULT_SPIN_MICROS} us (spinning floor)`, value: round(rs, 1), unit: 'ns/call', baseline: 'INLINE', ratio: ratio(rs, i) },
    { case: 'modules.invoke, WORKER vs the spinning floor', value: round(w, 1), unit: 'ns/call', baseline: 'spinning floor', ratio: ratio(w, rs) },
    { case: `throughput, ${IN_FLIGHT} in flight: direct`, value: round(conc.direct, 0), unit: 'calls/s', baseline: 'direct', ratio: 1 },
    { case: `throughput, ${IN_FLIGHT} in flight: INLINE`, value: round(conc.inline, 0), unit: 'calls/s', baseline: 'direct', ratio: ratio(conc.inline, conc.direct) },
    { case: `throughput, ${IN_FLIGHT} in flight: WORKER`, value: round(conc.worker, 0), unit: 'calls/s', baseline: 'direct', ratio: ratio(conc.worker, conc.direct) },
    { case: `throughput, ${IN_FLIGHT} in flight: raw postMessage echo`, value: round(conc.rawWorker, 0), unit: 'calls/s', baseline: 'direct', ratio: ratio(conc.rawWorker, conc.direct) },
    { case: `throughput, ${IN_FLIGHT} in flight: raw echo woken by Atomics.notify`, value: round(conc.rawAtomics, 0), unit: 'calls/s', baseline: 'direct', ratio: ratio(conc.rawAtomics, conc.direct) },
    { case: `throughput, ${IN_FLIGHT} in flight: raw echo, spinning`, value: round(conc.rawSpin, 0), unit: 'calls/s', baseline: 'direct', ratio: ratio(conc.rawSpin, conc.direct) },
    { case: 'HTTP evaluateFlag on the same server (floor)', value: round(floor.rps, 0), unit: 'req/s', baseline: 'evaluateFlag', ratio: 1 },
    { case: 'HTTP invokeModule, INLINE', value: round(hi.rps, 0), unit: 'req/s', baseline: 'evaluateFlag', ratio: ratio(hi.rps, floor.rps) },
    { case: 'HTTP invokeModule, WORKER', value: round(hw.rps, 0), unit: 'req/s', baseline: 'invokeModule INLINE', ratio: ratio(hw.rps, hi.rps) },
  ];
  notes.push(
    `Per-call overhead over a direct call: INLINE ${round((i - d) / 1000, 2)} us, WORKER ${round((w - d) / 1000, 2)} us; a bare postMessage round trip to a worker thread (same message shape, nothing else) ${round(rw / 1000, 2)} us, which is ${round(rw / i, 1)}x INLINE by itself; the same echo with the worker blocked in Atomics.wait (woken by Atomics.notify, so its event loop never runs) ${round(ra / 1000, 2)} us, ${round(ra / i, 1)}x INLINE: the floor of any shared-memory wake-up while the server's thread does not block.`,
    `HTTP: autocannon ${HTTP_CONNECTIONS} connections, warm-up then ${HTTP_DURATION_S} s, bodies checked byte for byte. evaluateFlag: ${describeFailures(floor)}; INLINE: p50 ${hi.latencyP50Ms} ms, p99 ${hi.latencyP99Ms} ms, ${describeFailures(hi)}; WORKER: p50 ${hw.latencyP50Ms} ms, p99 ${hw.latencyP99Ms} ms, ${describeFailures(hw)}.`,
  );
  // Whether the two threads woke each other across CPUs (about 25 us of CPU per sleep and wake-up
  // on these VMs) or shared one shows here, not in the ratio alone (RESULTS.md, "WORKER invoke,
  // the cross-CPU wake-up"): CPU time about equal to the wall time per call means the former.
  const perCall = (u: Usage) => `${round(u.cpuUs / u.calls, 1)} us of CPU and ${round(u.voluntarySwitches / u.calls, 2)} voluntary context switches`;
  notes.push(
    `Per sequential call, over all timed rounds, the whole process (every thread): WORKER ${perCall(usage.worker)} (wall ${round(w / 1000, 1)} us); bare postMessage echo ${perCall(usage.rawWorker)} (wall ${round(rw / 1000, 1)} us); spinning floor ${perCall(usage.rawSpin)} (wall ${round(rs / 1000, 1)} us); INLINE ${perCall(usage.inline)}.`,
  );
  if (!isClean(hi) || !isClean(hw)) notes.push('Some HTTP responses were not the expected answer: see the counts above.');
  return { name: 'invoke', rows, notes };
}
