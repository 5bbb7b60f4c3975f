/** Circuit breakers end to end: operator controls, the live feed, the library API in-process, restarts. */
import { describe, expect, it } from 'vitest';
import { CircuitOpenError } from '../../src/breakers/errors.js';
import { ManualClock } from '../../src/clock.js';
import {
  AuditLogDocument,
  BreakerSnapshotsDocument,
  BreakerStateChangedDocument,
  BreakerStatusDocument,
  CircuitBreakerDocument,
  CircuitBreakersDocument,
  ConfigureCircuitBreakerDocument,
  DisableCircuitBreakerDocument,
  EnableCircuitBreakerDocument,
  OpenCircuitBreakerDocument,
  ResetAllCircuitBreakersDocument,
  ResetCircuitBreakerDocument,
} from '../gql/graphql.js';
import { serverPool } from '../support/pool.js';
import { subscribe, untilListening } from '../support/server.js';

const pool = serverPool();
const start = pool.start;
const stopOne = pool.stop;

const fail = () => Promise.reject(new Error('upstream down'));
const succeed = () => Promise.resolve('ok');

describe('operator controls', () => {
  it('a subscriber sees manual open and reset in order, with no duplicates', async () => {
    const h = await start();
    const created = await h.query(ConfigureCircuitBreakerDocument, { name: 'valr_api', failureThreshold: 3, resetTimeoutSeconds: 30 });
    expect(created.configureCircuitBreaker).toMatchObject({ created: true, errors: [], breaker: { state: 'CLOSED', config: { failureThreshold: 3, resetTimeoutSeconds: 30, successThreshold: 2 } } });

    const feed = subscribe(h.wsClient(), BreakerStateChangedDocument, { name: 'valr_api' });
    await untilListening(h, 'breakerStateChanged');

    expect((await h.query(OpenCircuitBreakerDocument, { name: 'valr_api' })).openCircuitBreaker).toEqual({ breaker: { name: 'valr_api', state: 'FORCED_OPEN' }, errors: [] });
    await h.query(OpenCircuitBreakerDocument, { name: 'valr_api' }); // same state: nothing published
    await h.query(ResetCircuitBreakerDocument, { name: 'valr_api' });
    await h.query(ResetCircuitBreakerDocument, { name: 'valr_api' }); // same state: nothing published
    await h.query(DisableCircuitBreakerDocument, { name: 'valr_api' });
    await h.query(EnableCircuitBreakerDocument, { name: 'valr_api' });

    const seen = [];
    for (let i = 0; i < 4; i++) {
      const e = (await feed.next()).breakerStateChanged;
      seen.push(`${e.from}->${e.to}:${e.reason}`);
    }
    expect(seen).toEqual(['CLOSED->FORCED_OPEN:MANUAL_OPEN', 'FORCED_OPEN->CLOSED:MANUAL_RESET', 'CLOSED->DISABLED:DISABLED', 'DISABLED->CLOSED:ENABLED']);
    // A marker proves nothing else was queued in between.
    await h.query(OpenCircuitBreakerDocument, { name: 'valr_api' });
    expect((await feed.next()).breakerStateChanged.reason).toBe('MANUAL_OPEN');
    expect(feed.events).toHaveLength(5);

    const history = await h.query(CircuitBreakerDocument, { name: 'valr_api', last: 2 });
    expect(history.circuitBreaker!.transitions.map((t) => t.reason)).toEqual(['ENABLED', 'MANUAL_OPEN']);

    const audit = await h.query(AuditLogDocument, { first: 3, target: 'valr_api' });
    expect(audit.auditLog.edges.map((e) => e.node.action)).toEqual(['openCircuitBreaker', 'enableCircuitBreaker', 'disableCircuitBreaker']);
    expect(audit.auditLog.edges[0]!.node).toMatchObject({ targetType: 'CIRCUIT_BREAKER', before: { state: 'CLOSED' }, after: { state: 'FORCED_OPEN' } });
  });

  it('reconfigures in place keeping the state, resets all, and counts breakers by state', async () => {
    const h = await start();
    await h.query(ConfigureCircuitBreakerDocument, { name: 'a' });
    await h.query(ConfigureCircuitBreakerDocument, { name: 'b' });
    await h.query(ConfigureCircuitBreakerDocument, { name: 'c' });
    await h.query(OpenCircuitBreakerDocument, { name: 'a' });
    await h.query(DisableCircuitBreakerDocument, { name: 'c' });

    const reconfigured = await h.query(ConfigureCircuitBreakerDocument, { name: 'a', failureThreshold: 9, callTimeoutMs: 250 });
    expect(reconfigured.configureCircuitBreaker).toMatchObject({ created: false, breaker: { state: 'FORCED_OPEN', config: { failureThreshold: 9, callTimeoutMs: 250 } } });
    const off = await h.query(ConfigureCircuitBreakerDocument, { name: 'a', callTimeoutMs: null });
    expect(off.configureCircuitBreaker.breaker!.config.callTimeoutMs).toBeNull();

    expect((await h.query(BreakerStatusDocument)).modularityStatus.breakers).toEqual({ total: 3, closed: 1, open: 0, halfOpen: 0, forcedOpen: 1, disabled: 1 });
    const all = await h.query(ResetAllCircuitBreakersDocument);
    expect(all.resetAllCircuitBreakers.breakers.map((b) => `${b.name}:${b.state}`)).toEqual(['a:CLOSED', 'b:CLOSED', 'c:DISABLED']);
  });

  it('rejects bad input with typed errors and changes nothing', async () => {
    const h = await start();
    await h.query(ConfigureCircuitBreakerDocument, { name: 'svc', failureThreshold: 4 });
    const before = await h.query(CircuitBreakersDocument);

    const bad = await h.query(ConfigureCircuitBreakerDocument, { name: 'svc', failureThreshold: 0, resetTimeoutSeconds: -1 });
    expect(bad.configureCircuitBreaker.breaker).toBeNull();
    expect(bad.configureCircuitBreaker.errors.map((e) => [e.code, e.field])).toEqual([
      ['INVALID_BREAKER_CONFIG', 'failureThreshold'],
      ['INVALID_BREAKER_CONFIG', 'resetTimeoutSeconds'],
    ]);
    expect((await h.query(ConfigureCircuitBreakerDocument, { name: '' })).configureCircuitBreaker.errors[0]!.code).toBe('INVALID_NAME');
    expect((await h.query(ConfigureCircuitBreakerDocument, { name: 'x'.repeat(101) })).configureCircuitBreaker.errors[0]!.code).toBe('INVALID_NAME');
    expect((await h.query(OpenCircuitBreakerDocument, { name: 'nope' })).openCircuitBreaker).toEqual({
      breaker: null,
      errors: [{ code: 'BREAKER_NOT_FOUND', message: 'Circuit breaker "nope" does not exist', field: 'name' }],
    });
    expect((await h.query(ResetCircuitBreakerDocument, { name: 'nope' })).resetCircuitBreaker.errors[0]!.code).toBe('BREAKER_NOT_FOUND');
    expect(await h.query(CircuitBreakersDocument)).toEqual(before);
  });
});

