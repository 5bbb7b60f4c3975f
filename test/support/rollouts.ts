/**
 * Fakes of the narrow interfaces the rollout service declares (the modules and flags domains),
 * recording what they were asked in one shared log so tests can check the order across both.
 * Like the real ones, the flag write resolves a turn later (after its commit), and a drop stops
 * routing (here: logs) before its first await.
 */
import type { BreakerState } from '../../src/breakers/states.js';
import { UserError } from '../../src/errors.js';
import type { CanaryPlan, RolloutFlags, RolloutModules, StageCanaryOptions } from '../../src/rollouts/service.js';
import type { RolloutStats } from '../../src/rollouts/stats.js';

/** Lets queued promise chains run (a macrotask turn, not a wait on time). */
export async function flush(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve));
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export class FakeModules implements RolloutModules {
  readonly active = new Map<string, string>([['pricing', '1.0.0'], ['risk', '3.1.0']]);
  readonly canaries = new Map<string, { version: string; stats: RolloutStats; flag: string }>();
  readonly breakers = new Map<string, BreakerState>();
  private readonly listeners = new Set<(module: string, state: BreakerState) => void>();
  /** Set to hold the next stageCanary until resolved by the test. */
  stageGate: Deferred<void> | null = null;
  failLoad: string | null = null;
  failPromote: string | null = null;

  constructor(readonly log: string[]) {}

  planCanary(module: string, newVersionPath: string, newVersion: string | null): CanaryPlan {
    const fromVersion = this.active.get(module);
    if (fromVersion === undefined) throw new UserError('MODULE_NOT_FOUND', `Module "${module}" is not registered`, 'module');
    if (newVersionPath.includes('..')) throw new UserError('INVALID_MODULE_PATH', `${newVersionPath} is outside the modules root`, 'newVersionPath');
    return { module, fromVersion, toVersion: newVersion ?? newVersionPath.replace(/\.js$/, ''), modulePath: newVersionPath };
  }

  activeVersion(module: string): string | null {
    return this.active.get(module) ?? null;
  }

  async stageCanary(plan: CanaryPlan, options: StageCanaryOptions): Promise<{ testRunId: string | null }> {
    this.log.push(`stage ${plan.module}@${plan.toVersion}${options.testWith ? ` test ${options.testWith}` : ''}`);
    if (this.stageGate) {
      const gate = this.stageGate;
      this.stageGate = null;
      await gate.promise;
    }
    if (this.failLoad) throw new UserError('MODULE_LOAD_FAILED', this.failLoad, 'newVersionPath');
    if (options.testWith === 'TRADING') {
      throw Object.assign(new UserError('TESTS_FAILED', '2 of 5 tests failed', 'testWith'), { testRunId: 'run-failed' });
    }
    this.canaries.set(plan.module, { version: plan.toVersion, stats: options.stats, flag: options.flag });
    this.breakers.set(plan.module, 'CLOSED');
    return { testRunId: options.testWith ? 'run-ok' : null };
  }

  /** Set to hold the next drop's drain until resolved by the test (routing stops at once). */
  dropGate: Deferred<void> | null = null;

  async dropCanary(module: string): Promise<void> {
    this.log.push(`drop ${module}`);
    this.breakers.delete(module);
    if (this.dropGate) {
      const gate = this.dropGate;
      this.dropGate = null;
      await gate.promise;
    }
    this.canaries.delete(module);
  }

  async promoteCanary(module: string): Promise<void> {
    this.log.push(`promote ${module}`);
    if (this.failPromote) throw new Error(this.failPromote);
    const canary = this.canaries.get(module)!;
    this.active.set(module, canary.version);
    this.canaries.delete(module);
  }

  canaryBreakerState(module: string): BreakerState | null {
    return this.breakers.get(module) ?? null;
  }

  onCanaryBreakerOpen(listener: (module: string, state: BreakerState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  openBreaker(module: string): void {
    this.breakers.set(module, 'OPEN');
    for (const l of this.listeners) l(module, 'OPEN');
  }

  /** Calls as invocation would record them: `canary` calls to the canary, `stable` to the stable version. */
  traffic(module: string, canary: { calls: number; failures?: number; ms?: number }, stable = { calls: 0, ms: 5 }): void {
    const stats = this.canaries.get(module)!.stats;
    for (let i = 0; i < canary.calls; i++) stats.canary.record(canary.ms ?? 5, i < (canary.failures ?? 0));
    for (let i = 0; i < stable.calls; i++) stats.stable.record(stable.ms, false);
  }
}

export class FakeFlags implements RolloutFlags {
  readonly percentages = new Map<string, number>();
  private readonly listeners = new Set<(name: string, percentage: number | null, actor: string | null) => void>();

  constructor(readonly log: string[]) {}

  /** As the flags service does it: the write awaits its commit, then memory changes and listeners hear it. */
  async setPercentage(name: string, percentage: number, actor: string): Promise<void> {
    this.log.push(`flag ${name}=${percentage} by ${actor}`);
    await new Promise((resolve) => setImmediate(resolve));
    if (this.percentages.get(name) === percentage) return;
    this.percentages.set(name, percentage);
    for (const l of this.listeners) l(name, percentage, actor);
  }

  percentageOf(name: string): number | null {
    return this.percentages.get(name) ?? null;
  }

  onPercentageChange(listener: (name: string, percentage: number | null, actor: string | null) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
