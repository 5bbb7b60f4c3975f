/** The rollout engine (pure), its plan validation and the per-step statistics, on a fake clock. */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { UserError, UserErrors } from '../../src/errors.js';
import {
  abort,
  advance,
  assertTransition,
  breakerOpened,
  canaryFailed,
  canaryReady,
  createRollout,
  flagMoved,
  isLegalTransition,
  judge,
  judgeGates,
  pause,
  promote,
  recoveryEffects,
  resume,
  ROLLOUT_COMMAND_SOURCES,
  ROLLOUT_COMMANDS,
  ROLLOUT_TRANSITIONS,
  type RolloutCommand,
  type RolloutDecision,
} from '../../src/rollouts/engine.js';
import { ROLLOUT_STATUSES, type Rollout, type RolloutStatsSnapshot, type RolloutStatus, type VersionStats } from '../../src/rollouts/events.js';
import { RolloutStats, VersionStatsWindow } from '../../src/rollouts/stats.js';
import { DEFAULT_ROLLOUT_STEPS, validateRolloutPlan, type RolloutPlanInput } from '../../src/rollouts/validation.js';

const T0 = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;

function stats(canary: Partial<VersionStats> = {}, stable: Partial<VersionStats> = {}): RolloutStatsSnapshot {
  const v = (p: Partial<VersionStats>): VersionStats => {
    const calls = p.calls ?? 100;
    const failures = p.failures ?? 0;
    return { calls, failures, failureRate: p.failureRate ?? (calls === 0 ? null : failures / calls), p50Ms: p.p50Ms ?? 5, p99Ms: p.p99Ms ?? 10 };
  };
  return { canary: v(canary), stable: v(stable) };
}

const healthy = { stats: stats(), canaryBreaker: 'CLOSED' as const };

function newRollout(clock: ManualClock, plan: RolloutPlanInput = {}, testWith: string | null = null): RolloutDecision {
  return createRollout({
    id: 'r1', seq: 1, module: 'pricing', fromVersion: '1.0.0', toVersion: '2.0.0', toModulePath: 'pricing_v2.js', flag: 'pricing',
    plan: validateRolloutPlan(plan), testWith, actor: 'alice',
  }, clock.now());
}

function running(clock: ManualClock, plan: RolloutPlanInput = {}): Rollout {
  return canaryReady(newRollout(clock, plan).rollout, clock.now()).rollout;
}

/** A rollout in `status`, built through the engine's own commands. */
function inStatus(status: RolloutStatus, clock = new ManualClock(T0), plan: RolloutPlanInput = {}): Rollout {
  switch (status) {
    case 'TESTING':
      return newRollout(clock, plan).rollout;
    case 'RUNNING':
      return running(clock, plan);
    case 'HOLDING': {
      const r = running(clock, plan);
      clock.advance(HOUR);
      return judge(r, { stats: stats({ calls: 3 }), canaryBreaker: 'CLOSED' }, clock.now())!.rollout;
    }
    case 'PAUSED':
      return pause(running(clock, plan), clock.now(), 'alice').rollout;
    case 'PROMOTED':
      return promote(running(clock, plan), clock.now(), 'alice').rollout;
    case 'ABORTED':
      return abort(running(clock, plan), clock.now(), 'alice', 'test').rollout;
  }
}

function runCommand(command: RolloutCommand, r: Rollout, now: number): RolloutDecision | null {
  switch (command) {
    case 'canaryReady': return canaryReady(r, now);
    case 'canaryFailed': return canaryFailed(r, now, 'CANARY_FAILED', 'load failed');
    case 'judge': return judge(r, healthy, now + HOUR);
    case 'breakerOpened': return breakerOpened(r, now, 'OPEN', stats());
    case 'advance': return advance(r, now, 'alice');
    case 'pause': return pause(r, now, 'alice');
    case 'resume': return resume(r, now, 'alice');
    case 'promote': return promote(r, now, 'alice');
    case 'abort': return abort(r, now, 'alice', 'why');
    case 'flagMoved': return flagMoved(r, now, 33, 'alice');
  }
}

