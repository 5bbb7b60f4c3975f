/**
 * The module runtime's boundary, end to end with real worker modules: a malformed message is
 * that version's crash (never the server's), memory outside the heap counts against the cap,
 * results over HELIOS_MODULE_MAX_RESULT_BYTES are refused, module error texts are clipped.
 */
import { describe, expect, it } from 'vitest';
import {
  InvokeModuleDocument,
  LoadModuleDocument,
  ModuleDocument,
  ModuleStateChangedDocument,
  RegisterModuleDocument,
  TestModuleDocument,
  TestProgressDocument,
} from '../gql/graphql.js';
import { ManualClock } from '../../src/clock.js';
import { serverPool } from '../support/pool.js';
import { subscribe, untilListening, type TestServer } from '../support/server.js';

const pool = serverPool();
const MIB = 1024 * 1024;
// Module texts are clipped to 4 KiB (MAX_MODULE_TEXT_CHARS); room for the runtime's own prefix.
const CLIPPED = 4096 + 200;

async function start(options: { env?: Record<string, string>; clock?: ManualClock } = {}) {
  return pool.start({
    ...(options.clock ? { clock: options.clock } : {}),
    env: { HELIOS_MODULES_DIR: pool.modulesDir(), HELIOS_MODULE_MAX_HEAP_MB: '32', ...options.env },
  });
}

async function register(h: TestServer, name: string, modulePath: string, extra: { isolation?: 'WORKER' | 'INLINE'; config?: Record<string, unknown> } = {}) {
  const r = await h.query(RegisterModuleDocument, { name, modulePath, version: '1', ...extra });
  expect(r.registerModule.errors).toEqual([]);
}

async function loadActive(h: TestServer, name: string) {
  const r = await h.query(LoadModuleDocument, { name });
  expect(r.loadModule.errors).toEqual([]);
  expect(r.loadModule.module!.state).toBe('ACTIVE');
}

async function healthy(h: TestServer) {
  expect((await fetch(h.url.replace('/graphql', '/health'))).status).toBe(200);
}

describe('a malformed message from a worker', () => {
  it('is that version\'s crash: FAILED, restarted by the supervisor, while the server keeps answering', async () => {
    const clock = new ManualClock(Date.UTC(2026, 11, 1));
    const h = await start({ clock });
    await register(h, 'counter', 'counter.js');
    await loadActive(h, 'counter');
    const kinds = ['nothing', 'unknownKind', 'wrongTypes', 'readyWithoutDescription', 'forgedReply'] as const;
    for (const kind of kinds) {
      await register(h, kind, 'bad/posts_malformed.js');
      await loadActive(h, kind);
    }
    const states = subscribe(h.wsClient(), ModuleStateChangedDocument, {});
    await untilListening(h, 'moduleStateChanged');
    const next = async () => (await states.next(10_000)).moduleStateChanged;
    for (const kind of kinds) {
      const call = await h.query(InvokeModuleDocument, { name: kind, method: 'post', args: kind });
      expect(call.invokeModule.errors[0], kind).toMatchObject({ code: 'MODULE_UNAVAILABLE', message: expect.stringContaining('malformed message') });
      expect(await next(), kind).toMatchObject({ name: kind, from: 'ACTIVE', to: 'FAILED', action: 'crash', error: expect.stringMatching(/^CRASHED: .*malformed message/) });
      expect((await h.query(ModuleDocument, { name: kind })).module, kind).toMatchObject({ state: 'FAILED', desiredState: 'ACTIVE' });
      await healthy(h);
      expect((await h.query(InvokeModuleDocument, { name: 'counter', method: 'increment', args: 1 })).invokeModule.errors).toEqual([]);

      // The supervisor's first delay is 1 s.
      clock.advance(1000);
      expect(await next(), kind).toMatchObject({ name: kind, from: 'FAILED', to: 'LOADING', action: 'restart' });
      expect(await next(), kind).toMatchObject({ name: kind, to: 'ACTIVE', action: 'restart' });
      expect((await h.query(InvokeModuleDocument, { name: kind, method: 'ok' })).invokeModule.result).toBe('ok');
    }
  });

  it('while loading fails the load (FAILED with the reason); the server keeps answering', async () => {
    const h = await start();
    await register(h, 'liar', 'bad/malformed_ready.js');
    const load = await h.query(LoadModuleDocument, { name: 'liar' });
    expect(load.loadModule.errors[0]).toMatchObject({ code: 'MODULE_LOAD_FAILED' });
    expect(load.loadModule.module).toMatchObject({ state: 'FAILED' });
    expect(load.loadModule.module!.lastError).toMatch(/MODULE_WORKER_CRASHED: .*malformed message \(ready\.description must be an object, got null\)/);
    await healthy(h);
  });
});

