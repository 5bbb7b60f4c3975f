/**
 * Invocation: `invokeModule(name, method, args, context)` on the version serving the module,
 * through the module's own circuit breaker (`module:<name>`), with the runtime's call timeout.
 * A call is not a change of the control plane, so it is not audited (the breaker counts it).
 *
 * - While a swap switches versions (`gate` set), new calls wait at the gate, then go to the
 *   version that serves after the switch: no call is refused because of a swap.
 * - A caller's mistake (unknown or reserved method, arguments that cannot be cloned) says
 *   nothing about the module's health: the breaker releases the call uncounted.
 *
 * Canary routing (a rollout, src/rollouts/): a module may serve a second version, its canary,
 * beside the stable one. The rollout's split flag is evaluated on the call's context (its
 * sticky bucket: the same user lands on the same version at a given percentage, and raising
 * the percentage only moves users towards the canary; no sticky value: random at that
 * percentage). On means the canary serves, through its own breaker `module:<name>@<version>`;
 * while that breaker is not CLOSED (or DISABLED) the call is served by the stable version
 * instead, so no call is made on the canary and none is repeated. Every routed call is recorded
 * into the rollout's statistics (the version that served it, its duration, and whether it
 * failed as its breaker counts it). The version is chosen and called in one synchronous turn,
 * so once `canary` is cleared no new call reaches it. Without a canary the path is the plain
 * one: one extra null check.
 */
import { performance } from 'node:perf_hooks';
import type { BreakerPermit } from '../breakers/engine.js';
import type { BreakerService } from '../breakers/service.js';
import { quoteValue, UserError } from '../errors.js';
import type { CircuitBreaker } from '../breakers/engine.js';
import type { EvaluationContext } from '../flags/engine.js';
import type { FlagDecider } from '../flags/service.js';
import type { RolloutStats, VersionStatsWindow } from '../rollouts/stats.js';
import { OUTCOME_REJECTED, OUTCOME_SUCCESS, outcomeOfError, type ModuleCounters } from './metrics-counts.js';
import type { ModuleRecord } from './repository.js';
import { isModuleCallError, type LoadedModuleVersion } from './runtime/index.js';

export const MODULE_BREAKER_PREFIX = 'module:';

export interface InvokeResult {
  result: unknown;
  servedBy: string;
}

/** A second version serving the share of calls its split flag turns on. */
export interface Canary {
  readonly version: LoadedModuleVersion;
  /** Relative to the modules root. */
  readonly modulePath: string;
  readonly flag: string;
  /** The split flag's decision for a call's context (follows every change of the flag). */
  readonly split: Pick<FlagDecider, 'isOn'>;
  readonly stats: RolloutStats;
  /** `module:<name>@<version>`. */
  readonly breaker: CircuitBreaker;
}

/** What serves a module right now. */
export interface Live {
  /**
   * `module:<name>`, made once: built per call, a name of six or more characters made a new
   * (cons) string that the breaker lookup had to flatten and hash every time (~60 ns a call).
   */
  readonly breakerName: string;
  active: LoadedModuleVersion | null;
  /** Set while a swap switches versions: new calls wait for it. */
  gate: Promise<void> | null;
  /** A rollout's new version, routed by its split flag; null: every call goes to `active`. */
  canary: Canary | null;
}

export interface InvocationDeps {
  breakers: Pick<BreakerService, 'getOrCreate'>;
  records: ReadonlyMap<string, ModuleRecord>;
  live: ReadonlyMap<string, Live>;
  /** Prometheus counts per module and version; null with metrics off. */
  counters: ModuleCounters | null;
}

export function breakerNameOf(name: string): string {
  return `${MODULE_BREAKER_PREFIX}${name}`;
}

/** A module's entry before any version serves it. */
export function idleLive(name: string): Live {
  return { breakerName: breakerNameOf(name), active: null, gate: null, canary: null };
}

export function canaryBreakerNameOf(name: string, version: string): string {
  return `${MODULE_BREAKER_PREFIX}${name}@${version}`;
}

const NO_CONTEXT: EvaluationContext = Object.freeze({});

export class Invocation {
  constructor(private readonly deps: InvocationDeps) {}