describe('rollout transition table', () => {
  it('accepts exactly the edges in the table, for every (from, to) pair', () => {
    let legal = 0;
    for (const from of ROLLOUT_STATUSES) {
      for (const to of ROLLOUT_STATUSES) {
        const expected = ROLLOUT_TRANSITIONS[from].includes(to);
        expect(isLegalTransition(from, to), `${from} -> ${to}`).toBe(expected);
        if (expected) {
          expect(() => assertTransition(from, to)).not.toThrow();
          legal++;
        } else {
          expect(() => assertTransition(from, to), `${from} -> ${to}`).toThrowError(expect.objectContaining({ code: 'INVALID_ROLLOUT_STATE' }));
        }
      }
    }
    expect(legal).toBe(2 + 5 + 5 + 4);
    expect(ROLLOUT_TRANSITIONS.PROMOTED).toEqual([]);
    expect(ROLLOUT_TRANSITIONS.ABORTED).toEqual([]);
  });

  it.each([
    ['automatic', {}],
    ['manual', { stepIntervalSeconds: null }],
  ] as [string, RolloutPlanInput][])('runs every command from every status (%s steps): accepted ones follow a legal edge, the others are refused with INVALID_ROLLOUT_STATE', (_mode, plan) => {
    let changed = 0;
    for (const command of ROLLOUT_COMMANDS) {
      for (const status of ROLLOUT_STATUSES) {
        // Manual steps are never judged short of calls, so they cannot be HOLDING.
        if (status === 'HOLDING' && plan.stepIntervalSeconds === null) continue;
        const clock = new ManualClock(T0);
        const r = inStatus(status, clock, plan);
        expect(r.status).toBe(status);
        if (ROLLOUT_COMMAND_SOURCES[command].includes(status)) {
          const decision = runCommand(command, r, clock.now());
          if (decision !== null) {
            changed++;
            const to = decision.rollout.status;
            // Staying put is a change within the status unless the table lists the self-edge.
            if (to !== status) expect(isLegalTransition(status, to), `${command} from ${status}`).toBe(true);
          }
        } else {
          let error: unknown = null;
          try {
            runCommand(command, r, clock.now());
          } catch (e) {
            error = e;
          }
          expect(error, `${command} from ${status}`).toBeInstanceOf(UserError);
          expect((error as UserError).code).toBe('INVALID_ROLLOUT_STATE');
        }
      }
    }
    expect(changed).toBeGreaterThan(15);
  });

  it('refuses every command on a finished rollout', () => {
    for (const status of ['PROMOTED', 'ABORTED'] as const) {
      for (const command of ROLLOUT_COMMANDS) expect(ROLLOUT_COMMAND_SOURCES[command]).not.toContain(status);
    }
  });
});

