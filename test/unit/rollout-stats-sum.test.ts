/**
 * The cluster's figures of a step (issue 16): each node's window travels as plain data
 * (rollout_node_stats) and the leader adds them up. The sum must be what one window that saw
 * every call would say: calls, failures and the histogram percentiles alike.
 */
import { describe, expect, it } from 'vitest';
import { RolloutStats } from '../../src/rollouts/stats.js';

describe('rollout statistics summed across nodes', () => {
  it('adds calls, failures and histograms: the percentiles are those of one window with every call', () => {
    const a = new RolloutStats();
    const b = new RolloutStats();
    const all = new RolloutStats();
    for (let i = 1; i <= 300; i++) {
      const ms = i % 7 === 0 ? 250 + i : 3 + (i % 11);
      const failed = i % 13 === 0;
      (i % 3 === 0 ? b : a).canary.record(ms, failed);
      all.canary.record(ms, failed);
      (i % 2 === 0 ? a : b).stable.record(ms / 2, false);
      all.stable.record(ms / 2, false);
    }
    // Through JSON, as the row is stored.
    const remote = JSON.parse(JSON.stringify(b.toJSON())) as ReturnType<RolloutStats['toJSON']>;
    const sum = RolloutStats.sum(a, [remote]).snapshot();
    expect(sum).toEqual(all.snapshot());
    expect(sum.canary.calls).toBe(300);
    expect(sum.canary.failures).toBe(23);
    // The node's own window is left as it was.
    expect(a.canary.callCount).toBe(200);
  });

  it('an empty node adds nothing; no calls anywhere gives null percentiles', () => {
    const own = new RolloutStats();
    const empty = new RolloutStats().toJSON();
    expect(RolloutStats.sum(own, [empty, empty]).snapshot()).toEqual(own.snapshot());
    expect(RolloutStats.sum(own, []).snapshot().canary).toEqual({ calls: 0, failures: 0, failureRate: null, p50Ms: null, p99Ms: null });
    own.canary.record(5, true);
    expect(RolloutStats.sum(own, [empty]).snapshot().canary).toMatchObject({ calls: 1, failures: 1, failureRate: 1 });
  });
});
