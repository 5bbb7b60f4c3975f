/**
 * The plain counters behind /metrics, on a fake clock: breaker call histograms by kind, the
 * duration buckets, flag evaluation tallies, the OFREP mapping's edge cases, and the strictness
 * of the test suite's own Prometheus text parser.
 */
import { describe, expect, it } from 'vitest';
import { CALL_KINDS } from '../../src/breakers/engine.js';
import { BreakerRegistry } from '../../src/breakers/registry.js';
import { ManualClock } from '../../src/clock.js';
import { compileFlag, type FlagDefinition } from '../../src/flags/engine.js';
import { FlagEvaluationCounts } from '../../src/flags/evaluation-counts.js';
import { ifNoneMatchHits, parseOfrepRequest } from '../../src/flags/ofrep.js';
import { BUCKET_SLOTS, DURATION_BUCKETS_SECONDS, DurationHistograms } from '../../src/metrics/histogram.js';
import { parsePrometheusText } from '../support/prometheus-text.js';

const kind = (name: (typeof CALL_KINDS)[number]) => CALL_KINDS.indexOf(name);
const bucketOfSeconds = (s: number) => DURATION_BUCKETS_SECONDS.indexOf(s as (typeof DURATION_BUCKETS_SECONDS)[number]);

describe('DurationHistograms', () => {
  it('puts a duration in the first bucket whose bound it does not exceed, +Inf past the last', () => {
    const h = new DurationHistograms(2);
    h.observe(0, 0);
    h.observe(0, 1); // exactly 1 ms: le="0.001"
    h.observe(0, 1.0001);
    h.observe(1, 60_000);
    expect(h.counts[bucketOfSeconds(0.0005)]).toBe(1);
    expect(h.counts[bucketOfSeconds(0.001)]).toBe(1);
    expect(h.counts[bucketOfSeconds(0.0025)]).toBe(1);
    expect(h.counts[BUCKET_SLOTS + BUCKET_SLOTS - 1]).toBe(1);
    expect([h.count(0), h.count(1)]).toEqual([3, 1]);
    expect(h.sumsMs[0]).toBeCloseTo(2.0001);
  });
});

describe('breaker call durations', () => {
  const setup = (timeCalls: boolean, config = {}) => {
    const clock = new ManualClock();
    const registry = new BreakerRegistry({ clock, timeCalls });
    return { clock, breaker: registry.getOrCreate('dep', config), registry };
  };

  it('times every call by kind on the injected clock: successful, failed, ignored, not_permitted', async () => {
    const { clock, breaker } = setup(true, { failureThreshold: 3 });
    await breaker.call(async () => {
      clock.advance(30);
      return 'ok';
    });
    await breaker.call(async () => {
      clock.advance(300);
      throw new Error('down');
    }).catch(() => {});
    breaker.isFailure = (error) => (error as Error).message !== 'harmless';
    await breaker.call(async () => {
      throw new Error('harmless');
    }).catch(() => {});
    breaker.open();
    await breaker.call(async () => 'refused').catch(() => {});
    const h = breaker.callDurations!;
    expect(CALL_KINDS.map((_, i) => h.count(i))).toEqual([1, 1, 1, 1]);
    expect(h.counts[kind('successful') * BUCKET_SLOTS + bucketOfSeconds(0.05)]).toBe(1);
    expect(h.counts[kind('failed') * BUCKET_SLOTS + bucketOfSeconds(0.5)]).toBe(1);
    expect(h.sumsMs[kind('successful')]).toBe(30);
    expect(h.sumsMs[kind('failed')]).toBe(300);
    expect(h.sumsMs[kind('not_permitted')]).toBe(0);
  });

  it('counts a slow success as failed (the breaker counts it so) and a timed-out permit with its budget', () => {
    const { clock, breaker } = setup(true, { slowCallDurationMs: 100, callTimeoutMs: 1000, failureThreshold: 10 });
    const slow = breaker.tryAcquire()!;
    clock.advance(150);
    slow.success();
    const lost = breaker.tryAcquire()!;
    lost.timeout();
    const h = breaker.callDurations!;
    expect([h.count(kind('successful')), h.count(kind('failed'))]).toEqual([0, 2]);
    expect(h.sumsMs[kind('failed')]).toBe(1150);
  });

  it('reads no clock and keeps no histogram when the host does not time calls', async () => {
    const { clock, breaker } = setup(false);
    let reads = 0;
    const now = clock.now.bind(clock);
    clock.now = () => {
      reads++;
      return now();
    };
    await breaker.call(async () => 'ok');
    expect(breaker.callDurations).toBeNull();
    expect(reads).toBe(0);
  });
});

