/**
 * What a loaded module version needs from the rest of Helios. The module service implements
 * it on top of the flag and breaker services; `InMemoryModuleHost` is a small stand-in for
 * tests and scripts.
 *
 * Flags are pushed, not pulled: a worker keeps the definitions in memory (a snapshot at start,
 * then every change from `subscribe`) so `ctx.flags.isEnabled` stays synchronous there.
 * Breakers work by permit: `acquire` decides admission on the host, the module runs the
 * protected function in its own thread and reports back with `complete`.
 */
import type { EvaluationContext, FlagDefinition } from '../../flags/engine.js';
import type { BreakerConfig } from '../../breakers/config.js';
import type { ModuleLogLevel } from '../contract.js';

export type BreakerPermit = { permitId: string };
export type BreakerRejection = { rejected: { message: string; breakerName: string; openUntil: number | null } };
export type BreakerAdmission = BreakerPermit | BreakerRejection;
export type BreakerOutcome = 'success' | 'failure';

export interface ModuleHostFlags {
  isEnabled(name: string, context?: EvaluationContext): boolean;
  /** Every current definition. */
  snapshot(): FlagDefinition[];
  /** Called with the full set of definitions after every change; returns the unsubscribe function. */
  subscribe(listener: (definitions: FlagDefinition[]) => void): () => void;
}

export interface ModuleHostBreakers {
  /** Gets or creates breaker `name` (with `config` on creation) and asks it to admit one call. */
  acquire(name: string, config?: Partial<BreakerConfig>): BreakerAdmission;
  /** Reports the outcome of an admitted call; every permit is completed exactly once. */
  complete(permitId: string, outcome: BreakerOutcome, durationMs: number, error?: string): void;
}

export interface ModuleHost {
  flags: ModuleHostFlags;
  breakers: ModuleHostBreakers;
  /**
   * Calls `method` on the current active version of `dependency` on behalf of `fromModule`.
   * `args` are the arguments the module passed to the proxy; module methods take ONE argument,
   * so a host normally forwards `args[0]`. The runtime only lets a module reach the
   * dependencies it declared.
   */
  callDependency(fromModule: string, dependency: string, method: string, args: unknown[]): Promise<unknown>;
  log(level: ModuleLogLevel, module: string, message: string, data?: unknown): void;
}
