/**
 * What both isolation modes share once a version is loaded: method checks, request
 * bookkeeping and timeouts, drain, dispose, exit notification. A subclass only moves requests
 * to the instance (`send`) and stops it (`stop`).
 */
import type { Clock } from '../../clock.js';
import { quoteValue } from '../../errors.js';
import { isLifecycleMethod, type ModuleType } from '../contract.js';
import { clipModuleText, ModuleCallError, type RemoteError } from './errors.js';
import type { ModuleHost } from './host.js';
import type { PendingEntry } from './pending.js';
import { PendingRequests } from './pending.js';
import type { InstanceDescription, InstanceRequest } from './protocol.js';
import type {
  CallOptions,
  LoadedModuleVersion,
  ModuleExitInfo,
  ModuleExitReason,
  ModuleHealth,
  ModuleIsolation,
  ModuleLimits,
  ModuleTestInfo,
  ModuleTestResult,
} from './version.js';

/** `loadModuleVersion` options after defaults were applied. */
export interface ResolvedLoadOptions {
  name: string;
  version: string;
  absolutePath: string;
  isolation: ModuleIsolation;
  config: Record<string, unknown>;
  dependencyNames: string[];
  previousState: { state: unknown; fromVersion: string } | null;
  limits: ModuleLimits;
  host: ModuleHost;
  clock: Clock;
  signal: AbortSignal | null;
}

const NOT_LOADED: InstanceDescription = Object.freeze({
  type: null,
  methods: [],
  tests: [],
  lifecycle: { healthCheck: false, exportState: false, importState: false, dispose: false },
});

const OPERATION_LABEL: Record<InstanceRequest['t'], string> = {
  call: 'call',
  health: 'healthCheck',
  export: 'exportState',
  import: 'importState',
  test: 'test',
  dispose: 'dispose',
};

export abstract class ModuleVersionBase implements LoadedModuleVersion {
  abstract readonly isolation: ModuleIsolation;
  readonly name: string;
  readonly version: string;
  protected description: InstanceDescription = NOT_LOADED;
  protected readonly pending: PendingRequests;
  /** Set once dispose/terminate started or the version exited: public requests are refused. */
  protected closing = false;
  private exitInfo: ModuleExitInfo | null = null;
  private readonly exitListeners = new Set<(exit: ModuleExitInfo) => void>();
  private disposing: Promise<void> | null = null;
  private methodSet: ReadonlySet<string> = new Set();

  protected constructor(protected readonly options: ResolvedLoadOptions) {
    this.name = options.name;
    this.version = options.version;
    this.pending = new PendingRequests(options.clock, (entry) => this.expired(entry));
  }

  get type(): ModuleType | null {
    return this.description.type;
  }

  get methods(): readonly string[] {
    return this.description.methods;
  }

  get tests(): readonly ModuleTestInfo[] {
    return this.description.tests;
  }

  get lifecycle(): InstanceDescription['lifecycle'] {
    return this.description.lifecycle;
  }

  get inFlight(): number {
    return this.pending.inFlightCalls;
  }

  get exit(): ModuleExitInfo | null {
    return this.exitInfo;
  }

  protected describe(description: InstanceDescription): void {
    this.description = description;
    this.methodSet = new Set(description.methods);
  }

  /** Moves a registered request to the instance; the answer settles it through `pending`. */
  protected abstract send(request: InstanceRequest): void;

  /** Stops the instance for good; must end in `finish`. */
  protected abstract stop(reason: ModuleExitReason, message: string): Promise<void>;

  /** Called after a request timed out (a worker checks it is not stuck). */
  protected afterTimeout(_entry: PendingEntry): void {}

  call(method: string, arg?: unknown, opts?: CallOptions): Promise<unknown> {
    if (this.closing) return Promise.reject(this.closedError(method));
    if (!this.methodSet.has(method)) {
      return Promise.reject(
        typeof method === 'string' && isLifecycleMethod(method)
          ? this.callError('RESERVED_METHOD', method, `${quoteValue(method)} is a lifecycle method and cannot be invoked`)
          : this.callError('UNKNOWN_METHOD', String(method), `has no method ${quoteValue(method)} (methods: ${this.methods.join(', ') || 'none'})`),
      );
    }
    const id = this.pending.nextId();
    const promise = this.pending.add(id, 'call', method, opts?.timeoutMs ?? this.options.limits.callTimeoutMs);
    this.send(opts?.context ? { t: 'call', id, method, arg, context: { context: opts.context } } : { t: 'call', id, method, arg });
    return promise;
  }

  healthCheck(opts?: CallOptions): Promise<ModuleHealth> {
    if (this.closing) return Promise.reject(this.closedError('healthCheck'));
    if (!this.lifecycle.healthCheck) return Promise.resolve({ ok: true });
    return this.request({ t: 'health', id: this.pending.nextId() }, opts?.timeoutMs) as Promise<ModuleHealth>;
  }

  exportState(opts?: CallOptions): Promise<unknown> {
    if (this.closing) return Promise.reject(this.closedError('exportState'));
    if (!this.lifecycle.exportState) return Promise.resolve(undefined);
    return this.request({ t: 'export', id: this.pending.nextId() }, opts?.timeoutMs);
  }

