/**
 * WORKER isolation: one worker thread per loaded version, capped by `resourceLimits`.
 *
 * Load: the worker imports the file (load timeout), then runs `create` (init timeout); a
 * timeout terminates the worker, which also stops a synchronous infinite loop. A worker that
 * exits on its own (uncaught error, heap limit) fails its load or, later, every pending
 * request, and notifies `onExit`. After any request times out, the worker must answer a ping
 * within `unresponsiveTimeoutMs`, or it is considered stuck and terminated (UNRESPONSIVE).
 *
 * The worker runs `worker-entry.js` next to this file when it exists (built code); from the
 * TypeScript sources (vitest, tsx) it registers tsx inside the worker first, because on
 * Node 20 an `--import tsx` in the worker's execArgv does not apply to its entry module.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { TimerHandle } from '../../clock.js';
import { describeRemoteError, ModuleLoadError, toRemoteError, type ModuleLoadErrorCode, type RemoteError } from './errors.js';
import type { BreakerAdmission, BreakerOutcome } from './host.js';
import type { PendingEntry } from './pending.js';
import type { HostToWorker, InstanceRequest, LoadStage, WorkerBootData, WorkerToHost } from './protocol.js';
import { ModuleVersionBase, type ResolvedLoadOptions } from './version-base.js';
import type { LoadedModuleVersion, ModuleExitInfo, ModuleExitReason, ModuleMemoryUsage } from './version.js';

interface WorkerScript {
  script: string | URL;
  eval: boolean;
}

let cachedScript: WorkerScript | null = null;

function workerScript(): WorkerScript {
  if (cachedScript) return cachedScript;
  const built = new URL('./worker-entry.js', import.meta.url);
  if (existsSync(fileURLToPath(built))) {
    cachedScript = { script: built, eval: false };
  } else {
    const source = new URL('./worker-entry.ts', import.meta.url).href;
    const tsx = import.meta.resolve('tsx/esm/api');
    cachedScript = {
      script: `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(source)}); });`,
      eval: true,
    };
  }
  return cachedScript;
}

const LOAD_FAILURE_CODE: Record<LoadStage, ModuleLoadErrorCode> = {
  import: 'MODULE_LOAD_FAILED',
  definition: 'MODULE_INVALID_DEFINITION',
  init: 'MODULE_INIT_FAILED',
};

const LOAD_FAILURE_WHAT: Record<LoadStage, string> = {
  import: 'importing the module file failed',
  definition: 'the module file exports no valid definition',
  init: 'create() failed',
};

type Phase = 'importing' | 'initializing' | 'ready' | 'failed';

let heapFlagChecked = false;

/**
 * V8 heap flags are process-wide and win over a worker's `resourceLimits`: with
 * `--max-old-space-size=1024` (or the same in NODE_OPTIONS) a worker asked to stay under 32 MB
 * gets a 1 GB heap. Said once, so an operator knows why the caps do not hold.
 */
