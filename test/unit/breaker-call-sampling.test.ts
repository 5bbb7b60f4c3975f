/**
 * Sampled call timing behind helios_circuitbreaker_calls_seconds (issue 12), on an injected
 * clock that counts its reads: a breaker that reads no clock of its own times its first
 * CALL_TIMING_SAMPLE calls and then 1 in CALL_TIMING_SAMPLE, its counts stay exact, and the
 * exposed histogram (scaled from the weighted sample) is well-formed as the independent
 * Prometheus text parser reads it; a breaker that reads the clock anyway times every call with
 * no read more than it already makes for its slow-call check, and one more for a TIME window.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { CALL_KINDS, CALL_TIMING_SAMPLE, type CircuitBreaker } from '../../src/breakers/engine.js';
import { BreakerRegistry } from '../../src/breakers/registry.js';
import { ManualClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { GraphQLOperationCounters } from '../../src/metrics/graphql.js';
import { BUCKET_SLOTS, DURATION_BUCKETS_SECONDS, SampledDurationHistograms, type DurationHistograms } from '../../src/metrics/histogram.js';
import { createHeliosMetrics } from '../../src/metrics/prometheus.js';
import { parsePrometheusText, sampleValue } from '../support/prometheus-text.js';
import { prng } from '../support/prng.js';

const N = CALL_TIMING_SAMPLE;
const SUCCESSFUL = CALL_KINDS.indexOf('successful');
const FAILED = CALL_KINDS.indexOf('failed');
const LE = [...DURATION_BUCKETS_SECONDS.map(String), '+Inf'];
const BOUNDS_MS = DURATION_BUCKETS_SECONDS.map((s) => s * 1000);

/** The slot a duration falls in, computed here rather than taken from the code under test. */
function slotOf(ms: number): number {
  const i = BOUNDS_MS.findIndex((b) => ms <= b);
  return i < 0 ? BOUNDS_MS.length : i;
}

/** Cumulative buckets of one series of an exposed histogram. */
function cumulative(h: DurationHistograms, series: number): number[] {
  const out: number[] = [];
  let n = 0;
  for (let i = 0; i < BUCKET_SLOTS; i++) out.push((n += h.counts[series * BUCKET_SLOTS + i]!));
  return out;
}

function expectWellFormed(h: DurationHistograms, series: number, count: number): void {
  const c = cumulative(h, series);
  for (const v of c) expect(Number.isInteger(v)).toBe(true);
  for (let i = 1; i < c.length; i++) expect(c[i]!).toBeGreaterThanOrEqual(c[i - 1]!);
  expect(c[0]!).toBeGreaterThanOrEqual(0);
  expect(c[c.length - 1]).toBe(count);
  expect(h.count(series)).toBe(count);
}

/** A ManualClock whose `now()` reads are counted. */
function countingClock(): { clock: ManualClock; reads: () => number } {
  const clock = new ManualClock();
  let reads = 0;
  const now = clock.now.bind(clock);
  clock.now = () => {
    reads++;
    return now();
  };
  return { clock, reads: () => reads };
}

/**
 * Runs `calls` successful calls; call i takes durationOf(i) ms of the injected clock. Returns
 * which calls were timed, as the clock saw it: a timed call reads the clock before `fn` runs.
 */
async function run(breaker: CircuitBreaker, clock: ManualClock, calls: number, durationOf: (i: number) => number, reads?: () => number): Promise<boolean[]> {
  const timed: boolean[] = [];
  for (let i = 0; i < calls; i++) {
    const before = reads?.() ?? 0;
    await breaker.call(async () => {
      timed.push((reads?.() ?? 0) > before);
      clock.advance(durationOf(i));
      return i;
    });
  }
  return timed;
}

/** The weight of each timed call: the calls since the previous timed one, itself included. */
function weightsOf(timed: readonly boolean[]): Map<number, number> {
  const out = new Map<number, number>();
  let last = -1;
  timed.forEach((t, i) => {
    if (!t) return;
    out.set(i, i - last);
    last = i;
  });
  return out;
}

