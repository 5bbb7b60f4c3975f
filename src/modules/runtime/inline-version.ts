/**
 * INLINE isolation: the module runs on the host's own thread, for trusted modules that need
 * the lowest call latency.
 *
 * Trade-offs, all inherent to Node:
 * - An imported ES module is never unloaded. Each load imports the file again under a new
 *   cache-busting query (`?v=<version>&t=<n>`) so a new version of the same path is really
 *   read, and every load stays in memory for the life of the process (about 400 MB after 50
 *   reloads of an 8 MB module was measured). Files the module itself imports are not
 *   re-imported: they are shared by all its versions.
 * - Timeouts are `Promise.race`: a call that never settles is reported as CALL_TIMEOUT, but a
 *   synchronous infinite loop (in `create` or in a method) blocks the whole server, and
 *   `terminate()` cannot stop code that is running.
 * - There is no heap limit, and an uncaught error thrown from a module's timer or an
 *   unhandled rejection is the host process's own.
 * - Arguments and results are passed by reference, not cloned (exported state and the
 *   previous state are cloned, so two versions never share state objects). A result is still
 *   measured as its clone would be and refused past `maxResultBytes`, as in a worker, so a
 *   module behaves alike in both modes (the measuring runs on the server's thread).
 */
import { pathToFileURL } from 'node:url';
import type { TimerHandle } from '../../clock.js';
import type { ModuleDefinition } from '../contract.js';
import { buildModuleContext, type ContextBridge } from './context.js';
import { readModuleDefinition } from './definition.js';
import { InstanceDriver } from './driver.js';
import { cloneSizeUpTo } from './result-size.js';
import { describeRemoteError, ModuleLoadError, toRemoteError, type ModuleLoadErrorCode } from './errors.js';
import type { InstanceRequest } from './protocol.js';
import { ModuleVersionBase, type ResolvedLoadOptions } from './version-base.js';
import type { LoadedModuleVersion, ModuleExitReason } from './version.js';

let importCounter = 0;

class LoadFailure extends Error {
  constructor(
    readonly code: ModuleLoadErrorCode,
    message: string,
    readonly origin: unknown = null,
  ) {
    super(message);
  }
}

export async function loadInlineVersion(options: ResolvedLoadOptions): Promise<LoadedModuleVersion> {
  const version = new InlineModuleVersion(options);
  try {
    await version.load();
  } catch (error) {
    const failure = error instanceof LoadFailure ? error : new LoadFailure('MODULE_LOAD_FAILED', toRemoteError(error).message, error);
    const remote = failure.origin === null ? null : toRemoteError(failure.origin);
    throw new ModuleLoadError(failure.code, `${options.name}@${options.version}: ${failure.message}`, options.name, options.version, remote);
  }
  return version;
}

class InlineModuleVersion extends ModuleVersionBase {
  readonly isolation = 'INLINE';
  private driver: InstanceDriver | null = null;

  constructor(options: ResolvedLoadOptions) {
    super(options);
  }

