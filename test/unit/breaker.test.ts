import { afterEach, describe, expect, it, it as vitestIt } from 'vitest';
import { AuditRepository } from '../../src/audit/repository.js';
import { BreakerService } from '../../src/breakers/service.js';
import { ManualClock, type Clock } from '../../src/clock.js';
import { EventBus } from '../../src/events.js';
import { createLogger } from '../../src/logger.js';
import { bothDialects, type TestDatabase } from '../support/database.js';
import {
  BREAKER_STATES,
  BreakerConfigError,
  BreakerRegistry,
  CallTimeoutError,
  CircuitOpenError,
  TRANSITION_REASONS,
  type BreakerChangeKind,
  type BreakerConfig,
  type BreakerTransition,
  type CircuitBreaker,
} from '../../src/breakers/index.js';

const T0 = Date.UTC(2026, 0, 1);

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets settled promises run their handlers (a macrotask turn, not a wait on time). */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const ok = async (): Promise<string> => 'ok';
const boom = async (): Promise<string> => {
  throw new Error('boom');
};

function setup(config: Partial<BreakerConfig> = {}, name = 'dep') {
  const clock = new ManualClock(T0);
  const registry = new BreakerRegistry({ clock, onListenerError: (e) => { throw e; } });
  const events: BreakerTransition[] = [];
  registry.onTransition((e) => events.push(e));
  const breaker = registry.getOrCreate(name, config);
  return { clock, registry, events, breaker };
}

async function fail(breaker: CircuitBreaker, times: number): Promise<void> {
  for (let i = 0; i < times; i++) await breaker.call(boom).catch(() => undefined);
}

async function succeed(breaker: CircuitBreaker, times: number): Promise<void> {
  for (let i = 0; i < times; i++) await breaker.call(ok);
}

const edges = (events: BreakerTransition[]) => events.map((e) => `${e.from}>${e.to}:${e.reason}`);

describe('vocabulary', () => {
  it('exports the states and reasons as UPPER_CASE constants', () => {
    expect(BREAKER_STATES).toEqual(['CLOSED', 'OPEN', 'HALF_OPEN', 'FORCED_OPEN', 'DISABLED']);
    for (const r of TRANSITION_REASONS) expect(r).toMatch(/^[A-Z_]+$/);
  });
});

describe('CLOSED -> OPEN on consecutive failures', () => {
  it('opens after failureThreshold consecutive failures with reason FAILURE_THRESHOLD', async () => {
    const { breaker, events, clock } = setup({ failureThreshold: 3, resetTimeoutSeconds: 30 });
    await fail(breaker, 2);
    expect(breaker.state).toBe('CLOSED');
    expect(events).toEqual([]);
    clock.advance(5);
    await fail(breaker, 1);
    expect(breaker.state).toBe('OPEN');
    expect(events).toHaveLength(1);
    const e = events[0]!;
    expect(e).toMatchObject({ name: 'dep', from: 'CLOSED', to: 'OPEN', reason: 'FAILURE_THRESHOLD', at: T0 + 5, openUntil: T0 + 5 + 30_000 });
    expect(e.metrics).toMatchObject({ calls: 3, failures: 3, successes: 0, consecutiveFailures: 3, lastFailureAt: T0 + 5, lastError: 'Error: boom' });
    expect(breaker.openUntil).toBe(T0 + 5 + 30_000);
    expect(breaker.stateChangedAt).toBe(T0 + 5);
  });

  it('a success resets the consecutive failure count', async () => {
    const { breaker } = setup({ failureThreshold: 3 });
    await fail(breaker, 2);
    await succeed(breaker, 1);
    expect(breaker.metrics.consecutiveFailures).toBe(0);
    expect(breaker.metrics.consecutiveSuccesses).toBe(1);
    await fail(breaker, 2);
    expect(breaker.state).toBe('CLOSED');
    await fail(breaker, 1);
    expect(breaker.state).toBe('OPEN');
  });

  it('rejects while OPEN with a CircuitOpenError and counts the rejection; fn is not run', async () => {
    const { breaker } = setup({ failureThreshold: 1, resetTimeoutSeconds: 60 });
    await fail(breaker, 1);
    let ran = false;
    const error = await breaker.call(async () => { ran = true; }).catch((e: unknown) => e);
    expect(ran).toBe(false);
    expect(error).toBeInstanceOf(CircuitOpenError);
    expect(breaker.metrics.rejections).toBe(1);
    expect(breaker.metrics.calls).toBe(1);
  });

  it('a synchronous throw counts as a failure too', async () => {
    const { breaker } = setup({ failureThreshold: 1 });
    const error = await breaker.call(() => { throw new TypeError('sync'); }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect(breaker.state).toBe('OPEN');
    expect(breaker.metrics.lastError).toBe('TypeError: sync');
  });

  it('keeps lastError free of paths and SQL, and bounded, since every VIEWER reads it', async () => {
    const { breaker } = setup({ failureThreshold: 5 });
    await breaker.call(() => { throw new Error('cannot open /srv/helios/modules/secret_v2.js'); }).catch(() => undefined);
    expect(breaker.metrics.lastError).toBe('Error: cannot open <path>');
    await breaker.call(() => { throw new Error('SELECT token_hash FROM api_tokens failed'); }).catch(() => undefined);
    expect(breaker.metrics.lastError).toBe('Internal database error');
    await breaker.call(() => { throw new Error('x'.repeat(100_000)); }).catch(() => undefined);
    expect(breaker.metrics.lastError!.length).toBeLessThanOrEqual(500);
    expect(breaker.metrics.lastError).toMatch(/truncated: \d+ characters in all\)$/);
  });

  it('passes arguments through and resolves with the result', async () => {
    const { breaker } = setup();
    const sum = await breaker.call(async (a: number, b: number) => a + b, 2, 3);
    expect(sum).toBe(5);
    expect(breaker.metrics).toMatchObject({ calls: 1, successes: 1 });
  });
});

describe('OPEN -> HALF_OPEN', () => {
  it('moves by timer, without traffic, exactly at openUntil', async () => {
    const { breaker, events, clock } = setup({ failureThreshold: 1, resetTimeoutSeconds: 10 });
    await fail(breaker, 1);
    clock.advance(9_999);
    expect(breaker.state).toBe('OPEN');
    clock.advance(1);
    expect(breaker.state).toBe('HALF_OPEN');
    expect(breaker.openUntil).toBeNull();
    expect(events[1]).toMatchObject({ from: 'OPEN', to: 'HALF_OPEN', reason: 'RESET_TIMEOUT_ELAPSED', at: T0 + 10_000, openUntil: null });
  });

  it('moves on the first call after openUntil when the timer is late', async () => {
    // A clock whose timers never fire: only the lazy check can move the breaker.
    const manual = new ManualClock(T0);
    const lateClock: Clock = { now: () => manual.now(), setTimer: () => ({ cancel: () => undefined }) };
    const registry = new BreakerRegistry({ clock: lateClock });
    const events: BreakerTransition[] = [];
    registry.onTransition((e) => events.push(e));
    const breaker = registry.getOrCreate('late', { failureThreshold: 1, resetTimeoutSeconds: 1 });
    await fail(breaker, 1);
    manual.advance(1_000);
    expect(breaker.state).toBe('OPEN');
    await expect(breaker.call(ok)).resolves.toBe('ok');
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_THRESHOLD', 'OPEN>HALF_OPEN:RESET_TIMEOUT_ELAPSED']);
    expect(breaker.state).toBe('HALF_OPEN');
  });
});

