/**
 * The modules store and the lifecycle's persistence over the async unit of work (SQLite in
 * memory): rows, dependency order, and the desired/actual state written, in order, by
 * lifecycle operations and by a worker's crash and the supervisor's restart.
 */
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditRepository } from '../../src/audit/repository.js';
import { BreakerRegistry } from '../../src/breakers/registry.js';
import type { BreakerService } from '../../src/breakers/service.js';
import { ManualClock } from '../../src/clock.js';
import { EventBus, type EventMap } from '../../src/events.js';
import type { FlagService } from '../../src/flags/service.js';
import { createLogger } from '../../src/logger.js';
import { ModuleRepository, ModuleRowExistsError, type ModuleRecord } from '../../src/modules/repository.js';
import { ModuleService } from '../../src/modules/service.js';
import { openTestDatabase, type TestDatabase } from '../support/database.js';

const T0 = Date.UTC(2026, 0, 1);

function record(name: string, overrides: Partial<ModuleRecord> = {}): ModuleRecord {
  return {
    name, modulePath: `${name}.js`, version: '1.0.0', dependencies: [], hotReloadable: true, isolation: 'WORKER', moduleType: null,
    config: { start: 1 }, desiredState: 'UNLOADED', state: 'UNLOADED', lastError: null, loadedAt: null,
    previousVersion: null, previousModulePath: null, createdAt: T0, updatedAt: T0, ...overrides,
  };
}

describe('ModuleRepository', () => {
  let test: TestDatabase;
  let repo: ModuleRepository;
  beforeEach(async () => {
    test = await openTestDatabase();
    repo = new ModuleRepository(test.uow);
  });
  afterEach(async () => {
    await test.close();
  });

  it('stores registrations with their dependencies in declared order, sorted by name', async () => {
    await repo.insert(record('zeta', { dependencies: ['beta', 'alpha', 'gamma'], moduleType: 'ML', hotReloadable: false, config: { a: [1] } }));
    await repo.insert(record('alpha'));
    const all = await repo.all();
    expect(all.map((r) => r.name)).toEqual(['alpha', 'zeta']);
    expect(all[1]).toEqual(record('zeta', { dependencies: ['beta', 'alpha', 'gamma'], moduleType: 'ML', hotReloadable: false, config: { a: [1] } }));
    expect(all[0]!.dependencies).toEqual([]);
  });

  it('refuses a second row of the same name with ModuleRowExistsError', async () => {
    await repo.insert(record('alpha'));
    await expect(repo.insert(record('alpha', { version: '2' }))).rejects.toBeInstanceOf(ModuleRowExistsError);
    expect((await repo.all()).map((r) => r.version)).toEqual(['1.0.0']);
  });

  it('save updates the row in place (created_at kept) and replaces dependencies only when asked', async () => {
    await repo.insert(record('alpha', { dependencies: ['x', 'y'] }));
    await repo.save(record('alpha', { state: 'ACTIVE', desiredState: 'ACTIVE', loadedAt: T0 + 5, createdAt: T0 + 99, updatedAt: T0 + 5, dependencies: ['z'] }));
    let [row] = await repo.all();
    expect(row).toMatchObject({ state: 'ACTIVE', desiredState: 'ACTIVE', loadedAt: T0 + 5, createdAt: T0, updatedAt: T0 + 5, dependencies: ['x', 'y'] });
    await repo.save(record('alpha', { dependencies: ['z'] }), true);
    [row] = await repo.all();
    expect(row!.dependencies).toEqual(['z']);
  });

  it('delete removes the row and its dependency rows', async () => {
    await repo.insert(record('alpha', { dependencies: ['x'] }));
    await repo.delete('alpha');
    expect(await repo.all()).toEqual([]);
    const deps = await test.database.kysely.selectFrom('module_dependencies').selectAll().execute();
    expect(deps).toEqual([]);
  });
});

