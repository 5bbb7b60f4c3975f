/** The module runtime's boundary: message checks, result measuring, text clipping, the external-memory cap. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { serialize } from 'node:v8';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { clipModuleText, MAX_MODULE_TEXT_CHARS, toRemoteError } from '../../src/modules/runtime/errors.js';
import { InMemoryModuleHost, loadModuleVersion, type LoadedModuleVersion, type ModuleExitInfo } from '../../src/modules/runtime/index.js';
import { MalformedWorkerMessage, parseReplyValue, parseWorkerMessage } from '../../src/modules/runtime/messages.js';
import { cloneSizeUpTo } from '../../src/modules/runtime/result-size.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/modules/', import.meta.url));
const SLOW = 30_000;

const description = {
  type: 'GENERIC',
  methods: ['a', 'b'],
  tests: [{ name: 't', required: true, timeoutMs: 100 }],
  lifecycle: { healthCheck: true, exportState: false, importState: false, dispose: true },
};

function problemOf(raw: unknown): string {
  try {
    parseWorkerMessage(raw);
  } catch (error) {
    expect(error).toBeInstanceOf(MalformedWorkerMessage);
    return (error as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(raw)}`);
}

describe('parseWorkerMessage', () => {
  it('accepts every kind worker-entry sends, as a fresh object with only the known fields', () => {
    const good = [
      { t: 'imported' },
      { t: 'ready', description },
      { t: 'ready', description: { ...description, type: null, tests: [] } },
      { t: 'loadFailed', stage: 'init', error: { name: 'Error', message: 'no', code: 'X', stack: 'at y' } },
      { t: 'ok', id: 3, value: { anything: [1, 2] } },
      { t: 'ok', id: 3, value: undefined },
      { t: 'err', id: 4, kind: 'failed', error: { name: 'TypeError', message: 'boom' } },
      { t: 'err', id: 4, kind: 'tooLarge', error: { name: 'RangeError', message: 'big' } },
      { t: 'log', level: 'warn', message: 'careful', data: { n: 1 } },
      { t: 'acquire', id: 1, name: 'db', config: { failureThreshold: 3 } },
      { t: 'complete', permitId: 'p1', outcome: 'failure', durationMs: 1.5, error: 'down' },
      { t: 'dep', id: 2, dependency: 'prices', method: 'quote', args: ['ZAR'] },
      { t: 'memory', usage: { heapUsedBytes: 1, heapTotalBytes: 2, heapLimitBytes: 3, externalBytes: 4 } },
    ];
    for (const message of good) {
      const parsed = parseWorkerMessage({ ...message, extra: 'ignored' });
      expect(parsed).toEqual(message);
      expect(parsed).not.toHaveProperty('extra');
    }
  });

  it('refuses anything else, saying what is wrong', () => {
    const cases: [unknown, RegExp][] = [
      [null, /the message must be an object, got null/],
      [undefined, /got undefined/],
      ['ready', /got string/],
      [[{ t: 'ok' }], /got an array/],
      [{}, /unknown message kind undefined/],
      [{ t: 'shout' }, /unknown message kind "shout"/],
      [{ t: 42 }, /unknown message kind number/],
      [{ t: 'ready', description: null }, /ready\.description must be an object, got null/],
      [{ t: 'ready', description: { ...description, methods: 'a' } }, /ready\.description\.methods must be an array/],
      [{ t: 'ready', description: { ...description, methods: ['a', 1] } }, /methods\[1\] must be a string/],
      [{ t: 'ready', description: { ...description, type: 'NUCLEAR' } }, /type must be one of GENERIC/],
      [{ t: 'ready', description: { ...description, tests: [{ name: 't', required: 'yes', timeoutMs: 1 }] } }, /tests\[0\]\.required must be a boolean/],
      [{ t: 'ready', description: { ...description, tests: [{ name: 't', required: true, timeoutMs: 0 }] } }, /timeoutMs must be positive/],
      [{ t: 'ready', description: { ...description, lifecycle: { healthCheck: true } } }, /lifecycle\.exportState must be a boolean/],
      [{ t: 'loadFailed', stage: 'later', error: { name: 'E', message: 'm' } }, /loadFailed\.stage must be one of import, definition, init/],
      [{ t: 'loadFailed', stage: 'init', error: 'boom' }, /loadFailed\.error must be an object/],
      [{ t: 'ok', value: 1 }, /ok\.id must be a non-negative integer, got undefined/],
      [{ t: 'ok', id: '3', value: 1 }, /ok\.id .* got string/],
      [{ t: 'ok', id: 1.5, value: 1 }, /ok\.id .* got 1\.5/],
      [{ t: 'err', id: 1, kind: 'failed', error: { name: 'E', message: 7 } }, /err\.error\.message must be a string, got number/],
      [{ t: 'err', id: 1, kind: 'weird', error: { name: 'E', message: 'm' } }, /err\.kind must be one of failed, clone, tooLarge/],
      [{ t: 'log', level: 'info', message: { not: 'a string' } }, /log\.message must be a string, got object/],
      [{ t: 'log', level: 'loud', message: 'm' }, /log\.level must be one of debug, info, warn, error/],
      [{ t: 'acquire', id: 1, name: 'db', config: 'fast' }, /acquire\.config must be an object/],
      [{ t: 'complete', permitId: 'p', outcome: 'meh', durationMs: 1 }, /complete\.outcome/],
      [{ t: 'complete', permitId: 'p', outcome: 'success', durationMs: Number.NaN }, /durationMs must be a finite number >= 0, got NaN/],
      [{ t: 'dep', id: 1, dependency: 'd', method: 'm', args: 'x' }, /dep\.args must be an array/],
      [{ t: 'memory', usage: { heapUsedBytes: 1, heapTotalBytes: 2, heapLimitBytes: 3 } }, /memory\.usage\.externalBytes/],
    ];
    for (const [raw, reason] of cases) expect(problemOf(raw), JSON.stringify(raw)).toMatch(reason);
  });

  it('quotes no more than a few characters of what it refuses', () => {
    expect(problemOf({ t: 'x'.repeat(1_000_000) }).length).toBeLessThan(300);
  });

  it('clips the texts module code wrote', () => {
    const long = 'm'.repeat(100_000);
    const err = parseWorkerMessage({ t: 'err', id: 1, kind: 'failed', error: { name: long, message: long, stack: long, code: long } });
    expect(err.t === 'err' && err.error.message.length).toBe(MAX_MODULE_TEXT_CHARS);
    expect(err.t === 'err' && err.error.stack!.length).toBe(MAX_MODULE_TEXT_CHARS);
    expect(err.t === 'err' && err.error.name.length).toBeLessThanOrEqual(200);
    const log = parseWorkerMessage({ t: 'log', level: 'info', message: long });
    expect(log.t === 'log' && log.message).toMatch(/^m+… \(truncated: 100000 characters in all\)$/);
  });
});

describe('parseReplyValue', () => {
  it('checks what a test, a health check and a memory report answer; leaves call results alone', () => {
    expect(parseReplyValue('test', { status: 'PASSED', durationMs: 2 })).toEqual({ status: 'PASSED', durationMs: 2 });
    expect(() => parseReplyValue('test', { status: 'GREAT', durationMs: 2 })).toThrow(MalformedWorkerMessage);
    expect(() => parseReplyValue('test', null)).toThrow(/the test result must be an object/);
    expect((parseReplyValue('test', { status: 'FAILED', durationMs: 2, error: 'e'.repeat(10_000) }) as { error: string }).error).toHaveLength(MAX_MODULE_TEXT_CHARS);
    expect(parseReplyValue('health', { ok: false, detail: { why: 1 } })).toEqual({ ok: false, detail: { why: 1 } });
    expect(() => parseReplyValue('health', { ok: 'yes' })).toThrow(/the health result\.ok must be a boolean/);
    expect(() => parseReplyValue('memory', { heapUsedBytes: -1 })).toThrow(MalformedWorkerMessage);
    const value = { anything: null };
    expect(parseReplyValue('call', value)).toBe(value);
  });
});

describe('clipModuleText', () => {
  it('keeps short texts, cuts long ones to the limit with their length, and is idempotent', () => {
    expect(clipModuleText('short')).toBe('short');
    const clipped = clipModuleText('x'.repeat(10_000));
    expect(clipped).toHaveLength(MAX_MODULE_TEXT_CHARS);
    expect(clipped.endsWith('… (truncated: 10000 characters in all)')).toBe(true);
    expect(clipModuleText(clipped)).toBe(clipped);
    expect(toRemoteError(new Error('y'.repeat(1_000_000))).message).toHaveLength(MAX_MODULE_TEXT_CHARS);
    expect(toRemoteError('z'.repeat(1_000_000)).message).toHaveLength(MAX_MODULE_TEXT_CHARS);
  });
});

describe('cloneSizeUpTo', () => {
  it('is close to the structured-clone size of ordinary results', () => {
    const shared = { id: 1 };
    const values: unknown[] = [
      0, 1.5, 'hello', 'ü'.repeat(500), '€'.repeat(500), 'a'.repeat(10_000), null, true, undefined,
      { prediction: 'up', confidence: 0.93, features: [1, 2, 3, 4] },
      Array.from({ length: 1000 }, (_, i) => ({ i, name: `item ${i}`, tags: ['a', 'b'] })),
      new Map([['a', 1], ['b', 2]]), new Set(['x', 'y']), new Date(0), /ab+c/g,
      { bytes: new Uint8Array(10_000), floats: new Float64Array(100) },
      [shared, shared, shared],
    ];
    for (const value of values) {
      const exact = serialize(value).byteLength;
      const measured = cloneSizeUpTo(value, 10 * 1024 * 1024);
      expect(Math.abs(measured - exact), `${measured} vs ${exact} for ${String(value).slice(0, 30)}`).toBeLessThanOrEqual(Math.max(16, exact * 0.35));
    }
  });

  it('stops as soon as the limit is passed', () => {
    expect(cloneSizeUpTo('x'.repeat(2000), 1000)).toBeGreaterThan(1000);
    const huge = new Array(50_000_000);
    expect(cloneSizeUpTo(huge, 1024)).toBeGreaterThan(1024);
    const wide: Record<string, number> = {};
    for (let i = 0; i < 100_000; i++) wide[`k${i}`] = i;
    expect(cloneSizeUpTo(wide, 1024)).toBeGreaterThan(1024);
    expect(cloneSizeUpTo(new Map(Object.entries(wide)), 1024)).toBeGreaterThan(1024);
    expect(cloneSizeUpTo({ nested: [{ deep: new Uint8Array(2048) }] }, 1024)).toBeGreaterThan(1024);
  });

  it('counts a typed array by the buffer the clone copies, a shared buffer not at all, and survives cycles and deep nesting', () => {
    const big = new ArrayBuffer(1_000_000);
    expect(cloneSizeUpTo(new Uint8Array(big, 0, 10), 10_000_000)).toBeGreaterThan(1_000_000);
    expect(cloneSizeUpTo({ a: new Uint8Array(big), b: new Uint8Array(big) }, 10_000_000)).toBeLessThan(1_100_000);
    expect(cloneSizeUpTo(new Uint8Array(new SharedArrayBuffer(1_000_000)), 10_000_000)).toBeLessThan(100);
    const cycle: Record<string, unknown> = { name: 'loop' };
    cycle.self = cycle;
    expect(cloneSizeUpTo(cycle, 1000)).toBeLessThan(100);
    let deep: unknown = 'leaf';
    for (let i = 0; i < 100_000; i++) deep = { next: deep };
    expect(cloneSizeUpTo(deep, 10 * 1024 * 1024)).toBeGreaterThan(100_000);
  });
});

describe('the memory cap of a WORKER version', () => {
  const loaded: LoadedModuleVersion[] = [];
  afterAll(async () => {
    await Promise.all(loaded.map((v) => v.terminate()));
  });

  async function hoard(): Promise<LoadedModuleVersion> {
    const clock = new ManualClock();
    const version = await loadModuleVersion({
      name: 'hoard',
      version: '1',
      absolutePath: path.join(FIXTURES, 'bad/buffer_hoard.js'),
      dependencyNames: [],
      host: new InMemoryModuleHost(clock),
      clock,
      // Reports never come on their own here: each memoryUsage() answer is checked like one.
      limits: { maxOldGenerationSizeMb: 32, memoryReportIntervalMs: 600_000 },
    });
    loaded.push(version);
    return version;
  }

  for (const [method, what] of [['hold', 'Uint8Arrays'], ['holdShared', 'SharedArrayBuffers']] as const) {
    it(`covers memory outside its heap (${what}): past the cap it ends OUT_OF_MEMORY, below it it keeps serving`, async () => {
      const version = await hoard();
      const exited = new Promise<ModuleExitInfo>((resolve) => version.onExit(resolve));
      expect(await version.call(method, 16)).toBe(16);
      const below = await version.memoryUsage!();
      expect(below.externalBytes).toBeGreaterThan(16 * 1024 * 1024);
      expect(version.exit).toBeNull();
      expect(await version.call(method, 24)).toBe(40);
      const above = await version.memoryUsage!();
      expect(above.externalBytes).toBeGreaterThan(40 * 1024 * 1024);
      const exit = await exited;
      expect(exit).toMatchObject({ reason: 'OUT_OF_MEMORY', expected: false });
      expect(exit.message).toMatch(/^ran out of memory \(it held 4\d\.\d MB of ArrayBuffers and other memory outside its heap, over the limit of 32 MB\); its worker was terminated$/);
      await expect(version.call('held')).rejects.toMatchObject({ code: 'MODULE_CRASHED' });
    }, SLOW);
  }
});