describe('HALF_OPEN', () => {
  async function halfOpen(config: Partial<BreakerConfig>) {
    const ctx = setup({ failureThreshold: 1, resetTimeoutSeconds: 10, ...config });
    await fail(ctx.breaker, 1);
    ctx.clock.advance(10_000);
    expect(ctx.breaker.state).toBe('HALF_OPEN');
    ctx.events.length = 0;
    return ctx;
  }

  it('admits halfOpenMaxCalls concurrent trials and rejects the rest', async () => {
    const { breaker } = await halfOpen({ halfOpenMaxCalls: 2, successThreshold: 2 });
    const a = deferred<string>();
    const b = deferred<string>();
    const first = breaker.call(() => a.promise);
    const second = breaker.call(() => b.promise);
    const third = await breaker.call(ok).catch((e: unknown) => e);
    expect(third).toBeInstanceOf(CircuitOpenError);
    expect((third as CircuitOpenError).state).toBe('HALF_OPEN');
    expect((third as CircuitOpenError).openUntil).toBeNull();
    expect(breaker.halfOpenCallsInFlight).toBe(2);
    expect(breaker.metrics.rejections).toBe(1);
    a.resolve('a');
    await first;
    // A slot freed: the next trial is admitted.
    const c = deferred<string>();
    const fourth = breaker.call(() => c.promise);
    expect(breaker.halfOpenCallsInFlight).toBe(2);
    b.resolve('b');
    c.resolve('c');
    await expect(Promise.all([second, fourth])).resolves.toEqual(['b', 'c']);
    expect(breaker.state).toBe('CLOSED');
  });

  it('closes after successThreshold trial successes (TRIAL_SUCCEEDED)', async () => {
    const { breaker, events } = await halfOpen({ successThreshold: 3, halfOpenMaxCalls: 1 });
    await succeed(breaker, 2);
    expect(breaker.state).toBe('HALF_OPEN');
    await succeed(breaker, 1);
    expect(breaker.state).toBe('CLOSED');
    expect(edges(events)).toEqual(['HALF_OPEN>CLOSED:TRIAL_SUCCEEDED']);
    expect(breaker.metrics.consecutiveFailures).toBe(0);
  });

  it('re-opens on a trial failure (TRIAL_FAILED) with a fresh open period', async () => {
    const { breaker, events, clock } = await halfOpen({ successThreshold: 2 });
    clock.advance(500);
    await succeed(breaker, 1);
    await fail(breaker, 1);
    expect(breaker.state).toBe('OPEN');
    expect(edges(events)).toEqual(['HALF_OPEN>OPEN:TRIAL_FAILED']);
    expect(breaker.openUntil).toBe(T0 + 10_000 + 500 + 10_000);
    clock.advance(10_000);
    expect(breaker.state).toBe('HALF_OPEN');
  });

  it('re-opens at the deadline when a trial hangs (HALF_OPEN_DEADLINE); the late outcome changes nothing', async () => {
    const { breaker, events, clock } = await halfOpen({ halfOpenDeadlineSeconds: 5, halfOpenMaxCalls: 1 });
    clock.advance(1_000); // idle time before the first trial does not count
    const hung = deferred<string>();
    const trial = breaker.call(() => hung.promise);
    await expect(breaker.call(ok)).rejects.toBeInstanceOf(CircuitOpenError);
    clock.advance(4_999);
    expect(breaker.state).toBe('HALF_OPEN');
    clock.advance(1);
    expect(breaker.state).toBe('OPEN');
    expect(events.at(-1)).toMatchObject({ from: 'HALF_OPEN', to: 'OPEN', reason: 'HALF_OPEN_DEADLINE', at: T0 + 10_000 + 6_000 });
    hung.resolve('late');
    await expect(trial).resolves.toBe('late');
    expect(breaker.state).toBe('OPEN');
    expect(breaker.metrics.successes).toBe(1); // counted, but its verdict belonged to the old HALF_OPEN
  });

  it('an idle HALF_OPEN (nothing in flight) is not re-opened by the deadline', async () => {
    const { breaker, events, clock } = await halfOpen({ halfOpenDeadlineSeconds: 5, successThreshold: 2 });
    await succeed(breaker, 1);
    clock.advance(60_000);
    expect(breaker.state).toBe('HALF_OPEN');
    expect(events).toEqual([]);
    // The deadline restarts with the next trial.
    const hung = deferred<string>();
    void breaker.call(() => hung.promise);
    clock.advance(5_000);
    expect(breaker.state).toBe('OPEN');
    expect(events.at(-1)?.reason).toBe('HALF_OPEN_DEADLINE');
  });
});

describe('call timeouts', () => {
  it('a call running past callTimeoutMs rejects with CallTimeoutError and counts as failure + timeout', async () => {
    const { breaker, clock, events } = setup({ callTimeoutMs: 1_000, failureThreshold: 2 });
    const never = new Promise<string>(() => undefined);
    let settled: unknown = 'pending';
    const pending = breaker.call(() => never).then(
      (v) => { settled = v; },
      (e: unknown) => { settled = e; },
    );
    clock.advance(999);
    await flush();
    expect(settled).toBe('pending');
    clock.advance(1);
    await pending;
    expect(settled).toBeInstanceOf(CallTimeoutError);
    expect(settled).toMatchObject({ code: 'CALL_TIMEOUT', breakerName: 'dep', timeoutMs: 1_000 });
    expect(breaker.metrics).toMatchObject({ calls: 1, failures: 1, timeouts: 1, consecutiveFailures: 1, lastError: 'call timed out after 1000 ms' });
    // A second timeout reaches the threshold.
    const second = breaker.call(() => never).catch((e: unknown) => e);
    clock.advance(1_000);
    expect(await second).toBeInstanceOf(CallTimeoutError);
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_THRESHOLD']);
  });

  it('a call settling in time is unaffected and its timeout is withdrawn', async () => {
    const { breaker, clock, registry } = setup({ callTimeoutMs: 1_000 });
    const d = deferred<string>();
    const p = breaker.call(() => d.promise);
    clock.advance(500);
    d.resolve('fine');
    await expect(p).resolves.toBe('fine');
    clock.advance(5_000);
    expect(breaker.metrics).toMatchObject({ successes: 1, failures: 0, timeouts: 0 });
    expect(registry.list()).toHaveLength(1);
  });

  it('an outcome arriving after the timeout is ignored', async () => {
    const { breaker, clock } = setup({ callTimeoutMs: 100, failureThreshold: 5 });
    const d = deferred<string>();
    const p = breaker.call(() => d.promise).catch((e: unknown) => e);
    clock.advance(100);
    expect(await p).toBeInstanceOf(CallTimeoutError);
    d.reject(new Error('late failure'));
    await flush();
    expect(breaker.metrics).toMatchObject({ calls: 1, failures: 1, timeouts: 1, successes: 0 });
  });
});

describe('failure-rate window', () => {
  it('waits for minimumCalls, then opens at failureRateThreshold (FAILURE_RATE_THRESHOLD)', async () => {
    const { breaker, events } = setup({ failureThreshold: 100, slidingWindowSize: 10, minimumCalls: 5, failureRateThreshold: 50 });
    await succeed(breaker, 1);
    await fail(breaker, 1);
    await succeed(breaker, 1);
    await fail(breaker, 1);
    expect(breaker.metrics.failureRate).toBeNull(); // 4 calls < minimumCalls
    expect(breaker.state).toBe('CLOSED');
    await fail(breaker, 1); // 3 of 5 = 60 %
    expect(breaker.state).toBe('OPEN');
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_RATE_THRESHOLD']);
    expect(events[0]!.metrics.failureRate).toBe(60);
  });

  it('a success that completes minimumCalls can open it when the rate is already over', async () => {
    const { breaker } = setup({ failureThreshold: 100, slidingWindowSize: 10, minimumCalls: 3, failureRateThreshold: 50 });
    await fail(breaker, 2);
    expect(breaker.state).toBe('CLOSED');
    await succeed(breaker, 1); // 2 of 3 = 66.7 %
    expect(breaker.state).toBe('OPEN');
  });

  it('evicts the oldest outcome: the rate is over the last N calls only', async () => {
    const { breaker } = setup({ failureThreshold: 100, slidingWindowSize: 4, minimumCalls: 4, failureRateThreshold: 50 });
    await fail(breaker, 1);
    await succeed(breaker, 3);
    expect(breaker.metrics.failureRate).toBe(25);
    await succeed(breaker, 1); // the failure falls out
    expect(breaker.metrics.failureRate).toBe(0);
    await fail(breaker, 1);
    expect(breaker.metrics.failureRate).toBe(25);
    await fail(breaker, 1); // S S F F = 50 %
    expect(breaker.state).toBe('OPEN');
  });

  it('caps minimumCalls at the window size', async () => {
    const { breaker } = setup({ failureThreshold: 100, slidingWindowSize: 2, minimumCalls: 50, failureRateThreshold: 100 });
    await fail(breaker, 2);
    expect(breaker.state).toBe('OPEN');
  });

  it('the consecutive rule still applies in window mode', async () => {
    const { breaker, events } = setup({ failureThreshold: 2, slidingWindowSize: 100, minimumCalls: 100 });
    await fail(breaker, 2);
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_THRESHOLD']);
  });

  it('without a window, failureRate is over all settled calls once minimumCalls is reached', async () => {
    const { breaker } = setup({ failureThreshold: 100, minimumCalls: 4 });
    await fail(breaker, 1);
    await succeed(breaker, 2);
    expect(breaker.metrics.failureRate).toBeNull();
    await succeed(breaker, 1);
    expect(breaker.metrics.failureRate).toBe(25);
  });

  it('a new CLOSED period starts with an empty window', async () => {
    const { breaker } = setup({ failureThreshold: 100, slidingWindowSize: 4, minimumCalls: 2, failureRateThreshold: 50 });
    await fail(breaker, 2);
    expect(breaker.state).toBe('OPEN');
    breaker.reset();
    expect(breaker.metrics.failureRate).toBeNull();
    await succeed(breaker, 1);
    await fail(breaker, 1);
    expect(breaker.state).toBe('OPEN'); // 1 of 2 = 50 %, from the new period only
  });
});

