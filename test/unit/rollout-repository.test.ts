/** The rollout tables (migration 0006) and their repository: every field round-trips, and the database itself keeps one unfinished rollout per module and per flag. */
import { afterEach, describe, expect, it as vitestIt } from 'vitest';
import type { Rollout } from '../../src/rollouts/events.js';
import { rolloutConflictOf, RolloutRepository } from '../../src/rollouts/repository.js';
import { bothDialects, type TestDatabase } from '../support/database.js';

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

const stores = bothDialects('rollouts', 2);

/** The error an insert rejects with. */
async function insertError(repo: RolloutRepository, r: Rollout): Promise<unknown> {
  return repo.insert(r).then(() => null, (error: unknown) => error);
}

describe.each(stores)('rollout repository on %s', (dialect, openStore, available) => {
  const it = available ? vitestIt : vitestIt.skip;
  const open: TestDatabase[] = [];
  afterEach(async () => {
    for (const db of open.splice(0)) await db.close();
  });

  async function setup() {
    const test = await openStore();
    open.push(test);
    return { ...test, repo: new RolloutRepository(test.uow) };
  }

  it('round-trips every field, on insert and on update', async () => {
    const { repo } = await setup();
    const r = rollout();
    await repo.insert(r);
    expect(await repo.get('r1')).toEqual(r);
    const paused = rollout({ status: 'PAUSED', pausedAt: 2000, remainingMs: 59_000, nextStepAt: null, resumeStatus: 'HOLDING', awaitingPromotion: true, updatedAt: 2000 });
    await repo.update(paused);
    expect(await repo.get('r1')).toEqual(paused);
    const aborted = rollout({
      status: 'ABORTED', percentage: 0, nextStepAt: null, finishedAt: 3000, updatedAt: 3000, abortReason: 'failure rate',
      abort: {
        cause: 'FAILURE_RATE', limit: 0.01, value: 0.2,
        stats: { canary: { calls: 10, failures: 2, failureRate: 0.2, p50Ms: 3, p99Ms: 9 }, stable: { calls: 0, failures: 0, failureRate: null, p50Ms: null, p99Ms: null } },
      },
    });
    await repo.update(aborted);
    expect(await repo.get('r1')).toEqual(aborted);
    expect(await repo.activeForModule('pricing')).toBeNull();
    expect(await repo.activeForFlag('pricing')).toBeNull();
    expect(await repo.latest('pricing')).toEqual(aborted);
    expect(await repo.get('nope')).toBeNull();
  });

  it('keeps events in order per rollout', async () => {
    const { repo } = await setup();
    await repo.insert(rollout());
    await repo.insert(rollout({ id: 'r2', seq: 2, module: 'risk', flag: 'risk' }));
    await repo.appendEvent('r1', { type: 'STARTED', at: 1, percentage: 0, detail: 'go' });
    await repo.appendEvent('r2', { type: 'STARTED', at: 1, percentage: 0, detail: null });
    await repo.appendEvent('r1', { type: 'STEP', at: 2, percentage: 1, detail: null });
    expect(await repo.events('r1')).toEqual([{ type: 'STARTED', at: 1, percentage: 0, detail: 'go' }, { type: 'STEP', at: 2, percentage: 1, detail: null }]);
    expect(await repo.events('r2')).toHaveLength(1);
  });

  it('refuses a second unfinished rollout of a module or on a flag, and anything outside the CHECKs', async () => {
    const { repo } = await setup();
    await repo.insert(rollout());
    const unique = dialect === 'SQLite' ? /UNIQUE/ : /unique constraint/;
    const check = dialect === 'SQLite' ? /CHECK/ : /check constraint/;
    expect(await insertError(repo, rollout({ id: 'r2', seq: 2, flag: 'other' }))).toMatchObject({ message: expect.stringMatching(unique) });
    expect(await insertError(repo, rollout({ id: 'r2', seq: 2, module: 'risk' }))).toMatchObject({ message: expect.stringMatching(unique) });
    expect(await insertError(repo, rollout({ id: 'r2', seq: 2, module: 'risk', flag: 'risk', percentage: 101 }))).toMatchObject({ message: expect.stringMatching(check) });
    expect(await insertError(repo, rollout({ id: 'r2', seq: 2, module: 'risk', flag: 'risk', stepIntervalSeconds: 0 }))).toMatchObject({ message: expect.stringMatching(check) });
    // Finished rollouts free the module and the flag.
    await repo.update(rollout({ status: 'PROMOTED', finishedAt: 5 }));
    await repo.insert(rollout({ id: 'r2', seq: 2 }));
    expect((await repo.active()).map((r) => r.id)).toEqual(['r2']);
    expect(await repo.page('pricing', 1)).toMatchObject({ hasMore: true, rollouts: [{ id: 'r2' }] });
    expect(await repo.page('pricing', 1, 2)).toMatchObject({ hasMore: false, rollouts: [{ id: 'r1' }] });
    expect(await repo.nextSeq()).toBe(3);
  });

  it('lists every unfinished rollout oldest first, and pages newest first across modules', async () => {
    const { repo } = await setup();
    expect(await repo.nextSeq()).toBe(1);
    await repo.insert(rollout({ id: 'a', seq: 3, module: 'a', flag: 'a' }));
    await repo.insert(rollout({ id: 'b', seq: 1, module: 'b', flag: 'b' }));
    await repo.insert(rollout({ id: 'c', seq: 2, module: 'c', flag: 'c', status: 'ABORTED', finishedAt: 9 }));
    expect((await repo.active()).map((r) => r.id)).toEqual(['b', 'a']);
    expect((await repo.page(null, 10)).rollouts.map((r) => r.id)).toEqual(['a', 'c', 'b']);
    expect(await repo.activeForFlag('a')).toMatchObject({ id: 'a' });
  });

  it('names the unique constraint an insert ran into, so the service can give the typed error', async () => {
    const { repo } = await setup();
    await repo.insert(rollout());
    expect(rolloutConflictOf(await insertError(repo, rollout({ id: 'r2', seq: 2, flag: 'other' })))).toBe('module');
    expect(rolloutConflictOf(await insertError(repo, rollout({ id: 'r2', seq: 2, module: 'risk' })))).toBe('flag');
    expect(rolloutConflictOf(await insertError(repo, rollout({ id: 'r2', seq: 1, module: 'risk', flag: 'risk' })))).toBe('seq');
    expect(rolloutConflictOf(await insertError(repo, rollout({ seq: 2, module: 'risk', flag: 'risk' })))).toBe('id');
    expect(rolloutConflictOf(await insertError(repo, rollout({ id: 'r2', seq: 2, module: 'risk', flag: 'risk', percentage: 101 })))).toBeNull();
    // As pg reports them.
    expect(rolloutConflictOf({ code: '23505', constraint: 'rollouts_active_module' })).toBe('module');
    expect(rolloutConflictOf({ code: '23505', constraint: 'rollouts_active_flag' })).toBe('flag');
    expect(rolloutConflictOf({ code: '23505', constraint: 'rollouts_seq_key' })).toBe('seq');
    expect(rolloutConflictOf({ code: '23505', constraint: 'audit_log_pkey' })).toBeNull();
    expect(rolloutConflictOf(new Error('boom'))).toBeNull();
  });
});
