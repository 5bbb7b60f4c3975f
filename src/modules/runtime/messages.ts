/**
 * Every message a worker posts is checked here, in one place, before the host acts on it. The
 * worker runs module code, and module code can reach `parentPort` and post anything (`null`,
 * `{ t: 'ready', description: null }`, a reply to a call that was never made). A message
 * that is not one of the `WorkerToHost` kinds with fields of the right types throws a
 * `MalformedWorkerMessage`, which the host turns into that version's crash (CRASHED, then
 * the module's supervisor): never into an exception on the server's thread.
 *
 * The parsed message is a fresh object holding only the known fields, and the texts module
 * code wrote (error messages and stacks, log lines, a test's error) are clipped here (see
 * `clipModuleText`), so one boundary bounds both their shape and their size.
 */
import { MODULE_LOG_LEVELS, MODULE_TYPES, type ModuleLogLevel, type ModuleType } from '../contract.js';
import type { BreakerConfig } from '../../breakers/config.js';
import { clipModuleText, clipRemoteError, type RemoteError } from './errors.js';
import {
  LOAD_STAGES,
  REPLY_ERROR_KINDS,
  type InstanceDescription,
  type LoadStage,
  type ReplyErrorKind,
  type WorkerToHost,
} from './protocol.js';
import type { ModuleHealth, ModuleMemoryUsage, ModuleTestInfo, ModuleTestResult } from './version.js';

export class MalformedWorkerMessage extends Error {
  override name = 'MalformedWorkerMessage';
}

type Fields = Record<string, unknown>;

const TEST_STATUSES = ['PASSED', 'FAILED', 'TIMED_OUT'] as const;
const OUTCOMES = ['success', 'failure'] as const;

function malformed(what: string): never {
  throw new MalformedWorkerMessage(what);
}

function isFields(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function fields(value: unknown, what: string): Fields {
  if (!isFields(value)) malformed(`${what} must be an object, got ${kindOf(value)}`);
  return value;
}

/** A short, bounded description of a value, for the reason logged (never the value itself). */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

function text(o: Fields, key: string, what: string): string {
  const value = o[key];
  if (typeof value !== 'string') malformed(`${what}.${key} must be a string, got ${kindOf(value)}`);
  return value;
}

function optionalText(o: Fields, key: string, what: string): string | undefined {
  return o[key] === undefined ? undefined : text(o, key, what);
}

function flag(o: Fields, key: string, what: string): boolean {
  const value = o[key];
  if (typeof value !== 'boolean') malformed(`${what}.${key} must be a boolean, got ${kindOf(value)}`);
  return value;
}

function nonNegative(o: Fields, key: string, what: string): number {
  const value = o[key];
  if (typeof value !== 'number' || !(value >= 0) || value === Number.POSITIVE_INFINITY) {
    malformed(`${what}.${key} must be a finite number >= 0, got ${typeof value === 'number' ? String(value) : kindOf(value)}`);
  }
  return value;
}

function requestId(o: Fields, what: string): number {
  const value = o.id;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    malformed(`${what}.id must be a non-negative integer, got ${typeof value === 'number' ? String(value) : kindOf(value)}`);
  }
  return value;
}

function oneOf<T extends string>(allowed: readonly T[], o: Fields, key: string, what: string): T {
  const value = o[key];
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    malformed(`${what}.${key} must be one of ${allowed.join(', ')}, got ${typeof value === 'string' ? JSON.stringify(clipModuleText(value, 40)) : kindOf(value)}`);
  }
  return value as T;
}

function remoteError(value: unknown, what: string): RemoteError {
  const o = fields(value, what);
  const remote: RemoteError = { name: text(o, 'name', what), message: text(o, 'message', what) };
  const code = optionalText(o, 'code', what);
  const stack = optionalText(o, 'stack', what);
  if (code !== undefined) remote.code = code;
  if (stack !== undefined) remote.stack = stack;
  return clipRemoteError(remote);
}

function stringList(value: unknown, what: string): string[] {
  if (!Array.isArray(value)) malformed(`${what} must be an array, got ${kindOf(value)}`);
  return value.map((item, i) => {
    if (typeof item !== 'string') malformed(`${what}[${i}] must be a string, got ${kindOf(item)}`);
    return item;
  });
}