describe('slow calls', () => {
  it('a success slower than slowCallDurationMs counts as a failure and a slow call', async () => {
    const { breaker, clock, events } = setup({ slowCallDurationMs: 100, failureThreshold: 2 });
    const slow = async (): Promise<string> => {
      clock.advance(150);
      return 'slow';
    };
    await expect(breaker.call(slow)).resolves.toBe('slow'); // the caller still gets the value
    expect(breaker.metrics).toMatchObject({ calls: 1, successes: 0, failures: 1, slowCalls: 1, lastError: 'slow call: 150 ms > 100 ms' });
    clock.advance(100); // exactly at the limit: not slow
    const atLimit = async (): Promise<string> => {
      clock.advance(100);
      return 'ok';
    };
    await breaker.call(atLimit);
    expect(breaker.metrics).toMatchObject({ successes: 1, slowCalls: 1 });
    await breaker.call(slow);
    await breaker.call(slow);
    expect(breaker.state).toBe('OPEN');
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_THRESHOLD']);
  });

  it('slow calls feed the failure-rate window', async () => {
    const { breaker, events } = setup({ slowCallDurationMs: 50, failureThreshold: 100, slidingWindowSize: 4, minimumCalls: 4, failureRateThreshold: 50 });
    for (const duration of [10, 80, 10, 90]) {
      const permit = breaker.tryAcquire();
      expect(permit).not.toBeNull();
      permit!.success(duration);
    }
    expect(breaker.metrics.slowCalls).toBe(2);
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_RATE_THRESHOLD']);
  });

  it('a slow trial re-opens a HALF_OPEN breaker', async () => {
    const { breaker, clock, events } = setup({ slowCallDurationMs: 50, failureThreshold: 1, resetTimeoutSeconds: 1 });
    await fail(breaker, 1);
    clock.advance(1_000);
    breaker.tryAcquire()!.success(60);
    expect(edges(events).at(-1)).toBe('HALF_OPEN>OPEN:TRIAL_FAILED');
  });
});

describe('operator control', () => {
  it('FORCED_OPEN stays open past any timeout until reset', async () => {
    const { breaker, clock, events } = setup({ resetTimeoutSeconds: 1, halfOpenDeadlineSeconds: 1 });
    breaker.open();
    expect(breaker.state).toBe('FORCED_OPEN');
    expect(breaker.openUntil).toBeNull();
    clock.advance(3_600_000);
    expect(breaker.state).toBe('FORCED_OPEN');
    const error = await breaker.call(ok).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'CIRCUIT_OPEN', state: 'FORCED_OPEN', openUntil: null });
    expect(clock.pendingTimers).toBe(0);
    breaker.reset();
    expect(breaker.state).toBe('CLOSED');
    await expect(breaker.call(ok)).resolves.toBe('ok');
    expect(edges(events)).toEqual(['CLOSED>FORCED_OPEN:MANUAL_OPEN', 'FORCED_OPEN>CLOSED:MANUAL_RESET']);
  });

  it('forcing open an OPEN breaker cancels its timer', async () => {
    const { breaker, clock, events } = setup({ failureThreshold: 1, resetTimeoutSeconds: 1 });
    await fail(breaker, 1);
    breaker.open();
    clock.advance(10_000);
    expect(breaker.state).toBe('FORCED_OPEN');
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_THRESHOLD', 'OPEN>FORCED_OPEN:MANUAL_OPEN']);
  });

  it('reset from OPEN and HALF_OPEN closes with MANUAL_RESET and clears the streaks, keeping lifetime counters', async () => {
    const { breaker, clock, events } = setup({ failureThreshold: 2, resetTimeoutSeconds: 1 });
    await fail(breaker, 2);
    breaker.reset();
    expect(breaker.state).toBe('CLOSED');
    expect(breaker.metrics).toMatchObject({ failures: 2, consecutiveFailures: 0 });
    await fail(breaker, 2);
    clock.advance(1_000);
    breaker.reset();
    expect(edges(events)).toEqual([
      'CLOSED>OPEN:FAILURE_THRESHOLD',
      'OPEN>CLOSED:MANUAL_RESET',
      'CLOSED>OPEN:FAILURE_THRESHOLD',
      'OPEN>HALF_OPEN:RESET_TIMEOUT_ELAPSED',
      'HALF_OPEN>CLOSED:MANUAL_RESET',
    ]);
  });

  it('DISABLED lets every call through while still counting, and never transitions on its own', async () => {
    const { breaker, events } = setup({ failureThreshold: 2, slidingWindowSize: 10, minimumCalls: 2 });
    breaker.disable();
    await fail(breaker, 20);
    await expect(breaker.call(ok)).resolves.toBe('ok');
    expect(breaker.state).toBe('DISABLED');
    expect(breaker.metrics).toMatchObject({ calls: 21, failures: 20, successes: 1, rejections: 0, consecutiveFailures: 0, consecutiveSuccesses: 1 });
    expect(breaker.metrics.failureRate).toBe(90);
    breaker.enable();
    expect(breaker.state).toBe('CLOSED');
    expect(breaker.metrics.failureRate).toBeNull();
    expect(edges(events)).toEqual(['CLOSED>DISABLED:DISABLED', 'DISABLED>CLOSED:ENABLED']);
  });

  it('disable works from OPEN, and enable outside DISABLED does nothing', async () => {
    const { breaker, events, clock } = setup({ failureThreshold: 1, resetTimeoutSeconds: 1 });
    breaker.enable();
    await fail(breaker, 1);
    breaker.disable();
    clock.advance(5_000); // no OPEN timer left behind
    expect(breaker.state).toBe('DISABLED');
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_THRESHOLD', 'OPEN>DISABLED:DISABLED']);
  });

  it('same-state changes emit nothing', async () => {
    const { breaker, events } = setup();
    breaker.reset();
    breaker.enable();
    breaker.open();
    breaker.open();
    breaker.disable();
    breaker.disable();
    breaker.enable();
    breaker.reset();
    expect(edges(events)).toEqual(['CLOSED>FORCED_OPEN:MANUAL_OPEN', 'FORCED_OPEN>DISABLED:DISABLED', 'DISABLED>CLOSED:ENABLED']);
  });

  it('resetAll closes every breaker but DISABLED ones, with reason RESET_ALL', async () => {
    const clock = new ManualClock(T0);
    const registry = new BreakerRegistry({ clock });
    const events: BreakerTransition[] = [];
    registry.onTransition((e) => events.push(e));
    const a = registry.getOrCreate('a');
    const b = registry.getOrCreate('b', { failureThreshold: 1 });
    const c = registry.getOrCreate('c');
    const d = registry.getOrCreate('d');
    a.open();
    await fail(b, 1);
    c.disable();
    events.length = 0;
    const changed = registry.resetAll();
    expect(changed.map((x) => x.name)).toEqual(['a', 'b']);
    expect([a.state, b.state, c.state, d.state]).toEqual(['CLOSED', 'CLOSED', 'DISABLED', 'CLOSED']);
    expect(edges(events)).toEqual(['FORCED_OPEN>CLOSED:RESET_ALL', 'OPEN>CLOSED:RESET_ALL']);
    expect(registry.countByState()).toEqual({ CLOSED: 3, OPEN: 0, HALF_OPEN: 0, FORCED_OPEN: 0, DISABLED: 1 });
  });
});

