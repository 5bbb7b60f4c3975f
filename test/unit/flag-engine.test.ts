import { describe, it, expect } from 'vitest';
import {
  EVALUATION_REASONS,
  ROLLOUT_STRATEGIES,
  bucketOf,
  compileFlag,
  effectivePercentage,
  scheduledPercentage,
  evaluateFlag,
  gradualPercentageAt,
  nextGradualChangeAt,
  notFound,
  outcomeSlot,
  slotEnabled,
  stickyValueOf,
  type EvaluationContext,
  type EvaluationReason,
  type FlagDefinition,
  type GradualSchedule,
} from '../../src/flags/engine.js';
import { murmurhash3 } from '../../src/flags/murmurhash3.js';

const T0 = Date.UTC(2026, 0, 1);
const SECOND = 1000;

function flag(overrides: Partial<FlagDefinition> = {}): FlagDefinition {
  return {
    name: 'websocket_v2',
    description: 'New WebSocket implementation',
    enabled: true,
    strategy: 'PERCENTAGE',
    percentage: 25,
    stickiness: 'default',
    whitelist: [],
    gradual: null,
    createdAt: T0,
    updatedAt: T0,
    ...overrides,
  };
}

const sessions = (n: number, prefix = 'session-'): EvaluationContext[] =>
  Array.from({ length: n }, (_, i) => ({ sessionId: `${prefix}${i}` }));

describe('bucketing', () => {
  it('is murmurhash3("<flag>:<sticky>") % 10000, with known values', () => {
    // Literal values from the reference MurmurHash3 x86_32 over UTF-8 (see murmurhash3.test.ts).
    expect(bucketOf('websocket_v2', 'abc123')).toBe(9972);
    expect(bucketOf('neural_network_v2', 'session-42')).toBe(6606);
    expect(bucketOf('Kraftfahrzeug-ü', 'sitzung-ß😀')).toBe(4550);
    expect(bucketOf('websocket_v2', 'abc123')).toBe(murmurhash3('websocket_v2:abc123') % 10000);
  });

  it('is deterministic and the compiled flag reports the same bucket', () => {
    const def = flag({ name: 'neural_network_v2', percentage: 66.07 });
    const a = compileFlag(def);
    const b = compileFlag(structuredClone(def));
    const ctx = { sessionId: 'session-42' };
    const first = a.evaluate(ctx, T0);
    // Bucket 6606 sits just below the threshold round(66.07 * 100) = 6607.
    expect(first).toEqual({
      flag: 'neural_network_v2',
      enabled: true,
      reason: 'SPLIT',
      strategy: 'PERCENTAGE',
      percentage: 66.07,
      bucket: 6606,
    });
    for (let i = 0; i < 5; i++) expect(b.evaluate(ctx, T0 + i * 1e9)).toEqual(first);
    expect(compileFlag(flag({ name: 'neural_network_v2', percentage: 66.06 })).evaluate(ctx, T0).enabled).toBe(false);
    expect(compileFlag(flag({ name: 'neural_network_v2', percentage: 66.07 })).evaluate(ctx, T0).enabled).toBe(true);
  });

  it('uses UTF-8 bytes for non-ASCII flag names and sticky values', () => {
    const c = compileFlag(flag({ name: 'Kraftfahrzeug-ü', percentage: 100 }));
    expect(c.evaluate({ sessionId: 'sitzung-ß😀' }, T0).bucket).toBe(4550);
  });

  it('raising a percentage never turns a context off', () => {
    const contexts = sessions(5000);
    const percentages = [0, 0.01, 0.5, 1, 5, 10, 12.34, 25, 33.33, 50, 66.67, 75, 90, 99.99, 100];
    let previous: boolean[] = contexts.map(() => false);
    for (const p of percentages) {
      const c = compileFlag(flag({ percentage: p }));
      const now = contexts.map((ctx) => c.evaluate(ctx, T0).enabled);
      for (let i = 0; i < contexts.length; i++) {
        if (previous[i]) expect(now[i], `${contexts[i]!.sessionId} at ${p}%`).toBe(true);
      }
      previous = now;
    }
    expect(previous.every(Boolean)).toBe(true);
  });

  it('enables a share within 1 point of the percentage over 100,000 contexts', () => {
    const contexts = sessions(100_000, 'user-session-');
    for (const p of [1, 10, 25, 50, 75, 99]) {
      const c = compileFlag(flag({ percentage: p }));
      let on = 0;
      for (const ctx of contexts) if (c.evaluate(ctx, T0).enabled) on++;
      expect(Math.abs((on / contexts.length) * 100 - p), `${p}%: ${on}`).toBeLessThanOrEqual(1);
    }
  });

  it('0% enables nobody and 100% everybody', () => {
    const none = compileFlag(flag({ percentage: 0 }));
    const all = compileFlag(flag({ percentage: 100 }));
    for (const ctx of sessions(2000)) {
      expect(none.evaluate(ctx, T0).enabled).toBe(false);
      expect(all.evaluate(ctx, T0).enabled).toBe(true);
    }
  });
});