describe('memory outside the heap', () => {
  it('counts against the cap: a module holding Uint8Arrays past it ends OUT_OF_MEMORY and is restarted', async () => {
    const clock = new ManualClock(Date.UTC(2026, 11, 1));
    const h = await start({ clock });
    await register(h, 'hoard', 'bad/buffer_hoard.js');
    await loadActive(h, 'hoard');
    const states = subscribe(h.wsClient(), ModuleStateChangedDocument, { name: 'hoard' });
    await untilListening(h, 'moduleStateChanged');
    const next = async () => (await states.next(10_000)).moduleStateChanged;

    // 8 MB is well inside the 32 MB cap, 200 MB is not (the heap itself stays small).
    expect((await h.query(InvokeModuleDocument, { name: 'hoard', method: 'hold', args: 8 })).invokeModule.result).toBe(8);
    expect((await h.query(InvokeModuleDocument, { name: 'hoard', method: 'hold', args: 200 })).invokeModule.result).toBe(208);
    expect(await next()).toMatchObject({
      from: 'ACTIVE', to: 'FAILED', action: 'crash',
      error: expect.stringMatching(/^OUT_OF_MEMORY: ran out of memory \(it held \d+\.\d MB of ArrayBuffers .*over the limit of 32 MB\)/),
    });
    await healthy(h);
    clock.advance(1000);
    expect(await next()).toMatchObject({ to: 'LOADING', action: 'restart' });
    expect(await next()).toMatchObject({ to: 'ACTIVE', action: 'restart' });
    // A fresh worker: the hoard is gone.
    expect((await h.query(InvokeModuleDocument, { name: 'hoard', method: 'held' })).invokeModule.result).toBe(0);
  });
});

describe('module results', () => {
  for (const isolation of ['WORKER', 'INLINE'] as const) {
    it(`over 1 MiB (the default) are refused with RESULT_TOO_LARGE, ${isolation}`, async () => {
      const h = await start();
      await register(h, 'big', 'bad/oversized.js', { isolation });
      await loadActive(h, 'big');
      const invoke = (method: string, args: number) => h.query(InvokeModuleDocument, { name: 'big', method, args });

      const fits = await invoke('text', 512 * 1024);
      expect(fits.invokeModule.errors).toEqual([]);
      expect(fits.invokeModule.result).toHaveLength(512 * 1024);
      for (const [method, size] of [['text', 2 * MIB], ['text', 50 * MIB], ['bytes', 2 * MIB], ['numbers', 200_000]] as const) {
        const refused = await invoke(method, size);
        expect(refused.invokeModule.errors[0], `${method}(${size})`).toEqual({
          code: 'RESULT_TOO_LARGE',
          message: `big@1: the result of "${method}" is larger than 1048576 bytes, the limit for module results; it was dropped`,
          field: null,
        });
        expect(refused.invokeModule.result).toBeNull();
      }
      // The module is fine and keeps serving.
      expect((await h.query(ModuleDocument, { name: 'big' })).module!.state).toBe('ACTIVE');
      expect((await invoke('text', 3)).invokeModule.result).toBe('xxx');
      await healthy(h);
    });
  }

  it('follow HELIOS_MODULE_MAX_RESULT_BYTES', async () => {
    const h = await start({ env: { HELIOS_MODULE_MAX_RESULT_BYTES: '4096' } });
    await register(h, 'big', 'bad/oversized.js');
    await loadActive(h, 'big');
    expect((await h.query(InvokeModuleDocument, { name: 'big', method: 'text', args: 3000 })).invokeModule.errors).toEqual([]);
    const refused = await h.query(InvokeModuleDocument, { name: 'big', method: 'text', args: 5000 });
    expect(refused.invokeModule.errors[0]).toMatchObject({ code: 'RESULT_TOO_LARGE', message: expect.stringContaining('larger than 4096 bytes') });
  });
});

describe('error messages from modules', () => {
  for (const isolation of ['WORKER', 'INLINE'] as const) {
    it(`are truncated before they reach clients or storage, ${isolation}`, async () => {
      const h = await start();
      await register(h, 'loud', 'bad/oversized.js', { isolation });
      await loadActive(h, 'loud');

      const failed = await h.query(InvokeModuleDocument, { name: 'loud', method: 'fail', args: 10 * MIB });
      const error = failed.invokeModule.errors[0]!;
      expect(error.code).toBe('CALL_FAILED');
      expect(error.message.length).toBeLessThan(CLIPPED);
      expect(error.message).toMatch(/^failed: e+… \(truncated: 10485768 characters in all\)$/);

      // A create() failure becomes the stored lastError.
      await register(h, 'broken', 'bad/oversized.js', { isolation, config: { failCreate: 10 * MIB } });
      const load = await h.query(LoadModuleDocument, { name: 'broken' });
      expect(load.loadModule.errors[0]!.code).toBe('MODULE_LOAD_FAILED');
      expect(load.loadModule.errors[0]!.message.length).toBeLessThan(CLIPPED);
      const stored = (await h.query(ModuleDocument, { name: 'broken' })).module!.lastError!;
      expect(stored).toMatch(/^MODULE_INIT_FAILED: .*create failed: c+… \(truncated: \d+ characters in all\)$/);
      expect(stored.length).toBeLessThan(CLIPPED);

      // A test's error is stored with the run.
      const run = (await h.query(TestModuleDocument, { name: 'loud', moduleType: 'GENERIC' })).testModule.testRun!;
      const feed = subscribe(h.wsClient(), TestProgressDocument, { runId: run.id });
      await feed.waitForCompletion(20_000);
      const finished = feed.events.map((e) => e.data!.testProgress).find((e) => e.type === 'TEST_FINISHED' && e.name === 'fails loudly')!;
      expect(finished.result).toMatchObject({ status: 'FAILED' });
      expect(finished.result!.error!.length).toBeLessThan(CLIPPED);
      expect(finished.result!.error).toMatch(/^test failed: t+… \(truncated: 1000013 characters in all\)$/);
      await healthy(h);
    });
  }
});