describe('reconfiguration', () => {
  it('keeps the state; an OPEN period is re-measured from when it opened', async () => {
    const { breaker, clock, events } = setup({ failureThreshold: 1, resetTimeoutSeconds: 60 });
    await fail(breaker, 1);
    clock.advance(10_000);
    breaker.configure({ resetTimeoutSeconds: 30 });
    expect(breaker.state).toBe('OPEN');
    expect(breaker.openUntil).toBe(T0 + 30_000);
    expect(breaker.config.resetTimeoutSeconds).toBe(30);
    expect(breaker.config.failureThreshold).toBe(1); // merged over the current config
    clock.advance(19_999);
    expect(breaker.state).toBe('OPEN');
    clock.advance(1);
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_THRESHOLD', 'OPEN>HALF_OPEN:RESET_TIMEOUT_ELAPSED']);
    expect(events[1]!.at).toBe(T0 + 30_000);
  });

  it('an OPEN period already over goes HALF_OPEN on the scheduler\'s next tick', async () => {
    const { breaker, clock } = setup({ failureThreshold: 1, resetTimeoutSeconds: 60 });
    await fail(breaker, 1);
    clock.advance(20_000);
    breaker.configure({ resetTimeoutSeconds: 5 });
    clock.advance(0);
    expect(breaker.state).toBe('HALF_OPEN');
  });

  it('a lower threshold applies at the next failure; the change alone opens nothing', async () => {
    const { breaker, events } = setup({ failureThreshold: 5 });
    await fail(breaker, 3);
    breaker.configure({ failureThreshold: 2 });
    expect(breaker.state).toBe('CLOSED');
    expect(events).toEqual([]);
    await fail(breaker, 1);
    expect(breaker.state).toBe('OPEN');
  });

  it('rejects an invalid change with field errors and changes nothing', async () => {
    const { breaker } = setup({ failureThreshold: 3 });
    const before = breaker.config;
    let thrown: unknown;
    try {
      breaker.configure({ failureThreshold: 0, callTimeoutMs: 1.5 });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(BreakerConfigError);
    expect((thrown as BreakerConfigError).issues.map((i) => i.field).sort()).toEqual(['callTimeoutMs', 'failureThreshold']);
    expect(breaker.config).toBe(before);
  });

  it('resizing the window keeps its most recent outcomes', async () => {
    const { breaker } = setup({ failureThreshold: 100, slidingWindowSize: 10, minimumCalls: 1, failureRateThreshold: 100 });
    await succeed(breaker, 1);
    await fail(breaker, 1);
    await succeed(breaker, 2);
    expect(breaker.metrics.failureRate).toBe(25);
    breaker.configure({ slidingWindowSize: 2 });
    expect(breaker.state).toBe('CLOSED');
    expect(breaker.metrics.failureRate).toBe(0);
    breaker.configure({ slidingWindowSize: null });
    expect(breaker.metrics.failureRate).toBe(25); // back to lifetime counters
  });

  it('moves a running HALF_OPEN deadline, measured from the first trial', async () => {
    const { breaker, clock, events } = setup({ failureThreshold: 1, resetTimeoutSeconds: 1, halfOpenDeadlineSeconds: 60 });
    await fail(breaker, 1);
    clock.advance(1_000);
    void breaker.call(() => new Promise<string>(() => undefined));
    clock.advance(5_000);
    breaker.configure({ halfOpenDeadlineSeconds: 10 });
    clock.advance(4_999);
    expect(breaker.state).toBe('HALF_OPEN');
    clock.advance(1);
    expect(events.at(-1)?.reason).toBe('HALF_OPEN_DEADLINE');
  });

  it('registry.configure is get-or-create; getOrCreate never reconfigures an existing breaker', () => {
    const { registry } = setup();
    const created = registry.configure('new', { failureThreshold: 7 });
    expect(created.config.failureThreshold).toBe(7);
    const again = registry.getOrCreate('new', { failureThreshold: 1 });
    expect(again).toBe(created);
    expect(again.config.failureThreshold).toBe(7);
    registry.configure('new', { successThreshold: 4 });
    expect(created.config).toMatchObject({ failureThreshold: 7, successThreshold: 4 });
  });
});

describe('the shared scheduler', () => {
  it('keeps a single clock timer however many breakers and timed calls are pending', async () => {
    const clock = new ManualClock(T0);
    const registry = new BreakerRegistry({ clock });
    const events: BreakerTransition[] = [];
    registry.onTransition((e) => events.push(e));
    const breakers: CircuitBreaker[] = [];
    for (let i = 0; i < 100; i++) {
      breakers.push(registry.getOrCreate(`b${i}`, { failureThreshold: 1, resetTimeoutSeconds: 100 - i, callTimeoutMs: 50_000 }));
    }
    for (const b of breakers) {
      await fail(b, 1);
      clock.advance(10);
    }
    const timed = registry.getOrCreate('timed', { callTimeoutMs: 500 });
    const hanging = Array.from({ length: 50 }, () => timed.call(() => new Promise<string>(() => undefined)).catch((e: unknown) => e));
    expect(clock.pendingTimers).toBe(1);
    expect(breakers.every((b) => b.state === 'OPEN')).toBe(true);
    clock.advance(500);
    expect((await Promise.all(hanging)).every((e) => e instanceof CallTimeoutError)).toBe(true);
    expect(clock.pendingTimers).toBe(1);
    clock.advance(100_000);
    expect(breakers.every((b) => b.state === 'HALF_OPEN')).toBe(true);
    // Fired in deadline order: b99 had the shortest reset timeout.
    const halfOpened = events.filter((e) => e.to === 'HALF_OPEN').map((e) => e.name);
    expect(halfOpened[0]).toBe('b99');
    expect(halfOpened.at(-1)).toBe('b0');
    expect(clock.pendingTimers).toBeLessThanOrEqual(1);
  });

  it('dispose stops the timer and the events', async () => {
    const { registry, breaker, clock, events } = setup({ failureThreshold: 1, resetTimeoutSeconds: 1 });
    await fail(breaker, 1);
    registry.dispose();
    expect(clock.pendingTimers).toBe(0);
    clock.advance(10_000);
    expect(events).toHaveLength(1);
    expect(() => registry.getOrCreate('x')).toThrow(/disposed/);
  });

  it('remove forgets a breaker and its timer', async () => {
    const { registry, breaker, clock, events } = setup({ failureThreshold: 1, resetTimeoutSeconds: 1 });
    await fail(breaker, 1);
    expect(registry.remove('dep')).toBe(true);
    expect(registry.remove('dep')).toBe(false);
    expect(registry.get('dep')).toBeUndefined();
    clock.advance(10_000);
    expect(events).toHaveLength(1);
    expect(registry.getOrCreate('dep')).not.toBe(breaker);
  });
});

describe('snapshot and restore', () => {
  async function openSnapshot() {
    const { breaker, clock } = setup({ failureThreshold: 2, resetTimeoutSeconds: 60 });
    await succeed(breaker, 1);
    await fail(breaker, 2);
    clock.advance(1);
    await breaker.call(ok).catch(() => undefined);
    return breaker.snapshot();
  }

  it('snapshots state, deadline, counters and config', async () => {
    const snap = await openSnapshot();
    expect(snap).toMatchObject({
      name: 'dep',
      state: 'OPEN',
      stateChangedAt: T0,
      openUntil: T0 + 60_000,
      counters: { calls: 3, successes: 1, failures: 2, rejections: 1, consecutiveFailures: 2, lastError: 'Error: boom', lastFailureAt: T0 },
    });
    expect(snap.config.failureThreshold).toBe(2);
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap); // plain data, persistable as is
  });

  it('restores an OPEN breaker with its remaining time honoured', async () => {
    const snap = await openSnapshot();
    const clock = new ManualClock(T0 + 20_000); // "restart" 20 s later
    const registry = new BreakerRegistry({ clock });
    const events: BreakerTransition[] = [];
    registry.onTransition((e) => events.push(e));
    const breaker = registry.restore(snap);
    expect(breaker.state).toBe('OPEN');
    expect(breaker.openUntil).toBe(T0 + 60_000);
    expect(breaker.metrics).toMatchObject({ calls: 3, failures: 2, rejections: 1, lastError: 'Error: boom' });
    expect(events).toEqual([]); // restoring is not a transition
    await expect(breaker.call(ok)).rejects.toMatchObject({ code: 'CIRCUIT_OPEN', openUntil: T0 + 60_000 });
    clock.advance(39_999);
    expect(breaker.state).toBe('OPEN');
    clock.advance(1);
    expect(edges(events)).toEqual(['OPEN>HALF_OPEN:RESET_TIMEOUT_ELAPSED']);
  });

  it('an OPEN whose openUntil has passed goes HALF_OPEN at once via the scheduler, emitting it', async () => {
    const snap = await openSnapshot();
    const clock = new ManualClock(T0 + 3_600_000);
    const registry = new BreakerRegistry({ clock });
    const events: BreakerTransition[] = [];
    registry.onTransition((e) => events.push(e));
    const breaker = registry.restore(snap);
    expect(clock.pendingTimers).toBe(1);
    clock.advance(0);
    expect(breaker.state).toBe('HALF_OPEN');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ from: 'OPEN', to: 'HALF_OPEN', reason: 'RESET_TIMEOUT_ELAPSED', at: T0 + 3_600_000 });
  });

  it('restores FORCED_OPEN, HALF_OPEN (no trials in flight) and config into an existing breaker', async () => {
    const { breaker } = setup({ failureThreshold: 9 });
    breaker.open();
    const forced = breaker.snapshot();
    const clock = new ManualClock(T0 + 10_000_000);
    const registry = new BreakerRegistry({ clock });
    const existing = registry.getOrCreate('dep');
    const restored = registry.restore(forced);
    expect(restored).toBe(existing);
    expect(restored.state).toBe('FORCED_OPEN');
    expect(restored.config.failureThreshold).toBe(9);
    clock.advance(10_000_000);
    expect(restored.state).toBe('FORCED_OPEN');
    registry.restore({ ...forced, state: 'HALF_OPEN', openUntil: null });
    expect(restored.state).toBe('HALF_OPEN');
    expect(restored.halfOpenCallsInFlight).toBe(0);
    await expect(restored.call(ok)).resolves.toBe('ok');
  });

  it('refuses a snapshot with an invalid state or config', async () => {
    const snap = await openSnapshot();
    const registry = new BreakerRegistry({ clock: new ManualClock(T0) });
    expect(() => registry.restore({ ...snap, state: 'AJAR' as never })).toThrow(/unknown state/);
    expect(() => registry.restore({ ...snap, config: { ...snap.config, successThreshold: -1 } })).toThrow(BreakerConfigError);
  });
});

