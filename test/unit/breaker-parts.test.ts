import { describe, expect, it } from 'vitest';
import { ManualClock, type Clock } from '../../src/clock.js';
import { BreakerConfigError, DEFAULT_BREAKER_CONFIG, resolveBreakerConfig, validateBreakerConfig } from '../../src/breakers/config.js';
import { DeadlineScheduler, type ScheduledDeadline } from '../../src/breakers/scheduler.js';
import { TimeWindow } from '../../src/breakers/time-window.js';
import { OUTCOME_FAILURE, OUTCOME_SLOW, OutcomeWindow } from '../../src/breakers/window.js';
import { prng } from '../support/prng.js';

const T0 = Date.UTC(2026, 0, 1);

function task(label: string, log: string[]): ScheduledDeadline {
  return { dueAt: 0, heapIndex: -1, seq: 0, fire: () => log.push(label) };
}


describe('DeadlineScheduler', () => {
  it('fires in deadline order, ties in scheduling order, with one clock timer', () => {
    const clock = new ManualClock(T0);
    const scheduler = new DeadlineScheduler(clock);
    const log: string[] = [];
    scheduler.schedule(task('c', log), T0 + 300);
    scheduler.schedule(task('a', log), T0 + 100);
    scheduler.schedule(task('b1', log), T0 + 200);
    scheduler.schedule(task('b2', log), T0 + 200);
    expect(clock.pendingTimers).toBe(1);
    clock.advance(250);
    expect(log).toEqual(['a', 'b1', 'b2']);
    expect(clock.pendingTimers).toBe(1);
    clock.advance(100);
    expect(log).toEqual(['a', 'b1', 'b2', 'c']);
    expect(scheduler.size).toBe(0);
  });

  it('cancels and reschedules entries in place', () => {
    const clock = new ManualClock(T0);
    const scheduler = new DeadlineScheduler(clock);
    const log: string[] = [];
    const a = task('a', log);
    const b = task('b', log);
    scheduler.schedule(a, T0 + 100);
    scheduler.schedule(b, T0 + 200);
    scheduler.cancel(a);
    scheduler.cancel(a); // twice is harmless
    expect(scheduler.isScheduled(a)).toBe(false);
    scheduler.schedule(b, T0 + 50); // earlier: re-arms
    clock.advance(60);
    expect(log).toEqual(['b']);
    scheduler.schedule(a, T0 + 1_000);
    scheduler.schedule(a, T0 + 500); // moved, not duplicated
    clock.advance(10_000);
    expect(log).toEqual(['b', 'a']);
  });

  it('a past deadline fires on the next tick; a task may schedule another', () => {
    const clock = new ManualClock(T0);
    const scheduler = new DeadlineScheduler(clock);
    const log: string[] = [];
    const second = task('second', log);
    scheduler.schedule({ dueAt: 0, heapIndex: -1, seq: 0, fire: () => { log.push('first'); scheduler.schedule(second, clock.now()); } }, T0 - 5);
    expect(log).toEqual([]);
    clock.advance(0);
    expect(log).toEqual(['first', 'second']);
  });

  it('clamps timer delays that setTimeout cannot hold, re-arming on the way', () => {
    const delays: number[] = [];
    const manual = new ManualClock(T0);
    const clock: Clock = { now: () => manual.now(), setTimer: (d, fn) => { delays.push(d); return manual.setTimer(d, fn); } };
    const scheduler = new DeadlineScheduler(clock);
    const log: string[] = [];
    scheduler.schedule(task('far', log), T0 + 40 * 24 * 3600 * 1000);
    expect(delays[0]).toBe(2 ** 31 - 1);
    manual.advance(2 ** 31 - 1);
    expect(log).toEqual([]);
    manual.advance(40 * 24 * 3600 * 1000);
    expect(log).toEqual(['far']);
  });

  it('keeps fire order under random schedule/cancel churn (heap invariant)', () => {
    const rand = prng(7);
    const clock = new ManualClock(T0);
    const scheduler = new DeadlineScheduler(clock);
    const fired: number[] = [];
    const entries = Array.from({ length: 300 }, (_, i): ScheduledDeadline => ({ dueAt: 0, heapIndex: -1, seq: 0, fire: () => fired.push(i) }));
    const expected = new Map<number, number>();
    for (let step = 0; step < 3_000; step++) {
      const i = Math.floor(rand() * entries.length);
      if (rand() < 0.3) {
        scheduler.cancel(entries[i]!);
        expected.delete(i);
      } else {
        const at = T0 + 1 + Math.floor(rand() * 10_000);
        scheduler.schedule(entries[i]!, at);
        expected.set(i, at);
      }
    }
    expect(scheduler.size).toBe(expected.size);
    clock.advance(20_000);
    const dueOf = (i: number): number => expected.get(i) ?? Number.NaN;
    expect(fired.length).toBe(expected.size);
    for (let k = 1; k < fired.length; k++) expect(dueOf(fired[k - 1]!)).toBeLessThanOrEqual(dueOf(fired[k]!));
  });

  it('reports a throwing task and goes on', () => {
    const clock = new ManualClock(T0);
    const errors: unknown[] = [];
    const scheduler = new DeadlineScheduler(clock, (e) => errors.push(e));
    const log: string[] = [];
    scheduler.schedule({ dueAt: 0, heapIndex: -1, seq: 0, fire: () => { throw new Error('task bug'); } }, T0 + 1);
    scheduler.schedule(task('after', log), T0 + 2);
    clock.advance(5);
    expect(errors).toHaveLength(1);
    expect(log).toEqual(['after']);
  });
});