function description(value: unknown): InstanceDescription {
  const what = 'ready.description';
  const o = fields(value, what);
  const type = o.type === null ? null : oneOf<ModuleType>(MODULE_TYPES, o, 'type', what);
  const rawTests = o.tests;
  if (!Array.isArray(rawTests)) malformed(`${what}.tests must be an array, got ${kindOf(rawTests)}`);
  const tests: ModuleTestInfo[] = rawTests.map((raw, i) => {
    const t = fields(raw, `${what}.tests[${i}]`);
    const timeoutMs = nonNegative(t, 'timeoutMs', `${what}.tests[${i}]`);
    if (timeoutMs === 0) malformed(`${what}.tests[${i}].timeoutMs must be positive`);
    return { name: text(t, 'name', `${what}.tests[${i}]`), required: flag(t, 'required', `${what}.tests[${i}]`), timeoutMs };
  });
  const l = fields(o.lifecycle, `${what}.lifecycle`);
  const lw = `${what}.lifecycle`;
  return {
    type,
    methods: stringList(o.methods, `${what}.methods`),
    tests,
    lifecycle: {
      healthCheck: flag(l, 'healthCheck', lw),
      exportState: flag(l, 'exportState', lw),
      importState: flag(l, 'importState', lw),
      dispose: flag(l, 'dispose', lw),
    },
  };
}

function memoryUsage(value: unknown, what: string): ModuleMemoryUsage {
  const o = fields(value, what);
  return {
    heapUsedBytes: nonNegative(o, 'heapUsedBytes', what),
    heapTotalBytes: nonNegative(o, 'heapTotalBytes', what),
    heapLimitBytes: nonNegative(o, 'heapLimitBytes', what),
    externalBytes: nonNegative(o, 'externalBytes', what),
  };
}

/** Checks one message from a worker; throws `MalformedWorkerMessage` saying what is wrong. */
export function parseWorkerMessage(raw: unknown): WorkerToHost {
  if (!isFields(raw)) malformed(`the message must be an object, got ${kindOf(raw)}`);
  const t = raw.t;
  switch (t) {
    case 'imported':
      return { t };
    case 'ready':
      return { t, description: description(raw.description) };
    case 'loadFailed':
      return { t, stage: oneOf<LoadStage>(LOAD_STAGES, raw, 'stage', t), error: remoteError(raw.error, `${t}.error`) };
    case 'ok':
      return { t, id: requestId(raw, t), value: raw.value };
    case 'err':
      return { t, id: requestId(raw, t), kind: oneOf<ReplyErrorKind>(REPLY_ERROR_KINDS, raw, 'kind', t), error: remoteError(raw.error, `${t}.error`) };
    case 'log': {
      const level = oneOf<ModuleLogLevel>(MODULE_LOG_LEVELS, raw, 'level', t);
      const message = clipModuleText(text(raw, 'message', t));
      return raw.data === undefined ? { t, level, message } : { t, level, message, data: raw.data };
    }
    case 'acquire': {
      const id = requestId(raw, t);
      const name = text(raw, 'name', t);
      if (raw.config === undefined) return { t, id, name };
      return { t, id, name, config: fields(raw.config, `${t}.config`) as Partial<BreakerConfig> };
    }
    case 'complete': {
      const permitId = text(raw, 'permitId', t);
      const outcome = oneOf(OUTCOMES, raw, 'outcome', t);
      const durationMs = nonNegative(raw, 'durationMs', t);
      const error = optionalText(raw, 'error', t);
      return error === undefined ? { t, permitId, outcome, durationMs } : { t, permitId, outcome, durationMs, error: clipModuleText(error) };
    }
    case 'dep': {
      const args = raw.args;
      if (!Array.isArray(args)) malformed(`dep.args must be an array, got ${kindOf(args)}`);
      return { t, id: requestId(raw, t), dependency: text(raw, 'dependency', t), method: text(raw, 'method', t), args };
    }
    case 'memory':
      return { t, usage: memoryUsage(raw.usage, 'memory.usage') };
    default:
      return malformed(
        `unknown message kind ${typeof t === 'string' ? JSON.stringify(clipModuleText(t, 40)) : kindOf(t)} (t must be one of imported, ready, loadFailed, ok, err, log, acquire, complete, dep, memory)`,
      );
  }
}

/**
 * Checks the value of an `ok` reply against what the request (`op`, as in `PendingEntry.op`)
 * answers; calls and state transfers carry the module's own values, which are not checked.
 */
export function parseReplyValue(op: string, value: unknown): unknown {
  switch (op) {
    case 'test': {
      const what = 'the test result';
      const o = fields(value, what);
      const result: ModuleTestResult = { status: oneOf(TEST_STATUSES, o, 'status', what), durationMs: nonNegative(o, 'durationMs', what) };
      const error = optionalText(o, 'error', what);
      if (error !== undefined) result.error = clipModuleText(error);
      return result;
    }
    case 'health': {
      const o = fields(value, 'the health result');
      const health: ModuleHealth = { ok: flag(o, 'ok', 'the health result') };
      if (o.detail !== undefined) health.detail = o.detail;
      return health;
    }
    case 'memory':
      return memoryUsage(value, 'the memory usage');
    default:
      return value;
  }
}