describe('permit API', () => {
  it('counts only the first outcome of a permit', () => {
    const { breaker } = setup({ failureThreshold: 1 });
    const permit = breaker.tryAcquire();
    expect(permit).not.toBeNull();
    expect(permit!.settled).toBe(false);
    permit!.success(5);
    permit!.failure(new Error('ignored'), 5);
    permit!.timeout();
    permit!.release();
    expect(permit!.settled).toBe(true);
    expect(breaker.metrics).toMatchObject({ calls: 1, successes: 1, failures: 0, timeouts: 0 });
    expect(breaker.state).toBe('CLOSED');
  });

  it('returns null when rejected, counting the rejection', () => {
    const { breaker } = setup();
    breaker.open();
    expect(breaker.tryAcquire()).toBeNull();
    expect(breaker.metrics.rejections).toBe(1);
    expect(breaker.rejectionError()).toMatchObject({ code: 'CIRCUIT_OPEN', state: 'FORCED_OPEN' });
  });

  it('reports failure and timeout outcomes', () => {
    const { breaker, events } = setup({ failureThreshold: 2 });
    breaker.tryAcquire()!.failure(new Error('remote down'), 3);
    breaker.tryAcquire()!.timeout();
    expect(breaker.metrics).toMatchObject({ calls: 2, failures: 2, timeouts: 1, lastError: 'call timed out' });
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_THRESHOLD']);
  });

  it('release frees a HALF_OPEN slot and un-counts the call', async () => {
    const { breaker, clock } = setup({ failureThreshold: 1, resetTimeoutSeconds: 1 });
    await fail(breaker, 1);
    clock.advance(1_000);
    const permit = breaker.tryAcquire()!;
    expect(breaker.tryAcquire()).toBeNull();
    permit.release();
    expect(breaker.metrics.calls).toBe(1);
    expect(breaker.tryAcquire()).not.toBeNull();
  });

  it('is timed out by the breaker after callTimeoutMs, calling onTimeout once', () => {
    const { breaker, clock } = setup({ callTimeoutMs: 200 });
    const timedOut: CallTimeoutError[] = [];
    const permit = breaker.tryAcquire({ onTimeout: (e) => timedOut.push(e) })!;
    expect(permit.timeoutMs).toBe(200);
    clock.advance(200);
    expect(permit.settled).toBe(true);
    expect(timedOut).toHaveLength(1);
    expect(timedOut[0]).toMatchObject({ code: 'CALL_TIMEOUT', timeoutMs: 200 });
    permit.success(1); // the worker's late answer
    expect(breaker.metrics).toMatchObject({ calls: 1, successes: 0, failures: 1, timeouts: 1 });
  });

  it('a permit from an earlier state counts but decides nothing', async () => {
    const { breaker, clock } = setup({ failureThreshold: 1, resetTimeoutSeconds: 1, successThreshold: 1 });
    const stale = breaker.tryAcquire()!;
    await fail(breaker, 1);
    clock.advance(1_000);
    expect(breaker.state).toBe('HALF_OPEN');
    stale.success(1); // admitted while CLOSED: must not close the HALF_OPEN breaker
    expect(breaker.state).toBe('HALF_OPEN');
    expect(breaker.metrics.successes).toBe(1);
    stale.failure(new Error('x'));
    expect(breaker.metrics.failures).toBe(1);
  });
});

describe('CircuitOpenError', () => {
  it('carries code, breaker name, state and openUntil, without a stack trace', async () => {
    const { breaker, clock } = setup({ failureThreshold: 1, resetTimeoutSeconds: 30 });
    await fail(breaker, 1);
    const error = (await breaker.call(ok).catch((e: unknown) => e)) as CircuitOpenError;
    expect(error).toBeInstanceOf(CircuitOpenError);
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('CircuitOpenError');
    expect(error.code).toBe('CIRCUIT_OPEN');
    expect(error.breakerName).toBe('dep');
    expect(error.state).toBe('OPEN');
    expect(error.openUntil).toBe(T0 + 30_000);
    expect(error.message).toContain('"dep"');
    expect(error.stack ?? '').not.toMatch(/\n\s+at /);
    // One instance per open period; a new period gets a new one.
    expect(await breaker.call(ok).catch((e: unknown) => e)).toBe(error);
    clock.advance(30_000);
    await fail(breaker, 1);
    const next = (await breaker.call(ok).catch((e: unknown) => e)) as CircuitOpenError;
    expect(next).not.toBe(error);
    expect(next.openUntil).toBe(T0 + 60_000);
  });
});

describe('fallback and isFailure', () => {
  it('the fallback answers rejections, failures and timeouts with the call\'s arguments', async () => {
    const clock = new ManualClock(T0);
    const registry = new BreakerRegistry({ clock });
    const seen: string[] = [];
    const fallback = (error: unknown, input: string): string => {
      seen.push(error instanceof Error ? error.name : String(error));
      return `fallback:${input}`;
    };
    const breaker = registry.getOrCreate('ml', { failureThreshold: 2, callTimeoutMs: 100 }, { fallback });
    const predict = async (input: string): Promise<string> => {
      if (input === 'bad') throw new RangeError('bad input');
      return `model:${input}`;
    };
    await expect(breaker.call(predict, 'x')).resolves.toBe('model:x');
    await expect(breaker.call(predict, 'bad')).resolves.toBe('fallback:bad');
    const hung = breaker.call(() => new Promise<string>(() => undefined));
    clock.advance(100);
    await expect(hung).resolves.toBe('fallback:undefined');
    expect(breaker.state).toBe('OPEN');
    await expect(breaker.call(predict, 'y')).resolves.toBe('fallback:y');
    expect(seen).toEqual(['RangeError', 'CallTimeoutError', 'CircuitOpenError']);
  });

  it('without a timeout configured, the fallback works on the async path as well', async () => {
    const { breaker } = setup({ failureThreshold: 1 });
    breaker.fallback = (_error: unknown, n: number) => n * 10;
    await expect(breaker.call(async (n: number) => { throw new Error(String(n)); }, 4)).resolves.toBe(40);
    await expect(breaker.call(async (n: number) => n, 5)).resolves.toBe(50); // rejected: open
    breaker.fallback = () => { throw new Error('fallback failed'); };
    await expect(breaker.call(ok)).rejects.toThrow('fallback failed');
  });

  it('errors isFailure calls harmless count as successes and skip the fallback', async () => {
    const { breaker } = setup({ failureThreshold: 1 });
    breaker.isFailure = (error) => !(error instanceof RangeError);
    breaker.fallback = () => 'fallback';
    await expect(breaker.call(async () => { throw new RangeError('client error'); })).rejects.toThrow('client error');
    expect(breaker.state).toBe('CLOSED');
    expect(breaker.metrics).toMatchObject({ successes: 1, failures: 0 });
  });
});