  async load(): Promise<void> {
    const { options } = this;
    const { limits } = options;
    let previousState: ResolvedLoadOptions['previousState'];
    try {
      previousState = options.previousState === null ? null : structuredClone(options.previousState);
    } catch (error) {
      throw new LoadFailure('MODULE_LOAD_FAILED', `the previous state cannot be cloned: ${toRemoteError(error).message}`, error);
    }
    const url = `${pathToFileURL(options.absolutePath).href}?v=${encodeURIComponent(options.version)}&t=${++importCounter}`;
    let namespace: unknown;
    try {
      namespace = await this.race(import(url), limits.loadTimeoutMs, 'MODULE_LOAD_TIMEOUT', `importing the file took longer than ${limits.loadTimeoutMs} ms`);
    } catch (error) {
      throw error instanceof LoadFailure ? error : new LoadFailure('MODULE_LOAD_FAILED', `importing the module file failed: ${describeRemoteError(toRemoteError(error))}`, error);
    }
    let definition: ModuleDefinition;
    try {
      definition = readModuleDefinition(namespace);
    } catch (error) {
      throw new LoadFailure('MODULE_INVALID_DEFINITION', `the module file exports no valid definition: ${describeRemoteError(toRemoteError(error))}`, error);
    }
    const ctx = buildModuleContext(
      { name: options.name, version: options.version, config: options.config, dependencyNames: options.dependencyNames, previousState },
      this.bridge(),
    );
    const creating = InstanceDriver.create(definition, ctx);
    try {
      this.driver = await this.race(creating, limits.initTimeoutMs, 'MODULE_INIT_TIMEOUT', `create() did not finish within ${limits.initTimeoutMs} ms`);
    } catch (error) {
      if (error instanceof LoadFailure) {
        // The instance may still arrive; nobody will use it, so let it release what it holds.
        creating.then((late) => late.handle({ t: 'dispose', id: 0 }), () => undefined).catch(() => undefined);
        throw error;
      }
      throw new LoadFailure('MODULE_INIT_FAILED', `create() failed: ${describeRemoteError(toRemoteError(error))}`, error);
    }
    this.describe(this.driver.description);
  }

  protected send(request: InstanceRequest): void {
    void this.run(request);
  }

  protected stop(reason: ModuleExitReason, message: string): Promise<void> {
    this.finish({ reason, expected: reason === 'DISPOSED' || reason === 'TERMINATED', exitCode: null, message });
    return Promise.resolve();
  }

  private async run(request: InstanceRequest): Promise<void> {
    let value: unknown;
    try {
      value = await this.driver!.handle(request);
    } catch (error) {
      const entry = this.pending.take(request.id);
      entry?.reject(this.failedError(entry.label, toRemoteError(error)));
      return;
    }
    const { maxResultBytes } = this.options.limits;
    if (request.t === 'call' && cloneSizeUpTo(value, maxResultBytes) > maxResultBytes) {
      const entry = this.pending.take(request.id);
      entry?.reject(this.resultTooLarge(entry.label));
      return;
    }
    if (request.t === 'export') {
      try {
        value = structuredClone(value);
      } catch (error) {
        const entry = this.pending.take(request.id);
        entry?.reject(this.callError('NOT_CLONEABLE', entry.label, `the exported state cannot be cloned: ${toRemoteError(error).message}`));
        return;
      }
    }
    this.pending.resolve(request.id, value);
  }

  private bridge(): ContextBridge {
    const { host, name } = this.options;
    return {
      isEnabled: (flag, context) => host.flags.isEnabled(flag, context),
      acquire: (breaker, config) => host.breakers.acquire(breaker, config),
      complete: (permitId, outcome, durationMs, error) => host.breakers.complete(permitId, outcome, durationMs, error),
      callDependency: (dependency, method, args) => {
        if (!this.options.dependencyNames.includes(dependency)) {
          return Promise.reject(new Error(`"${dependency}" is not a declared dependency of ${name}`));
        }
        return host.callDependency(name, dependency, method, args);
      },
      log: (level, message, data) => this.log(level, message, data),
    };
  }

  /** Rejects with a LoadFailure after `ms`, or when the load is aborted. */
  private race<T>(promise: Promise<T>, ms: number, code: ModuleLoadErrorCode, what: string): Promise<T> {
    const { clock, signal } = this.options;
    if (signal?.aborted) return Promise.reject(new LoadFailure('MODULE_LOAD_ABORTED', 'the load was aborted'));
    let timer: TimerHandle | null = null;
    let onAbort: (() => void) | null = null;
    const guard = new Promise<never>((_, reject) => {
      timer = clock.setTimer(ms, () => reject(new LoadFailure(code, what)));
      if (signal) {
        onAbort = () => reject(new LoadFailure('MODULE_LOAD_ABORTED', 'the load was aborted'));
        signal.addEventListener('abort', onAbort, { once: true });
      }
    });
    return Promise.race([promise, guard]).finally(() => {
      (timer as TimerHandle | null)?.cancel();
      if (signal && onAbort) signal.removeEventListener('abort', onAbort);
    });
  }
}