describe('SampledDurationHistograms', () => {
  it('comes out exactly as observed when every call was timed with weight 1', () => {
    const h = new SampledDurationHistograms(2, [0, 1]);
    for (const ms of [0, 0.7, 3, 3, 40, 20_000]) h.record(0, ms, 1);
    const e = h.estimate();
    expect(cumulative(e, 0)).toEqual(LE.map((_, i) => [0, 0.7, 3, 3, 40, 20_000].filter((ms) => slotOf(ms) <= i).length));
    expect(e.sumsMs[0]).toBe(0.7 + 3 + 3 + 40 + 20_000);
    expect(e.count(1)).toBe(0);
  });

  it('scales the weighted sample to the exact count: integer, monotonic buckets, +Inf = count, sum = count x mean', () => {
    const h = new SampledDurationHistograms(1, [0]);
    // 3 calls timed with weight 1 (2 ms each), 5 with weight 16 (one of 0.1 ms, four of 30 ms), 97 not timed.
    for (let i = 0; i < 3; i++) h.record(0, 2, 1);
    h.record(0, 0.1, 16);
    for (let i = 0; i < 4; i++) h.record(0, 30, 16);
    for (let i = 0; i < 97; i++) h.record(0, 0, 0);
    const count = 3 + 5 + 97;
    const e = h.estimate();
    expectWellFormed(e, 0, count);
    const weight = 3 + 5 * 16;
    const c = cumulative(e, 0);
    // Fractions of the weighted sample at each bound, times the exact count, rounded.
    expect(c[slotOf(0.1)]).toBe(Math.round((count * 16) / weight));
    expect(c[slotOf(2)]).toBe(Math.round((count * 19) / weight));
    expect(c[slotOf(30)]).toBe(count);
    expect(e.sumsMs[0]).toBeCloseTo((count * (3 * 2 + 16 * 0.1 + 64 * 30)) / weight, 9);
  });

  it('lends the lenders pooled distribution to a series with calls but no timed call, and the lowest bucket when there is none', () => {
    const h = new SampledDurationHistograms(3, [0, 1]);
    for (let i = 0; i < 4; i++) h.record(0, 8, 1);
    for (let i = 0; i < 6; i++) h.record(1, 0, 0);
    const e = h.estimate();
    expectWellFormed(e, 1, 6);
    expect(cumulative(e, 1)[slotOf(8) - 1]).toBe(0);
    expect(e.sumsMs[1]).toBe(48);

    const none = new SampledDurationHistograms(1, [0]);
    none.record(0, 0, 0);
    none.record(0, 0, 0);
    const n = none.estimate();
    expectWellFormed(n, 0, 2);
    expect(n.counts[0]).toBe(2);
    expect(n.sumsMs[0]).toBe(0);
  });
});