describe('stickiness', () => {
  it("'default' uses sessionId, then userId", () => {
    const def = { stickiness: 'default' };
    expect(stickyValueOf(def, { sessionId: 's1', userId: 'u1' })).toBe('s1');
    expect(stickyValueOf(def, { userId: 'u1' })).toBe('u1');
    expect(stickyValueOf(def, { sessionId: '', userId: 'u1' })).toBe('u1');
    expect(stickyValueOf(def, { symbol: 'BTCZAR' })).toBeNull();
    expect(stickyValueOf(def, {})).toBeNull();
  });

  it('by userId: the same user gets the same answer across sessions', () => {
    const c = compileFlag(flag({ stickiness: 'userId', percentage: 50 }));
    for (let u = 0; u < 200; u++) {
      const userId = `user-${u}`;
      const expected = c.evaluate({ userId, sessionId: 'first' }, T0);
      expect(expected.bucket).toBe(bucketOf('websocket_v2', userId));
      for (let s = 0; s < 5; s++) {
        expect(c.evaluate({ userId, sessionId: `s-${s}` }, T0)).toEqual(expected);
      }
    }
  });

  it('by a custom attribute, with numbers compared by String()', () => {
    const def = flag({ stickiness: 'accountId', percentage: 50 });
    expect(stickyValueOf(def, { attributes: { accountId: 'acc-1' } })).toBe('acc-1');
    expect(stickyValueOf(def, { attributes: { accountId: 1234 } })).toBe('1234');
    expect(stickyValueOf(def, { sessionId: 's', attributes: { accountId: { nested: true } } })).toBeNull();
    const c = compileFlag(def);
    const r = c.evaluate({ sessionId: 'ignored', attributes: { accountId: 1234 } }, T0);
    expect(r.reason).toBe('SPLIT');
    expect(r.bucket).toBe(bucketOf('websocket_v2', '1234'));
  });

  it('by a named field other than the defaults (symbol)', () => {
    const c = compileFlag(flag({ stickiness: 'symbol', percentage: 50 }));
    expect(c.evaluate({ symbol: 'BTCZAR', sessionId: 'x' }, T0).bucket).toBe(bucketOf('websocket_v2', 'BTCZAR'));
    expect(c.evaluate({ attributes: { symbol: 'BTCZAR' } }, T0).bucket).toBe(bucketOf('websocket_v2', 'BTCZAR'));
  });

  it('without a sticky value draws a random bucket, reason RANDOM', () => {
    const draws = [0, 0.2499, 0.25, 0.999999];
    let i = 0;
    const random = (): number => draws[i++ % draws.length]!;
    const c = compileFlag(flag({ percentage: 25 }), random);
    const results = draws.map(() => c.evaluate({ symbol: 'BTCZAR' }, T0));
    expect(results.map((r) => r.reason)).toEqual(['RANDOM', 'RANDOM', 'RANDOM', 'RANDOM']);
    expect(results.map((r) => r.bucket)).toEqual([0, 2499, 2500, 9999]);
    expect(results.map((r) => r.enabled)).toEqual([true, true, false, false]);
    expect(results[0]!.percentage).toBe(25);
    // A sticky value never consults the random source.
    const never = compileFlag(flag(), () => {
      throw new Error('random used');
    });
    expect(never.evaluate({ sessionId: 's' }, T0).reason).toBe('SPLIT');
  });

  it('a custom stickiness absent from the context is RANDOM even with a sessionId', () => {
    const c = compileFlag(flag({ stickiness: 'accountId' }), () => 0.5);
    const r = c.evaluate({ sessionId: 's1', userId: 'u1' }, T0);
    expect(r).toMatchObject({ reason: 'RANDOM', bucket: 5000, enabled: false });
  });
});