describe('listeners', () => {
  it('delivers a transition raised inside a listener after the current one, to every listener in order', async () => {
    const { registry, breaker } = setup({ failureThreshold: 1 });
    const first: string[] = [];
    const second: string[] = [];
    registry.onTransition((e) => {
      first.push(`${e.from}>${e.to}`);
      if (e.to === 'OPEN') breaker.reset();
    });
    registry.onTransition((e) => second.push(`${e.from}>${e.to}`));
    await fail(breaker, 1);
    expect(first).toEqual(['CLOSED>OPEN', 'OPEN>CLOSED']);
    expect(second).toEqual(['CLOSED>OPEN', 'OPEN>CLOSED']);
  });

  it('a throwing listener is reported and does not stop the others or the breaker', async () => {
    const clock = new ManualClock(T0);
    const reported: unknown[] = [];
    const registry = new BreakerRegistry({ clock, onListenerError: (e) => reported.push(e) });
    const seen: string[] = [];
    registry.onTransition(() => { throw new Error('listener bug'); });
    registry.onTransition((e) => seen.push(e.to));
    const breaker = registry.getOrCreate('x', { failureThreshold: 1 });
    await fail(breaker, 1);
    expect(breaker.state).toBe('OPEN');
    expect(seen).toEqual(['OPEN']);
    expect(reported).toHaveLength(1);
  });

  it('unsubscribes', async () => {
    const { registry, breaker } = setup({ failureThreshold: 1 });
    const seen: string[] = [];
    const off = registry.onTransition((e) => seen.push(e.to));
    off();
    await fail(breaker, 1);
    expect(seen).toEqual([]);
  });

  it('onChange reports what a persisting service needs', async () => {
    const clock = new ManualClock(T0);
    const registry = new BreakerRegistry({ clock });
    const kinds: BreakerChangeKind[] = [];
    const off = registry.onChange((b, kind) => {
      expect(b.name).toBe('x');
      kinds.push(kind);
    });
    const breaker = registry.getOrCreate('x', { failureThreshold: 1 });
    await breaker.call(ok);
    breaker.configure({ failureThreshold: 2 });
    breaker.open();
    await breaker.call(ok).catch(() => undefined);
    registry.remove('x');
    off();
    expect(kinds).toEqual(['created', 'metrics', 'configured', 'state', 'metrics', 'removed']);
  });
});

describe('names', () => {
  it('refuses an empty name', () => {
    const { registry } = setup();
    expect(() => registry.getOrCreate('  ')).toThrow(BreakerConfigError);
  });
});

describe('time-based failure-rate window (slidingWindowType TIME)', () => {
  const timeWindow = (size: number, extra: Partial<BreakerConfig> = {}) =>
    setup({ failureThreshold: 100, slidingWindowType: 'TIME', slidingWindowSize: size, failureRateThreshold: 50, ...extra });

  it('waits for minimumCalls within the window, then opens (FAILURE_RATE_THRESHOLD)', async () => {
    const { breaker, clock, events } = timeWindow(10, { minimumCalls: 4 });
    await fail(breaker, 3);
    expect(breaker.metrics.failureRate).toBeNull(); // 3 calls < minimumCalls
    clock.advance(10_000); // those 3 failures age out
    expect(breaker.metrics.failureRate).toBeNull();
    await succeed(breaker, 2);
    await fail(breaker, 1);
    expect(breaker.state).toBe('CLOSED');
    await fail(breaker, 1); // 2 of the 4 calls of the last 10 s
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_RATE_THRESHOLD']);
    expect(events[0]!.metrics.failureRate).toBe(50);
    expect(breaker.metrics.failures).toBe(5); // lifetime counters keep what the window forgot
  });

  it('minimumCalls is not capped at the size in seconds', async () => {
    const { breaker } = timeWindow(2, { minimumCalls: 5, failureRateThreshold: 100 });
    await fail(breaker, 4);
    expect(breaker.state).toBe('CLOSED');
    await fail(breaker, 1);
    expect(breaker.state).toBe('OPEN');
  });

  it('the rate is over the last N seconds only, evicted a second at a time', async () => {
    const { breaker, clock } = timeWindow(5, { minimumCalls: 2, failureRateThreshold: 60 });
    await succeed(breaker, 2);
    await fail(breaker, 2); // second 0: 50 %
    clock.advance(3_000);
    await succeed(breaker, 4); // second 3
    expect(breaker.metrics.failureRate).toBe(25);
    clock.advance(1_999); // second 4: second 0 still held
    expect(breaker.metrics.failureRate).toBe(25);
    clock.advance(1); // second 5: second 0 falls out
    expect(breaker.metrics.failureRate).toBe(0);
    await fail(breaker, 1);
    expect(breaker.metrics.failureRate).toBe(20);
    expect(breaker.state).toBe('CLOSED');
  });

  it('a gap longer than the window forgets everything; counting resumes after it', async () => {
    const { breaker, clock, events } = timeWindow(60, { minimumCalls: 3 });
    await succeed(breaker, 10);
    await fail(breaker, 2);
    clock.advance(24 * 3_600_000);
    expect(breaker.metrics.failureRate).toBeNull();
    await fail(breaker, 2);
    expect(breaker.state).toBe('CLOSED'); // 2 calls < minimumCalls: the old 12 do not count
    await succeed(breaker, 1);
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_RATE_THRESHOLD']); // 2 of 3
  });

  it('slow calls count as failures in the time window', async () => {
    const { breaker, events } = timeWindow(10, { slowCallDurationMs: 50, minimumCalls: 4 });
    for (const duration of [10, 80, 10, 90]) breaker.tryAcquire()!.success(duration);
    expect(breaker.metrics.slowCalls).toBe(2);
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_RATE_THRESHOLD']);
  });

  it('a new CLOSED period starts with an empty time window', async () => {
    const { breaker } = timeWindow(60, { minimumCalls: 2 });
    await fail(breaker, 2);
    expect(breaker.state).toBe('OPEN');
    breaker.reset();
    expect(breaker.metrics.failureRate).toBeNull();
    await succeed(breaker, 2);
    expect(breaker.metrics.failureRate).toBe(0);
  });

  it('switching COUNT <-> TIME keeps the state and starts an empty window', async () => {
    const { breaker, events } = setup({ failureThreshold: 100, slidingWindowSize: 10, minimumCalls: 1, failureRateThreshold: 100 });
    await succeed(breaker, 3);
    await fail(breaker, 1);
    expect(breaker.metrics.failureRate).toBe(25);
    breaker.configure({ slidingWindowType: 'TIME' });
    expect(breaker.config).toMatchObject({ slidingWindowType: 'TIME', slidingWindowSize: 10 });
    expect(breaker.metrics.failureRate).toBeNull();
    await fail(breaker, 1);
    expect(breaker.state).toBe('OPEN'); // 1 of 1 in the new window
    breaker.configure({ slidingWindowType: 'COUNT' });
    expect(breaker.state).toBe('OPEN');
    expect(breaker.metrics.failureRate).toBeNull();
    expect(edges(events)).toEqual(['CLOSED>OPEN:FAILURE_RATE_THRESHOLD']); // configure alone emits nothing
  });

  it('resizing a time window keeps its most recent seconds', async () => {
    const { breaker, clock } = timeWindow(60, { minimumCalls: 1, failureRateThreshold: 100 });
    await succeed(breaker, 1);
    clock.advance(30_000);
    await fail(breaker, 1);
    expect(breaker.metrics.failureRate).toBe(50);
    breaker.configure({ slidingWindowSize: 10 }); // only the last 10 s: the failure
    expect(breaker.metrics.failureRate).toBe(100);
    expect(breaker.state).toBe('CLOSED'); // a config change alone never opens it
  });

  it('refuses a TIME window over an hour, whichever field the change gave', () => {
    const { breaker } = setup({ slidingWindowSize: 5_000 });
    expect(() => breaker.configure({ slidingWindowType: 'TIME' })).toThrow(BreakerConfigError);
    expect(breaker.config.slidingWindowType).toBe('COUNT');
    breaker.configure({ slidingWindowType: 'TIME', slidingWindowSize: 3_600 });
    expect(() => breaker.configure({ slidingWindowSize: 3_601 })).toThrow(/slidingWindowSize: must be at most 3600 seconds/);
  });
});

