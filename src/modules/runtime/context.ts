/**
 * Builds the `ctx` a module's `create` receives. The same code serves both isolation modes;
 * only the `ContextBridge` differs (direct host calls INLINE, messages to the host in a worker).
 */
import { performance } from 'node:perf_hooks';
import type { BreakerConfig } from '../../breakers/config.js';
import type { EvaluationContext } from '../../flags/engine.js';
import {
  CircuitOpenError,
  MODULE_LOG_LEVELS,
  type DependencyProxy,
  type ModuleBreaker,
  type ModuleContext,
  type ModuleLogger,
  type ModuleLogLevel,
} from '../contract.js';
import type { BreakerAdmission, BreakerOutcome } from './host.js';

export interface ContextBridge {
  isEnabled(name: string, context: EvaluationContext): boolean;
  acquire(name: string, config: Partial<BreakerConfig> | undefined): BreakerAdmission | Promise<BreakerAdmission>;
  complete(permitId: string, outcome: BreakerOutcome, durationMs: number, error?: string): void;
  callDependency(dependency: string, method: string, args: unknown[]): Promise<unknown>;
  log(level: ModuleLogLevel, message: string, data?: unknown): void;
}

export interface ContextBase {
  name: string;
  version: string;
  config: Record<string, unknown>;
  dependencyNames: readonly string[];
  previousState: { state: unknown; fromVersion: string } | null;
}

const EMPTY_CONTEXT: EvaluationContext = Object.freeze({});

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Any property is a method of the dependency. `then` and symbols are left undefined so a
 * proxy is never mistaken for a promise (`await ctx.dependencies.x` stays harmless).
 */
function dependencyProxy(bridge: ContextBridge, dependency: string): DependencyProxy {
  const methods = new Map<string, (...args: unknown[]) => Promise<unknown>>();
  return new Proxy(Object.freeze({}) as DependencyProxy, {
    get(_target, property) {
      if (typeof property !== 'string' || property === 'then') return undefined;
      let fn = methods.get(property);
      if (!fn) {
        fn = (...args: unknown[]) => bridge.callDependency(dependency, property, args);
        methods.set(property, fn);
      }
      return fn;
    },
  });
}

function breakerFor(bridge: ContextBridge, name: string, config: Partial<BreakerConfig> | undefined): ModuleBreaker {
  return {
    async call<A extends unknown[], T>(fn: (...args: A) => T | Promise<T>, ...args: A): Promise<Awaited<T>> {
      const admission = await bridge.acquire(name, config);
      if ('rejected' in admission) {
        const r = admission.rejected;
        throw new CircuitOpenError(r.message, r.breakerName, r.openUntil);
      }
      const started = performance.now();
      let result: Awaited<T>;
      try {
        result = await fn(...args);
      } catch (error) {
        bridge.complete(admission.permitId, 'failure', performance.now() - started, errorMessage(error));
        throw error;
      }
      bridge.complete(admission.permitId, 'success', performance.now() - started);
      return result;
    },
  };
}

export function buildModuleContext(base: ContextBase, bridge: ContextBridge): ModuleContext {
  const dependencies: Record<string, DependencyProxy> = {};
  for (const dependency of base.dependencyNames) dependencies[dependency] = dependencyProxy(bridge, dependency);

  const logger = {} as ModuleLogger;
  for (const level of MODULE_LOG_LEVELS) logger[level] = (message, data) => bridge.log(level, String(message), data);

  const breakers = new Map<string, ModuleBreaker>();
  return Object.freeze({
    name: base.name,
    version: base.version,
    config: base.config,
    logger: Object.freeze(logger),
    dependencies: Object.freeze(dependencies),
    previousState: base.previousState?.state ?? null,
    previousVersion: base.previousState?.fromVersion ?? null,
    flags: Object.freeze({
      isEnabled: (name: string, context?: EvaluationContext) => bridge.isEnabled(name, context ?? EMPTY_CONTEXT),
    }),
    breakers: Object.freeze({
      // The config only matters when the breaker is created; the first one given for a name wins here too.
      getOrCreate(name: string, config?: Partial<BreakerConfig>): ModuleBreaker {
        let breaker = breakers.get(name);
        if (!breaker) {
          breaker = breakerFor(bridge, name, config);
          breakers.set(name, breaker);
        }
        return breaker;
      },
    }),
  });
}