describe('breaker call timing with metrics on', () => {
  it('a default breaker counts every call exactly and reads the clock for its first N calls, then 1 in N on average', async () => {
    const { clock, reads } = countingClock();
    const breaker = new BreakerRegistry({ clock, timeCalls: true, random: prng(12) }).getOrCreate('dep');
    const before = reads();
    const calls = 400 * N;
    const timed = await run(breaker, clock, calls, () => 0, reads);
    const timedCount = timed.filter(Boolean).length;
    expect(reads() - before).toBe(2 * timedCount);
    expect(timed.slice(0, N).every(Boolean)).toBe(true);
    const gaps = [...weightsOf(timed).values()].slice(N);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(1);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(2 * N - 1);
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    // Uniform gaps 1 .. 2N-1: mean N, standard deviation about 0.58 N, over ~400 gaps.
    expect(mean).toBeGreaterThan(N * 0.85);
    expect(mean).toBeLessThan(N * 1.15);
    const h = breaker.callDurations!;
    expect(h.count(SUCCESSFUL)).toBe(calls);
    expect(breaker.metrics.successes).toBe(calls);
    expectWellFormed(h, SUCCESSFUL, calls);
  });

  it('exposes the timed calls weighted by their gaps, scaled to the exact count', async () => {
    const { clock, reads } = countingClock();
    const breaker = new BreakerRegistry({ clock, timeCalls: true, random: prng(3) }).getOrCreate('dep');
    const durationOf = (i: number) => [0, 2, 2, 7, 70, 700][i % 6]!; // whole ms: exact on an epoch-ms clock
    const calls = 40 * N + 3;
    const weights = weightsOf(await run(breaker, clock, calls, durationOf, reads));
    let weight = 0;
    let weightedSum = 0;
    const perSlot = new Array<number>(BUCKET_SLOTS).fill(0);
    for (const [i, w] of weights) {
      weight += w;
      weightedSum += w * durationOf(i);
      perSlot[slotOf(durationOf(i))]! += w;
    }
    const h = breaker.callDurations!;
    expectWellFormed(h, SUCCESSFUL, calls);
    let acc = 0;
    expect(cumulative(h, SUCCESSFUL)).toEqual(perSlot.map((w) => Math.round((calls * (acc += w)) / weight)));
    expect(h.sumsMs[SUCCESSFUL]).toBeCloseTo((calls * weightedSum) / weight, 6);
  });

  it('estimates a periodic workload without aliasing: every Nth call slow (a fixed 1-in-N would see all or none)', async () => {
    const clock = new ManualClock();
    const breaker = new BreakerRegistry({ clock, timeCalls: true, random: prng(99) }).getOrCreate('dep');
    const calls = 1250 * N;
    await run(breaker, clock, calls, (i) => (i % N === 5 ? 200 : 1));
    const h = breaker.callDurations!;
    const slowShare = 1 - cumulative(h, SUCCESSFUL)[slotOf(1)]! / calls;
    expect(slowShare).toBeGreaterThan(1 / N - 0.015);
    expect(slowShare).toBeLessThan(1 / N + 0.015);
    const trueMean = ((N - 1) * 1 + 200) / N;
    expect(h.sumsMs[SUCCESSFUL]! / calls).toBeGreaterThan(trueMean * 0.75);
    expect(h.sumsMs[SUCCESSFUL]! / calls).toBeLessThan(trueMean * 1.25);
  });

  it('a failure between samples counts exactly and borrows the timed calls distribution', async () => {
    const { clock } = countingClock();
    // random() = 0.5: after the N warm-up calls, gaps of exactly N.
    const breaker = new BreakerRegistry({ clock, timeCalls: true, random: () => 0.5 }).getOrCreate('dep', { failureThreshold: 100 });
    await run(breaker, clock, N + 1, () => 3); // calls 0 .. N-1 timed, call N is not, nor the failure after it
    await breaker.call(async () => {
      clock.advance(900);
      throw new Error('down');
    }).catch(() => {});
    const h = breaker.callDurations!;
    expect([h.count(SUCCESSFUL), h.count(FAILED)]).toEqual([N + 1, 1]);
    expectWellFormed(h, FAILED, 1);
    expect(cumulative(h, FAILED)[slotOf(3)]).toBe(1);
    expect(h.sumsMs[FAILED]).toBeCloseTo(3, 9);
    expect(breaker.metrics.failures).toBe(1);
  });

  it('a breaker with slowCallDurationMs times every call, with the same clock reads as with metrics off', async () => {
    const durations = Array.from({ length: 5 * N }, (_, i) => (i * 7) % 130);
    const readsWith = async (timeCalls: boolean) => {
      const { clock, reads } = countingClock();
      const breaker = new BreakerRegistry({ clock, timeCalls }).getOrCreate('slow', { slowCallDurationMs: 100, failureThreshold: 1000 });
      const before = reads();
      await run(breaker, clock, durations.length, (i) => durations[i]!);
      return { reads: reads() - before, breaker };
    };
    const on = await readsWith(true);
    const off = await readsWith(false);
    expect(on.reads).toBe(off.reads);
    const h = on.breaker.callDurations!;
    const fast = durations.filter((d) => d <= 100);
    const slow = durations.filter((d) => d > 100);
    expect([h.count(SUCCESSFUL), h.count(FAILED)]).toEqual([fast.length, slow.length]);
    // Exact, not estimated: every bucket as observed.
    expect(cumulative(h, SUCCESSFUL)).toEqual(LE.map((_, i) => fast.filter((d) => slotOf(d) <= i).length));
    expect(cumulative(h, FAILED)).toEqual(LE.map((_, i) => slow.filter((d) => slotOf(d) <= i).length));
    expect(h.sumsMs[SUCCESSFUL]).toBe(fast.reduce((a, b) => a + b, 0));
    expect(h.sumsMs[FAILED]).toBe(slow.reduce((a, b) => a + b, 0));
  });

  it('a TIME-window breaker times every call, its window reusing the end read: one read more per call than with metrics off', async () => {
    const durations = Array.from({ length: 3 * N }, (_, i) => (i % 5) * 40);
    const readsWith = async (timeCalls: boolean) => {
      const { clock, reads } = countingClock();
      const breaker = new BreakerRegistry({ clock, timeCalls }).getOrCreate('timed', { slidingWindowType: 'TIME', slidingWindowSize: 10, failureThreshold: 1000 });
      const before = reads();
      await run(breaker, clock, durations.length, (i) => durations[i]!);
      return { reads: reads() - before, breaker };
    };
    const on = await readsWith(true);
    const off = await readsWith(false);
    expect(off.reads).toBe(durations.length);
    expect(on.reads).toBe(2 * durations.length);
    // The window holds the seconds it held without metrics.
    expect(on.breaker.windowCounts).toEqual(off.breaker.windowCounts);
    const h = on.breaker.callDurations!;
    expect(cumulative(h, SUCCESSFUL)).toEqual(LE.map((_, i) => durations.filter((d) => slotOf(d) <= i).length));
    expect(h.sumsMs[SUCCESSFUL]).toBe(durations.reduce((a, b) => a + b, 0));
  });
});