describe('library API in the server process', () => {
  it('a breaker driven by failures is seen over the wire: OPEN, HALF_OPEN after the timeout, CLOSED after trials', async () => {
    const clock = new ManualClock(Date.UTC(2026, 3, 1, 12));
    const h = await start({ clock });
    const feed = subscribe(h.wsClient(), BreakerStateChangedDocument, {});
    await untilListening(h, 'breakerStateChanged');

    // The seed's idiom: get_or_create, then call through it.
    const breaker = h.server.app.services.breakers.getOrCreate('neural_predictor', { failureThreshold: 3, resetTimeoutSeconds: 60, successThreshold: 2 });
    for (let i = 0; i < 3; i++) await expect(breaker.call(fail)).rejects.toThrow('upstream down');

    const opened = (await feed.next()).breakerStateChanged;
    expect(opened).toMatchObject({ name: 'neural_predictor', from: 'CLOSED', to: 'OPEN', reason: 'FAILURE_THRESHOLD', metrics: { failures: 3, consecutiveFailures: 3 } });
    expect(opened.openUntil).toBe(new Date(clock.now() + 60_000).toISOString());

    // While open, calls are rejected with a typed error, and a fallback answers instead.
    const rejection = await breaker.call(succeed).catch((e: unknown) => e);
    expect(rejection).toBeInstanceOf(CircuitOpenError);
    expect(rejection).toMatchObject({ code: 'CIRCUIT_OPEN', breakerName: 'neural_predictor' });
    breaker.fallback = () => ({ prediction: 'neutral', confidence: 0.5 });
    expect(await breaker.call(succeed)).toEqual({ prediction: 'neutral', confidence: 0.5 });
    breaker.fallback = null;

    const remote = await h.query(CircuitBreakerDocument, { name: 'neural_predictor' });
    expect(remote.circuitBreaker).toMatchObject({ state: 'OPEN', metrics: { rejections: 2, failures: 3 } });

    // No traffic needed: the timer moves it to HALF_OPEN.
    clock.advance(60_000);
    expect((await feed.next()).breakerStateChanged).toMatchObject({ from: 'OPEN', to: 'HALF_OPEN', reason: 'RESET_TIMEOUT_ELAPSED' });
    expect(await breaker.call(succeed)).toBe('ok');
    expect(await breaker.call(succeed)).toBe('ok');
    expect((await feed.next()).breakerStateChanged).toMatchObject({ from: 'HALF_OPEN', to: 'CLOSED', reason: 'TRIAL_SUCCEEDED' });
    expect(feed.events).toHaveLength(3);
  });

  it('samples every breaker for dashboards on breakerSnapshots', async () => {
    const clock = new ManualClock(Date.UTC(2026, 3, 1, 12));
    const h = await start({ clock });
    await h.query(ConfigureCircuitBreakerDocument, { name: 'one' });
    const samples = subscribe(h.wsClient(), BreakerSnapshotsDocument, { intervalMs: 500 });
    const first = (await samples.next()).breakerSnapshots;
    expect(first.breakers).toEqual([{ name: 'one', state: 'CLOSED', metrics: { calls: 0 } }]);
    await h.server.app.services.breakers.get('one')!.call(succeed);
    // Wait until the sampler has asked for the next sample (its timer is armed), then move time.
    for (let i = 0; i < 100 && clock.pendingTimers === 0; i++) await new Promise((r) => setTimeout(r, 5));
    clock.advance(500);
    const second = (await samples.next()).breakerSnapshots;
    expect(second.breakers[0]!.metrics.calls).toBe(1);
    expect(Date.parse(second.at) - Date.parse(first.at)).toBe(500);

    const bad = subscribe(h.wsClient(), BreakerSnapshotsDocument, { intervalMs: 1 });
    await expect(bad.next()).rejects.toThrow(/intervalMs/);
  });
});