describe('exponential backoff of the OPEN wait', () => {
  const backoff = (extra: Partial<BreakerConfig> = {}) =>
    setup({ failureThreshold: 1, resetTimeoutSeconds: 60, resetTimeoutMultiplier: 2, maxResetTimeoutSeconds: 300, halfOpenDeadlineSeconds: null, successThreshold: 1, ...extra });

  /** From OPEN: waits out `seconds` (checking it is exactly that), then fails the trial. */
  async function waitAndFailTrial(breaker: CircuitBreaker, clock: ManualClock, seconds: number): Promise<void> {
    clock.advance(seconds * 1_000 - 1);
    expect(breaker.state).toBe('OPEN');
    clock.advance(1);
    expect(breaker.state).toBe('HALF_OPEN');
    await fail(breaker, 1);
  }

  it('waits 60, 120, 240, then the cap; openUntil of the event and the breaker carry it', async () => {
    const { breaker, clock, events } = backoff();
    await fail(breaker, 1);
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      const opened = events.at(-1)!;
      expect(opened.to).toBe('OPEN');
      expect(breaker.openUntil).toBe(opened.openUntil);
      waits.push((opened.openUntil! - opened.at) / 1_000);
      expect(breaker.openAttempts).toBe(i);
      await waitAndFailTrial(breaker, clock, waits.at(-1)!);
    }
    expect(waits).toEqual([60, 120, 240, 300, 300]);
    expect(events.at(-1)!.reason).toBe('TRIAL_FAILED');
    expect(breaker.openAttempts).toBe(5);
  });

  it('a HALF_OPEN deadline re-opening backs off too', async () => {
    const { breaker, clock, events } = backoff({ halfOpenDeadlineSeconds: 5 });
    await fail(breaker, 1);
    clock.advance(60_000);
    void breaker.call(() => new Promise<string>(() => undefined)); // hangs
    clock.advance(5_000);
    expect(events.at(-1)).toMatchObject({ reason: 'HALF_OPEN_DEADLINE', openUntil: T0 + 65_000 + 120_000 });
  });

  it('CLOSED by trials starts over at resetTimeoutSeconds', async () => {
    const { breaker, clock, events } = backoff();
    await fail(breaker, 1);
    await waitAndFailTrial(breaker, clock, 60);
    await waitAndFailTrial(breaker, clock, 120);
    clock.advance(240_000);
    await succeed(breaker, 1);
    expect(breaker.state).toBe('CLOSED');
    expect(breaker.openAttempts).toBe(0);
    await fail(breaker, 1);
    expect(events.at(-1)!.openUntil! - events.at(-1)!.at).toBe(60_000);
  });

  it('reset, resetAll, enable and an operator\'s open end the episode (k = 0)', async () => {
    const endings: Array<[string, (ctx: ReturnType<typeof backoff>) => void]> = [
      ['reset', ({ breaker }) => breaker.reset()],
      ['resetAll', ({ registry }) => registry.resetAll()],
      ['disable+enable', ({ breaker }) => { breaker.disable(); breaker.enable(); }],
      ['open+reset', ({ breaker }) => { breaker.open(); expect(breaker.openAttempts).toBe(0); breaker.reset(); }],
    ];
    for (const [label, end] of endings) {
      const ctx = backoff();
      const { breaker, clock, events } = ctx;
      await fail(breaker, 1);
      await waitAndFailTrial(breaker, clock, 60);
      expect(breaker.openAttempts, label).toBe(1);
      end(ctx);
      expect(breaker.state, label).toBe('CLOSED');
      expect(breaker.openAttempts, label).toBe(0);
      await fail(breaker, 1);
      expect(events.at(-1)!.openUntil! - events.at(-1)!.at, label).toBe(60_000);
    }
  });

  it('multiplier 1 (the default) never backs off; no cap still stops at 30 days', async () => {
    const plain = setup({ failureThreshold: 1, resetTimeoutSeconds: 60, successThreshold: 1 });
    expect(plain.breaker.config).toMatchObject({ resetTimeoutMultiplier: 1, maxResetTimeoutSeconds: null });
    await fail(plain.breaker, 1);
    await waitAndFailTrial(plain.breaker, plain.clock, 60);
    await waitAndFailTrial(plain.breaker, plain.clock, 60);
    expect(plain.breaker.openAttempts).toBe(2);
    expect(plain.breaker.openUntil).toBe(plain.clock.now() + 60_000);

    const days = setup({ failureThreshold: 1, resetTimeoutSeconds: 10 * 86_400, resetTimeoutMultiplier: 100, halfOpenDeadlineSeconds: null });
    await fail(days.breaker, 1);
    await waitAndFailTrial(days.breaker, days.clock, 10 * 86_400);
    expect(days.breaker.openUntil).toBe(days.clock.now() + 30 * 86_400_000);
  });

  it('reconfiguring an OPEN breaker keeps its backoff step', async () => {
    const { breaker, clock } = backoff();
    await fail(breaker, 1);
    await waitAndFailTrial(breaker, clock, 60); // k = 1: 120 s
    const openedAt = breaker.stateChangedAt;
    breaker.configure({ resetTimeoutMultiplier: 3 });
    expect(breaker.openUntil).toBe(openedAt + 180_000);
    breaker.configure({ maxResetTimeoutSeconds: 90 });
    expect(breaker.openUntil).toBe(openedAt + 90_000);
    expect(() => breaker.configure({ maxResetTimeoutSeconds: 30 })).toThrow(/maxResetTimeoutSeconds: must be at least resetTimeoutSeconds/);
    expect(breaker.openUntil).toBe(openedAt + 90_000);
  });

  it('snapshots carry openAttempts; restoring continues the backoff', async () => {
    const { breaker, clock } = backoff({ maxResetTimeoutSeconds: 1_000 });
    await fail(breaker, 1);
    await waitAndFailTrial(breaker, clock, 60);
    await waitAndFailTrial(breaker, clock, 120); // k = 2, 240 s
    const snap = breaker.snapshot();
    expect(snap).toMatchObject({ state: 'OPEN', openAttempts: 2, openUntil: clock.now() + 240_000 });
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap);

    const later = new ManualClock(clock.now() + 100_000);
    const registry = new BreakerRegistry({ clock: later });
    const events: BreakerTransition[] = [];
    registry.onTransition((e) => events.push(e));
    const restored = registry.restore(snap);
    expect(restored.openAttempts).toBe(2);
    expect(restored.openUntil).toBe(snap.openUntil);
    later.advance(140_000);
    expect(restored.state).toBe('HALF_OPEN');
    await fail(restored, 1);
    expect(events.at(-1)!.openUntil! - events.at(-1)!.at).toBe(480_000); // k = 3
  });

  it('restores a snapshot without openAttempts (persisted before backoff) from k = 0', async () => {
    const { breaker, clock } = backoff();
    await fail(breaker, 1);
    await waitAndFailTrial(breaker, clock, 60);
    const { openAttempts: _dropped, ...old } = breaker.snapshot();
    expect('openAttempts' in old).toBe(false);
    const later = new ManualClock(clock.now());
    const registry = new BreakerRegistry({ clock: later });
    const events: BreakerTransition[] = [];
    registry.onTransition((e) => events.push(e));
    const restored = registry.restore(old);
    expect(restored.state).toBe('OPEN');
    expect(restored.openUntil).toBe(old.openUntil); // the persisted deadline is honoured as is
    expect(restored.openAttempts).toBe(0);
    later.advance(120_000);
    await fail(restored, 1);
    expect(events.at(-1)!.openUntil! - events.at(-1)!.at).toBe(120_000); // k = 1 again
  });

  it('restore: openUntil null is recomputed at the step; junk or out-of-episode openAttempts count as 0', async () => {
    const { breaker, clock } = backoff();
    await fail(breaker, 1);
    const snap = breaker.snapshot();
    const registry = new BreakerRegistry({ clock: new ManualClock(clock.now()) });
    const restored = registry.restore({ ...snap, openUntil: null, openAttempts: 2 });
    expect(restored.openUntil).toBe(snap.stateChangedAt + 240_000);
    for (const junk of [-1, 1.5, Number.NaN, '3' as never]) {
      registry.restore({ ...snap, openAttempts: junk });
      expect(restored.openAttempts).toBe(0);
    }
    registry.restore({ ...snap, state: 'CLOSED', openUntil: null, openAttempts: 4 });
    expect(restored.openAttempts).toBe(0);
    registry.restore({ ...snap, state: 'HALF_OPEN', openUntil: null, openAttempts: 4 });
    expect(restored.openAttempts).toBe(4);
  });
});

const serviceStores = bothDialects('breakers');