describe('whitelist', () => {
  const def = flag({
    name: 'advanced_risk_engine',
    strategy: 'WHITELIST',
    whitelist: [
      { attribute: 'symbol', values: ['BTCZAR', 'ETHZAR'] },
      { attribute: 'userId', values: ['alice'] },
      { attribute: 'region', values: ['eu-west'] },
      { attribute: 'tier', values: ['3'] },
      { attribute: 'symbol', values: ['XRPZAR'] },
    ],
  });
  const c = compileFlag(def);

  it('matches by named fields', () => {
    expect(c.evaluate({ symbol: 'BTCZAR' }, T0)).toEqual({
      flag: 'advanced_risk_engine',
      enabled: true,
      reason: 'TARGETING_MATCH',
      strategy: 'WHITELIST',
      percentage: null,
      bucket: null,
    });
    expect(c.evaluate({ symbol: 'XRPZAR' }, T0).enabled).toBe(true); // merged duplicate attribute
    expect(c.evaluate({ userId: 'alice', symbol: 'DOGE' }, T0).reason).toBe('TARGETING_MATCH');
  });

  it('matches by free attributes, numbers by String()', () => {
    expect(c.evaluate({ attributes: { region: 'eu-west' } }, T0).enabled).toBe(true);
    expect(c.evaluate({ attributes: { tier: 3 } }, T0).enabled).toBe(true);
    expect(c.evaluate({ attributes: { symbol: 'ETHZAR' } }, T0).enabled).toBe(true); // field absent -> attributes
  });

  it('does not match otherwise: reason DEFAULT', () => {
    const miss = { flag: 'advanced_risk_engine', enabled: false, reason: 'DEFAULT', strategy: 'WHITELIST', percentage: null, bucket: null };
    expect(c.evaluate({}, T0)).toEqual(miss);
    expect(c.evaluate({ symbol: 'btczar' }, T0)).toEqual(miss); // case-sensitive
    expect(c.evaluate({ userId: 'bob', attributes: { region: 'us-east', tier: 2 } }, T0)).toEqual(miss);
    expect(c.evaluate({ sessionId: 'BTCZAR' }, T0)).toEqual(miss); // the value must be under the listed attribute
    expect(c.evaluate({ attributes: { region: ['eu-west'] } }, T0)).toEqual(miss);
  });

  it('an empty whitelist matches nobody', () => {
    const empty = compileFlag(flag({ strategy: 'WHITELIST', whitelist: [] }));
    expect(empty.evaluate({ userId: 'alice', symbol: 'BTCZAR' }, T0).reason).toBe('DEFAULT');
  });
});