describe('failure-rate windows and backoff', () => {
  it('opens on the failure rate of the last N seconds (TIME window), which forgets old calls', async () => {
    const clock = new ManualClock(Date.UTC(2026, 3, 1, 12));
    const h = await start({ clock });
    const made = await h.query(ConfigureCircuitBreakerDocument, {
      name: 'rate', failureThreshold: 100, slidingWindowType: 'TIME', slidingWindowSize: 10, minimumCalls: 4, failureRateThreshold: 50,
    });
    expect(made.configureCircuitBreaker.breaker!.config).toMatchObject({ slidingWindowType: 'TIME', slidingWindowSize: 10, minimumCalls: 4 });
    const breaker = h.server.app.services.breakers.get('rate')!;
    await breaker.call(fail).catch(() => {});
    await breaker.call(fail).catch(() => {});
    clock.advance(11_000); // both failures fall out of the 10 s window
    await breaker.call(succeed);
    await breaker.call(succeed);
    await breaker.call(fail).catch(() => {});
    expect(breaker.state).toBe('CLOSED');
    await breaker.call(fail).catch(() => {});
    const now = (await h.query(CircuitBreakerDocument, { name: 'rate', last: 1 })).circuitBreaker!;
    expect(now).toMatchObject({ state: 'OPEN', metrics: { failureRate: 50 }, transitions: [{ reason: 'FAILURE_RATE_THRESHOLD' }] });

    const bad = await h.query(ConfigureCircuitBreakerDocument, { name: 'rate', slidingWindowSize: 7200 });
    expect(bad.configureCircuitBreaker.errors[0]).toMatchObject({ code: 'INVALID_BREAKER_CONFIG', field: 'slidingWindowSize' });
  });

  it('backs off the OPEN wait exponentially on each re-opening, up to a cap, and keeps the step across a restart', async () => {
    const t0 = Date.UTC(2026, 3, 1, 12);
    const clock = new ManualClock(t0);
    const first = await start({ clock });
    await first.query(ConfigureCircuitBreakerDocument, {
      name: 'api', failureThreshold: 1, successThreshold: 1, resetTimeoutSeconds: 10, resetTimeoutMultiplier: 2, maxResetTimeoutSeconds: 30,
    });
    const bad = await first.query(ConfigureCircuitBreakerDocument, { name: 'api', maxResetTimeoutSeconds: 5 });
    expect(bad.configureCircuitBreaker.errors[0]).toMatchObject({ code: 'INVALID_BREAKER_CONFIG', field: 'maxResetTimeoutSeconds' });
    const api = first.server.app.services.breakers.get('api')!;
    await api.call(fail).catch(() => {});
    expect(api.openUntil).toBe(t0 + 10_000);
    clock.advance(10_000);
    await api.call(fail).catch(() => {}); // trial fails: wait doubles
    expect(api.openUntil).toBe(t0 + 10_000 + 20_000);
    expect((await first.query(CircuitBreakerDocument, { name: 'api' })).circuitBreaker).toMatchObject({ state: 'OPEN', openAttempts: 1 });
    await pool.stop(first);

    const clock2 = new ManualClock(t0 + 30_000);
    const second = await start({ dir: first.dir, clock: clock2 });
    clock2.advance(0); // its OPEN time ran out while Helios was down: HALF_OPEN at the scheduler's first tick
    expect((await second.query(CircuitBreakerDocument, { name: 'api' })).circuitBreaker).toMatchObject({ state: 'HALF_OPEN', openAttempts: 1 });
    const again = second.server.app.services.breakers.get('api')!;
    await again.call(fail).catch(() => {}); // 10 * 2^2 = 40 s, capped at 30 s
    expect(again.openUntil).toBe(t0 + 30_000 + 30_000);
    clock2.advance(30_000);
    await again.call(succeed);
    expect((await second.query(CircuitBreakerDocument, { name: 'api' })).circuitBreaker).toMatchObject({ state: 'CLOSED', openAttempts: 0 });
  });
});

