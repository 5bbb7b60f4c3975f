/**
 * Overhead per protected call: Helios `breaker.call` against a direct call, cockatiel's
 * circuitBreaker (ConsecutiveBreaker) `execute` and opossum's `fire`, on an async function
 * that resolves at once, so the figure is the breaker's own cost.
 *
 * Each case runs `CALLS` sequential awaited calls per round, cases rotating their order every
 * round so drift and GC hit all alike; the reported figure is the median over rounds after a
 * warm-up. Overhead = case - direct. opossum runs with `timeout: false` in the main rows (its
 * default 10 s timeout arms a setTimeout per call, which the others do not do); the timeout
 * rows compare that default against Helios `callTimeoutMs` and cockatiel's timeout policy.
 * The rejection rows time an open breaker refusing a call (await + catch).
 */
import {
  ConsecutiveBreaker,
  TimeoutStrategy,
  circuitBreaker,
  handleAll,
  timeout as cockatielTimeout,
  wrap,
} from 'cockatiel';
import Opossum from 'opossum';
import { systemClock } from '../src/clock.js';
import { BreakerRegistry } from '../src/breakers/registry.js';
import type { BenchReport, BenchRow } from './report.js';

const CALLS = 100_000;
const WARMUP_CALLS = 50_000;
const ROUNDS = 9;
const REJECT_CALLS = 50_000;
const HOUR_MS = 3_600_000;

let sink = 0;
const work = async (): Promise<number> => 1;
const failing = async (): Promise<number> => {
  throw new Error('down');
};
const noop = (): void => undefined;

type Op = () => Promise<unknown>;

async function loop(op: Op, calls: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) {
    const value = await op();
    if (value === 1) sink++;
  }
  return Number(process.hrtime.bigint() - start) / calls;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/** Median ns/call per case, cases interleaved round by round. */
async function measure(cases: Record<string, Op>, calls: number): Promise<Record<string, number>> {
  const names = Object.keys(cases);
  for (const name of names) await loop(cases[name]!, Math.min(calls, WARMUP_CALLS));
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < names.length; k++) {
      const name = names[(k + round) % names.length]!;
      samples[name]!.push(await loop(cases[name]!, calls));
    }
  }
  return Object.fromEntries(names.map((n) => [n, median(samples[n]!)]));
}

const round1 = (x: number): number => Math.round(x * 10) / 10;
const ratio = (a: number, b: number): number => (b === 0 ? Number.NaN : Math.round((a / b) * 1000) / 1000);