  /** Calls `method(args)` on the version the call is routed to, through that version's breaker. */
  invoke(name: string, method: string, args: unknown, context: EvaluationContext | null = null): Promise<InvokeResult> {
    const live = this.deps.live.get(name);
    if (live !== undefined && live.gate !== null) return this.afterGate(live, name, method, args, context);
    try {
      return this.route(name, method, args, context);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private async afterGate(live: Live, name: string, method: string, args: unknown, context: EvaluationContext | null): Promise<InvokeResult> {
    while (live.gate) await live.gate;
    return this.route(name, method, args, context);
  }

  /** Chooses the version and starts the call in one synchronous turn; throws when no call can be made. */
  private route(name: string, method: string, args: unknown, context: EvaluationContext | null): Promise<InvokeResult> {
    const record = this.deps.records.get(name);
    if (!record) throw new UserError('MODULE_NOT_FOUND', `Module ${quoteValue(name)} is not registered`, 'name');
    const live = this.deps.live.get(name)!;
    const version = live.active;
    if (!version || record.state !== 'ACTIVE') {
      // ACTIVE without a version: it just stopped, and its FAILED state is being written.
      const why = record.state === 'ACTIVE' ? 'has no serving version (it stopped)' : `is ${record.state}, not ACTIVE`;
      throw new UserError('INVALID_MODULE_STATE', `Module ${quoteValue(name)} ${why}`, 'name');
    }
    const canary = live.canary;
    if (canary !== null && canary.split.isOn(context ?? NO_CONTEXT)) {
      const state = canary.breaker.state;
      const permit = state === 'CLOSED' || state === 'DISABLED' ? canary.breaker.tryAcquire() : null;
      // Not admitted: the stable version serves it (below), the canary never sees it.
      if (permit !== null) return call(name, canary.version, permit, method, args, context, canary.stats.canary, this.deps.counters);
    }
    const breaker = this.deps.breakers.getOrCreate(live.breakerName);
    const permit = breaker.tryAcquire();
    if (!permit) {
      this.deps.counters?.invoked(name, version.version, OUTCOME_REJECTED, -1);
      const until = breaker.openUntil;
      throw new UserError(
        'CIRCUIT_OPEN',
        `Circuit breaker "${breaker.name}" is ${breaker.state}${until ? ` until ${new Date(until).toISOString()}` : ''}: call rejected`,
        'name',
      );
    }
    return call(name, version, permit, method, args, context, canary === null ? null : canary.stats.stable, this.deps.counters);
  }
}

/** One admitted call on `version`: its outcome goes to the permit and, during a rollout, to `window`. */
async function call(
  name: string,
  version: LoadedModuleVersion,
  permit: BreakerPermit,
  method: string,
  args: unknown,
  context: EvaluationContext | null,
  window: VersionStatsWindow | null,
  counters: ModuleCounters | null,
): Promise<InvokeResult> {
  const started = performance.now();
  try {
    const result = await version.call(method, args, context ? { context } : undefined);
    const duration = performance.now() - started;
    permit.success(duration);
    if (window !== null) window.record(duration, false);
    counters?.invoked(name, version.version, OUTCOME_SUCCESS, duration);
    return { result, servedBy: version.version };
  } catch (error) {
    const duration = performance.now() - started;
    counters?.invoked(name, version.version, outcomeOfError(error), duration);
    const counted = settleFailure(permit, error, duration);
    if (window !== null && counted.counted) window.record(duration, true);
    throw counted.error;
  }
}

/** Records a failed call on its permit as the breaker should count it; returns what the caller gets and whether it counted. */
function settleFailure(permit: BreakerPermit, error: unknown, duration: number): { error: unknown; counted: boolean } {
  if (isModuleCallError(error)) {
    switch (error.code) {
      case 'UNKNOWN_METHOD':
      case 'RESERVED_METHOD':
      case 'NOT_CLONEABLE':
        // The caller's mistake says nothing about the module's health.
        permit.release();
        return { error: new UserError(error.code, error.message, error.code === 'NOT_CLONEABLE' ? 'args' : 'method'), counted: false };
      case 'RESULT_TOO_LARGE':
        permit.failure(error, duration);
        return { error: new UserError('RESULT_TOO_LARGE', error.message, null), counted: true };
      case 'CALL_TIMEOUT':
        permit.timeout();
        return { error: new UserError('CALL_TIMEOUT', error.message, null), counted: true };
      case 'MODULE_TERMINATED':
      case 'MODULE_CRASHED':
        permit.failure(error, duration);
        return { error: new UserError('MODULE_UNAVAILABLE', error.message, null), counted: true };
      default:
        permit.failure(error, duration);
        return { error: new UserError('CALL_FAILED', error.message, null), counted: true };
    }
  }
  permit.failure(error, duration);
  return { error, counted: true };
}