describe('ModuleService persistence', () => {
  let test: TestDatabase;
  let clock: ManualClock;
  let bus: EventBus;
  let service: ModuleService;
  let changes: EventMap['moduleStateChanged'][];
  let modulesDir: string;

  const silent = createLogger('silent');

  function makeService(): ModuleService {
    const registry = new BreakerRegistry({ clock });
    // Only what the lifecycle asks of the breakers in these tests (the registry is the engine).
    const breakers = {
      registry,
      getOrCreate: (name: string, config?: object) => registry.getOrCreate(name, config),
      get: (name: string) => registry.get(name) ?? null,
      open: async () => undefined,
      reset: async () => undefined,
      retire: async () => true,
    } as unknown as BreakerService;
    const flags = { isEnabled: () => false, list: () => [], onChange: () => () => undefined, decider: () => ({ isOn: () => false }) } as unknown as FlagService;
    return new ModuleService({
      uow: test.uow, audit: new AuditRepository(test.uow), bus, clock, logger: silent, flags, breakers, modulesDir, maxRestarts: 3,
    });
  }

  const rows = async () => (await new ModuleRepository(test.uow).all()).map((r) => ({ name: r.name, state: r.state, desiredState: r.desiredState, version: r.version }));
  const audit = async () => (await test.database.kysely.selectFrom('audit_log').select(['action', 'target']).orderBy('id').execute()).map((r) => `${r.action}:${r.target}`);
  const waitFor = async (done: () => boolean | Promise<boolean>) => {
    for (let i = 0; i < 500; i++) {
      if (await done()) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error('timed out waiting');
  };

  beforeEach(async () => {
    test = await openTestDatabase();
    clock = new ManualClock(T0);
    bus = new EventBus();
    changes = [];
    bus.on('moduleStateChanged', (event) => changes.push(event));
    modulesDir = mkdtempSync(path.join(tmpdir(), 'helios-module-store-'));
    cpSync('examples/modules/package.json', path.join(modulesDir, 'package.json'));
    cpSync('test/fixtures/modules/good/counter_v1.js', path.join(modulesDir, 'counter.js'));
    cpSync('test/fixtures/modules/good/counter_v1.js', path.join(modulesDir, 'counter_v2.js'));
    cpSync('test/fixtures/modules/bad/misbehaves_in_call.js', path.join(modulesDir, 'crasher.js'));
    service = makeService();
    await service.start();
  });
  afterEach(async () => {
    await service.stop();
    await test.close();
  });

  it('writes each lifecycle step with its audit entry, and a restart converges back to the desired state', async () => {
    await service.register('op', { name: 'counter', modulePath: 'counter.js', version: '1.0.0' });
    await expect(service.register('op', { name: 'counter', modulePath: 'counter.js', version: '1.0.0' })).rejects.toMatchObject({ code: 'MODULE_ALREADY_EXISTS' });
    await service.load('op', 'counter');
    expect(await rows()).toEqual([{ name: 'counter', state: 'ACTIVE', desiredState: 'ACTIVE', version: '1.0.0' }]);
    await service.swap('op', 'counter', { newVersionPath: 'counter_v2.js', newVersion: '2.0.0' });
    expect(await rows()).toEqual([{ name: 'counter', state: 'ACTIVE', desiredState: 'ACTIVE', version: '2.0.0' }]);
    expect(await audit()).toEqual(['registerModule:counter', 'loadModule:counter', 'swapModule:counter']);
    expect(changes.map((c) => `${c.action}:${c.from}->${c.to}`)).toEqual([
      'registerModule:UNLOADED->UNLOADED', 'loadModule:UNLOADED->LOADING', 'loadModule:LOADING->ACTIVE', 'swapModule:ACTIVE->ACTIVE',
    ]);

    // As after a restart: a new service reads the rows and brings the module back.
    await service.stop();
    service = makeService();
    expect(await service.start()).toEqual({ recovered: 1, failed: 0 });
    expect(service.get('counter')).toMatchObject({ state: 'ACTIVE', version: '2.0.0', previousVersion: '1.0.0' });
    expect((await service.invoke('counter', 'get', null)).servedBy).toBe('2.0.0');

    await service.unload('op', 'counter');
    await service.unregister('op', 'counter');
    expect(await rows()).toEqual([]);
    expect((await audit()).slice(-3)).toEqual(['recovery:counter', 'unloadModule:counter', 'unregisterModule:counter']);
  });

  it('persists a crash reported by the worker, then the supervisor\'s restart, in that order', async () => {
    await service.register('op', { name: 'crasher', modulePath: 'crasher.js', version: '1' });
    await service.load('op', 'crasher');
    changes = [];
    await service.invoke('crasher', 'crashLater', null);
    await waitFor(() => service.get('crasher')?.state === 'FAILED');
    expect(await rows()).toEqual([{ name: 'crasher', state: 'FAILED', desiredState: 'ACTIVE', version: '1' }]);
    expect(service.get('crasher')!.lastError).toMatch(/uncaught in a timer/);

    clock.advance(1_000);
    await waitFor(() => service.get('crasher')?.state === 'ACTIVE');
    expect(await rows()).toEqual([{ name: 'crasher', state: 'ACTIVE', desiredState: 'ACTIVE', version: '1' }]);
    expect(changes.map((c) => `${c.action}:${c.from}->${c.to}`)).toEqual(['crash:ACTIVE->FAILED', 'restart:FAILED->LOADING', 'restart:LOADING->ACTIVE']);
    expect((await audit()).slice(-2)).toEqual(['crash:crasher', 'restart:crasher']);
  });

  it('an operation asked inside a caller\'s unit starts after it commits, and never if it rolls back', async () => {
    let registering: Promise<unknown> | null = null;
    await expect(test.uow.run(async () => {
      registering = service.register('op', { name: 'counter', modulePath: 'counter.js', version: '1.0.0' });
      throw new Error('caller failed');
    })).rejects.toThrow('caller failed');
    await expect(registering).rejects.toMatchObject({ code: 'INVALID_MODULE_STATE' });
    expect(await rows()).toEqual([]);

    await test.uow.run(async () => {
      registering = service.register('op', { name: 'counter', modulePath: 'counter.js', version: '1.0.0' });
      expect(service.get('counter')).toBeNull();
    });
    await registering;
    expect(await rows()).toEqual([{ name: 'counter', state: 'UNLOADED', desiredState: 'UNLOADED', version: '1.0.0' }]);
  });
});
