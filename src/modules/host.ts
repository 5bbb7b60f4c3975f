/**
 * The host that loaded module versions talk to (their `ctx.flags`, `ctx.breakers`,
 * `ctx.dependencies` and `ctx.logger`), adapted onto the flags and breakers services and onto
 * invocation. A worker runs breaker-guarded code itself, so it asks for a permit here and
 * reports the outcome under the permit's id.
 */
import type { BreakerPermit } from '../breakers/engine.js';
import type { BreakerService } from '../breakers/service.js';
import { UserError, type ErrorCode } from '../errors.js';
import type { FlagService } from '../flags/service.js';
import type { Logger } from '../logger.js';
import type { ModuleHost } from './runtime/index.js';

export interface HostDeps {
  flags: Pick<FlagService, 'isEnabled' | 'list' | 'onChange'>;
  breakers: Pick<BreakerService, 'getOrCreate'>;
  logger: Logger;
  /** `ctx.dependencies.<name>.<method>(arg)`: an invocation of the dependency's serving version. */
  invoke(name: string, method: string, arg: unknown): Promise<{ result: unknown }>;
}

export function createHost(deps: HostDeps): ModuleHost {
  const { flags, breakers, logger } = deps;
  const permits = new Map<string, BreakerPermit>();
  let permitSeq = 0;
  return {
    flags: {
      isEnabled: (name, context) => flags.isEnabled(name, context ?? {}),
      snapshot: () => flags.list(),
      subscribe: (listener) => flags.onChange(() => listener(flags.list())),
    },
    breakers: {
      acquire: (name, config) => {
        const breaker = breakers.getOrCreate(name, config);
        const permit = breaker.tryAcquire();
        if (!permit) {
          return { rejected: { message: `Circuit breaker "${name}" is ${breaker.state}`, breakerName: name, openUntil: breaker.openUntil } };
        }
        const permitId = String(++permitSeq);
        permits.set(permitId, permit);
        return { permitId };
      },
      complete: (permitId, outcome, durationMs, error) => {
        const permit = permits.get(permitId);
        if (!permit) return;
        permits.delete(permitId);
        if (outcome === 'success') permit.success(durationMs);
        else permit.failure(new Error(error ?? 'failed'), durationMs);
      },
    },
    callDependency: async (fromModule, dependency, method, args) => {
      try {
        return (await deps.invoke(dependency, method, args[0])).result;
      } catch (error) {
        if (error instanceof UserError) {
          const wrapped = new Error(`${dependency}.${method} (called by ${fromModule}): ${error.message}`) as Error & { code: ErrorCode };
          wrapped.code = error.code;
          throw wrapped;
        }
        throw error;
      }
    },
    log: (level, module, message, data) => logger[level](message, { module, ...(data === undefined ? {} : { data }) }),
  };
}