describe('rollout engine', () => {
  it('starts TESTING with the split at 0, then enters the first step with the stats reset', () => {
    const clock = new ManualClock(T0);
    const start = newRollout(clock, {}, 'GENERIC');
    expect(start.rollout).toMatchObject({ status: 'TESTING', percentage: 0, stepIndex: 0, steps: [...DEFAULT_ROLLOUT_STEPS], nextStepAt: null, testWith: 'GENERIC' });
    expect(start.events.map((e) => e.type)).toEqual(['STARTED']);
    expect(start.effects).toEqual([{ kind: 'SET_PERCENTAGE', percentage: 0 }]);
    clock.advance(5000);
    const ready = canaryReady(start.rollout, clock.now(), 'run-1');
    expect(ready.rollout).toMatchObject({ status: 'RUNNING', percentage: 1, stepIndex: 0, stepStartedAt: T0 + 5000, nextStepAt: T0 + 5000 + HOUR, testRunId: 'run-1' });
    expect(ready.events).toMatchObject([{ type: 'STEP', percentage: 1 }]);
    expect(ready.effects).toEqual([{ kind: 'SET_PERCENTAGE', percentage: 1 }, { kind: 'RESET_STATS' }]);
  });

  it('a failed load or test run aborts without touching the split (nothing was routed)', () => {
    const clock = new ManualClock(T0);
    const d = canaryFailed(newRollout(clock).rollout, clock.now(), 'TESTS_FAILED', '2 of 5 tests failed', 'run-9');
    expect(d.rollout).toMatchObject({ status: 'ABORTED', percentage: 0, finishedAt: T0, testRunId: 'run-9', abort: { cause: 'TESTS_FAILED' } });
    expect(d.effects).toEqual([]);
  });

  it('judges nothing before the interval ends, then steps through every percentage and promotes', () => {
    const clock = new ManualClock(T0);
    let r = running(clock);
    clock.advance(HOUR - 1);
    expect(judge(r, healthy, clock.now())).toBeNull();
    const seen: number[] = [r.percentage];
    for (let i = 1; i < DEFAULT_ROLLOUT_STEPS.length; i++) {
      clock.advance(r.nextStepAt! - clock.now());
      const d = judge(r, healthy, clock.now())!;
      expect(d.rollout.status).toBe('RUNNING');
      expect(d.rollout.nextStepAt).toBe(clock.now() + HOUR);
      expect(d.effects).toEqual([{ kind: 'SET_PERCENTAGE', percentage: DEFAULT_ROLLOUT_STEPS[i] }, { kind: 'RESET_STATS' }]);
      r = d.rollout;
      seen.push(r.percentage);
    }
    expect(seen).toEqual([...DEFAULT_ROLLOUT_STEPS]);
    clock.advance(HOUR);
    const last = judge(r, healthy, clock.now())!;
    expect(last.rollout).toMatchObject({ status: 'PROMOTED', percentage: 100, finishedAt: clock.now(), nextStepAt: null });
    expect(last.effects).toEqual([{ kind: 'PROMOTE_CANARY' }]);
    expect(last.events.map((e) => e.type)).toEqual(['PROMOTED']);
  });

  it('without autoPromote waits at 100% after the last step passes, and still aborts on a failing gate', () => {
    const clock = new ManualClock(T0);
    let r = running(clock, { steps: [50, 100], autoPromote: false });
    clock.advance(HOUR);
    r = judge(r, healthy, clock.now())!.rollout;
    expect(r.percentage).toBe(100);
    clock.advance(HOUR);
    const passed = judge(r, healthy, clock.now())!;
    expect(passed.rollout).toMatchObject({ status: 'RUNNING', percentage: 100, awaitingPromotion: true, nextStepAt: clock.now() + HOUR });
    expect(passed.effects).toEqual([]);
    expect(passed.events[0]!.detail).toContain('waiting for promoteRollout');
    r = passed.rollout;
    clock.advance(HOUR);
    const again = judge(r, healthy, clock.now())!;
    expect(again.rollout).toMatchObject({ status: 'RUNNING', awaitingPromotion: true });
    expect(again.events).toEqual([]);
    clock.advance(HOUR);
    const failed = judge(again.rollout, { stats: stats({ calls: 100, failures: 50 }), canaryBreaker: 'CLOSED' }, clock.now())!;
    expect(failed.rollout.status).toBe('ABORTED');
    expect(advance.bind(null, r, clock.now(), 'alice')).toThrowError(/last step/);
  });

  it('holds with fewer than minCalls canary calls (stats kept), and steps once enough calls arrived', () => {
    const clock = new ManualClock(T0);
    const r = running(clock, { gates: { minCalls: 20 } });
    clock.advance(HOUR);
    const held = judge(r, { stats: stats({ calls: 19 }), canaryBreaker: 'CLOSED' }, clock.now())!;
    expect(held.rollout).toMatchObject({ status: 'HOLDING', percentage: 1, stepIndex: 0, nextStepAt: clock.now() + HOUR });
    expect(held.events).toMatchObject([{ type: 'HOLDING', percentage: 1 }]);
    expect(held.events[0]!.detail).toContain('19 of 20');
    expect(held.effects).toEqual([]);
    clock.advance(HOUR);
    const heldAgain = judge(held.rollout, { stats: stats({ calls: 5 }), canaryBreaker: 'CLOSED' }, clock.now())!;
    expect(heldAgain.rollout.status).toBe('HOLDING');
    clock.advance(HOUR);
    const stepped = judge(heldAgain.rollout, { stats: stats({ calls: 20 }), canaryBreaker: 'CLOSED' }, clock.now())!;
    expect(stepped.rollout).toMatchObject({ status: 'RUNNING', percentage: 2, stepIndex: 1 });
  });

  it('aborts on each gate with the figures that failed, and sets the split to 0 before dropping the canary', () => {
    const clock = new ManualClock(T0);
    const r = running(clock, { gates: { maxFailureRate: 0.1, maxP99LatencyMs: 200, maxLatencyRatio: 2 } });
    clock.advance(HOUR);
    const cases = [
      { s: stats({ calls: 40, failures: 5 }), cause: 'FAILURE_RATE', limit: 0.1, value: 0.125 },
      { s: stats({ p99Ms: 250 }, { p99Ms: 200 }), cause: 'P99_LATENCY', limit: 200, value: 250 },
      { s: stats({ p99Ms: 150 }, { p99Ms: 50 }), cause: 'LATENCY_RATIO', limit: 2, value: 3 },
    ] as const;
    for (const c of cases) {
      const d = judge(r, { stats: c.s, canaryBreaker: 'CLOSED' }, clock.now())!;
      expect(d.rollout).toMatchObject({ status: 'ABORTED', percentage: 0, nextStepAt: null, finishedAt: clock.now() });
      expect(d.rollout.abort).toEqual({ cause: c.cause, limit: c.limit, value: c.value, stats: c.s });
      expect(d.rollout.abortReason).toBeTruthy();
      expect(d.effects).toEqual([{ kind: 'SET_PERCENTAGE', percentage: 0 }, { kind: 'DROP_CANARY' }]);
      expect(d.events).toMatchObject([{ type: 'ABORTED', percentage: 0 }]);
    }
    // At the limit passes (strictly above fails).
    expect(judgeGates(r.gates, stats({ calls: 40, failures: 4, p99Ms: 200 }, { p99Ms: 100 })).verdict).toBe('PASS');
  });

  it('does not judge the latency ratio when the stable version had no calls (the canary at 100%)', () => {
    const gates = validateRolloutPlan({ gates: { maxLatencyRatio: 1.5 } }).gates;
    expect(judgeGates(gates, stats({ p99Ms: 500 }, { calls: 0, p99Ms: null })).verdict).toBe('PASS');
  });

  it('aborts when the canary breaker has opened, at judgement or at any moment (also while PAUSED)', () => {
    const clock = new ManualClock(T0);
    const r = running(clock);
    clock.advance(HOUR);
    for (const state of ['OPEN', 'HALF_OPEN', 'FORCED_OPEN'] as const) {
      expect(judge(r, { stats: stats({ calls: 1 }), canaryBreaker: state }, clock.now())!.rollout.abort!.cause).toBe('BREAKER_OPEN');
    }
    expect(judge(r, { stats: stats(), canaryBreaker: 'DISABLED' }, clock.now())!.rollout.status).toBe('RUNNING');
    clock.set(T0 + 60_000);
    const paused = pause(running(clock), clock.now(), 'alice').rollout;
    const d = breakerOpened(paused, clock.now(), 'OPEN', stats());
    expect(d.rollout).toMatchObject({ status: 'ABORTED', abort: { cause: 'BREAKER_OPEN' } });
    expect(d.effects[0]).toEqual({ kind: 'SET_PERCENTAGE', percentage: 0 });
  });

  it('pause keeps the time left in the interval and resume restores it to the state before', () => {
    const clock = new ManualClock(T0);
    let r = running(clock);
    clock.advance(20 * 60_000);
    const paused = pause(r, clock.now(), 'alice');
    expect(paused.rollout).toMatchObject({ status: 'PAUSED', remainingMs: 40 * 60_000, nextStepAt: null, pausedAt: clock.now(), resumeStatus: 'RUNNING' });
    expect(paused.events).toMatchObject([{ type: 'PAUSED', percentage: 1 }]);
    clock.advance(10 * HOUR);
    const resumed = resume(paused.rollout, clock.now(), 'alice');
    expect(resumed.rollout).toMatchObject({ status: 'RUNNING', nextStepAt: clock.now() + 40 * 60_000, remainingMs: null, pausedAt: null });
    expect(resumed.events).toMatchObject([{ type: 'RESUMED' }]);
    r = resumed.rollout;
    clock.advance(40 * 60_000 - 1);
    expect(judge(r, healthy, clock.now())).toBeNull();
    clock.advance(1);
    expect(judge(r, healthy, clock.now())!.rollout.percentage).toBe(2);
    // A HOLDING rollout resumes HOLDING.
    const holding = inStatus('HOLDING');
    expect(resume(pause(holding, T0 + HOUR, 'alice').rollout, T0 + HOUR, 'alice').rollout.status).toBe('HOLDING');
  });

  it('manual advance moves to the next step at once; manual promote and abort finish the rollout', () => {
    const clock = new ManualClock(T0);
    const r = running(clock);
    clock.advance(1000);
    const advanced = advance(r, clock.now(), 'alice');
    expect(advanced.rollout).toMatchObject({ status: 'RUNNING', percentage: 2, stepIndex: 1, nextStepAt: clock.now() + HOUR });
    expect(advanced.events[0]!.detail).toContain('advanced by alice');
    const promoted = promote(advanced.rollout, clock.now(), 'alice');
    expect(promoted.rollout).toMatchObject({ status: 'PROMOTED', percentage: 100 });
    expect(promoted.effects).toEqual([{ kind: 'PROMOTE_CANARY' }]);
    const aborted = abort(advanced.rollout, clock.now(), 'alice', 'customer complaints');
    expect(aborted.rollout).toMatchObject({ status: 'ABORTED', abortReason: 'aborted by alice: customer complaints', abort: { cause: 'MANUAL' } });
    // Aborting while TESTING: nothing was routed, so only the drop.
    expect(abort(newRollout(clock).rollout, clock.now(), 'alice', null).effects).toEqual([{ kind: 'DROP_CANARY' }]);
  });

  it('with manual steps never advances on its own, follows the flag, and still aborts on a failing gate', () => {
    const clock = new ManualClock(T0);
    const r = running(clock, { stepIntervalSeconds: null });
    expect(r.nextStepAt).toBeNull();
    clock.advance(100 * HOUR);
    expect(judge(r, healthy, clock.now())).toBeNull();
    expect(judge(r, { stats: stats({ calls: 3, failures: 3 }), canaryBreaker: 'CLOSED' }, clock.now())).toBeNull();
    const moved = flagMoved(r, clock.now(), 10, 'bob')!;
    expect(moved.rollout).toMatchObject({ percentage: 10, stepIndex: 3, status: 'RUNNING' });
    expect(moved.events).toMatchObject([{ type: 'STEP', percentage: 10 }]);
    expect(moved.effects).toEqual([{ kind: 'RESET_STATS' }]);
    expect(flagMoved(moved.rollout, clock.now(), 10, 'bob')).toBeNull();
    expect(advance(moved.rollout, clock.now(), 'bob').rollout.percentage).toBe(25);
    const off = flagMoved(moved.rollout, clock.now(), 30, 'bob')!;
    expect(advance(off.rollout, clock.now(), 'bob').rollout.percentage).toBe(50);
    const failed = judge(moved.rollout, { stats: stats({ calls: 30, failures: 10 }), canaryBreaker: 'CLOSED' }, clock.now())!;
    expect(failed.rollout).toMatchObject({ status: 'ABORTED', abort: { cause: 'FAILURE_RATE' } });
    // Automatic rollouts own their flag.
    expect(flagMoved(running(clock), clock.now(), 30, 'bob')).toBeNull();
    // A paused manual rollout still follows its flag, and stays paused.
    const paused = pause(moved.rollout, clock.now(), 'bob').rollout;
    expect(flagMoved(paused, clock.now(), 50, 'bob')!.rollout).toMatchObject({ status: 'PAUSED', percentage: 50, stepIndex: 5 });
  });

  it('after a restart resumes at the stored step with the time left (nextStepAt kept)', () => {
    const clock = new ManualClock(T0);
    let r = running(clock);
    clock.advance(HOUR);
    r = judge(r, healthy, clock.now())!.rollout; // 2%
    clock.advance(45 * 60_000);
    // The process is gone; it comes back 5 minutes later with the stored row.
    clock.advance(5 * 60_000);
    expect(recoveryEffects(r)).toEqual([{ kind: 'SET_PERCENTAGE', percentage: 2 }, { kind: 'RESET_STATS' }]);
    expect(judge(r, healthy, clock.now())).toBeNull();
    clock.advance(10 * 60_000);
    expect(judge(r, healthy, clock.now())!.rollout.percentage).toBe(5);
    expect(recoveryEffects(newRollout(clock).rollout)).toEqual([{ kind: 'SET_PERCENTAGE', percentage: 0 }]);
  });
});

