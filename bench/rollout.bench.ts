/**
 * Canary routing, in process with the trivial `echo` module (support/modules.ts):
 *
 * - routing cost: `modules.invoke` of an INLINE module with a rollout at 50% (split flag
 *   evaluated on each call's context, the chosen version's breaker, statistics recorded) against
 *   plain `modules.invoke` of an INLINE module without a rollout, same contexts, same run,
 *   cases interleaved round by round, fastest round (goal <= 1.10x);
 * - the share routed to the canary over 100,000 distinct user contexts at each of the seeds'
 *   steps, set through the split flag as an operator would (goal: within 0.5 points);
 * - an abort under load: 32 callers keep invoking a WORKER module at 50% while the rollout is
 *   aborted; a call that started after the ABORTED event was published and was still answered
 *   by the canary counts against the goal (0), as does any call that failed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createApp, type App } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import type { EvaluationContext } from '../src/flags/engine.js';
import type { BenchReport, BenchRow } from './report.js';
import { makeBenchModulesDir } from './support/modules.js';
import { BENCH_ADMIN_TOKEN } from './support/servers.js';
import { median, ratio, round } from './support/stats.js';

const ACTOR = 'bench';
const CALLS_PER_ROUND = 5_000;
const ROUNDS = 15;
const CONTEXTS = 1_024;
const SHARE_CONTEXTS = 100_000;
const STEPS = [1, 2, 5, 10, 25, 50, 100];
const IN_FLIGHT = 32;
const CALLS_AFTER_ABORT = 5_000;
const ARG = { n: 1 };

async function registerAndLoad(app: App, name: string, isolation: 'WORKER' | 'INLINE'): Promise<void> {
  await app.services.modules.register(ACTOR, { name, modulePath: 'echo.js', version: '1.0.0', isolation });
  await app.services.modules.load(ACTOR, name);
}

async function startSplit(app: App, name: string, percentage: number): Promise<void> {
  const rollout = await app.services.rollouts.startRollout(ACTOR, {
    module: name, newVersionPath: 'echo_v2.js', newVersion: '2.0.0', steps: [percentage, 100], stepIntervalSeconds: null,
  });
  if (rollout.status !== 'RUNNING' || rollout.percentage !== percentage) throw new Error(`rollout of ${name} is ${rollout.status} at ${rollout.percentage}%`);
}

async function timeSequential(op: (i: number) => Promise<unknown>, calls: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) await op(i);
  return Number(process.hrtime.bigint() - start) / calls;
}

export default async function run(): Promise<BenchReport> {
  const modules = makeBenchModulesDir();
  const dbDir = mkdtempSync(path.join(tmpdir(), 'helios-bench-rollout-'));
  const notes: string[] = [];
  const rows: BenchRow[] = [];
  const app = await createApp(loadConfig({
    HELIOS_DB_PATH: path.join(dbDir, 'helios.db'),
    HELIOS_MODULES_DIR: modules.dir,
    LOG_LEVEL: 'silent',
    HELIOS_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
  }), { print: () => {} });
  try {
    const { modules: service, flags, rollouts, bus } = app.services;

    // ---- routing cost ----
    await registerAndLoad(app, 'plain', 'INLINE');
    await registerAndLoad(app, 'routed', 'INLINE');
    await startSplit(app, 'routed', 50);
    const contexts: EvaluationContext[] = Array.from({ length: CONTEXTS }, (_, i) => ({ userId: `user-${i}` }));
    const plain = (i: number) => service.invoke('plain', 'echo', ARG, contexts[i & (CONTEXTS - 1)]!);
    const routed = (i: number) => service.invoke('routed', 'echo', ARG, contexts[i & (CONTEXTS - 1)]!);
    const cases = [['plain', plain], ['routed', routed]] as const;
    const times: Record<'plain' | 'routed', number[]> = { plain: [], routed: [] };
    for (const [, op] of cases) await timeSequential(op, 5_000);
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < cases.length; k++) {
        const [name, op] = cases[(k + r) % cases.length]!;
        times[name].push(await timeSequential(op, CALLS_PER_ROUND));
      }
    }
    // The fastest interleaved round: on a shared machine preemption only ever adds time (medians in the notes).
    const p = Math.min(...times.plain);
    const q = Math.min(...times.routed);
    const pm = median(times.plain);
    const qm = median(times.routed);
    const stats = rollouts.stats('routed')!;
    rows.push(
      { case: 'modules.invoke, INLINE, no rollout (baseline)', value: round(p, 1), unit: 'ns/call', baseline: 'plain invoke', ratio: 1 },
      {
        case: 'modules.invoke, INLINE, rollout at 50% (routed)', value: round(q, 1), unit: 'ns/call', baseline: 'plain invoke', ratio: ratio(q, p),
        goal: '<= 1.10x', met: q / p <= 1.1,
      },
    );
    notes.push(
      `Routing: ${ROUNDS} rounds x ${CALLS_PER_ROUND} sequential awaited calls per case over ${CONTEXTS} user contexts, interleaved, fastest round; routing adds ${round(q - p, 1)} ns per call. Median rounds: plain ${round(pm, 1)} ns, routed ${round(qm, 1)} ns (${ratio(qm, pm)}x). The rollout's statistics for the last step saw ${stats.stable.calls} stable and ${stats.canary.calls} canary calls (sanity).`,
    );

    // ---- share per step over 100,000 contexts ----
    let worst = 0;
    for (const step of STEPS) {
      await flags.setPercentage(ACTOR, 'routed', step);
      let canary = 0;
      for (let i = 0; i < SHARE_CONTEXTS; i++) {
        const r = await service.invoke('routed', 'echo', ARG, { userId: `share-${i}` });
        if (r.servedBy === '2.0.0') canary++;
      }
      const share = (canary / SHARE_CONTEXTS) * 100;
      const off = Math.abs(share - step);
      worst = Math.max(worst, off);
      rows.push({
        case: `share routed to the canary at ${step}% (${SHARE_CONTEXTS.toLocaleString('en-US')} contexts)`, value: round(share, 3), unit: '%',
        baseline: `the step (${step}%)`, ratio: ratio(share, step), goal: 'within 0.5 points', met: off <= 0.5,
      });
    }
    notes.push(`Share: each step set with setFlagPercentage on the split flag (the rollout follows it), ${SHARE_CONTEXTS.toLocaleString('en-US')} distinct userIds per step; worst deviation ${round(worst, 3)} points.`);
    await rollouts.abort(ACTOR, 'routed', 'bench done');

    // ---- abort under load ----
    await registerAndLoad(app, 'aborted', 'WORKER');
    await startSplit(app, 'aborted', 50);
    let abortedPublished = false;
    const off = bus.on('rolloutProgress', (event) => {
      if (event.module === 'aborted' && event.type === 'ABORTED') abortedPublished = true;
    });
    let started = 0;
    let afterAbort = 0;
    let canaryBefore = 0;
    let lateOnCanary = 0;
    let failed = 0;
    let stopAt = Number.POSITIVE_INFINITY;
    const caller = async (worker: number) => {
      for (let i = 0; started < stopAt; i++) {
        started++;
        const startedAfterAbort = abortedPublished;
        if (startedAfterAbort) afterAbort++;
        try {
          const r = await service.invoke('aborted', 'echo', ARG, { userId: `load-${worker}-${i}` });
          if (r.servedBy === '2.0.0') {
            if (startedAfterAbort) lateOnCanary++;
            else canaryBefore++;
          }
        } catch {
          failed++;
        }
      }
    };
    const load = Array.from({ length: IN_FLIGHT }, (_, w) => caller(w));
    while (started < 2_000) await new Promise((resolve) => setImmediate(resolve));
    const abort = rollouts.abort(ACTOR, 'aborted', 'bench: abort under load');
    while (!abortedPublished) await new Promise((resolve) => setImmediate(resolve));
    stopAt = started + CALLS_AFTER_ABORT;
    await Promise.all(load);
    await abort;
    off();
    rows.push(
      {
        case: 'calls that reached the canary after its ABORTED event', value: lateOnCanary, unit: 'calls', baseline: `${afterAbort} calls started after it`,
        ratio: afterAbort === 0 ? Number.NaN : ratio(lateOnCanary, afterAbort), goal: '0', met: lateOnCanary === 0,
      },
      { case: 'calls that failed during the abort', value: failed, unit: 'calls', baseline: `${started} calls`, ratio: ratio(failed, started), goal: '0', met: failed === 0 },
    );
    notes.push(
      `Abort under load: ${IN_FLIGHT} callers on a WORKER module at 50%; ${canaryBefore} calls were served by the canary before the abort, ${afterAbort} started after the ABORTED event (${CALLS_AFTER_ABORT} more were made after it was seen).`,
    );
  } finally {
    await app.close();
    rmSync(dbDir, { recursive: true, force: true });
    modules.remove();
  }
  return { name: 'rollout', rows, notes };
}
