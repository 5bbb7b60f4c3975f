/** The rollout tables (migration 0006) and their repository: every field round-trips, and the database itself keeps one unfinished rollout per module and per flag. */
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/connection.js';
import { migrate, readMigrations } from '../../src/db/migrate.js';
import type { Rollout } from '../../src/rollouts/events.js';
import { RolloutRepository } from '../../src/rollouts/repository.js';

function rollout(overrides: Partial<Rollout> = {}): Rollout {
  return {
    id: 'r1', seq: 1, module: 'pricing', fromVersion: '1.0.0', toVersion: '2.0.0', toModulePath: 'pricing/v2.js', flag: 'pricing',
    status: 'RUNNING', steps: [1, 2.5, 100], stepIndex: 1, percentage: 2.5, stepIntervalSeconds: 60,
    gates: { maxFailureRate: 0.01, maxP99LatencyMs: 250, maxLatencyRatio: 1.5, minCalls: 7 }, autoPromote: false, testWith: 'ML',
    testRunId: 'run-1', stepStartedAt: 1000, nextStepAt: 61_000, pausedAt: null, remainingMs: null, resumeStatus: null,
    awaitingPromotion: false, actor: 'alice', startedAt: 500, updatedAt: 1000, finishedAt: null, abortReason: null, abort: null,
    ...overrides,
  };
}

function setup() {
  const db = openDatabase(':memory:');
  migrate(db, readMigrations('migrations'));
  return { db, repo: new RolloutRepository(db) };
}

describe('rollout repository', () => {
  it('round-trips every field, on insert and on update', () => {
    const { repo } = setup();
    const r = rollout();
    repo.insert(r);
    expect(repo.get('r1')).toEqual(r);
    const paused = rollout({ status: 'PAUSED', pausedAt: 2000, remainingMs: 59_000, nextStepAt: null, resumeStatus: 'HOLDING', awaitingPromotion: true, updatedAt: 2000 });
    repo.update(paused);
    expect(repo.get('r1')).toEqual(paused);
    const aborted = rollout({
      status: 'ABORTED', percentage: 0, nextStepAt: null, finishedAt: 3000, updatedAt: 3000, abortReason: 'failure rate',
      abort: {
        cause: 'FAILURE_RATE', limit: 0.01, value: 0.2,
        stats: { canary: { calls: 10, failures: 2, failureRate: 0.2, p50Ms: 3, p99Ms: 9 }, stable: { calls: 0, failures: 0, failureRate: null, p50Ms: null, p99Ms: null } },
      },
    });
    repo.update(aborted);
    expect(repo.get('r1')).toEqual(aborted);
    expect(repo.activeForModule('pricing')).toBeNull();
    expect(repo.latest('pricing')).toEqual(aborted);
  });

  it('keeps events in order per rollout', () => {
    const { repo } = setup();
    repo.insert(rollout());
    repo.appendEvent('r1', { type: 'STARTED', at: 1, percentage: 0, detail: 'go' });
    repo.appendEvent('r1', { type: 'STEP', at: 2, percentage: 1, detail: null });
    expect(repo.events('r1')).toEqual([{ type: 'STARTED', at: 1, percentage: 0, detail: 'go' }, { type: 'STEP', at: 2, percentage: 1, detail: null }]);
  });

  it('refuses a second unfinished rollout of a module or on a flag, and anything outside the CHECKs', () => {
    const { repo } = setup();
    repo.insert(rollout());
    expect(() => repo.insert(rollout({ id: 'r2', seq: 2, flag: 'other' }))).toThrow(/UNIQUE/);
    expect(() => repo.insert(rollout({ id: 'r2', seq: 2, module: 'risk' }))).toThrow(/UNIQUE/);
    expect(() => repo.insert(rollout({ id: 'r2', seq: 2, module: 'risk', flag: 'risk', percentage: 101 }))).toThrow(/CHECK/);
    expect(() => repo.insert(rollout({ id: 'r2', seq: 2, module: 'risk', flag: 'risk', stepIntervalSeconds: 0 }))).toThrow(/CHECK/);
    // Finished rollouts free the module and the flag.
    repo.update(rollout({ status: 'PROMOTED', finishedAt: 5 }));
    repo.insert(rollout({ id: 'r2', seq: 2 }));
    expect(repo.active().map((r) => r.id)).toEqual(['r2']);
    expect(repo.page('pricing', 1)).toMatchObject({ hasMore: true, rollouts: [{ id: 'r2' }] });
    expect(repo.nextSeq()).toBe(3);
  });
});