describe('rollout plan validation', () => {
  const codeOf = (fn: () => unknown): { codes: string[]; fields: (string | null)[] } => {
    try {
      fn();
    } catch (error) {
      const errors = error instanceof UserErrors ? [...error.errors] : [error as UserError];
      return { codes: errors.map((e) => e.code), fields: errors.map((e) => e.field) };
    }
    return { codes: [], fields: [] };
  };

  it('applies the defaults', () => {
    expect(validateRolloutPlan({})).toEqual({
      steps: [1, 2, 5, 10, 25, 50, 100], stepIntervalSeconds: 3600, autoPromote: true,
      gates: { maxFailureRate: 0.05, maxP99LatencyMs: null, maxLatencyRatio: null, minCalls: 20 },
    });
    expect(validateRolloutPlan({ stepIntervalSeconds: null }).stepIntervalSeconds).toBeNull();
    expect(validateRolloutPlan({ steps: [100] }).steps).toEqual([100]);
    expect(validateRolloutPlan({ steps: [0.5, 12.25, 100] }).steps).toEqual([0.5, 12.25, 100]);
  });

  it.each([
    [[], 'steps'],
    [[0, 100], 'steps'],
    [[-1, 100], 'steps'],
    [[10, 10, 100], 'steps'],
    [[50, 20, 100], 'steps'],
    [[10, 50], 'steps'],
    [[10, 150], 'steps'],
    [[Number.NaN, 100], 'steps'],
    [[0.001, 100], 'steps'],
  ])('refuses steps %j', (steps, field) => {
    const { codes, fields } = codeOf(() => validateRolloutPlan({ steps }));
    expect(codes.length).toBeGreaterThan(0);
    expect(new Set(codes)).toEqual(new Set(['INVALID_ROLLOUT_CONFIG']));
    expect(fields).toContain(field);
  });

  it.each([
    [{ stepIntervalSeconds: 0 }, 'stepIntervalSeconds'],
    [{ stepIntervalSeconds: 0.5 }, 'stepIntervalSeconds'],
    [{ stepIntervalSeconds: -5 }, 'stepIntervalSeconds'],
    [{ gates: { maxFailureRate: 1.5 } }, 'gates.maxFailureRate'],
    [{ gates: { maxFailureRate: -0.1 } }, 'gates.maxFailureRate'],
    [{ gates: { maxP99LatencyMs: 0 } }, 'gates.maxP99LatencyMs'],
    [{ gates: { maxLatencyRatio: 0.5 } }, 'gates.maxLatencyRatio'],
    [{ gates: { minCalls: 0 } }, 'gates.minCalls'],
    [{ gates: { minCalls: 2.5 } }, 'gates.minCalls'],
  ] as [RolloutPlanInput, string][])('refuses %j', (input, field) => {
    expect(codeOf(() => validateRolloutPlan(input))).toEqual({ codes: ['INVALID_ROLLOUT_CONFIG'], fields: [field] });
  });

  it('reports every problem at once', () => {
    const { fields } = codeOf(() => validateRolloutPlan({ steps: [5, 1], stepIntervalSeconds: 0, gates: { minCalls: 0 } }));
    expect(fields).toEqual(expect.arrayContaining(['steps', 'stepIntervalSeconds', 'gates.minCalls']));
  });
});