describe('reasons', () => {
  it('covers every strategy and reason', () => {
    const seen = new Set<EvaluationReason>();
    const check = (def: FlagDefinition | undefined, ctx: EvaluationContext, enabled: boolean, reason: EvaluationReason): void => {
      const r = evaluateFlag(def, def?.name ?? 'missing', ctx, T0, () => 0);
      expect(r.enabled, `${def?.strategy} ${reason}`).toBe(enabled);
      expect(r.reason).toBe(reason);
      seen.add(r.reason);
    };
    for (const strategy of ROLLOUT_STRATEGIES) {
      check(flag({ strategy, enabled: false, percentage: 100, whitelist: [{ attribute: 'userId', values: ['u'] }] }), { userId: 'u' }, false, 'DISABLED');
    }
    check(flag({ strategy: 'ALL_ON' }), {}, true, 'STATIC');
    check(flag({ strategy: 'ALL_OFF' }), { sessionId: 's' }, false, 'STATIC');
    check(flag({ strategy: 'WHITELIST', whitelist: [{ attribute: 'userId', values: ['u'] }] }), { userId: 'u' }, true, 'TARGETING_MATCH');
    check(flag({ strategy: 'WHITELIST', whitelist: [{ attribute: 'userId', values: ['u'] }] }), { userId: 'v' }, false, 'DEFAULT');
    check(flag({ strategy: 'PERCENTAGE', percentage: 100 }), { sessionId: 's' }, true, 'SPLIT');
    check(flag({ strategy: 'PERCENTAGE', percentage: 0 }), { sessionId: 's' }, false, 'SPLIT');
    check(flag({ strategy: 'PERCENTAGE', percentage: 50 }), {}, true, 'RANDOM');
    check(flag({ strategy: 'GRADUAL', gradual: { startPercentage: 100, targetPercentage: 100, startAt: T0, durationSeconds: 60 } }), { userId: 'u' }, true, 'SPLIT');
    check(undefined, { sessionId: 's' }, false, 'FLAG_NOT_FOUND');
    expect([...seen].sort()).toEqual([...EVALUATION_REASONS].sort());
  });

  it('reports strategy, percentage and bucket only where they decided', () => {
    expect(notFound('nope')).toEqual({ flag: 'nope', enabled: false, reason: 'FLAG_NOT_FOUND', strategy: null, percentage: null, bucket: null });
    expect(evaluateFlag(undefined, 'nope', { sessionId: 's' }, T0)).toEqual(notFound('nope'));
    expect(compileFlag(flag({ enabled: false })).evaluate({ sessionId: 's' }, T0)).toEqual({
      flag: 'websocket_v2', enabled: false, reason: 'DISABLED', strategy: 'PERCENTAGE', percentage: null, bucket: null,
    });
    expect(compileFlag(flag({ strategy: 'ALL_ON' })).evaluate({}, T0)).toEqual({
      flag: 'websocket_v2', enabled: true, reason: 'STATIC', strategy: 'ALL_ON', percentage: null, bucket: null,
    });
    const split = compileFlag(flag({ percentage: 25 })).evaluate({ sessionId: 'abc123' }, T0);
    expect(split).toEqual({ flag: 'websocket_v2', enabled: false, reason: 'SPLIT', strategy: 'PERCENTAGE', percentage: 25, bucket: 9972 });
  });

  it('reuses frozen results for constant outcomes', () => {
    const c = compileFlag(flag({ strategy: 'ALL_ON' }));
    const a = c.evaluate({}, T0);
    expect(c.evaluate({ userId: 'x' }, T0 + 1)).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
  });

  it('snapshots the definition: later edits of the input do not leak in', () => {
    const def = flag({ strategy: 'WHITELIST', whitelist: [{ attribute: 'userId', values: ['alice'] }] });
    const c = compileFlag(def);
    def.whitelist[0]!.values.push('bob');
    def.enabled = false;
    expect(c.evaluate({ userId: 'bob' }, T0).enabled).toBe(false);
    expect(c.evaluate({ userId: 'alice' }, T0).enabled).toBe(true);
    expect(c.definition.whitelist[0]!.values).toEqual(['alice']);
    expect(Object.isFrozen(c.definition)).toBe(true);
  });

  it('keeps a definition frozen all the way down as it is, and copies one frozen only on top', () => {
    const values = Object.freeze(['alice']);
    const whitelist = Object.freeze([Object.freeze({ attribute: 'userId', values })]);
    const frozen = Object.freeze(flag({ strategy: 'WHITELIST', whitelist: whitelist as never }));
    expect(compileFlag(frozen).definition).toBe(frozen);
    const shallow = Object.freeze(flag({ strategy: 'WHITELIST', whitelist: [{ attribute: 'userId', values: ['alice'] }] }));
    const c = compileFlag(shallow);
    expect(c.definition).not.toBe(shallow);
    shallow.whitelist[0]!.values.push('bob');
    expect(c.evaluate({ userId: 'bob' }, T0).enabled).toBe(false);
    expect(Object.isFrozen(c.definition.whitelist[0]!.values)).toBe(true);
  });
});