  importState(state: unknown, fromVersion: string, opts?: CallOptions): Promise<void> {
    if (this.closing) return Promise.reject(this.closedError('importState'));
    if (!this.lifecycle.importState) return Promise.resolve();
    return this.request({ t: 'import', id: this.pending.nextId(), state, fromVersion }, opts?.timeoutMs).then(() => undefined);
  }

  runTest(name: string, timeoutMs?: number): Promise<ModuleTestResult> {
    if (this.closing) return Promise.reject(this.closedError(`test "${name}"`));
    const test = this.tests.find((t) => t.name === name);
    if (!test) {
      return Promise.reject(
        this.callError('UNKNOWN_TEST', `test ${quoteValue(name)}`, `has no test ${quoteValue(name)} (tests: ${this.tests.map((t) => t.name).join(', ') || 'none'})`),
      );
    }
    return this.request({ t: 'test', id: this.pending.nextId(), name }, timeoutMs ?? test.timeoutMs) as Promise<ModuleTestResult>;
  }

  drain(deadlineMs: number): Promise<boolean> {
    return this.pending.whenIdle(deadlineMs);
  }

  dispose(): Promise<void> {
    this.disposing ??= this.disposeOnce();
    return this.disposing;
  }

  terminate(): Promise<void> {
    this.closing = true;
    return this.stop('TERMINATED', 'terminated by the host');
  }

  onExit(listener: (exit: ModuleExitInfo) => void): () => void {
    const exit = this.exitInfo;
    if (exit) {
      queueMicrotask(() => listener(exit));
      return () => {};
    }
    this.exitListeners.add(listener);
    return () => this.exitListeners.delete(listener);
  }

  private async disposeOnce(): Promise<void> {
    if (this.exitInfo) return;
    this.closing = true;
    if (this.lifecycle.dispose) {
      try {
        await this.request({ t: 'dispose', id: this.pending.nextId() }, this.options.limits.disposeTimeoutMs);
      } catch (error) {
        this.log('warn', `dispose() failed, stopping anyway: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    await this.stop('DISPOSED', 'disposed');
  }

  /** Registers and sends a request; bypasses `closing`, so dispose can still reach the instance. */
  protected request(request: InstanceRequest, timeoutMs: number = this.options.limits.callTimeoutMs): Promise<unknown> {
    const label = request.t === 'test' ? `test "${request.name}"` : OPERATION_LABEL[request.t];
    const promise = this.pending.add(request.id, request.t, label, timeoutMs);
    this.send(request);
    return promise;
  }

  private expired(entry: PendingEntry): void {
    const waited = this.options.clock.now() - entry.startedAt;
    switch (entry.op) {
      case 'health':
        entry.resolve({ ok: false, detail: { error: `healthCheck did not answer within ${waited} ms`, code: 'CALL_TIMEOUT' } });
        break;
      case 'test':
        entry.resolve({ status: 'TIMED_OUT', durationMs: waited, error: `timed out after ${waited} ms` } satisfies ModuleTestResult);
        break;
      default:
        entry.reject(
          this.callError(
            'CALL_TIMEOUT',
            entry.label,
            `${entry.op === 'call' ? `call to "${entry.label}"` : entry.label} did not answer within ${waited} ms`,
          ),
        );
    }
    this.afterTimeout(entry);
  }

  /** Records the exit, fails what is pending and tells the listeners. Runs once. */
  protected finish(exit: ModuleExitInfo): void {
    if (this.exitInfo) return;
    this.exitInfo = exit;
    this.closing = true;
    this.pending.rejectAll((entry) => this.closedError(entry.label));
    const listeners = [...this.exitListeners];
    this.exitListeners.clear();
    for (const listener of listeners) {
      try {
        listener(exit);
      } catch (error) {
        this.log('error', `an onExit listener threw: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }

  protected closedError(label: string): ModuleCallError {
    const exit = this.exitInfo;
    if (!exit) return this.callError('MODULE_TERMINATED', label, 'is being disposed');
    const crashed = exit.reason === 'CRASHED' || exit.reason === 'OUT_OF_MEMORY';
    return this.callError(crashed ? 'MODULE_CRASHED' : 'MODULE_TERMINATED', label, exit.message);
  }

  protected callError(
    code: ModuleCallError['code'],
    label: string,
    what: string,
    remote: RemoteError | null = null,
  ): ModuleCallError {
    return new ModuleCallError(code, `${this.name}@${this.version}: ${what}`, this.name, this.version, label, remote);
  }

  /** A result over `maxResultBytes`: it was dropped where it was produced, before any copy. */
  protected resultTooLarge(label: string): ModuleCallError {
    return this.callError(
      'RESULT_TOO_LARGE',
      label,
      `the result of "${label}" is larger than ${this.options.limits.maxResultBytes} bytes, the limit for module results; it was dropped`,
    );
  }

  /** The module's own error: its message (already clipped at the boundary) becomes the error's message. */
  protected failedError(label: string, remote: RemoteError): ModuleCallError {
    return new ModuleCallError('CALL_FAILED', remote.message, this.name, this.version, label, remote);
  }

  protected log(level: 'debug' | 'info' | 'warn' | 'error', message: string, data?: unknown): void {
    try {
      this.options.host.log(level, this.name, clipModuleText(message), data);
    } catch {
      // A failing logger must not break the runtime.
    }
  }
}
