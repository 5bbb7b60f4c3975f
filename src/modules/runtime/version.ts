/** The shape of one loaded module version, whatever its isolation, and the options to load one. */
import type { Clock } from '../../clock.js';
import type { EvaluationContext } from '../../flags/engine.js';
import type { ModuleType } from '../contract.js';
import type { ModuleHost } from './host.js';
import { DEFAULT_SPIN_MICROS } from './spin-wait.js';

export const MODULE_ISOLATIONS = ['WORKER', 'INLINE'] as const;
export type ModuleIsolation = (typeof MODULE_ISOLATIONS)[number];

export interface ModuleLimits {
  /** Worker start + import of the file. */
  loadTimeoutMs: number;
  /** `create(ctx)`. */
  initTimeoutMs: number;
  /** Default timeout of `call`, `healthCheck`, `exportState` and `importState`. */
  callTimeoutMs: number;
  /** `instance.dispose()` before the worker is terminated anyway. */
  disposeTimeoutMs: number;
  /**
   * WORKER: after a request timed out, how long the worker has to answer a ping before it is
   * considered stuck (a synchronous loop) and terminated with reason UNRESPONSIVE.
   */
  unresponsiveTimeoutMs: number;
  /**
   * WORKER memory cap. V8 enforces it on the JS heap (`resourceLimits`); the host enforces the
   * same number of MB on the memory the worker holds outside its heap (ArrayBuffers, Buffers,
   * typed arrays: V8's external memory), from the reports the worker sends every
   * `memoryReportIntervalMs`. Past either, the version ends with OUT_OF_MEMORY.
   */
  maxOldGenerationSizeMb: number;
  maxYoungGenerationSizeMb?: number;
  stackSizeMb?: number;
  /** WORKER: how often the worker reports its memory (so how late the external-memory cap may act). */
  memoryReportIntervalMs: number;
  /**
   * The largest `call` result, measured as its structured clone (see result-size.ts). A larger
   * one is dropped where it was produced and the call fails with RESULT_TOO_LARGE.
   */
  maxResultBytes: number;
  /**
   * WORKER: how long (microseconds) each side of a call waits awake for the other's message
   * before it sleeps in its event loop (spin-wait.ts). 0 turns it off.
   */
  workerSpinMicros: number;
}

export const DEFAULT_MODULE_LIMITS: Readonly<ModuleLimits> = Object.freeze({
  loadTimeoutMs: 10_000,
  initTimeoutMs: 5_000,
  callTimeoutMs: 5_000,
  disposeTimeoutMs: 5_000,
  unresponsiveTimeoutMs: 2_000,
  maxOldGenerationSizeMb: 128,
  memoryReportIntervalMs: 500,
  maxResultBytes: 1024 * 1024,
  workerSpinMicros: DEFAULT_SPIN_MICROS,
});

export interface LoadModuleVersionOptions {
  name: string;
  version: string;
  /** A path already checked by `resolveModulePath`. */
  absolutePath: string;
  /** Default WORKER. */
  isolation?: ModuleIsolation;
  config?: Record<string, unknown>;
  /** The declared dependencies: `ctx.dependencies` has exactly these names. */
  dependencyNames: string[];
  /** Becomes `ctx.previousState` / `ctx.previousVersion`; `importState` is NOT called for it. */
  previousState?: { state: unknown; fromVersion: string } | null;
  limits?: Partial<ModuleLimits>;
  host: ModuleHost;
  /** Host-side timers (timeouts, drain deadline). Default: the system clock. */
  clock?: Clock;
  /** Aborting fails a load still in progress with MODULE_LOAD_ABORTED (e.g. on shutdown). */
  signal?: AbortSignal;
}

export interface ModuleTestInfo {
  name: string;
  required: boolean;
  timeoutMs: number;
}

export interface ModuleTestResult {
  status: 'PASSED' | 'FAILED' | 'TIMED_OUT';
  durationMs: number;
  error?: string;
}

export interface ModuleHealth {
  ok: boolean;
  detail?: unknown;
}

export const MODULE_EXIT_REASONS = ['DISPOSED', 'TERMINATED', 'UNRESPONSIVE', 'CRASHED', 'OUT_OF_MEMORY'] as const;
export type ModuleExitReason = (typeof MODULE_EXIT_REASONS)[number];

export interface ModuleExitInfo {
  reason: ModuleExitReason;
  /** True for DISPOSED and TERMINATED (the host asked for it); false means the module failed. */
  expected: boolean;
  /** The worker's exit code (null for INLINE). */
  exitCode: number | null;
  message: string;
}

export interface ModuleMemoryUsage {
  heapUsedBytes: number;
  heapTotalBytes: number;
  heapLimitBytes: number;
  /** Memory outside the JS heap that V8 accounts to the worker: ArrayBuffers, Buffers, typed arrays. */
  externalBytes: number;
}

export interface CallOptions {
  timeoutMs?: number;
  /** Handed to the method as its second argument, `{ context }` (see InvocationContext). */
  context?: EvaluationContext | null;
}

export interface LoadedModuleVersion {
  readonly name: string;
  readonly version: string;
  readonly isolation: ModuleIsolation;
  readonly type: ModuleType | null;
  /** Callable methods (lifecycle names, `constructor` and `_private` names excluded), sorted. */
  readonly methods: readonly string[];
  readonly tests: readonly ModuleTestInfo[];
  /** Which optional lifecycle methods the instance has. */
  readonly lifecycle: Readonly<{ healthCheck: boolean; exportState: boolean; importState: boolean; dispose: boolean }>;
  /** Calls started with `call` that have not settled yet. */
  readonly inFlight: number;
  /** Null while running; how it ended otherwise. */
  readonly exit: ModuleExitInfo | null;
  /**
   * Calls `method(arg)`. Rejects with a `ModuleCallError`: UNKNOWN_METHOD, RESERVED_METHOD,
   * CALL_TIMEOUT, CALL_FAILED (the module threw; `remote` has its error), NOT_CLONEABLE, RESULT_TOO_LARGE,
   * MODULE_TERMINATED, MODULE_CRASHED.
   */
  call(method: string, arg?: unknown, opts?: CallOptions): Promise<unknown>;
  /** `{ ok: true }` when the instance has no healthCheck; a throw or a timeout is `{ ok: false }`. */
  healthCheck(opts?: CallOptions): Promise<ModuleHealth>;
  /** The instance's `exportState()` (a structured clone of it), undefined when it has none. */
  exportState(opts?: CallOptions): Promise<unknown>;
  /** Calls `importState(state, fromVersion)`; a no-op when the instance has none. */
  importState(state: unknown, fromVersion: string, opts?: CallOptions): Promise<void>;
  /** Runs one of the module's own tests; unknown names reject with UNKNOWN_TEST. */
  runTest(name: string, timeoutMs?: number): Promise<ModuleTestResult>;
  /**
   * Resolves once no call is in flight (true) or after `deadlineMs` milliseconds from now
   * (false, calls still running). New calls are not refused: stop routing them first.
   */
  drain(deadlineMs: number): Promise<boolean>;
  /** Calls `instance.dispose()` (bounded by `disposeTimeoutMs`), then stops the worker. Idempotent. */
  dispose(): Promise<void>;
  /** Stops at once: pending calls reject with MODULE_TERMINATED. Idempotent. */
  terminate(): Promise<void>;
  /** Called once when the version stops, for any reason (see `ModuleExitInfo.expected`). */
  onExit(listener: (exit: ModuleExitInfo) => void): () => void;
  /** WORKER only: the worker's heap and external memory. */
  memoryUsage?(): Promise<ModuleMemoryUsage>;
}
