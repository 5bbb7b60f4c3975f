/**
 * Runs inside a module worker: imports the module file, creates the instance and answers the
 * host. Flags are evaluated here from definitions the host pushes, so `ctx.flags.isEnabled`
 * is synchronous; breakers and dependency calls are requests to the host.
 *
 * Worker isolation protects Helios from a module's faults (a throw, a hang, a leak), not from
 * a hostile module: module code can reach `parentPort`, the file system and everything else
 * Node offers.
 */
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { compileFlag, type CompiledFlag, type FlagDefinition } from '../../flags/engine.js';
import { buildModuleContext, type ContextBridge } from './context.js';
import { readModuleDefinition } from './definition.js';
import { InstanceDriver } from './driver.js';
import { clipModuleText, fromRemoteError, toRemoteError } from './errors.js';
import type { BreakerAdmission } from './host.js';
import type { HostToWorker, InstanceRequest, LoadStage, WorkerBootData, WorkerToHost } from './protocol.js';
import { cloneSizeUpTo } from './result-size.js';
import { SIGNAL_TO_HOST, SIGNAL_TO_WORKER, SpinWait } from './spin-wait.js';
import type { ModuleMemoryUsage } from './version.js';

if (!parentPort) throw new Error('worker-entry must run in a worker thread');
/** The host's messages arrive here; everything this worker says goes to `boot.replies`. */
const inbox = parentPort;
const boot = workerData as WorkerBootData;
const { replies, signals } = boot;

/** Every post to the host: the counter lets a spinning host see it. */
function postToHost(message: unknown, transfer?: Parameters<MessagePort['postMessage']>[1]): void {
  replies.postMessage(message, transfer);
  Atomics.add(signals, SIGNAL_TO_HOST, 1);
}

const post: (message: WorkerToHost) => void = postToHost;

/**
 * A module's own code may post on `parentPort` too (the host checks whatever arrives and ends
 * the version on garbage): that goes the same way as everything else, so it stays in order with
 * this worker's answers.
 */
Object.defineProperty(inbox, 'postMessage', { value: postToHost });

/**
 * After an answer, with nothing else in progress, the worker waits awake for the next request
 * (spin-wait.ts), but only while calls come in a burst: a request that arrived less than
 * `BURST_MS` after the one before.
 */
const BURST_MS = 1;
const spin = new SpinWait({ budgetMicros: boot.spinMicros });
/** Host messages taken so far, by either path (the counter the host bumps is SIGNAL_TO_WORKER). */
let consumed = 0;
let running = 0;
let lastCallAt = Number.NEGATIVE_INFINITY;
let inBurst = false;
/** The last wait for a request timed out: the next one to arrive tells the back-off how late it was. */
let spunOut = false;

function compileAll(definitions: FlagDefinition[]): Map<string, CompiledFlag> {
  const compiled = new Map<string, CompiledFlag>();
  for (const definition of definitions) {
    try {
      compiled.set(definition.name, compileFlag(definition));
    } catch {
      // A definition this engine cannot compile evaluates like an unknown flag: false.
    }
  }
  return compiled;
}

let flags = compileAll(boot.flags);
let driver: InstanceDriver | null = null;

let lastRequestId = 0;
const outgoing = new Map<number, { resolve: (value: unknown) => void; reject: (error: unknown) => void }>();

function requestHost(message: Extract<WorkerToHost, { t: 'acquire' | 'dep' }>): Promise<unknown> {
  return new Promise((resolve, reject) => {
    outgoing.set(message.id, { resolve, reject });
    try {
      post(message);
    } catch (error) {
      outgoing.delete(message.id);
      reject(error);
    }
  });
}

/** Log data that cannot be cloned still reaches the host, as text. */
function loggable(data: unknown): string {
  try {
    return JSON.stringify(data) ?? String(data);
  } catch {
    return String(data);
  }
}

const bridge: ContextBridge = {
  isEnabled(name, context) {
    const flag = flags.get(name);
    return flag ? flag.evaluate(context, Date.now()).enabled : false;
  },
  acquire(name, config) {
    const message: WorkerToHost = config === undefined ? { t: 'acquire', id: ++lastRequestId, name } : { t: 'acquire', id: ++lastRequestId, name, config };
    return requestHost(message) as Promise<BreakerAdmission>;
  },
  complete(permitId, outcome, durationMs, error) {
    post(error === undefined ? { t: 'complete', permitId, outcome, durationMs } : { t: 'complete', permitId, outcome, durationMs, error });
  },
  callDependency(dependency, method, args) {
    return requestHost({ t: 'dep', id: ++lastRequestId, dependency, method, args });
  },
  log(level, rawMessage, data) {
    const message = clipModuleText(String(rawMessage));
    try {
      post(data === undefined ? { t: 'log', level, message } : { t: 'log', level, message, data });
    } catch {
      post({ t: 'log', level, message, data: loggable(data) });
    }
  },
};