describe.each(serviceStores)('the service on %s: persistence off the call path', (_dialect, openStore, available) => {
  const opened: TestDatabase[] = [];
  afterEach(async () => {
    for (const db of opened.splice(0)) await db.close();
  });
  const it = available ? vitestIt : vitestIt.skip;

  async function service(db?: TestDatabase, clock = new ManualClock(T0)) {
    const database = db ?? (await openStore());
    if (!db) opened.push(database);
    const bus = new EventBus();
    const published: string[] = [];
    bus.on('breakerStateChanged', (e) => published.push(`${e.name}:${e.from}>${e.to}:${e.reason}`));
    const errors: string[] = [];
    const logger = createLogger('error', {}, (line) => errors.push(line));
    const breakers = new BreakerService({ uow: database.uow, audit: new AuditRepository(database.uow), bus, clock, logger });
    await breakers.start();
    const row = async (name: string) =>
      database.database.kysely.selectFrom('circuit_breakers').select(['state', 'counters_json']).where('name', '=', name).executeTakeFirst();
    const audited = async () =>
      (await database.database.kysely.selectFrom('audit_log').select(['action', 'target']).orderBy('id').execute()).map((r) => `${r.action}:${r.target}`);
    return { db: database, uow: database.uow, clock, breakers, published, errors, row, audited };
  }

  it('a call that opens the breaker does not wait: published at once, stored in the background, in order', async () => {
    const s = await service();
    const breaker = s.breakers.getOrCreate('dep', { failureThreshold: 1 });
    breaker.tryAcquire()!.failure(new Error('down'), 1);
    // Synchronous: memory and the bus have moved before anything was written.
    expect(breaker.state).toBe('OPEN');
    expect(s.published).toEqual(['dep:CLOSED>OPEN:FAILURE_THRESHOLD']);
    const history = await s.breakers.transitions('dep', 10);
    expect(history.map((t) => `${t.from}>${t.to}:${t.reason}`)).toEqual(['CLOSED>OPEN:FAILURE_THRESHOLD']);
    expect((await s.row('dep'))?.state).toBe('OPEN');
    expect(s.errors).toEqual([]);
  });

  it('a call transition inside a caller\'s unit that rolls back stands, stored and published once', async () => {
    const s = await service();
    const breaker = s.breakers.getOrCreate('dep', { failureThreshold: 1 });
    await expect(
      s.uow.run(async () => {
        breaker.tryAcquire()!.failure(new Error('down'), 1);
        // The caller goes on in its unit (the background write must not join it), then rolls back.
        await s.uow.db.selectFrom('meta').selectAll().execute();
        await new Promise((resolve) => setImmediate(resolve));
        throw new Error('caller changed its mind');
      }),
    ).rejects.toThrow('caller changed its mind');
    expect(breaker.state).toBe('OPEN');
    expect((await s.breakers.transitions('dep', 10)).map((t) => t.to)).toEqual(['OPEN']);
    expect((await s.row('dep'))?.state).toBe('OPEN');
    expect(s.published).toEqual(['dep:CLOSED>OPEN:FAILURE_THRESHOLD']);
    expect(s.errors).toEqual([]);
  });

  it('a mutation changes memory at once, writes with its audit entry, and publishes after the commit', async () => {
    const s = await service();
    await s.breakers.configure('ops', 'dep', { failureThreshold: 3 });
    const pending = s.breakers.open('ops', 'dep');
    expect(s.breakers.get('dep')!.state).toBe('FORCED_OPEN');
    expect(s.published).toEqual([]);
    expect((await pending).state).toBe('FORCED_OPEN');
    expect(s.published).toEqual(['dep:CLOSED>FORCED_OPEN:MANUAL_OPEN']);
    expect((await s.row('dep'))?.state).toBe('FORCED_OPEN');
    expect(await s.audited()).toEqual(['configureCircuitBreaker:dep', 'openCircuitBreaker:dep']);
    await expect(s.breakers.reset('ops', 'nope')).rejects.toMatchObject({ code: 'BREAKER_NOT_FOUND' });
    await expect(s.breakers.configure('ops', 'dep', { failureThreshold: 0 })).rejects.toThrow(/failureThreshold/);
  });

  it('a call transition after a mutation\'s change waits on the bus and in the history behind that mutation', async () => {
    const s = await service();
    await s.breakers.configure('ops', 'dep', { failureThreshold: 1 });
    await s.breakers.open('ops', 'dep');
    const reset = s.breakers.reset('ops', 'dep');
    const breaker = s.breakers.get('dep')!;
    breaker.tryAcquire()!.failure(new Error('down'), 1);
    expect(breaker.state).toBe('OPEN');
    expect(s.published).toEqual(['dep:CLOSED>FORCED_OPEN:MANUAL_OPEN']);
    await reset;
    expect(s.published).toEqual([
      'dep:CLOSED>FORCED_OPEN:MANUAL_OPEN', 'dep:FORCED_OPEN>CLOSED:MANUAL_RESET', 'dep:CLOSED>OPEN:FAILURE_THRESHOLD',
    ]);
    expect((await s.breakers.transitions('dep', 10)).map((t) => t.reason)).toEqual(['MANUAL_OPEN', 'MANUAL_RESET', 'FAILURE_THRESHOLD']);
    expect((await s.row('dep'))?.state).toBe('OPEN');
  });

  it('a mutation inside a caller\'s unit that rolls back puts memory back (a created breaker is forgotten), stores and publishes nothing', async () => {
    const s = await service();
    await s.breakers.configure('ops', 'payments', { failureThreshold: 3 });
    await expect(
      s.uow.run(async () => {
        await s.breakers.open('ops', 'payments');
        expect(s.breakers.get('payments')!.state).toBe('FORCED_OPEN');
        await s.breakers.configure('ops', 'brand_new', {});
        await s.breakers.configure('ops', 'payments', { failureThreshold: 9 });
        throw new Error('caller changed its mind');
      }),
    ).rejects.toThrow('caller changed its mind');
    expect(s.breakers.get('payments')!.state).toBe('CLOSED');
    expect(s.breakers.get('payments')!.config.failureThreshold).toBe(3);
    expect(s.breakers.get('brand_new')).toBeNull();
    expect(s.published).toEqual([]);
    expect(await s.breakers.transitions('payments', 10)).toEqual([]);
    expect((await s.row('payments'))?.state).toBe('CLOSED');
    expect(await s.row('brand_new')).toBeUndefined();
    expect(await s.audited()).toEqual(['configureCircuitBreaker:payments']);
  });

  it('resetAll writes every breaker with an audit entry each, in one unit', async () => {
    const s = await service();
    await s.breakers.configure('ops', 'a', {});
    await s.breakers.configure('ops', 'b', {});
    await s.breakers.open('ops', 'a');
    await s.breakers.disable('ops', 'b');
    const all = await s.breakers.resetAll('ops');
    expect(all.map((b) => `${b.name}:${b.state}`)).toEqual(['a:CLOSED', 'b:DISABLED']);
    expect(s.published.at(-1)).toBe('a:FORCED_OPEN>CLOSED:RESET_ALL');
    expect((await s.row('a'))?.state).toBe('CLOSED');
    expect((await s.audited()).slice(-2)).toEqual(['resetAllCircuitBreakers:a', 'resetAllCircuitBreakers:b']);
  });

  it('retire deletes the row and its history, audited, and memory forgets it after the commit', async () => {
    const s = await service();
    const breaker = s.breakers.getOrCreate('module:x@2', { failureThreshold: 1 });
    breaker.tryAcquire()!.failure(new Error('down'), 1);
    expect(await s.breakers.retire('rollouts', 'module:x@2')).toBe(true);
    expect(s.breakers.get('module:x@2')).toBeNull();
    expect(await s.row('module:x@2')).toBeUndefined();
    expect(await s.breakers.transitions('module:x@2', 10)).toEqual([]);
    expect(await s.audited()).toEqual(['removeCircuitBreaker:module:x@2']);
    expect(await s.breakers.retire('rollouts', 'module:x@2')).toBe(false);
    expect(s.errors).toEqual([]);
  });

  it('stop() waits for every queued write and the counters, and a restart restores the state', async () => {
    const clock = new ManualClock(T0);
    const first = await service(undefined, clock);
    const breaker = first.breakers.getOrCreate('dep', { failureThreshold: 2, resetTimeoutSeconds: 60 });
    await fail(breaker, 2);
    await breaker.call(ok).catch(() => undefined); // rejected: counted
    await first.breakers.stop();
    const row = await first.row('dep');
    expect(row?.state).toBe('OPEN');
    expect(JSON.parse(row!.counters_json)).toMatchObject({ failures: 2, rejections: 1 });

    const second = await service(first.db, clock);
    expect(second.breakers.get('dep')).toMatchObject({ state: 'OPEN', openUntil: T0 + 60_000 });
    expect(second.breakers.get('dep')!.metrics).toMatchObject({ failures: 2, rejections: 1 });
    await second.breakers.stop();
  });

  it('counters are written by the flush timer, never on the call path', async () => {
    const s = await service();
    const breaker = s.breakers.getOrCreate('dep');
    await s.breakers.flush(); // its row, written when it was created
    expect(JSON.parse((await s.row('dep'))!.counters_json)).toMatchObject({ successes: 0 });
    await succeed(breaker, 3);
    await s.breakers.transitions('dep', 1); // waits for the write queue: nothing was queued
    expect(JSON.parse((await s.row('dep'))!.counters_json)).toMatchObject({ successes: 0 });
    s.clock.advance(1000);
    await s.breakers.transitions('dep', 1); // behind the queue: the timer's flush has run
    expect(JSON.parse((await s.row('dep'))!.counters_json)).toMatchObject({ successes: 3 });
    await s.breakers.stop();
  });
});