describe('rollout statistics', () => {
  it('counts calls and failures and estimates p50/p99 within 5%', () => {
    const w = new VersionStatsWindow();
    expect(w.snapshot()).toEqual({ calls: 0, failures: 0, failureRate: null, p50Ms: null, p99Ms: null });
    for (let i = 1; i <= 1000; i++) w.record(i, i % 10 === 0);
    const s = w.snapshot();
    expect(s).toMatchObject({ calls: 1000, failures: 100, failureRate: 0.1 });
    expect(Math.abs(s.p50Ms! - 500) / 500).toBeLessThan(0.05);
    expect(Math.abs(s.p99Ms! - 990) / 990).toBeLessThan(0.05);
  });

  it('clamps to the observed range and copes with zero, huge and non-finite durations', () => {
    const w = new VersionStatsWindow();
    w.record(7, false);
    expect(w.snapshot().p50Ms).toBe(7);
    w.record(0, false);
    w.record(Number.NaN, true);
    w.record(1e12, false);
    const s = w.snapshot();
    expect(s.calls).toBe(4);
    expect(s.p99Ms).toBe(1e12);
  });

  it('has a fixed footprint (no growth per call) and resets per step', () => {
    const all = new RolloutStats();
    for (let i = 0; i < 100_000; i++) all.canary.record(i % 50, false);
    all.stable.record(3, true);
    expect(all.snapshot().canary.calls).toBe(100_000);
    all.reset();
    expect(all.snapshot()).toEqual({
      canary: { calls: 0, failures: 0, failureRate: null, p50Ms: null, p99Ms: null },
      stable: { calls: 0, failures: 0, failureRate: null, p50Ms: null, p99Ms: null },
    });
    // Only typed-array buckets and scalars: nothing in the window is a growable array.
    for (const value of Object.values(all.canary)) expect(Array.isArray(value)).toBe(false);
  });
});
