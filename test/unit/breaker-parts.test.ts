import { describe, expect, it } from 'vitest';
import { ManualClock, type Clock } from '../../src/clock.js';
import { DEFAULT_BREAKER_CONFIG, resolveBreakerConfig, validateBreakerConfig } from '../../src/breakers/config.js';
import { DeadlineScheduler, type ScheduledDeadline } from '../../src/breakers/scheduler.js';
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
});