describe('OutcomeWindow', () => {
  it('matches a naive recount of the last N outcomes at every step', () => {
    const rand = prng(11);
    for (const size of [1, 3, 10]) {
      const window = new OutcomeWindow(size);
      const history: number[] = [];
      for (let i = 0; i < 200; i++) {
        const r = rand();
        const outcome = r < 0.4 ? 0 : r < 0.8 ? OUTCOME_FAILURE : OUTCOME_FAILURE | OUTCOME_SLOW;
        window.record(outcome);
        history.push(outcome);
        const last = history.slice(-size);
        expect(window.count).toBe(last.length);
        expect(window.failures).toBe(last.filter((o) => o & OUTCOME_FAILURE).length);
        expect(window.slowCalls).toBe(last.filter((o) => o & OUTCOME_SLOW).length);
      }
      const resized = window.resized(2);
      const kept = history.slice(-Math.min(2, size)); // a window of 1 has only 1 to give
      expect(resized.failures).toBe(kept.filter((o) => o & OUTCOME_FAILURE).length);
      expect(resized.count).toBe(kept.length);
    }
  });

  it('computes the rate only from minimumCalls', () => {
    const window = new OutcomeWindow(4);
    window.record(OUTCOME_FAILURE);
    expect(window.failureRate(2)).toBeNull();
    expect(window.exceeds(2, 50)).toBe(false);
    window.record(0);
    expect(window.failureRate(2)).toBe(50);
    expect(window.exceeds(2, 50)).toBe(true);
    expect(window.exceeds(2, 50.1)).toBe(false);
  });
});

