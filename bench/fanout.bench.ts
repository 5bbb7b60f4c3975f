/**
 * Subscription fan-out: 1,000 then 5,000 graphql-ws subscribers to `breakerStateChanged`, the
 * server (Helios, own process) forcing one breaker open and resetting it, in turns. Latency is
 * from an epoch timestamp taken in the server right before the transition (so it includes the
 * SQLite write and the publish) to each client's receipt of the `next` frame, both clocks being
 * the same wall clock read with sub-millisecond resolution. Clients live in another process
 * (raw `ws`, see support/fanout-clients.ts); on a 2-core machine they still share the CPU with
 * the server, which makes the figures conservative.
 *
 * Memory per idle subscriber: the server's RSS and heap after a forced GC, before the first
 * subscriber and after the last one of a step has subscribed, divided by the subscribers added.
 */
import type { BenchReport, BenchRow } from './report.js';
import { forkRpc, siblingScript, type RpcChild } from './support/rpc.js';
import { startHelios, type ServerChild } from './support/servers.js';
import type { MemorySample } from './support/memory.js';
import { openFileLimit } from './support/system.js';
import { MB, percentile, ratio, round, sleep, sortedCopy } from './support/stats.js';

const STEPS = [1_000, 5_000];
const ROUNDS = 20;
const WARMUP_ROUNDS = 2;
const GOAL_P99_MS = 100;
const BREAKER = 'fanout_bench';
const SUBSCRIPTION = 'subscription { breakerStateChanged { name from to reason at metrics { failures consecutiveFailures rejections } } }';

interface StepResult {
  subscribers: number;
  latencies: number[];
  /** Per round: time until the last subscriber had the event. */
  lastReceipt: number[];
  missing: number;
  bad: number;
  rssPerSubscriber: number;
  heapPerSubscriber: number;
  connectMs: number;
}

async function untilListening(server: ServerChild, clients: RpcChild<unknown>, count: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  let active = 0;
  while ((active = await server.call<number>('listenerCount', 'breakerStateChanged')) < count) {
    if (Date.now() > deadline) {
      throw new Error(`${active} of ${count} subscriptions became active; clients: ${JSON.stringify(await clients.call('stats'))}`);
    }
    await sleep(50);
  }
}

async function rounds(server: ServerChild, clients: RpcChild<unknown>): Promise<Pick<StepResult, 'latencies' | 'lastReceipt' | 'missing' | 'bad'>> {
  const latencies: number[] = [];
  const lastReceipt: number[] = [];
  let missing = 0;
  let bad = 0;
  for (let r = 0; r < WARMUP_ROUNDS + ROUNDS; r++) {
    await clients.call('arm');
    const t0 = await server.call<number>('toggleBreaker', BREAKER);
    const got = await clients.call<{ times: number[]; missing: number; bad: number }>('collect', 15_000);
    if (r >= WARMUP_ROUNDS) {
      let last = 0;
      for (const t of got.times) {
        latencies.push(t - t0);
        last = Math.max(last, t - t0);
      }
      lastReceipt.push(last);
      missing += got.missing;
      bad += got.bad;
    }
    await sleep(100);
  }
  return { latencies, lastReceipt, missing, bad };
}

export default async function run(): Promise<BenchReport> {
  const server = await startHelios();
  const clients = await forkRpc<unknown>(siblingScript(import.meta.url, './support/fanout-clients'));
  const results: StepResult[] = [];
  const notes: string[] = [];
  try {
    await server.call('configureBreaker', BREAKER);
    const base = await server.call<MemorySample>('memory');
    let before = base;
    let subscribed = 0;
    for (const target of STEPS) {
      const add = target - subscribed;
      const { ms } = await clients.call<{ connected: number; ms: number }>('connect', { url: server.ready.url, count: add, query: SUBSCRIPTION });
      await untilListening(server, clients, target);
      subscribed = target;
      const after = await server.call<MemorySample>('memory');
      const measured = await rounds(server, clients);
      results.push({
        subscribers: target,
        ...measured,
        rssPerSubscriber: (after.rss - before.rss) / add,
        heapPerSubscriber: (after.heapUsed - before.heapUsed) / add,
        connectMs: ms,
      });
      notes.push(
        `${target} subscribers: +${add} connected and subscribed in ${round(ms / 1000, 1)} s; server RSS ${round(before.rss / MB, 1)} -> ${round(after.rss / MB, 1)} MB, heap ${round(before.heapUsed / MB, 1)} -> ${round(after.heapUsed / MB, 1)} MB (after GC: ${after.gc}).`,
      );
      before = await server.call<MemorySample>('memory');
    }
    const stats = await clients.call<{ errors: number; closedEarly: number; oddFrames: number; firstOddFrame: string | null }>('stats');
    notes.push(
      `client socket errors ${stats.errors}, sockets closed by the server ${stats.closedEarly}, frames other than next/ping ${stats.oddFrames}${stats.firstOddFrame ? ` (first: ${stats.firstOddFrame})` : ''}.`,
    );
  } finally {
    await clients.stop();
    await server.stop();
  }

  const rows: BenchRow[] = [];
  const small = results[0]!;
  const smallP50 = percentile(sortedCopy(small.latencies), 50);
  for (const step of results) {
    const sorted = sortedCopy(step.latencies);
    const p50 = percentile(sorted, 50);
    const p99 = percentile(sorted, 99);
    const goal = step.subscribers === 5_000;
    rows.push(
      {
        case: `${step.subscribers} subscribers: latency p50`,
        value: round(p50, 2),
        unit: 'ms',
        baseline: '1000 subscribers p50',
        ratio: ratio(p50, smallP50),
      },
      {
        case: `${step.subscribers} subscribers: latency p99`,
        value: round(p99, 2),
        unit: 'ms',
        baseline: `${step.subscribers} subscribers p50`,
        ratio: ratio(p99, p50),
        ...(goal ? { goal: `< ${GOAL_P99_MS} ms`, met: p99 < GOAL_P99_MS && step.missing === 0 && step.bad === 0 } : {}),
      },
      {
        case: `${step.subscribers} subscribers: memory per idle subscriber (RSS)`,
        value: round(step.rssPerSubscriber / 1024, 1),
        unit: 'KiB',
        baseline: 'heap per subscriber',
        ratio: ratio(step.rssPerSubscriber, step.heapPerSubscriber),
      },
      {
        case: `${step.subscribers} subscribers: memory per idle subscriber (JS heap)`,
        value: round(step.heapPerSubscriber / 1024, 1),
        unit: 'KiB',
        baseline: 'RSS per subscriber',
        ratio: ratio(step.heapPerSubscriber, step.rssPerSubscriber),
      },
    );
    const lastSorted = sortedCopy(step.lastReceipt);
    notes.push(
      `${step.subscribers} subscribers: ${ROUNDS} transitions after ${WARMUP_ROUNDS} warm-up; ${step.latencies.length} receipts, ${step.missing} missing, ${step.bad} not a clean \`next\`; max ${round(lastSorted.at(-1) ?? Number.NaN, 1)} ms; last subscriber served after ${round(percentile(lastSorted, 50), 1)} ms (median round).`,
    );
  }
  notes.push(
    `Clients: raw ws speaking graphql-transport-ws in one child process, at most 16 sockets per loopback source address. Open-file limit (soft/hard): ${openFileLimit()}; 5,000 sockets need about 5,000 descriptors on each side, each side being its own process.`,
  );
  return { name: 'fanout', rows, notes };
}
