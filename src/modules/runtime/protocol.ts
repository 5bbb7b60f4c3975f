/**
 * Messages between the host and a module worker. Plain objects with numeric ids and no
 * nesting on the hot path (`call` / `ok`), so a round trip costs one structured clone each
 * way. Each side numbers its own requests; replies carry the requester's id.
 */
import type { MessagePort } from 'node:worker_threads';
import type { FlagDefinition } from '../../flags/engine.js';
import type { BreakerConfig } from '../../breakers/config.js';
import type { InvocationContext, ModuleLogLevel, ModuleType } from '../contract.js';
import type { BreakerOutcome } from './host.js';
import type { RemoteError } from './errors.js';
import type { ModuleMemoryUsage, ModuleTestInfo } from './version.js';

/** Operations the host asks of an instance (both isolation modes run them through `InstanceDriver`). */
export type InstanceRequest =
  | { t: 'call'; id: number; method: string; arg: unknown; context?: InvocationContext }
  | { t: 'health'; id: number }
  | { t: 'export'; id: number }
  | { t: 'import'; id: number; state: unknown; fromVersion: string }
  | { t: 'test'; id: number; name: string }
  | { t: 'dispose'; id: number };

export type InstanceOperation = InstanceRequest['t'];

export type HostToWorker =
  | InstanceRequest
  | { t: 'ping'; id: number }
  | { t: 'memory'; id: number }
  | { t: 'flags'; definitions: FlagDefinition[] }
  /** Replies to the worker's own requests (`acquire`, `dep`). */
  | { t: 'ok'; id: number; value: unknown }
  | { t: 'err'; id: number; error: RemoteError };

export interface InstanceDescription {
  type: ModuleType | null;
  methods: string[];
  tests: ModuleTestInfo[];
  lifecycle: { healthCheck: boolean; exportState: boolean; importState: boolean; dispose: boolean };
}

export type LoadStage = (typeof LOAD_STAGES)[number];

/** What the reply error means to the host: the module threw, the value could not be cloned, or it was over `maxResultBytes`. */
export const REPLY_ERROR_KINDS = ['failed', 'clone', 'tooLarge'] as const;
export type ReplyErrorKind = (typeof REPLY_ERROR_KINDS)[number];

export const LOAD_STAGES = ['import', 'definition', 'init'] as const;

export type WorkerToHost =
  | { t: 'imported' }
  | { t: 'ready'; description: InstanceDescription }
  | { t: 'loadFailed'; stage: LoadStage; error: RemoteError }
  | { t: 'ok'; id: number; value: unknown }
  | { t: 'err'; id: number; kind: ReplyErrorKind; error: RemoteError }
  | { t: 'log'; level: ModuleLogLevel; message: string; data?: unknown }
  | { t: 'acquire'; id: number; name: string; config?: Partial<BreakerConfig> }
  | { t: 'complete'; permitId: string; outcome: BreakerOutcome; durationMs: number; error?: string }
  | { t: 'dep'; id: number; dependency: string; method: string; args: unknown[] }
  /** Sent every `memoryReportIntervalMs`: the host enforces the cap on memory outside the heap. */
  | { t: 'memory'; usage: ModuleMemoryUsage };

/**
 * Every kind a worker may post. Anything else (and any field of the wrong type) is checked by
 * `parseWorkerMessage` (messages.ts) and ends the version.
 */
export type WorkerMessageKind = WorkerToHost['t'];

/** Handed to the worker through `workerData`. */
export interface WorkerBootData {
  name: string;
  version: string;
  fileUrl: string;
  config: Record<string, unknown>;
  dependencyNames: string[];
  previousState: { state: unknown; fromVersion: string } | null;
  flags: FlagDefinition[];
  /** A `call` result whose structured clone would be larger is not sent (RESULT_TOO_LARGE). */
  maxResultBytes: number;
  memoryReportIntervalMs: number;
  /** Everything the worker posts goes here (the host takes replies from it while it spins, see spin-wait.ts). */
  replies: MessagePort;
  /** SharedArrayBuffer counters: SIGNAL_TO_WORKER and SIGNAL_TO_HOST (spin-wait.ts). */
  signals: Int32Array;
  /** How long the worker waits awake for the next request after an answer; 0: it does not. */
  spinMicros: number;
}