describe('TimeWindow', () => {
  /** A clock that only reads: the window never arms timers. */
  const at = (ms: number) => ({ now: () => ms });

  it('matches a naive recount of the last N clock seconds at every step, gaps included', () => {
    const rand = prng(23);
    for (const size of [1, 3, 10]) {
      let now = T0 + 400; // not on a second boundary
      const window = new TimeWindow(size, { now: () => now });
      const history: { second: number; outcome: number }[] = [];
      for (let i = 0; i < 400; i++) {
        const r = rand();
        // Mostly same-second calls, some steps of a few seconds, a few gaps longer than the window.
        now += r < 0.6 ? 37 : r < 0.95 ? Math.floor(rand() * 2500) : (size + 2) * 1000 + 1;
        const outcome = rand() < 0.5 ? 0 : rand() < 0.7 ? OUTCOME_FAILURE : OUTCOME_FAILURE | OUTCOME_SLOW;
        window.record(outcome);
        history.push({ second: Math.floor(now / 1000), outcome });
        const current = Math.floor(now / 1000);
        const held = history.filter((h) => h.second > current - size).map((h) => h.outcome);
        expect(window.count).toBe(held.length);
        expect(window.failures).toBe(held.filter((o) => o & OUTCOME_FAILURE).length);
        expect(window.slowCalls).toBe(held.filter((o) => o & OUTCOME_SLOW).length);
      }
    }
  });

  it('holds the current second and the N-1 before it, evicting a whole second at a time', () => {
    let now = T0 + 999; // last ms of second s0
    const window = new TimeWindow(3, { now: () => now });
    window.record(OUTCOME_FAILURE); // second s0
    now += 1; // s1
    window.record(0);
    now += 1_000; // s2
    window.record(0);
    expect([window.count, window.failures]).toEqual([3, 1]);
    now += 999; // still s2
    expect(window.count).toBe(3);
    now += 1; // s3: s0 falls out, not the others
    expect([window.count, window.failures]).toEqual([2, 0]);
    now += 1_000; // s4: s1 out
    expect(window.count).toBe(1);
    now += 1_000; // s5: s2 out
    expect(window.count).toBe(0);
    expect(window.failureRate(1)).toBeNull();
  });

  it('a gap longer than the window empties it, and it fills again from there', () => {
    let now = T0;
    const window = new TimeWindow(5, { now: () => now });
    for (let i = 0; i < 1_000; i++) window.record(OUTCOME_FAILURE);
    expect(window.failures).toBe(1_000);
    now += 3_600_000; // an hour: still at most 5 buckets to clear
    expect(window.count).toBe(0);
    window.record(0);
    window.record(OUTCOME_FAILURE);
    expect([window.count, window.failures, window.failureRate(2)]).toEqual([2, 1, 50]);
  });

  it('does not cap minimumCalls at its size (a size in seconds is no call count)', () => {
    const window = new TimeWindow(2, at(T0));
    for (let i = 0; i < 5; i++) window.record(OUTCOME_FAILURE);
    expect(window.exceeds(6, 50)).toBe(false);
    expect(window.failureRate(6)).toBeNull();
    window.record(0);
    expect(window.exceeds(6, 50)).toBe(true);
    expect(window.failureRate(6)).toBeCloseTo(83.33, 1);
  });

  it('a clock that steps back records into the newest bucket', () => {
    let now = T0 + 10_000;
    const window = new TimeWindow(3, { now: () => now });
    window.record(OUTCOME_FAILURE);
    now -= 5_000;
    window.record(0);
    expect(window.count).toBe(2);
    now = T0 + 12_000; // 2 s after the newest bucket: both still held
    expect(window.count).toBe(2);
    now = T0 + 13_000;
    expect(window.count).toBe(0);
  });

  it('resized keeps the most recent seconds; clear empties it', () => {
    let now = T0;
    const window = new TimeWindow(10, { now: () => now });
    for (let s = 0; s < 6; s++) {
      window.record(s % 2 === 0 ? OUTCOME_FAILURE : 0); // F S F S F S, one per second
      now += 1_000;
    }
    now -= 1_000; // back inside the last recorded second
    const smaller = window.resized(3); // seconds 3, 4, 5: S F S
    expect([smaller.size, smaller.count, smaller.failures]).toEqual([3, 3, 1]);
    now += 1_000; // second 3 falls out of the small window only
    expect([smaller.count, window.count]).toEqual([2, 6]);
    const larger = window.resized(60);
    expect([larger.count, larger.failures]).toEqual([6, 3]);
    window.clear();
    expect([window.count, window.failures, window.slowCalls]).toEqual([0, 0, 0]);
  });
});