export default async function run(): Promise<BenchReport> {
  const registry = new BreakerRegistry({ clock: systemClock });
  const helios = registry.getOrCreate('bench', { failureThreshold: 5, resetTimeoutSeconds: 10 });
  const heliosTimed = registry.getOrCreate('bench-timeout', { callTimeoutMs: 10_000 });
  const heliosOpen = registry.getOrCreate('bench-open', { failureThreshold: 1, resetTimeoutSeconds: 3600 });

  const cockatiel = circuitBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) });
  const cockatielTimed = wrap(
    cockatielTimeout(10_000, TimeoutStrategy.Aggressive),
    circuitBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) }),
  );
  const cockatielOpen = circuitBreaker(handleAll, { halfOpenAfter: HOUR_MS, breaker: new ConsecutiveBreaker(1) });

  const opossum = new Opossum(work, { timeout: false, resetTimeout: 10_000 });
  const opossumTimed = new Opossum(work, { timeout: 10_000, resetTimeout: 10_000 });
  const opossumOpen = new Opossum(failing, { timeout: false, resetTimeout: HOUR_MS });

  try {
    // Open the "open" breakers by real failures, as production would.
    await heliosOpen.call(failing).catch(noop);
    await cockatielOpen.execute(failing).catch(noop);
    opossumOpen.open();
    if (heliosOpen.state !== 'OPEN') throw new Error(`helios breaker did not open: ${heliosOpen.state}`);

    const main = await measure(
      {
        direct: () => work(),
        helios: () => helios.call(work),
        cockatiel: () => cockatiel.execute(work),
        opossum: () => opossum.fire(),
      },
      CALLS,
    );
    const timed = await measure(
      {
        direct: () => work(),
        helios: () => heliosTimed.call(work),
        cockatiel: () => cockatielTimed.execute(work),
        opossum: () => opossumTimed.fire(),
      },
      CALLS,
    );
    const rejected = await measure(
      {
        helios: () => heliosOpen.call(work).catch(noop),
        cockatiel: () => cockatielOpen.execute(work).catch(noop),
        opossum: () => opossumOpen.fire().catch(noop),
      },
      REJECT_CALLS,
    );

    const direct = main.direct!;
    const over = (x: number): number => Math.max(0, x - direct);
    const hOver = over(main.helios!);
    const cOver = over(main.cockatiel!);
    const oOver = over(main.opossum!);
    const tDirect = timed.direct!;
    const tOver = (x: number): number => Math.max(0, x - tDirect);

    const rows: BenchRow[] = [
      { case: 'direct await of an async fn', value: round1(direct), unit: 'ns/call', baseline: 'direct', ratio: 1 },
      { case: 'helios breaker.call', value: round1(main.helios!), unit: 'ns/call', baseline: 'direct', ratio: ratio(main.helios!, direct) },
      { case: 'cockatiel circuitBreaker.execute', value: round1(main.cockatiel!), unit: 'ns/call', baseline: 'direct', ratio: ratio(main.cockatiel!, direct) },
      { case: 'opossum fire (timeout: false)', value: round1(main.opossum!), unit: 'ns/call', baseline: 'direct', ratio: ratio(main.opossum!, direct) },
      {
        case: 'helios overhead per call',
        value: round1(hOver),
        unit: 'ns/call',
        baseline: 'cockatiel overhead per call',
        ratio: ratio(hOver, cOver),
        goal: '<= cockatiel',
        met: hOver <= cOver,
      },
      { case: 'cockatiel overhead per call', value: round1(cOver), unit: 'ns/call', baseline: 'helios overhead per call', ratio: ratio(cOver, hOver) },
      { case: 'opossum overhead per call', value: round1(oOver), unit: 'ns/call', baseline: 'helios overhead per call', ratio: ratio(oOver, hOver) },
      {
        case: 'helios overhead, callTimeoutMs 10 s',
        value: round1(tOver(timed.helios!)),
        unit: 'ns/call',
        baseline: 'cockatiel timeout(10 s)+breaker overhead',
        ratio: ratio(tOver(timed.helios!), tOver(timed.cockatiel!)),
        goal: '<= cockatiel',
        met: tOver(timed.helios!) <= tOver(timed.cockatiel!),
      },
      { case: 'cockatiel timeout(10 s)+breaker overhead', value: round1(tOver(timed.cockatiel!)), unit: 'ns/call', baseline: 'helios overhead, callTimeoutMs 10 s', ratio: ratio(tOver(timed.cockatiel!), tOver(timed.helios!)) },
      { case: 'opossum overhead, timeout 10 s (default)', value: round1(tOver(timed.opossum!)), unit: 'ns/call', baseline: 'helios overhead, callTimeoutMs 10 s', ratio: ratio(tOver(timed.opossum!), tOver(timed.helios!)) },
      {
        case: 'helios rejection (open breaker)',
        value: round1(rejected.helios!),
        unit: 'ns/call',
        baseline: 'cockatiel rejection',
        ratio: ratio(rejected.helios!, rejected.cockatiel!),
        goal: '<= cockatiel',
        met: rejected.helios! <= rejected.cockatiel!,
      },
      { case: 'cockatiel rejection (open breaker)', value: round1(rejected.cockatiel!), unit: 'ns/call', baseline: 'helios rejection', ratio: ratio(rejected.cockatiel!, rejected.helios!) },
      { case: 'opossum rejection (open breaker)', value: round1(rejected.opossum!), unit: 'ns/call', baseline: 'helios rejection', ratio: ratio(rejected.opossum!, rejected.helios!) },
    ];
    const m = helios.metrics;
    return {
      name: 'breakers',
      rows,
      notes: [
        `${CALLS} sequential awaited calls per case per round, ${ROUNDS} rounds, median; Node ${process.version}.`,
        'overhead = case - direct in the same run; goal: Helios overhead <= cockatiel\'s.',
        'opossum main rows use timeout: false; its default (10 s) arms a setTimeout per call, shown in the timeout rows.',
        `helios counted ${m.calls} calls, ${m.failures} failures (sanity); sink ${sink}.`,
      ],
    };
  } finally {
    opossum.shutdown();
    opossumTimed.shutdown();
    opossumOpen.shutdown();
    registry.dispose();
  }
}
