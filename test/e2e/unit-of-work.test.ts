/**
 * In-process callers (src/index.ts) running several changes in one unit of work: nothing of a
 * unit that rolls back is applied to memory, published or audited, for every service; a unit
 * that commits publishes each change once, after the commit, in the order the changes were made.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { AuditRepository } from '../../src/audit/repository.js';
import { loadConfig } from '../../src/config.js';
import type { EventMap, Topic } from '../../src/events.js';
import { createLogger } from '../../src/logger.js';
import { makeModulesDir } from '../support/modules.js';

const TOPICS: Topic[] = ['featureFlagChanged', 'breakerStateChanged', 'moduleStateChanged', 'testProgress', 'tokenRevoked'];

let app: App;
let dir: string;
let modulesDir: string;
/** Every bus event, in publish order, with what memory said at that moment. */
let published: Array<{ topic: Topic; event: EventMap[Topic] }>;

beforeEach(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'helios-uow-'));
  modulesDir = makeModulesDir();
  const config = loadConfig({
    HELIOS_DB_PATH: path.join(dir, 'helios.db'),
    HELIOS_MODULES_DIR: modulesDir,
    HELIOS_ADMIN_TOKEN: 'uow-admin-token-0123456789abcdef',
    LOG_LEVEL: 'silent',
  });
  app = await createApp(config, { logger: createLogger('silent'), print: () => {} });
  published = [];
  for (const topic of TOPICS) app.services.bus.on(topic, (event) => published.push({ topic, event }));
});

afterEach(async () => {
  await app.close();
  rmSync(dir, { recursive: true, force: true });
  rmSync(modulesDir, { recursive: true, force: true });
});

const boom = (): never => {
  throw new Error('caller changed its mind');
};

async function auditTargets(): Promise<string[]> {
  return (await app.services.audit.page('ADMIN', 100)).entries.map((e) => `${e.action}:${e.target}`);
}

/** Runs `change` in a unit of work that then fails; checks nothing was published or audited. */
async function rolledBack(change: () => Promise<void> | void): Promise<void> {
  const audited = await auditTargets();
  await expect(
    app.services.uow.run(async () => {
      await change();
      boom();
    }),
  ).rejects.toThrow('caller changed its mind');
  expect(published).toEqual([]);
  expect(await auditTargets()).toEqual(audited);
}

const countFlag = async (name: string) =>
  (await app.database.kysely.selectFrom('feature_flags').select((eb) => eb.fn.countAll<number>().as('n')).where('name', '=', name).executeTakeFirstOrThrow()).n;