describe('gradual rollout', () => {
  const up: GradualSchedule = { startPercentage: 10, targetPercentage: 50, startAt: T0, durationSeconds: 400 };

  it('steps whole points from start to target (10 -> 50 over 400 s)', () => {
    const at = (ms: number): number => gradualPercentageAt(up, T0 + ms);
    expect(at(-86_400_000)).toBe(10); // long before start
    expect(at(-1)).toBe(10);
    expect(at(0)).toBe(10);
    expect(at(9_999)).toBe(10);
    expect(at(10_000)).toBe(11);
    expect(at(19_999)).toBe(11);
    expect(at(20_000)).toBe(12);
    expect(at(200_000)).toBe(30); // halfway
    expect(at(399_999)).toBe(49);
    expect(at(400_000)).toBe(50);
    expect(at(10 * 400_000)).toBe(50);
  });

  it('steps down symmetrically', () => {
    const down: GradualSchedule = { startPercentage: 50, targetPercentage: 10, startAt: T0, durationSeconds: 400 };
    const at = (ms: number): number => gradualPercentageAt(down, T0 + ms);
    expect([at(-1), at(0), at(9_999), at(10_000), at(200_000), at(399_999), at(400_000), at(500_000)]).toEqual([
      50, 50, 50, 49, 30, 11, 10, 10,
    ]);
  });

  it('is constant when start equals target', () => {
    const flat: GradualSchedule = { startPercentage: 25, targetPercentage: 25, startAt: T0, durationSeconds: 60 };
    for (const ms of [-1, 0, 30_000, 60_000, 1e9]) expect(gradualPercentageAt(flat, T0 + ms)).toBe(25);
    expect(nextGradualChangeAt(flat, T0 - 5)).toBeNull();
    expect(nextGradualChangeAt(flat, T0 + 5)).toBeNull();
  });

  it('with non-integer endpoints steps whole points from start and ends exactly on target', () => {
    const g: GradualSchedule = { startPercentage: 10.5, targetPercentage: 12.25, startAt: T0, durationSeconds: 175 };
    // 1.75 points over 175 s: one whole point after 100 s, the remaining 0.75 at the end.
    expect(gradualPercentageAt(g, T0 + 99_999)).toBe(10.5);
    expect(gradualPercentageAt(g, T0 + 100_000)).toBe(11.5);
    expect(gradualPercentageAt(g, T0 + 174_999)).toBe(11.5);
    expect(gradualPercentageAt(g, T0 + 175_000)).toBe(12.25);
    expect(nextGradualChangeAt(g, T0)).toBe(T0 + 100_000);
    expect(nextGradualChangeAt(g, T0 + 100_000)).toBe(T0 + 175_000);
    expect(nextGradualChangeAt(g, T0 + 175_000)).toBeNull();
  });

  it('with a zero duration jumps to target at startAt', () => {
    const g: GradualSchedule = { startPercentage: 0, targetPercentage: 40, startAt: T0, durationSeconds: 0 };
    expect(gradualPercentageAt(g, T0 - 1)).toBe(0);
    expect(gradualPercentageAt(g, T0)).toBe(40);
    expect(nextGradualChangeAt(g, T0 - 1000)).toBe(T0);
    expect(nextGradualChangeAt(g, T0)).toBeNull();
  });

  it('nextGradualChangeAt gives the exact instant of every step, then null', () => {
    expect(nextGradualChangeAt(up, T0 - 5 * SECOND)).toBe(T0 + 10_000);
    expect(nextGradualChangeAt(up, T0)).toBe(T0 + 10_000);
    expect(nextGradualChangeAt(up, T0 + 9_999)).toBe(T0 + 10_000);
    expect(nextGradualChangeAt(up, T0 + 10_000)).toBe(T0 + 20_000);
    expect(nextGradualChangeAt(up, T0 + 395_000)).toBe(T0 + 400_000);
    expect(nextGradualChangeAt(up, T0 + 400_000)).toBeNull();
    expect(nextGradualChangeAt(up, T0 + 1e9)).toBeNull();
  });

  it('following nextGradualChangeAt visits every percentage once, each change exactly at its instant', () => {
    // Awkward numbers: 7 s over 13 points, so step instants are not whole seconds.
    for (const g of [up, { startPercentage: 3, targetPercentage: 16, startAt: T0 + 1, durationSeconds: 7 }, { startPercentage: 80, targetPercentage: 0.5, startAt: T0, durationSeconds: 3600 }]) {
      let now = g.startAt - 1000;
      const seen = [gradualPercentageAt(g, now)];
      for (let next = nextGradualChangeAt(g, now); next !== null; next = nextGradualChangeAt(g, now)) {
        expect(next).toBeGreaterThan(now);
        expect(Number.isInteger(next)).toBe(true);
        expect(gradualPercentageAt(g, next - 1)).toBe(seen[seen.length - 1]);
        expect(gradualPercentageAt(g, next)).not.toBe(seen[seen.length - 1]);
        now = next;
        seen.push(gradualPercentageAt(g, now));
      }
      const span = Math.abs(g.targetPercentage - g.startPercentage);
      expect(seen.length).toBe(Math.ceil(span) + 1);
      expect(seen[seen.length - 1]).toBe(g.targetPercentage);
      expect(now).toBe(g.startAt + g.durationSeconds * 1000);
    }
  });

  it('a compiled GRADUAL flag follows the clock, including going back in time', () => {
    const c = compileFlag(flag({ strategy: 'GRADUAL', percentage: 0, gradual: up }));
    const ctx = { sessionId: 'abc123' };
    const instants = [T0 - 1, T0 + 10_000, T0 + 200_000, T0 + 9_999, T0 + 400_000, T0 + 5_000, T0 + 1e9, T0 - 1e9];
    for (const now of instants) {
      const r = c.evaluate(ctx, now);
      expect(r.percentage, String(now - T0)).toBe(gradualPercentageAt(up, now));
      expect(r.enabled).toBe(r.bucket! < Math.round(r.percentage! * 100));
      expect(r.strategy).toBe('GRADUAL');
    }
    expect(effectivePercentage(c.definition, T0 + 200_000)).toBe(30);
  });

  it('a GRADUAL flag enables about the scheduled share at each step, only ever adding contexts', () => {
    const c = compileFlag(flag({ name: 'paper_trading_v2', strategy: 'GRADUAL', gradual: up }));
    const contexts = sessions(20_000);
    let previous = contexts.map(() => false);
    for (const ms of [0, 100_000, 200_000, 300_000, 400_000]) {
      const now = contexts.map((ctx) => c.evaluate(ctx, T0 + ms).enabled);
      now.forEach((on, i) => previous[i] && expect(on).toBe(true));
      const share = (now.filter(Boolean).length / contexts.length) * 100;
      expect(Math.abs(share - gradualPercentageAt(up, T0 + ms))).toBeLessThan(1.5);
      previous = now;
    }
  });

  it('effectivePercentage: PERCENTAGE, GRADUAL, others null', () => {
    expect(effectivePercentage(flag({ percentage: 12.5 }), T0)).toBe(12.5);
    expect(effectivePercentage(flag({ strategy: 'GRADUAL', gradual: up }), T0 + 20_000)).toBe(12);
    expect(effectivePercentage(flag({ strategy: 'GRADUAL', gradual: null, percentage: 7 }), T0)).toBe(7);
    expect(effectivePercentage(flag({ strategy: 'ALL_ON' }), T0)).toBeNull();
    expect(effectivePercentage(flag({ strategy: 'WHITELIST' }), T0)).toBeNull();
  });

  it('effectivePercentage: one rule for a disabled flag, PERCENTAGE or GRADUAL: 0 (the schedule stays in scheduledPercentage)', () => {
    const later = T0 + 200_000;
    expect(effectivePercentage(flag({ enabled: false, percentage: 25 }), later)).toBe(0);
    expect(effectivePercentage(flag({ enabled: false, strategy: 'GRADUAL', gradual: up }), later)).toBe(0);
    expect(effectivePercentage(flag({ enabled: false, strategy: 'GRADUAL', gradual: null, percentage: 7 }), later)).toBe(0);
    expect(effectivePercentage(flag({ enabled: false, strategy: 'ALL_ON' }), later)).toBeNull();
    expect(scheduledPercentage(flag({ enabled: false, percentage: 25 }), later)).toBe(25);
    expect(scheduledPercentage(flag({ enabled: false, strategy: 'GRADUAL', gradual: up }), later)).toBe(30);
  });
});