function heapFlagWarning(): string | null {
  if (heapFlagChecked) return null;
  heapFlagChecked = true;
  const flags = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`;
  const found = flags.match(/--max-old-space-size\S*|--max-semi-space-size\S*/);
  return found
    ? `the process runs with ${found[0]}, which overrides the heap limit (maxOldGenerationSizeMb) of every module worker`
    : null;
}

export function loadWorkerVersion(options: ResolvedLoadOptions): Promise<LoadedModuleVersion> {
  const host = options.host;
  const boot: WorkerBootData = {
    name: options.name,
    version: options.version,
    fileUrl: pathToFileURL(options.absolutePath).href,
    config: options.config,
    dependencyNames: options.dependencyNames,
    previousState: options.previousState,
    flags: host.flags.snapshot(),
  };
  const { script, eval: isEval } = workerScript();
  const { maxOldGenerationSizeMb, maxYoungGenerationSizeMb, stackSizeMb } = options.limits;
  let worker: Worker;
  try {
    worker = new Worker(script, {
      eval: isEval,
      workerData: boot,
      resourceLimits: { maxOldGenerationSizeMb, maxYoungGenerationSizeMb, stackSizeMb },
    });
  } catch (error) {
    // Typically a config or previous state that cannot be cloned.
    const remote = toRemoteError(error);
    return Promise.reject(
      new ModuleLoadError('MODULE_LOAD_FAILED', `${options.name}@${options.version}: cannot start its worker: ${remote.message}`, options.name, options.version, remote),
    );
  }
  const version = new WorkerModuleVersion(options, worker);
  const warning = heapFlagWarning();
  if (warning) version.warn(warning);
  return version.ready;
}

class WorkerModuleVersion extends ModuleVersionBase {
  readonly isolation = 'WORKER';
  readonly ready: Promise<LoadedModuleVersion>;
  private phase: Phase = 'importing';
  private phaseTimer: TimerHandle | null;
  private resolveReady!: (version: LoadedModuleVersion) => void;
  private rejectReady!: (error: ModuleLoadError) => void;
  private readonly unsubscribeFlags: () => void;
  private readonly removeAbortListener: () => void;
  private lastWorkerError: (Error & { code?: unknown }) | null = null;
  private requestedExit: { reason: ModuleExitReason; message: string } | null = null;
  private probing = false;
  /** Breaker permits the module holds (id -> acquired at): completed as failures if the worker dies. */
  private readonly permits = new Map<string, number>();
  private readonly exited: Promise<void>;
  private resolveExited!: () => void;

  constructor(
    options: ResolvedLoadOptions,
    private readonly worker: Worker,
  ) {
    super(options);
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
    worker.on('message', (message: WorkerToHost) => this.onMessage(message));
    worker.on('error', (error: Error) => {
      this.lastWorkerError = error;
    });
    worker.on('exit', (code: number) => this.onWorkerExit(code));
    // Snapshot (in workerData) and subscription happen in the same tick, so no change is missed.
    this.unsubscribeFlags = options.host.flags.subscribe((definitions) => this.post({ t: 'flags', definitions }));
    this.phaseTimer = options.clock.setTimer(options.limits.loadTimeoutMs, () =>
      this.failLoad('MODULE_LOAD_TIMEOUT', `starting its worker and importing the file took longer than ${options.limits.loadTimeoutMs} ms; the worker was terminated`),
    );
    const signal = options.signal;
    if (signal) {
      const onAbort = () => this.failLoad('MODULE_LOAD_ABORTED', 'the load was aborted');
      signal.addEventListener('abort', onAbort, { once: true });
      this.removeAbortListener = () => signal.removeEventListener('abort', onAbort);
      if (signal.aborted) onAbort();
    } else {
      this.removeAbortListener = () => {};
    }
  }

  warn(message: string): void {
    this.log('warn', message);
  }

  memoryUsage(): Promise<ModuleMemoryUsage> {
    if (this.closing) return Promise.reject(this.closedError('memoryUsage'));
    const id = this.pending.nextId();
    const promise = this.pending.add(id, 'memory', 'memoryUsage', this.options.limits.callTimeoutMs);
    this.post({ t: 'memory', id });
    return promise as Promise<ModuleMemoryUsage>;
  }

  protected send(request: InstanceRequest): void {
    try {
      this.worker.postMessage(request);
    } catch (error) {
      const entry = this.pending.take(request.id);
      entry?.reject(this.callError('NOT_CLONEABLE', entry.label, `the argument cannot be sent to the module: ${toRemoteError(error).message}`));
    }
  }

  protected stop(reason: ModuleExitReason, message: string): Promise<void> {
    if (!this.requestedExit && !this.exit) {
      this.requestedExit = { reason, message };
      void this.worker.terminate();
    }
    return this.exited;
  }

  protected override afterTimeout(entry: PendingEntry): void {
    if (entry.op === 'ping') {
      void this.stop(
        'UNRESPONSIVE',
        `stopped responding (no answer to a ping within ${this.options.limits.unresponsiveTimeoutMs} ms after a request timed out); its worker was terminated`,
      );
      return;
    }
    if (this.probing || this.closing) return;
    this.probing = true;
    const id = this.pending.nextId();
    const done = () => {
      this.probing = false;
    };
    this.pending.add(id, 'ping', 'ping', this.options.limits.unresponsiveTimeoutMs).then(done, done);
    this.post({ t: 'ping', id });
  }

  private post(message: HostToWorker): void {
    if (this.exit) return;
    try {
      this.worker.postMessage(message);
    } catch (error) {
      this.log('error', `cannot send a message to the module's worker: ${toRemoteError(error).message}`);
    }
  }

  private onMessage(message: WorkerToHost): void {
    switch (message.t) {
      case 'ok':
        this.pending.resolve(message.id, message.value);
        break;
      case 'err': {
        const entry = this.pending.take(message.id);
        if (!entry) break;
        entry.reject(
          message.kind === 'clone'
            ? this.callError('NOT_CLONEABLE', entry.label, `the result cannot be sent back from the module: ${message.error.message}`, message.error)
            : this.failedError(entry.label, message.error),
        );
        break;
      }
      case 'imported':
        if (this.phase !== 'importing') break;
        this.phase = 'initializing';
        this.phaseTimer?.cancel();
        this.phaseTimer = this.options.clock.setTimer(this.options.limits.initTimeoutMs, () =>
          this.failLoad('MODULE_INIT_TIMEOUT', `create() did not finish within ${this.options.limits.initTimeoutMs} ms; the worker was terminated`),
        );
        break;
      case 'ready':
        if (this.phase !== 'initializing') break;
        this.phase = 'ready';
        this.phaseTimer?.cancel();
        this.phaseTimer = null;
        this.removeAbortListener();
        this.describe(message.description);
        this.resolveReady(this);
        break;
      case 'loadFailed':
        this.failLoad(LOAD_FAILURE_CODE[message.stage], `${LOAD_FAILURE_WHAT[message.stage]}: ${describeRemoteError(message.error)}`, message.error);
        break;
      case 'log':
        this.log(message.level, message.message, message.data);
        break;
      case 'acquire':
        this.answerAcquire(message);
        break;
      case 'complete':
        // Only permits this worker holds, once each.
        if (this.permits.delete(message.permitId)) {
          this.completePermit(message.permitId, message.outcome, message.durationMs, message.error);
        }
        break;
      case 'dep':
        this.answerDependency(message);
        break;
      default: {
        const unknown: never = message;
        this.log('warn', `unexpected message from the module's worker: ${JSON.stringify(unknown)}`);
      }
    }
  }

  private answerAcquire(message: Extract<WorkerToHost, { t: 'acquire' }>): void {
    let admission: BreakerAdmission;
    try {
      admission = this.options.host.breakers.acquire(message.name, message.config);
    } catch (error) {
      this.post({ t: 'err', id: message.id, error: toRemoteError(error) });
      return;
    }
    if ('permitId' in admission) {
      if (this.exit) {
        this.completePermit(admission.permitId, 'failure', 0, this.exit.message);
        return;
      }
      this.permits.set(admission.permitId, this.options.clock.now());
    }
    this.post({ t: 'ok', id: message.id, value: admission });
  }

  private completePermit(permitId: string, outcome: BreakerOutcome, durationMs: number, error?: string): void {
    try {
      this.options.host.breakers.complete(permitId, outcome, durationMs, error);
    } catch (failure) {
      this.log('error', `breakers.complete failed: ${toRemoteError(failure).message}`);
    }
  }

  private answerDependency(message: Extract<WorkerToHost, { t: 'dep' }>): void {
    const { id, dependency, method, args } = message;
    if (!this.options.dependencyNames.includes(dependency)) {
      this.post({ t: 'err', id, error: { name: 'Error', message: `"${dependency}" is not a declared dependency of ${this.name}` } });
      return;
    }
    let result: Promise<unknown>;
    try {
      result = this.options.host.callDependency(this.name, dependency, method, args);
    } catch (error) {
      result = Promise.reject(error);
    }
    result.then(
      (value) => this.replyToWorker(id, value),
      (error: unknown) => this.post({ t: 'err', id, error: toRemoteError(error) }),
    );
  }

  private replyToWorker(id: number, value: unknown): void {
    if (this.exit) return;
    try {
      this.worker.postMessage({ t: 'ok', id, value } satisfies HostToWorker);
    } catch (error) {
      this.post({ t: 'err', id, error: { name: 'DataCloneError', message: toRemoteError(error).message, code: 'NOT_CLONEABLE' } });
    }
  }

  private failLoad(code: ModuleLoadErrorCode, what: string, remote: RemoteError | null = null): void {
    if (this.phase === 'ready' || this.phase === 'failed') return;
    this.phase = 'failed';
    this.phaseTimer?.cancel();
    this.phaseTimer = null;
    this.removeAbortListener();
    this.rejectReady(new ModuleLoadError(code, `${this.name}@${this.version}: ${what}`, this.name, this.version, remote));
    void this.stop('TERMINATED', `load failed (${code})`);
  }

  private onWorkerExit(exitCode: number): void {
    this.unsubscribeFlags();
    const error = this.lastWorkerError;
    let exit: ModuleExitInfo;
    if (this.requestedExit) {
      const { reason, message } = this.requestedExit;
      exit = { reason, expected: reason !== 'UNRESPONSIVE', exitCode, message };
    } else if (error?.code === 'ERR_WORKER_OUT_OF_MEMORY') {
      exit = {
        reason: 'OUT_OF_MEMORY',
        expected: false,
        exitCode,
        message: `ran out of memory (heap limit ${this.options.limits.maxOldGenerationSizeMb} MB); its worker exited`,
      };
    } else {
      exit = {
        reason: 'CRASHED',
        expected: false,
        exitCode,
        message: error ? `crashed: ${error.name}: ${error.message}` : `its worker exited unexpectedly with code ${exitCode}`,
      };
    }
    if (this.phase === 'importing' || this.phase === 'initializing') {
      this.failLoad(
        exit.reason === 'OUT_OF_MEMORY' ? 'MODULE_OUT_OF_MEMORY' : 'MODULE_WORKER_CRASHED',
        `${exit.message} while ${this.phase === 'importing' ? 'importing the file' : 'running create()'}`,
        error ? toRemoteError(error) : null,
      );
    }
    const now = this.options.clock.now();
    for (const [permitId, acquiredAt] of this.permits) {
      this.completePermit(permitId, 'failure', now - acquiredAt, `the module's worker stopped (${exit.reason}) during the call`);
    }
    this.permits.clear();
    this.finish(exit);
    this.resolveExited();
  }
}