function answer(request: InstanceRequest): void {
  if (request.t === 'call') {
    const now = performance.now();
    inBurst = now - lastCallAt < BURST_MS;
    lastCallAt = now;
  }
  running++;
  void reply(request).finally(answered);
}

function answered(): void {
  if (--running > 0 || !inBurst) return;
  awaitNext();
}

function awaitNext(): void {
  while (running === 0) {
    const outcome = spin.wait(signals, SIGNAL_TO_WORKER, consumed);
    if (outcome === 'yield') {
      setImmediate(awaitNext);
      return;
    }
    if (outcome !== 'arrived') {
      spunOut = outcome === 'timedOut';
      return;
    }
    if (drainInbox() === 0) {
      // The counter says more than the port holds (module code can reach the shared words).
      consumed = Atomics.load(signals, SIGNAL_TO_WORKER);
      return;
    }
    spin.settled();
  }
}

/** Takes the host's messages already queued, without waiting for the event loop; returns how many. */
function drainInbox(): number {
  let count = 0;
  for (let taken = receiveMessageOnPort(inbox); taken !== undefined; taken = receiveMessageOnPort(inbox)) {
    count++;
    take(taken.message as HostToWorker);
  }
  return count;
}

/** One host message, by either path. */
function take(message: HostToWorker): void {
  consumed = (consumed + 1) | 0;
  dispatch(message);
}

async function reply(request: InstanceRequest): Promise<void> {
  let value: unknown;
  try {
    value = await driver!.handle(request);
  } catch (error) {
    post({ t: 'err', id: request.id, kind: 'failed', error: toRemoteError(error) });
    return;
  }
  // Measured here, so an oversized result is never copied to the server's thread.
  if (request.t === 'call' && cloneSizeUpTo(value, boot.maxResultBytes) > boot.maxResultBytes) {
    post({ t: 'err', id: request.id, kind: 'tooLarge', error: { name: 'RangeError', message: `the result is larger than ${boot.maxResultBytes} bytes` } });
    return;
  }
  try {
    post({ t: 'ok', id: request.id, value });
  } catch (error) {
    post({ t: 'err', id: request.id, kind: 'clone', error: toRemoteError(error) });
  }
}

function memoryUsage(): ModuleMemoryUsage {
  const heap = getHeapStatistics();
  return {
    heapUsedBytes: heap.used_heap_size,
    heapTotalBytes: heap.total_heap_size,
    heapLimitBytes: heap.heap_size_limit,
    // V8's external memory covers ArrayBuffers but not the SharedArrayBuffers this worker
    // allocated; Node's allocator count (`arrayBuffers`) covers both.
    externalBytes: Math.max(heap.external_memory, process.memoryUsage().arrayBuffers),
  };
}

inbox.on('message', (message: HostToWorker) => {
  if (spunOut) {
    spunOut = false;
    spin.arrivedLate();
  }
  take(message);
});

function dispatch(message: HostToWorker): void {
  switch (message.t) {
    case 'call':
    case 'health':
    case 'export':
    case 'import':
    case 'test':
    case 'dispose':
      answer(message);
      break;
    case 'ok':
    case 'err': {
      const waiter = outgoing.get(message.id);
      if (!waiter) break;
      outgoing.delete(message.id);
      if (message.t === 'ok') waiter.resolve(message.value);
      else waiter.reject(fromRemoteError(message.error));
      break;
    }
    case 'flags':
      flags = compileAll(message.definitions);
      break;
    case 'ping':
      post({ t: 'ok', id: message.id, value: null });
      break;
    case 'memory':
      post({ t: 'ok', id: message.id, value: memoryUsage() });
      break;
    default: {
      const unknown: never = message;
      throw new Error(`unknown message ${JSON.stringify(unknown)}`);
    }
  }
}

// Memory outside the heap has no V8 limit; the host enforces one from these reports. A module
// busy in a synchronous loop sends none until it yields (the heap limit still holds then).
setInterval(() => post({ t: 'memory', usage: memoryUsage() }), boot.memoryReportIntervalMs).unref();

function loadFailed(stage: LoadStage, error: unknown): void {
  post({ t: 'loadFailed', stage, error: toRemoteError(error) });
}

async function start(): Promise<void> {
  let namespace: unknown;
  try {
    namespace = await import(boot.fileUrl);
  } catch (error) {
    return loadFailed('import', error);
  }
  post({ t: 'imported' });
  let definition;
  try {
    definition = readModuleDefinition(namespace);
  } catch (error) {
    return loadFailed('definition', error);
  }
  const ctx = buildModuleContext(
    {
      name: boot.name,
      version: boot.version,
      config: boot.config,
      dependencyNames: boot.dependencyNames,
      previousState: boot.previousState,
    },
    bridge,
  );
  try {
    driver = await InstanceDriver.create(definition, ctx);
  } catch (error) {
    return loadFailed('init', error);
  }
  post({ t: 'ready', description: driver.description });
}

void start();