describe('FlagEvaluationCounts', () => {
  it('tallies by flag, result and reason; unknown names are one total', () => {
    const def: FlagDefinition = {
      name: 'split', description: '', enabled: true, strategy: 'PERCENTAGE', percentage: 50, stickiness: 'default',
      whitelist: [], gradual: null, createdAt: 0, updatedAt: 0,
    };
    const flag = compileFlag(def, () => 0.99);
    const counts = new FlagEvaluationCounts();
    const results = Array.from({ length: 200 }, (_, i) => flag.evaluate({ sessionId: `s${i}` }, 0));
    results.forEach((r) => counts.count(r));
    counts.count(flag.evaluate({}, 0));
    counts.count({ flag: 'ghost', enabled: false, reason: 'FLAG_NOT_FOUND', strategy: null, percentage: null, bucket: null });
    const on = results.filter((r) => r.enabled).length;
    expect(counts.tallies()).toEqual([
      { flag: 'split', enabled: false, reason: 'SPLIT', count: 200 - on },
      { flag: 'split', enabled: true, reason: 'SPLIT', count: on },
      { flag: 'split', enabled: false, reason: 'RANDOM', count: 1 },
    ]);
    expect(counts.notFound).toBe(1);
  });
});

describe('OFREP mapping', () => {
  it('maps context keys onto the Helios context', () => {
    expect(parseOfrepRequest(JSON.stringify({ context: { targetingKey: 'k', userId: 'u', symbol: 'BTCZAR', system: 's', tier: 'gold', n: 3 } }))).toEqual({
      ok: true,
      raw: { targetingKey: 'k', userId: 'u', symbol: 'BTCZAR', system: 's', tier: 'gold', n: 3 },
      context: { sessionId: 'k', userId: 'u', symbol: 'BTCZAR', system: 's', attributes: { targetingKey: 'k', tier: 'gold', n: 3 } },
    });
    expect(parseOfrepRequest('{"context": {"sessionId": "s"}}')).toMatchObject({ ok: true, context: { sessionId: 's', attributes: null } });
    expect(parseOfrepRequest(Buffer.from(''))).toEqual({ ok: true, context: {}, raw: {} });
    expect(parseOfrepRequest('{"context": null}')).toEqual({ ok: true, context: {}, raw: {} });
    expect(parseOfrepRequest('"x"')).toMatchObject({ ok: false, errorCode: 'PARSE_ERROR' });
  });

  it('matches If-None-Match lists with weak comparison', () => {
    expect(ifNoneMatchHits('"a"', '"a"')).toBe(true);
    expect(ifNoneMatchHits('"b", W/"a"', '"a"')).toBe(true);
    expect(ifNoneMatchHits('*', '"a"')).toBe(true);
    expect(ifNoneMatchHits('"ab"', '"a"')).toBe(false);
    expect(ifNoneMatchHits(undefined, '"a"')).toBe(false);
  });
});

describe('the test Prometheus parser', () => {
  const ok = '# HELP x_total X.\n# TYPE x_total counter\nx_total{a="1"} 3\n';
  it('reads a well-formed exposition', () => {
    expect(parsePrometheusText(ok).get('x_total')).toEqual({ name: 'x_total', type: 'counter', help: 'X.', samples: [{ name: 'x_total', labels: { a: '1' }, value: 3 }] });
    expect(parsePrometheusText('# TYPE g gauge\ng{a="q\\"\\n\\\\"} Nan\n').get('g')!.samples[0]!.labels.a).toBe('q"\n\\');
  });

  it.each([
    ['a sample without TYPE', 'y 1\n'],
    ['a series twice', `${ok}x_total{a="1"} 4\n`],
    ['TYPE twice', `${ok}# TYPE x_total counter\n`],
    ['a bad escape', '# TYPE g gauge\ng{a="\\t"} 1\n'],
    ['a bad value', '# TYPE g gauge\ng 1,5\n'],
    ['a missing newline at the end', '# TYPE g gauge\ng 1'],
    ['buckets that are not cumulative', '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'],
    ['+Inf bucket unlike _count', '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n'],
    ['a histogram without +Inf', '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
  ])('rejects %s', (_what, text) => {
    expect(() => parsePrometheusText(text)).toThrow();
  });
});