describe('persistence', () => {
  it('an OPEN breaker is still OPEN after a restart, with its remaining time honoured', async () => {
    const t0 = Date.UTC(2026, 3, 1, 12);
    const clock1 = new ManualClock(t0);
    const first = await start({ clock: clock1 });
    const breaker = first.server.app.services.breakers.getOrCreate('valr_api', { failureThreshold: 2, resetTimeoutSeconds: 60 });
    await breaker.call(fail).catch(() => {});
    await breaker.call(fail).catch(() => {});
    await first.query(ConfigureCircuitBreakerDocument, { name: 'held' });
    await first.query(OpenCircuitBreakerDocument, { name: 'held' });
    await breaker.call(succeed).catch(() => {}); // a rejection, counted
    await stopOne(first);

    const clock2 = new ManualClock(t0 + 20_000);
    const second = await start({ dir: first.dir, clock: clock2 });
    const feed = subscribe(second.wsClient(), BreakerStateChangedDocument, { name: 'valr_api' });
    await untilListening(second, 'breakerStateChanged');
    const after = await second.query(CircuitBreakersDocument);
    expect(after.circuitBreakers.map((b) => [b.name, b.state])).toEqual([['held', 'FORCED_OPEN'], ['valr_api', 'OPEN']]);
    const valr = after.circuitBreakers[1]!;
    expect(valr.openUntil).toBe(new Date(t0 + 60_000).toISOString());
    expect(valr.config.failureThreshold).toBe(2);
    expect(valr.metrics).toMatchObject({ failures: 2, rejections: 1 });

    clock2.advance(39_999);
    expect((await second.query(CircuitBreakerDocument, { name: 'valr_api' })).circuitBreaker!.state).toBe('OPEN');
    clock2.advance(1);
    expect((await feed.next()).breakerStateChanged).toMatchObject({ from: 'OPEN', to: 'HALF_OPEN', reason: 'RESET_TIMEOUT_ELAPSED' });
    // Forced open never times out.
    clock2.advance(3_600_000);
    expect((await second.query(CircuitBreakerDocument, { name: 'held' })).circuitBreaker!.state).toBe('FORCED_OPEN');
  });
});