describe('validateBreakerConfig', () => {
  it('accepts the defaults and a full valid config', () => {
    expect(validateBreakerConfig(DEFAULT_BREAKER_CONFIG)).toEqual([]);
    expect(
      validateBreakerConfig({ callTimeoutMs: 500, slidingWindowSize: 20, minimumCalls: 10, failureRateThreshold: 25.5, slowCallDurationMs: 200, halfOpenDeadlineSeconds: null, resetTimeoutSeconds: 0.5 }),
    ).toEqual([]);
  });

  it('returns one field-level issue per bad field', () => {
    const issues = validateBreakerConfig({
      failureThreshold: 0,
      resetTimeoutSeconds: 0,
      successThreshold: 1.5,
      halfOpenMaxCalls: Number.NaN,
      failureRateThreshold: 101,
      callTimeoutMs: -1,
      minimumCalls: null as unknown as number,
    });
    const byField = Object.fromEntries(issues.map((i) => [i.field, i.message]));
    expect(Object.keys(byField).sort()).toEqual(
      ['callTimeoutMs', 'failureRateThreshold', 'failureThreshold', 'halfOpenMaxCalls', 'minimumCalls', 'resetTimeoutSeconds', 'successThreshold'].sort(),
    );
    expect(byField.failureThreshold).toBe('must be at least 1 calls');
    expect(byField.resetTimeoutSeconds).toBe('must be greater than 0 seconds');
    expect(byField.successThreshold).toBe('must be an integer');
    expect(byField.halfOpenMaxCalls).toBe('must be a finite number');
    expect(byField.minimumCalls).toBe('must not be null');
  });

  it('ignores undefined fields and reports unknown ones', () => {
    expect(validateBreakerConfig({ failureThreshold: undefined })).toEqual([]);
    const issues = validateBreakerConfig({ timeout: 5 } as never);
    expect(issues).toEqual([{ field: 'timeout', message: 'is not a breaker config field' }]);
  });

  it('resolves a partial over a base into a frozen config', () => {
    const config = resolveBreakerConfig({ failureThreshold: 9 }, { ...DEFAULT_BREAKER_CONFIG, successThreshold: 4 });
    expect(config).toMatchObject({ failureThreshold: 9, successThreshold: 4, resetTimeoutSeconds: 60 });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('checks slidingWindowType, resetTimeoutMultiplier and maxResetTimeoutSeconds', () => {
    expect(validateBreakerConfig({ slidingWindowType: 'TIME', slidingWindowSize: 3600, resetTimeoutMultiplier: 2, maxResetTimeoutSeconds: 600 })).toEqual([]);
    expect(validateBreakerConfig({ slidingWindowType: 'COUNT', resetTimeoutMultiplier: 1, maxResetTimeoutSeconds: null })).toEqual([]);
    const issues = validateBreakerConfig({
      slidingWindowType: 'time' as never,
      resetTimeoutMultiplier: 0.5,
      maxResetTimeoutSeconds: 0,
    });
    expect(issues).toEqual([
      { field: 'slidingWindowType', message: 'must be one of COUNT, TIME' },
      { field: 'resetTimeoutMultiplier', message: 'must be at least 1' },
      { field: 'maxResetTimeoutSeconds', message: 'must be greater than 0 seconds' },
    ]);
    expect(validateBreakerConfig({ slidingWindowType: null as never })).toHaveLength(1);
    expect(validateBreakerConfig({ resetTimeoutMultiplier: 101 })).toEqual([{ field: 'resetTimeoutMultiplier', message: 'must be at most 100' }]);
  });

  it('checks the rules between fields, against a base when given, blaming the field the change gave', () => {
    // Without a base only pairs given together are checked.
    expect(validateBreakerConfig({ maxResetTimeoutSeconds: 30 })).toEqual([]);
    expect(validateBreakerConfig({ maxResetTimeoutSeconds: 30, resetTimeoutSeconds: 60 })).toEqual([
      { field: 'maxResetTimeoutSeconds', message: 'must be at least resetTimeoutSeconds (60 seconds)' },
    ]);
    expect(validateBreakerConfig({ slidingWindowType: 'TIME', slidingWindowSize: 3601 })).toEqual([
      { field: 'slidingWindowSize', message: 'must be at most 3600 seconds when slidingWindowType is TIME' },
    ]);
    expect(validateBreakerConfig({ slidingWindowType: 'COUNT', slidingWindowSize: 100_000 })).toEqual([]);

    const base = { ...DEFAULT_BREAKER_CONFIG, resetTimeoutSeconds: 10, maxResetTimeoutSeconds: 300, slidingWindowSize: 5_000 };
    expect(validateBreakerConfig({ maxResetTimeoutSeconds: 30 }, base)).toEqual([]);
    expect(validateBreakerConfig({ maxResetTimeoutSeconds: 5 }, base)).toEqual([
      { field: 'maxResetTimeoutSeconds', message: 'must be at least resetTimeoutSeconds (10 seconds)' },
    ]);
    expect(validateBreakerConfig({ resetTimeoutSeconds: 600 }, base)).toEqual([
      { field: 'resetTimeoutSeconds', message: 'must be at most maxResetTimeoutSeconds (300 seconds)' },
    ]);
    expect(validateBreakerConfig({ resetTimeoutSeconds: 600, maxResetTimeoutSeconds: null }, base)).toEqual([]);
    expect(validateBreakerConfig({ slidingWindowType: 'TIME' }, base)).toEqual([
      { field: 'slidingWindowType', message: 'TIME needs slidingWindowSize at most 3600 seconds (it is 5000)' },
    ]);
    expect(validateBreakerConfig({ slidingWindowType: 'TIME', slidingWindowSize: 60 }, base)).toEqual([]);
    // A field already invalid on its own is reported once, not again by a rule between fields.
    expect(validateBreakerConfig({ maxResetTimeoutSeconds: -1 }, base).map((i) => i.field)).toEqual(['maxResetTimeoutSeconds']);
  });

  it('resolves the new fields over defaults (old persisted configs lack them) and refuses a bad pair', () => {
    const { slidingWindowType: _t, resetTimeoutMultiplier: _m, maxResetTimeoutSeconds: _x, ...old } = DEFAULT_BREAKER_CONFIG;
    const config = resolveBreakerConfig(old);
    expect(config).toMatchObject({ slidingWindowType: 'COUNT', resetTimeoutMultiplier: 1, maxResetTimeoutSeconds: null });
    const base = resolveBreakerConfig({ maxResetTimeoutSeconds: 120 });
    expect(() => resolveBreakerConfig({ resetTimeoutSeconds: 121 }, base)).toThrow(BreakerConfigError);
    expect(resolveBreakerConfig({ resetTimeoutSeconds: 120 }, base).resetTimeoutSeconds).toBe(120);
  });
});