describe('sampled histogram in the /metrics text', () => {
  let app: App | null = null;
  let dir = '';
  afterEach(async () => {
    vi.restoreAllMocks();
    await app?.close();
    app = null;
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads as a valid histogram with the exact count after thousands of sampled calls', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'helios-sampling-'));
    const clock = new ManualClock();
    const config = loadConfig({ HELIOS_DB_PATH: path.join(dir, 'h.db'), LOG_LEVEL: 'silent', HELIOS_ADMIN_TOKEN: 'sampling-admin-token-0123456789abcdef', HELIOS_METRICS: 'true' });
    // The app's registry samples with Math.random: seeded for this test (restored in afterEach) so the estimate reproduces.
    vi.spyOn(Math, 'random').mockImplementation(prng(2026));
    app = await createApp(config, { clock, logger: createLogger('silent'), print: () => {} });
    const breaker = app.services.breakers.registry.getOrCreate('sampled', { failureThreshold: 1000 });
    const calls = 400 * N;
    await run(breaker, clock, calls, (i) => (i % 3 === 0 ? 0 : i % 3 === 1 ? 4 : 60));
    for (let i = 0; i < 37; i++) await breaker.call(async () => Promise.reject(new Error('down'))).catch(() => {});
    const metrics = createHeliosMetrics({ ...app.services, graphql: new GraphQLOperationCounters(), openWebSockets: () => 0 });
    try {
      const families = parsePrometheusText(await metrics.scrape()); // throws on non-cumulative buckets or +Inf != _count
      const name = 'helios_circuitbreaker_calls_seconds';
      const ok = { name: 'sampled', kind: 'successful' };
      expect(sampleValue(families, `${name}_count`, ok)).toBe(calls);
      expect(sampleValue(families, `${name}_bucket`, { ...ok, le: '+Inf' })).toBe(calls);
      expect(sampleValue(families, `${name}_count`, { name: 'sampled', kind: 'failed' })).toBe(37);
      const buckets = families.get(name)!.samples.filter((s) => s.name === `${name}_bucket` && s.labels.kind === 'successful');
      for (const b of buckets) expect(Number.isInteger(b.value)).toBe(true);
      // A third of the calls take 0 ms, a third 4 ms and a third 60 ms; the sample says about as much.
      const at = (le: string) => sampleValue(families, `${name}_bucket`, { ...ok, le })!;
      expect(at('0.0005') / calls).toBeGreaterThan(0.25);
      expect(at('0.0005') / calls).toBeLessThan(0.42);
      expect(at('0.005') / calls).toBeGreaterThan(0.58);
      expect(at('0.005') / calls).toBeLessThan(0.75);
      expect(at('0.05')).toBe(at('0.005'));
      expect(at('0.1')).toBe(calls);
      const sum = sampleValue(families, `${name}_sum`, ok)!;
      expect(sum / calls).toBeGreaterThan(0.015);
      expect(sum / calls).toBeLessThan(0.026);
    } finally {
      metrics.close();
    }
  });
});
