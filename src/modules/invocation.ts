/**
 * Invocation: `invokeModule(name, method, args, context)` on the version serving the module,
 * through the module's own circuit breaker (`module:<name>`), with the runtime's call timeout.
 * A call is not a change of the control plane, so it is not audited (the breaker counts it).
 *
 * - While a swap switches versions (`gate` set), new calls wait at the gate, then go to the
 *   version that serves after the switch: no call is refused because of a swap.
 * - A caller's mistake (unknown or reserved method, arguments that cannot be cloned) says
 *   nothing about the module's health: the breaker releases the call uncounted.
 */
import { performance } from 'node:perf_hooks';
import type { BreakerPermit } from '../breakers/engine.js';
import type { BreakerService } from '../breakers/service.js';
import { UserError } from '../errors.js';
import type { EvaluationContext } from '../flags/engine.js';
import type { ModuleRecord } from './repository.js';
import { isModuleCallError, type LoadedModuleVersion } from './runtime/index.js';

export const MODULE_BREAKER_PREFIX = 'module:';

export interface InvokeResult {
  result: unknown;
  servedBy: string;
}

/** What serves a module right now. */
export interface Live {
  active: LoadedModuleVersion | null;
  /** Set while a swap switches versions: new calls wait for it. */
  gate: Promise<void> | null;
}

export interface InvocationDeps {
  breakers: Pick<BreakerService, 'getOrCreate'>;
  records: ReadonlyMap<string, ModuleRecord>;
  live: ReadonlyMap<string, Live>;
}

export function breakerNameOf(name: string): string {
  return `${MODULE_BREAKER_PREFIX}${name}`;
}

export class Invocation {
  constructor(private readonly deps: InvocationDeps) {}

  /** Calls `method(args)` on the active version through the module's breaker. */
  async invoke(name: string, method: string, args: unknown, context: EvaluationContext | null = null): Promise<InvokeResult> {
    const record = this.deps.records.get(name);
    if (!record) throw new UserError('MODULE_NOT_FOUND', `Module "${name}" is not registered`, 'name');
    const live = this.deps.live.get(name)!;
    while (live.gate) await live.gate;
    const version = live.active;
    if (!version || record.state !== 'ACTIVE') {
      throw new UserError('INVALID_MODULE_STATE', `Module "${name}" is ${record.state}, not ACTIVE`, 'name');
    }
    const breaker = this.deps.breakers.getOrCreate(breakerNameOf(name));
    const permit = breaker.tryAcquire();
    if (!permit) {
      const until = breaker.openUntil;
      throw new UserError(
        'CIRCUIT_OPEN',
        `Circuit breaker "${breaker.name}" is ${breaker.state}${until ? ` until ${new Date(until).toISOString()}` : ''}: call rejected`,
        'name',
      );
    }
    const started = performance.now();
    try {
      const result = await version.call(method, args, context ? { context } : undefined);
      permit.success(performance.now() - started);
      return { result, servedBy: version.version };
    } catch (error) {
      throw settleFailure(permit, error, performance.now() - started);
    }
  }
}

/** Records a failed call on its permit as the breaker should count it; returns what the caller gets. */
function settleFailure(permit: BreakerPermit, error: unknown, duration: number): unknown {
  if (isModuleCallError(error)) {
    switch (error.code) {
      case 'UNKNOWN_METHOD':
      case 'RESERVED_METHOD':
      case 'NOT_CLONEABLE':
        // The caller's mistake says nothing about the module's health.
        permit.release();
        return new UserError(error.code, error.message, error.code === 'NOT_CLONEABLE' ? 'args' : 'method');
      case 'RESULT_TOO_LARGE':
        permit.failure(error, duration);
        return new UserError('RESULT_TOO_LARGE', error.message, null);
      case 'CALL_TIMEOUT':
        permit.timeout();
        return new UserError('CALL_TIMEOUT', error.message, null);
      case 'MODULE_TERMINATED':
      case 'MODULE_CRASHED':
        permit.failure(error, duration);
        return new UserError('MODULE_UNAVAILABLE', error.message, null);
      default:
        permit.failure(error, duration);
        return new UserError('CALL_FAILED', error.message, null);
    }
  }
  permit.failure(error, duration);
  return error;
}
