/**
 * Subscription fan-out against its physical floor. 1,000, 5,000 then 20,000 graphql-ws
 * subscribers to `breakerStateChanged`, the server (Helios, own process) forcing one breaker open
 * and resetting it, in turns. Beside it, in the same run and from a client process running the
 * same code (one per server, see Open files), the same number of sockets on a plain `ws` server (support/raw-ws-server.ts) that sends a
 * pre-serialized frame, the very bytes Helios sent, to every subscribed socket. Rounds alternate
 * between the two, so load on the machine hits both alike.
 *
 * Latency is from an epoch timestamp taken in the server right before the transition (Helios:
 * so it includes the SQLite write and the publish; the floor: right before its send loop) to
 * each client's receipt of the `next` frame, both clocks being the same wall clock read with
 * sub-millisecond resolution. Clients live in another process (raw `ws`, see
 * support/fanout-clients.ts); on a 2-core machine they still share the CPU with the servers,
 * which makes the figures conservative. Goals (issue 15): p99 at 5,000 subscribers <= 1.25x
 * the floor's p99, at 20,000 <= 1.5x.
 *
 * Memory per idle subscriber: the server's RSS and heap after a forced GC, before the first
 * subscriber and after the last one of a step has subscribed, divided by the subscribers added
 * (goal at 5,000: <= 8 KiB of RSS); the floor's the same way, for comparison.
 *
 * Open files: each server has its own client process (Helios's sockets in one, the floor's in
 * another, both the same code, rounds still alternating), so a step of n subscribers needs n
 * descriptors in each of the four processes plus what each holds anyway (a server: its
 * database, listening socket, IPC; a few dozen). Each child's limit is raised with `prlimit`
 * when the benchmark may (root); else a step that does not fit is replaced by the largest
 * multiple of 500 that leaves SPARE_FILES free in every process.
 */
import { readdirSync } from 'node:fs';
import type { BenchReport, BenchRow } from './report.js';
import { forkRpc, siblingScript, type RpcChild } from './support/rpc.js';
import { startHelios, type ServerChild } from './support/servers.js';
import type { MemorySample } from './support/memory.js';
import { openFileLimit, openFileSoftLimit, raiseOpenFileLimit } from './support/system.js';
import { MB, percentile, ratio, round, sleep, sortedCopy } from './support/stats.js';

/** BENCH_FANOUT_STEPS=1000,5000 runs only those steps (the 20,000 step takes minutes and GBs). */
const STEPS = process.env.BENCH_FANOUT_STEPS ? process.env.BENCH_FANOUT_STEPS.split(',').map(Number) : [1_000, 5_000, 20_000];
const ROUNDS = 20;
const WARMUP_ROUNDS = 2;
const GOALS: Record<number, number> = { 5_000: 1.25, 20_000: 1.5 };
const MEMORY_GOAL_KIB = 8;
const MEMORY_GOAL_STEP = 5_000;
const NOFILE = 65_536;
/** Descriptors left for each process's own files (the servers use a few dozen; see the notes). */
const SPARE_FILES = 500;
const BREAKER = 'fanout_bench';
const SUBSCRIPTION = 'subscription { breakerStateChanged { name from to reason at metrics { failures consecutiveFailures rejections } } }';

type Target = 'helios' | 'floor';

interface Rounds {
  latencies: number[];
  /** Per round: time until the last subscriber had the event. */
  lastReceipt: number[];
  missing: number;
  bad: number;
}

interface StepResult {
  subscribers: number;
  rounds: Record<Target, Rounds>;
  rssPerSubscriber: Record<Target, number>;
  heapPerSubscriber: Record<Target, number>;
}