describe('a unit of work that rolls back', () => {
  it('flags: no flag in memory or in SQLite, nothing published', async () => {
    const { flags } = app.services;
    const before = flags.get('new_trading_engine');
    await rolledBack(async () => {
      await flags.create('embedder', { name: 'uow_flag', percentage: 10 });
      await flags.setPercentage('embedder', 'new_trading_engine', 77);
      expect(flags.get('new_trading_engine')).toEqual(before);
    });
    expect(flags.get('uow_flag')).toBeNull();
    expect(flags.get('new_trading_engine')).toEqual(before);
    expect(Number(await countFlag('uow_flag'))).toBe(0);
  });

  it('breakers: the breaker is back in its state (a created one is forgotten), no transition published or stored', async () => {
    const { breakers } = app.services;
    await breakers.configure('embedder', 'payments', { failureThreshold: 3 });
    published = [];
    await rolledBack(async () => {
      await breakers.open('embedder', 'payments');
      expect(breakers.get('payments')!.state).toBe('FORCED_OPEN');
      await breakers.configure('embedder', 'brand_new', {});
      await breakers.configure('embedder', 'payments', { failureThreshold: 9 });
    });
    expect(breakers.get('payments')!.state).toBe('CLOSED');
    expect(breakers.get('payments')!.config.failureThreshold).toBe(3);
    expect(breakers.get('brand_new')).toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(published).toEqual([]);
    expect(await breakers.transitions('payments', 10)).toEqual([]);
    expect(await app.database.kysely.selectFrom('circuit_breakers').select('state').where('name', '=', 'payments').executeTakeFirst()).toEqual({ state: 'CLOSED' });
  });

  it('breakers: a transition a call caused inside it stands (the engine moved), and is stored and published once', async () => {
    const { breakers, uow } = app.services;
    const breaker = breakers.getOrCreate('flaky_dependency', { failureThreshold: 1 });
    published = [];
    await expect(
      uow.run(async () => {
        breaker.tryAcquire()!.failure(new Error('down'), 1);
        expect(breaker.state).toBe('OPEN');
        boom();
      }),
    ).rejects.toThrow('caller changed its mind');
    await breakers.flush();
    expect(breaker.state).toBe('OPEN');
    expect(published.map((p) => `${p.topic}:${(p.event as EventMap['breakerStateChanged']).to}`)).toEqual(['breakerStateChanged:OPEN']);
    expect((await breakers.transitions('flaky_dependency', 10)).map((t) => t.to)).toEqual(['OPEN']);
  });

  it('breakers: resetAll puts every breaker back', async () => {
    const { breakers } = app.services;
    await breakers.configure('embedder', 'a', {});
    await breakers.open('embedder', 'a');
    published = [];
    await rolledBack(async () => {
      await breakers.resetAll('embedder');
    });
    expect(breakers.get('a')!.state).toBe('FORCED_OPEN');
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(published).toEqual([]);
  });

  it('modules: an operation asked inside it never starts, and its promise says why', async () => {
    const { modules } = app.services;
    let registering: Promise<unknown> | null = null;
    await rolledBack(() => {
      registering = modules.register('embedder', { name: 'counter', modulePath: 'counter.js', version: '1.0.0' });
      registering.catch(() => undefined);
    });
    await expect(registering).rejects.toMatchObject({ code: 'INVALID_MODULE_STATE', message: expect.stringMatching(/rolled back/) });
    expect(modules.get('counter')).toBeNull();
    expect(published).toEqual([]);
    expect(await auditTargets()).not.toContain('registerModule:counter');
  });

  it('test runs: no run is stored or started, no progress published', async () => {
    await app.services.modules.register('embedder', { name: 'feature_extractor', modulePath: 'feature_extractor.js', version: '1.0.0' });
    published = [];
    let runId = '';
    await rolledBack(async () => {
      runId = (await app.services.testing.testModule('embedder', 'feature_extractor', 'DATA_PIPELINE')).id;
    });
    expect(await app.services.testing.get(runId)).toBeNull();
    expect((await app.services.testing.page('feature_extractor', 10)).runs).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(published).toEqual([]);
  });

  it('tokens: a revoked token still works, onRevoke and the bus hear nothing; a created one never works', async () => {
    const { tokens } = app.services;
    const { token } = await tokens.create('embedder', 'ci', 'OPERATOR');
    const heard: string[] = [];
    tokens.onRevoke((name) => heard.push(name));
    let secret = '';
    await rolledBack(async () => {
      await tokens.revoke('embedder', 'ci');
      secret = (await tokens.create('embedder', 'other', 'VIEWER')).token;
    });
    expect(heard).toEqual([]);
    expect(await tokens.authenticate(token)).toEqual({ name: 'ci', role: 'OPERATOR' });
    expect(await tokens.authenticate(secret)).toBeNull();
    expect(await tokens.get('other')).toBeNull();
  });

  it('an inner unit that fails and is caught drops only its own changes and effects', async () => {
    const { flags, breakers, uow } = app.services;
    await uow.run(async () => {
      await flags.create('embedder', { name: 'kept', percentage: 5 });
      try {
        await uow.run(async () => {
          await flags.create('embedder', { name: 'dropped', percentage: 5 });
          await breakers.configure('embedder', 'dropped_breaker', {});
          boom();
        });
      } catch {
        // the caller goes on without it
      }
    });
    expect(flags.get('kept')).not.toBeNull();
    expect(flags.get('dropped')).toBeNull();
    expect(breakers.get('dropped_breaker')).toBeNull();
    expect(published.map((p) => `${p.topic}:${(p.event as { name: string }).name}`)).toEqual(['featureFlagChanged:kept']);
  });

  it('audit: an entry is never written outside a unit of work', async () => {
    const audit = new AuditRepository(app.services.uow);
    const entry = { at: 1, actor: 'embedder', action: 'loneEntry', targetType: 'FEATURE_FLAG' as const, target: 'x', before: null, after: null };
    await expect(audit.record(entry)).rejects.toThrow(/outside the change's unit of work/);
    expect(await auditTargets()).not.toContain('loneEntry:x');
    await app.services.uow.run(() => audit.record(entry));
    expect(await auditTargets()).toContain('loneEntry:x');
  });
});

describe('a unit of work that commits', () => {
  it('keeps memory on the newest write when an after-commit callback changes a flag again before an older change is applied', async () => {
    const { flags, uow } = app.services;
    await flags.setPercentage('embedder', 'new_trading_engine', 1);
    let later: Promise<unknown> = Promise.resolve();
    await uow.run(async () => {
      // Queued first, so it starts first after the commit, and writes 30 in a unit of its own...
      uow.afterCommit(() => {
        later = flags.setPercentage('embedder', 'new_trading_engine', 30);
      });
      // ...while this change's own memory update (20) runs right after it.
      await flags.setPercentage('embedder', 'new_trading_engine', 20);
    });
    await later;
    expect(flags.get('new_trading_engine')!.percentage).toBe(30);
    expect(flags.isEnabled('new_trading_engine', { userId: 'u' })).toBe(flags.evaluate('new_trading_engine', { userId: 'u' }).enabled);
    const stored = await app.database.kysely.selectFrom('feature_flags').select('percentage').where('name', '=', 'new_trading_engine').executeTakeFirstOrThrow();
    expect(stored.percentage).toBe(30);
  });

  it('publishes each change once, after the commit, in the order they were made; memory follows at commit', async () => {
    const { flags, breakers, tokens, uow } = app.services;
    await tokens.create('embedder', 'ci', 'OPERATOR');
    await breakers.configure('embedder', 'payments', {});
    await flags.setPercentage('embedder', 'new_trading_engine', 1);
    published = [];
    const heard: string[] = [];
    tokens.onRevoke((name) => heard.push(name));
    await uow.run(async () => {
      await flags.setPercentage('embedder', 'new_trading_engine', 10);
      await uow.run(async () => {
        await breakers.open('embedder', 'payments');
        await tokens.revoke('embedder', 'ci');
      });
      await flags.setPercentage('embedder', 'new_trading_engine', 50);
      // Nothing is seen before the outermost commit, not even the finished inner unit's.
      expect(published).toEqual([]);
      expect(heard).toEqual([]);
      expect(flags.get('new_trading_engine')!.percentage).toBe(1);
    });
    expect(published.map((p) => p.topic)).toEqual(['featureFlagChanged', 'breakerStateChanged', 'tokenRevoked', 'featureFlagChanged']);
    const flagEvents = published.filter((p) => p.topic === 'featureFlagChanged').map((p) => (p.event as EventMap['featureFlagChanged']).flag!.percentage);
    expect(flagEvents).toEqual([10, 50]);
    expect(heard).toEqual(['ci']);
    expect(flags.get('new_trading_engine')!.percentage).toBe(50);
    expect(breakers.get('payments')!.state).toBe('FORCED_OPEN');
    expect((await auditTargets()).slice(0, 4)).toEqual([
      'setFlagPercentage:new_trading_engine',
      'revokeApiToken:ci',
      'openCircuitBreaker:payments',
      'setFlagPercentage:new_trading_engine',
    ]);
  });

  it('a module operation asked inside it starts after the commit', async () => {
    const { modules, flags, uow } = app.services;
    let registering: Promise<unknown> | null = null;
    await uow.run(async () => {
      await flags.create('embedder', { name: 'with_module', percentage: 1 });
      registering = modules.register('embedder', { name: 'counter', modulePath: 'counter.js', version: '1.0.0' });
      expect(modules.get('counter')).toBeNull();
    });
    await registering;
    expect(modules.get('counter')).toMatchObject({ name: 'counter', state: 'UNLOADED' });
    expect(published.map((p) => p.topic)).toEqual(['featureFlagChanged', 'moduleStateChanged']);
  });

  it('test progress is on the bus: every event of a run, in order, ending with RUN_FINISHED', async () => {
    await app.services.modules.register('embedder', { name: 'feature_extractor', modulePath: 'feature_extractor.js', version: '1.0.0' });
    const run = await app.services.testing.testModule('embedder', 'feature_extractor', 'DATA_PIPELINE');
    const progress = await app.services.testing.progress(run.id);
    const viaFeed: string[] = [];
    for await (const event of progress) viaFeed.push(event.type);
    const viaBus = published.filter((p) => p.topic === 'testProgress').map((p) => p.event as EventMap['testProgress']);
    expect(viaBus.every((e) => e.runId === run.id)).toBe(true);
    expect(viaBus.map((e) => e.type)).toEqual(viaFeed);
    expect(viaFeed[0]).toBe('RUN_STARTED');
    expect(viaFeed.at(-1)).toBe('RUN_FINISHED');
  });
});
