/**
 * WORKER isolation: one worker thread per loaded version, capped by `resourceLimits`.
 *
 * Load: the worker imports the file (load timeout), then runs `create` (init timeout); a
 * timeout terminates the worker, which also stops a synchronous infinite loop. A worker that
 * exits on its own (uncaught error, heap limit) fails its load or, later, every pending
 * request, and notifies `onExit`. After any request times out, the worker must answer a ping
 * within `unresponsiveTimeoutMs`, or it is considered stuck and terminated (UNRESPONSIVE).
 *
 * Every message from the worker is checked (messages.ts) before it is acted on: a malformed
 * one, or any failure handling one, ends this version as CRASHED and never throws on the
 * server's thread. The worker reports its memory every `memoryReportIntervalMs`; memory
 * outside its heap (ArrayBuffers, Buffers) past `maxOldGenerationSizeMb` ends it as
 * OUT_OF_MEMORY, as running out of heap does.
 *
 * The worker posts everything on a `MessageChannel` of its own (`replies`), and each side
 * bumps a shared counter after each post, so a lone call's answer can be taken with
 * `receiveMessageOnPort` while the server's thread waits awake for it for a bounded time
 * (spin-wait.ts); whatever is taken that way goes through the same checks as a message event.
 *
 * The worker runs `worker-entry.js` next to this file when it exists (built code); from the
 * TypeScript sources (vitest, tsx) it registers tsx inside the worker first, because on
 * Node 20 an `--import tsx` in the worker's execArgv does not apply to its entry module.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { TimerHandle } from '../../clock.js';
import {
  clipModuleText,
  describeRemoteError,
  ModuleLoadError,
  toRemoteError,
  type ModuleCallError,
  type ModuleLoadErrorCode,
  type RemoteError,
} from './errors.js';
import type { BreakerAdmission, BreakerOutcome } from './host.js';
import { MalformedWorkerMessage, parseReplyValue, parseWorkerMessage } from './messages.js';
import type { PendingEntry } from './pending.js';
import type { HostToWorker, InstanceRequest, LoadStage, ReplyErrorKind, WorkerBootData, WorkerToHost } from './protocol.js';
import { createSignals, SIGNAL_TO_HOST, SIGNAL_TO_WORKER, SpinWait } from './spin-wait.js';
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

const MIB = 1024 * 1024;

function megabytes(bytes: number): string {
  return (bytes / MIB).toFixed(1);
}

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
  const channel = new MessageChannel();
  const signals = createSignals();
  const boot: WorkerBootData = {
    name: options.name,
    version: options.version,
    fileUrl: pathToFileURL(options.absolutePath).href,
    config: options.config,
    dependencyNames: options.dependencyNames,
    previousState: options.previousState,
    flags: host.flags.snapshot(),
    maxResultBytes: options.limits.maxResultBytes,
    memoryReportIntervalMs: options.limits.memoryReportIntervalMs,
    replies: channel.port2,
    signals,
    spinMicros: options.limits.workerSpinMicros,
  };
  const { script, eval: isEval } = workerScript();
  const { maxOldGenerationSizeMb, maxYoungGenerationSizeMb, stackSizeMb } = options.limits;
  let worker: Worker;
  try {
    worker = new Worker(script, {
      eval: isEval,
      workerData: boot,
      transferList: [channel.port2],
      resourceLimits: { maxOldGenerationSizeMb, maxYoungGenerationSizeMb, stackSizeMb },
    });
  } catch (error) {
    // Typically a config or previous state that cannot be cloned.
    channel.port1.close();
    const remote = toRemoteError(error);
    return Promise.reject(
      new ModuleLoadError('MODULE_LOAD_FAILED', `${options.name}@${options.version}: cannot start its worker: ${remote.message}`, options.name, options.version, remote),
    );
  }
  const version = new WorkerModuleVersion(options, worker, channel.port1, signals);
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
  private readonly spin: SpinWait;
  /** Messages taken from `replies` so far, by either path (the worker bumps SIGNAL_TO_HOST per post). */
  private received = 0;
  /** The call whose spin timed out, until its answer arrives (0: none). */
  private spunOutOn = 0;

  constructor(
    options: ResolvedLoadOptions,
    private readonly worker: Worker,
    /** Everything the worker's own code posts arrives here. */
    private readonly replies: MessagePort,
    private readonly signals: Int32Array,
  ) {
    super(options);
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
    this.spin = new SpinWait({ budgetMicros: options.limits.workerSpinMicros });
    replies.on('message', (message: unknown) => {
      this.receive(message);
      if (this.spunOutOn !== 0 && !this.pending.has(this.spunOutOn)) {
        this.spunOutOn = 0;
        this.spin.arrivedLate();
      }
    });
    // Only a module's own code posts to parentPort; checked the same way.
    worker.on('message', (message: unknown) => this.onMessage(message));
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
      this.postToWorker(request);
    } catch (error) {
      const entry = this.pending.take(request.id);
      entry?.reject(this.callError('NOT_CLONEABLE', entry.label, `the argument cannot be sent to the module: ${toRemoteError(error).message}`));
      return;
    }
    // A lone call (the sequential case) waits awake for its answer, after the caller's
    // synchronous code, as a message handler would run (spin-wait.ts).
    if (request.t === 'call' && this.spin.enabled && this.pending.inFlightCalls === 1) {
      const id = request.id;
      queueMicrotask(() => this.awaitReply(id));
    }
  }

  /** Spins for the reply to `id`; whatever else the worker posted meanwhile is handled on the way, in order. */
  private awaitReply(id: number): void {
    while (this.pending.inFlightCalls === 1 && this.pending.has(id)) {
      const outcome = this.spin.wait(this.signals, SIGNAL_TO_HOST, this.received);
      if (outcome === 'yield') {
        setImmediate(() => this.awaitReply(id));
        return;
      }
      if (outcome !== 'arrived') {
        if (outcome === 'timedOut') this.spunOutOn = id;
        return;
      }
      if (this.takeReplies() === 0) {
        // The counter says more than the port holds (module code can reach the shared words):
        // believe the port, and let the event loop deliver the answer.
        this.received = Atomics.load(this.signals, SIGNAL_TO_HOST);
        return;
      }
      if (!this.pending.has(id)) {
        this.spin.settled();
        return;
      }
    }
  }

  /** Handles the worker's messages already queued, without waiting for the event loop; returns how many. */
  private takeReplies(): number {
    let count = 0;
    for (let taken = receiveMessageOnPort(this.replies); taken !== undefined; taken = receiveMessageOnPort(this.replies)) {
      count++;
      this.receive(taken.message);
    }
    return count;
  }

  /** One message from `replies`, by either path. */
  private receive(message: unknown): void {
    this.received = (this.received + 1) | 0;
    this.onMessage(message);
  }

  /** Every message to the worker goes through here: the counter lets a spinning worker see it. */
  private postToWorker(message: HostToWorker): void {
    this.worker.postMessage(message);
    Atomics.add(this.signals, SIGNAL_TO_WORKER, 1);
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
      this.postToWorker(message);
    } catch (error) {
      this.log('error', `cannot send a message to the module's worker: ${toRemoteError(error).message}`);
    }
  }

  /** Whatever the worker posts, this never throws: a bad message is the version's crash. */
  private onMessage(raw: unknown): void {
    // Once the worker is being stopped, nothing it still says matters.
    if (this.requestedExit || this.exit) return;
    try {
      this.handle(parseWorkerMessage(raw));
    } catch (error) {
      const problem = error instanceof MalformedWorkerMessage ? error.message : `handling it failed: ${toRemoteError(error).message}`;
      this.crashOnMessage(problem);
    }
  }

  private crashOnMessage(problem: string): void {
    this.log('error', `its worker sent a malformed message (${problem}); terminating the worker`);
    void this.stop('CRASHED', `its worker sent a malformed message (${problem}) and was terminated`);
  }

  /** The pending request a reply answers; undefined for a late reply (after its timeout). */
  private replyEntry(id: number): PendingEntry | undefined {
    const entry = this.pending.get(id);
    if (!entry && !this.pending.issued(id)) {
      throw new MalformedWorkerMessage(`a reply to request ${id}, which the host never sent`);
    }
    return entry;
  }

  private handle(message: WorkerToHost): void {
    switch (message.t) {
      case 'ok': {
        const entry = this.replyEntry(message.id);
        if (!entry) break;
        const value = parseReplyValue(entry.op, message.value);
        if (entry.op === 'memory') this.checkMemory(value as ModuleMemoryUsage);
        this.pending.resolve(message.id, value);
        break;
      }
      case 'err': {
        if (!this.replyEntry(message.id)) break;
        const entry = this.pending.take(message.id)!;
        entry.reject(this.replyError(entry, message.kind, message.error));
        break;
      }
      case 'memory':
        this.checkMemory(message.usage);
        break;
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
        throw new MalformedWorkerMessage(`unhandled message kind ${JSON.stringify((unknown as { t: unknown }).t)}`);
      }
    }
  }

  private replyError(entry: PendingEntry, kind: ReplyErrorKind, remote: RemoteError): ModuleCallError {
    switch (kind) {
      case 'clone':
        return this.callError('NOT_CLONEABLE', entry.label, `the result cannot be sent back from the module: ${remote.message}`, remote);
      case 'tooLarge':
        return this.resultTooLarge(entry.label);
      default:
        return this.failedError(entry.label, remote);
    }
  }

  /** Memory outside the heap has no V8 limit: the host applies the heap's cap to it. */
  private checkMemory(usage: ModuleMemoryUsage): void {
    const capMb = this.options.limits.maxOldGenerationSizeMb;
    if (usage.externalBytes <= capMb * MIB) return;
    void this.stop(
      'OUT_OF_MEMORY',
      `ran out of memory (it held ${megabytes(usage.externalBytes)} MB of ArrayBuffers and other memory outside its heap, over the limit of ${capMb} MB); its worker was terminated`,
    );
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
      this.postToWorker({ t: 'ok', id, value });
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
    // What the worker posted before it stopped is handled before its exit (as on parentPort).
    this.takeReplies();
    this.replies.close();
    const error = this.lastWorkerError;
    let exit: ModuleExitInfo;
    if (this.requestedExit) {
      const { reason, message } = this.requestedExit;
      exit = { reason, expected: reason === 'DISPOSED' || reason === 'TERMINATED', exitCode, message };
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
        message: error ? `crashed: ${clipModuleText(`${error.name}: ${error.message}`)}` : `its worker exited unexpectedly with code ${exitCode}`,
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