describe('decide: the allocation-free decision (canary routing, isEnabled)', () => {
  const gradual: GradualSchedule = { startPercentage: 10, targetPercentage: 90, startAt: T0, durationSeconds: 600 };
  const defs: FlagDefinition[] = [
    flag({ percentage: 37.5 }),
    flag({ percentage: 0 }),
    flag({ percentage: 100, stickiness: 'accountId' }),
    flag({ strategy: 'GRADUAL', percentage: 0, gradual }),
    flag({ strategy: 'ALL_ON' }),
    flag({ strategy: 'ALL_OFF' }),
    flag({ enabled: false }),
    flag({ strategy: 'WHITELIST', whitelist: [{ attribute: 'userId', values: ['u3', 'u7'] }, { attribute: 'tier', values: ['gold'] }] }),
  ];
  const contexts: EvaluationContext[] = [
    {},
    ...Array.from({ length: 300 }, (_, i) => ({ userId: `u${i}` })),
    ...Array.from({ length: 100 }, (_, i) => ({ sessionId: `s${i}`, userId: 'u3' })),
    ...Array.from({ length: 50 }, (_, i) => ({ attributes: { accountId: `a${i}`, tier: i % 2 ? 'gold' : 'tin' } })),
  ];

  it('answers what evaluate answers (enabled and reason) for every strategy, context and time', () => {
    for (const def of defs) {
      // The same random sequence for both, so RANDOM decisions can be compared too.
      let seedA = 1;
      let seedB = 1;
      const a = compileFlag(def, () => ((seedA = (seedA * 16807) % 2147483647) / 2147483647));
      const b = compileFlag(def, () => ((seedB = (seedB * 16807) % 2147483647) / 2147483647));
      for (const now of [T0 - SECOND, T0 + 150 * SECOND, T0 + 599 * SECOND, T0 + 3600 * SECOND]) {
        for (const ctx of contexts) {
          const evaluation = a.evaluate(ctx, now);
          const slot = b.decide(ctx, b.usesClock ? now : 0);
          expect(slot).toBe(outcomeSlot(evaluation.reason, evaluation.enabled));
          expect(slotEnabled(slot)).toBe(evaluation.enabled);
        }
      }
    }
  });

  it('reads the clock only for GRADUAL flags', () => {
    expect(defs.map((d) => compileFlag(d).usesClock)).toEqual([false, false, false, true, false, false, false, false]);
  });
});