/** Open descriptors of a process (Linux /proc), or null where that cannot be read. */
function openFiles(pid: number): number | null {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

async function until(what: string, count: () => Promise<number>, target: number, clients: RpcChild<unknown>): Promise<void> {
  const deadline = Date.now() + 60_000;
  let active = 0;
  while ((active = await count()) < target) {
    if (Date.now() > deadline) throw new Error(`${active} of ${target} ${what} subscriptions became active; clients: ${JSON.stringify(await clients.call('stats'))}`);
    await sleep(50);
  }
}

const emptyRounds = (): Rounds => ({ latencies: [], lastReceipt: [], missing: 0, bad: 0 });

export default async function run(): Promise<BenchReport> {
  const server = await startHelios();
  const floor = await forkRpc<{ url: string }>(siblingScript(import.meta.url, './support/raw-ws-server'));
  const clientsOf: Record<Target, RpcChild<unknown>> = {
    helios: await forkRpc<unknown>(siblingScript(import.meta.url, './support/fanout-clients')),
    floor: await forkRpc<unknown>(siblingScript(import.meta.url, './support/fanout-clients')),
  };
  const raised = [server, floor, clientsOf.helios, clientsOf.floor].map((c) => raiseOpenFileLimit(c.child.pid!, NOFILE));
  const fits = raised.every((r) => r !== null) ? NOFILE : openFileSoftLimit();
  // Each step needs `n` descriptors in every one of the four processes, plus their own files.
  const largest = Math.floor((fits - SPARE_FILES) / 500) * 500;
  const ownFiles = { helios: openFiles(server.child.pid!), floor: openFiles(floor.child.pid!) };
  const steps = [...new Set(STEPS.map((n) => Math.min(n, largest)))];
  const goalOf = (n: number): number | undefined => GOALS[STEPS.find((s) => Math.min(s, largest) === n) ?? n];
  const results: StepResult[] = [];
  const notes: string[] = [];
  let frameBytes = 0;
  try {
    await server.call('configureBreaker', BREAKER);
    const triggers: Record<Target, () => Promise<number>> = {
      helios: () => server.call<number>('toggleBreaker', BREAKER),
      floor: () => floor.call<number>('broadcast'),
    };
    const measureRound = async (target: Target, into: Rounds, counted: boolean) => {
      await clientsOf[target].call('arm', target);
      const t0 = await triggers[target]();
      const got = await clientsOf[target].call<{ times: number[]; missing: number; bad: number; frame: string | null }>('collect', 15_000);
      if (target === 'helios' && got.frame) frameBytes = await floor.call<number>('setFrame', got.frame);
      if (!counted) return;
      let last = 0;
      for (const t of got.times) {
        into.latencies.push(t - t0);
        last = Math.max(last, t - t0);
      }
      into.lastReceipt.push(last);
      into.missing += got.missing;
      into.bad += got.bad;
    };
    const memory = { helios: () => server.call<MemorySample>('memory'), floor: () => floor.call<MemorySample>('memory') };
    let before = { helios: await memory.helios(), floor: await memory.floor() };
    let subscribed = 0;
    for (const target of steps) {
      const add = target - subscribed;
      const connected: Record<Target, number> = { helios: 0, floor: 0 };
      for (const [group, url] of [['helios', server.ready.url], ['floor', floor.ready.url]] as const) {
        const { ms } = await clientsOf[group].call<{ connected: number; ms: number }>('connect', { group, url, count: add, query: SUBSCRIPTION });
        connected[group] = ms;
      }
      await until('Helios', () => server.call<number>('listenerCount', 'breakerStateChanged'), target, clientsOf.helios);
      await until('floor', () => floor.call<number>('subscribed'), target, clientsOf.floor);
      subscribed = target;
      const after = { helios: await memory.helios(), floor: await memory.floor() };
      // BENCH_HEAP_SNAPSHOT=<folder>: Helios's heap with every subscriber of the step idle, to see what each one holds.
      if (process.env.BENCH_HEAP_SNAPSHOT) await server.call('heapSnapshot', `${process.env.BENCH_HEAP_SNAPSHOT}/fanout-${target}.heapsnapshot`);
      const rounds = { helios: emptyRounds(), floor: emptyRounds() };
      // Helios first in each warm-up round: the floor sends the bytes Helios sent last.
      for (let r = 0; r < WARMUP_ROUNDS + ROUNDS; r++) {
        const order: Target[] = r < WARMUP_ROUNDS || r % 2 === 0 ? ['helios', 'floor'] : ['floor', 'helios'];
        for (const t of order) {
          await measureRound(t, rounds[t], r >= WARMUP_ROUNDS);
          await sleep(100);
        }
      }
      results.push({
        subscribers: target,
        rounds,
        rssPerSubscriber: { helios: (after.helios.rss - before.helios.rss) / add, floor: (after.floor.rss - before.floor.rss) / add },
        heapPerSubscriber: { helios: (after.helios.heapUsed - before.helios.heapUsed) / add, floor: (after.floor.heapUsed - before.floor.heapUsed) / add },
      });
      notes.push(
        `${target} subscribers: +${add} connected and subscribed in ${round(connected.helios / 1000, 1)} s (floor ${round(connected.floor / 1000, 1)} s); Helios RSS ${round(before.helios.rss / MB, 1)} -> ${round(after.helios.rss / MB, 1)} MB, heap ${round(before.helios.heapUsed / MB, 1)} -> ${round(after.helios.heapUsed / MB, 1)} MB; floor RSS ${round(before.floor.rss / MB, 1)} -> ${round(after.floor.rss / MB, 1)} MB (after GC: ${after.helios.gc}).`,
      );
      before = { helios: await memory.helios(), floor: await memory.floor() };
    }
    type ClientStats = { errors: number; closedEarly: number; oddFrames: number; firstOddFrame: string | null };
    const [a, b] = await Promise.all([clientsOf.helios.call<ClientStats>('stats'), clientsOf.floor.call<ClientStats>('stats')]);
    const stats: ClientStats = { errors: a.errors + b.errors, closedEarly: a.closedEarly + b.closedEarly, oddFrames: a.oddFrames + b.oddFrames, firstOddFrame: a.firstOddFrame ?? b.firstOddFrame };
    notes.push(
      `client socket errors ${stats.errors}, sockets closed by a server ${stats.closedEarly}, frames other than next/ping ${stats.oddFrames}${stats.firstOddFrame ? ` (first: ${stats.firstOddFrame})` : ''}; the floor's frame: ${frameBytes} bytes, the last one Helios sent.`,
    );
  } finally {
    await Promise.all([clientsOf.helios.stop(), clientsOf.floor.stop()]);
    await Promise.all([server.stop(), floor.stop()]);
  }

  const rows: BenchRow[] = [];
  for (const step of results) {
    const n = step.subscribers;
    const sorted = { helios: sortedCopy(step.rounds.helios.latencies), floor: sortedCopy(step.rounds.floor.latencies) };
    const p = (t: Target, q: number) => percentile(sorted[t], q);
    const clean = step.rounds.helios.missing === 0 && step.rounds.helios.bad === 0;
    const goal = goalOf(n);
    const floorLabel = `raw ws, ${n} sockets`;
    rows.push(
      { case: `${n} subscribers: raw ws floor, latency p99 (baseline)`, value: round(p('floor', 99), 2), unit: 'ms', baseline: floorLabel, ratio: 1 },
      { case: `${n} subscribers: helios latency p50`, value: round(p('helios', 50), 2), unit: 'ms', baseline: `${floorLabel} p50 (${round(p('floor', 50), 2)} ms)`, ratio: ratio(p('helios', 50), p('floor', 50)) },
      {
        case: `${n} subscribers: helios latency p99`,
        value: round(p('helios', 99), 2),
        unit: 'ms',
        baseline: `${floorLabel} p99`,
        ratio: ratio(p('helios', 99), p('floor', 99)),
        ...(goal !== undefined ? { goal: `ratio <= ${goal}`, met: ratio(p('helios', 99), p('floor', 99)) <= goal && clean } : {}),
      },
      {
        case: `${n} subscribers: helios memory per idle subscriber (RSS)`,
        value: round(step.rssPerSubscriber.helios / 1024, 1),
        unit: 'KiB',
        baseline: `raw ws RSS per socket (${round(step.rssPerSubscriber.floor / 1024, 1)} KiB)`,
        ratio: ratio(step.rssPerSubscriber.helios, step.rssPerSubscriber.floor),
        ...(n === MEMORY_GOAL_STEP ? { goal: `<= ${MEMORY_GOAL_KIB} KiB`, met: step.rssPerSubscriber.helios <= MEMORY_GOAL_KIB * 1024 } : {}),
      },
      {
        case: `${n} subscribers: helios memory per idle subscriber (JS heap)`,
        value: round(step.heapPerSubscriber.helios / 1024, 1),
        unit: 'KiB',
        baseline: `raw ws heap per socket (${round(step.heapPerSubscriber.floor / 1024, 1)} KiB)`,
        ratio: ratio(step.heapPerSubscriber.helios, step.heapPerSubscriber.floor),
      },
    );
    for (const t of ['helios', 'floor'] as const) {
      const r = step.rounds[t];
      const lastSorted = sortedCopy(r.lastReceipt);
      notes.push(
        `${n} subscribers, ${t === 'helios' ? 'Helios' : 'raw ws floor'}: ${ROUNDS} rounds after ${WARMUP_ROUNDS} warm-up; ${r.latencies.length} receipts, ${r.missing} missing, ${r.bad} not a clean \`next\`; p50 ${round(p(t, 50), 1)} ms, p99 ${round(p(t, 99), 1)} ms, max ${round(lastSorted.at(-1) ?? Number.NaN, 1)} ms; last subscriber served after ${round(percentile(lastSorted, 50), 1)} ms (median round).`,
      );
    }
  }
  const skipped = STEPS.filter((n) => !steps.includes(n));
  if (skipped.length) {
    notes.push(
      `Step${skipped.length > 1 ? 's' : ''} ${skipped.join(', ')} replaced by ${largest} subscribers (with ${skipped.length > 1 ? 'their goals' : 'its goal'}): every server and client process holds n sockets, the open-file limit here is ${fits} per process (raising it with prlimit was refused), and ${SPARE_FILES} are kept for each process's own files (at start Helios held ${ownFiles.helios ?? '?'} descriptors, the floor ${ownFiles.floor ?? '?'}).`,
    );
  }
  notes.push(
    `Clients: raw ws speaking graphql-transport-ws, one child process per server (the same code; rounds alternate between the two), at most 16 sockets per loopback source address (Helios allows 20 WebSockets per client address by default). Open-file limit of this process (soft/hard): ${openFileLimit()}; of the four children: ${raised.every((r) => r !== null) ? `raised to ${NOFILE} with prlimit` : 'not raised (prlimit refused)'}.`,
  );
  return { name: 'fanout', rows, notes };
}
