/**
 * A self-contained `ModuleHost` for tests and scripts: flags in a map, a minimal breaker
 * (N consecutive failures open it until a reset time; no half-open trial limit), dependencies
 * wired by hand, logs kept in an array. The module service has the real one.
 */
import { systemClock, type Clock } from '../../clock.js';
import { compileFlag, type CompiledFlag, type EvaluationContext, type FlagDefinition } from '../../flags/engine.js';
import type { BreakerConfig } from '../../breakers/config.js';
import type { ModuleLogLevel } from '../contract.js';
import type { BreakerAdmission, BreakerOutcome, ModuleHost, ModuleHostBreakers, ModuleHostFlags } from './host.js';

export interface RecordedLog {
  level: ModuleLogLevel;
  module: string;
  message: string;
  data?: unknown;
}

export interface RecordedCompletion {
  breaker: string;
  outcome: BreakerOutcome;
  durationMs: number;
  error?: string;
}

/** What a dependency resolves to: a loaded version (anything with `call`) or a plain function. */
export type DependencyTarget =
  | { call(method: string, arg?: unknown): Promise<unknown> }
  | ((method: string, args: unknown[], fromModule: string) => unknown);

/** A complete flag definition from the fields a test cares about. */
export function flagDefinition(fields: Partial<FlagDefinition> & { name: string }): FlagDefinition {
  return {
    description: '',
    enabled: true,
    strategy: 'ALL_ON',
    percentage: 0,
    stickiness: 'default',
    whitelist: [],
    gradual: null,
    createdAt: 0,
    updatedAt: 0,
    ...fields,
  };
}

interface SimpleBreaker {
  failureThreshold: number;
  resetTimeoutMs: number;
  consecutiveFailures: number;
  openUntil: number | null;
}

export class InMemoryModuleHost implements ModuleHost {
  readonly logs: RecordedLog[] = [];
  readonly completions: RecordedCompletion[] = [];
  readonly dependencyCalls: { fromModule: string; dependency: string; method: string; args: unknown[] }[] = [];
  readonly flags: ModuleHostFlags;
  readonly breakers: ModuleHostBreakers;
  private readonly definitions = new Map<string, FlagDefinition>();
  private readonly compiled = new Map<string, CompiledFlag>();
  private readonly flagListeners = new Set<(definitions: FlagDefinition[]) => void>();
  private readonly breakerStates = new Map<string, SimpleBreaker>();
  private readonly permits = new Map<string, string>();
  private readonly targets = new Map<string, DependencyTarget>();
  private lastPermit = 0;

  constructor(private readonly clock: Clock = systemClock) {
    this.flags = {
      isEnabled: (name: string, context?: EvaluationContext) =>
        this.compiled.get(name)?.evaluate(context ?? {}, this.clock.now()).enabled ?? false,
      snapshot: () => [...this.definitions.values()],
      subscribe: (listener) => {
        this.flagListeners.add(listener);
        return () => this.flagListeners.delete(listener);
      },
    };
    this.breakers = {
      acquire: (name, config) => this.acquire(name, config),
      complete: (permitId, outcome, durationMs, error) => this.complete(permitId, outcome, durationMs, error),
    };
  }

  get flagSubscriberCount(): number {
    return this.flagListeners.size;
  }

  setFlag(definition: FlagDefinition): void {
    this.definitions.set(definition.name, definition);
    this.compiled.set(definition.name, compileFlag(definition));
    this.publishFlags();
  }

  deleteFlag(name: string): void {
    this.definitions.delete(name);
    this.compiled.delete(name);
    this.publishFlags();
  }

  /** Forces breaker `name` open until `until` (epoch ms by the host clock). */
  openBreaker(name: string, until: number | null = null): void {
    this.breakerOf(name).openUntil = until ?? Number.POSITIVE_INFINITY;
  }

  resetBreaker(name: string): void {
    const breaker = this.breakerOf(name);
    breaker.openUntil = null;
    breaker.consecutiveFailures = 0;
  }

  isBreakerOpen(name: string): boolean {
    const openUntil = this.breakerStates.get(name)?.openUntil;
    return openUntil != null && this.clock.now() < openUntil;
  }

  setDependency(name: string, target: DependencyTarget): void {
    this.targets.set(name, target);
  }

  async callDependency(fromModule: string, dependency: string, method: string, args: unknown[]): Promise<unknown> {
    this.dependencyCalls.push({ fromModule, dependency, method, args });
    const target = this.targets.get(dependency);
    if (!target) throw Object.assign(new Error(`dependency "${dependency}" is not available`), { code: 'DEPENDENCY_NOT_FOUND' });
    return typeof target === 'function' ? await target(method, args, fromModule) : await target.call(method, args[0]);
  }

  log(level: ModuleLogLevel, module: string, message: string, data?: unknown): void {
    this.logs.push(data === undefined ? { level, module, message } : { level, module, message, data });
  }

  private publishFlags(): void {
    const snapshot = [...this.definitions.values()];
    for (const listener of this.flagListeners) listener(snapshot);
  }

  private breakerOf(name: string, config?: Partial<BreakerConfig>): SimpleBreaker {
    let breaker = this.breakerStates.get(name);
    if (!breaker) {
      breaker = {
        failureThreshold: config?.failureThreshold ?? 5,
        resetTimeoutMs: (config?.resetTimeoutSeconds ?? 60) * 1000,
        consecutiveFailures: 0,
        openUntil: null,
      };
      this.breakerStates.set(name, breaker);
    }
    return breaker;
  }

  private acquire(name: string, config?: Partial<BreakerConfig>): BreakerAdmission {
    const breaker = this.breakerOf(name, config);
    if (breaker.openUntil !== null) {
      if (this.clock.now() < breaker.openUntil) {
        const openUntil = Number.isFinite(breaker.openUntil) ? breaker.openUntil : null;
        return { rejected: { message: `circuit breaker "${name}" is open`, breakerName: name, openUntil } };
      }
      breaker.openUntil = null;
      breaker.consecutiveFailures = 0;
    }
    const permitId = `${name}#${++this.lastPermit}`;
    this.permits.set(permitId, name);
    return { permitId };
  }

  private complete(permitId: string, outcome: BreakerOutcome, durationMs: number, error?: string): void {
    const name = this.permits.get(permitId);
    if (name === undefined) return;
    this.permits.delete(permitId);
    this.completions.push(error === undefined ? { breaker: name, outcome, durationMs } : { breaker: name, outcome, durationMs, error });
    const breaker = this.breakerOf(name);
    if (outcome === 'success') {
      breaker.consecutiveFailures = 0;
    } else if (++breaker.consecutiveFailures >= breaker.failureThreshold) {
      breaker.openUntil = this.clock.now() + breaker.resetTimeoutMs;
    }
  }
}
