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
import { UnitOfWorkError } from '../../src/db/unit-of-work.js';
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

function auditTargets(): string[] {
  return app.services.audit.page('ADMIN', 100).entries.map((e) => `${e.action}:${e.target}`);
}

/** Runs `change` in a unit of work that then fails; checks nothing was published or audited. */
function rolledBack(change: () => void): void {
  const audited = auditTargets();
  expect(() =>
    app.services.uow.run(() => {
      change();
      boom();
    }),
  ).toThrow('caller changed its mind');
  expect(published).toEqual([]);
  expect(auditTargets()).toEqual(audited);
}

describe('a unit of work that rolls back', () => {
  it('flags: no flag in memory or in SQLite, nothing published', () => {
    const { flags } = app.services;
    const before = flags.get('new_trading_engine');
    rolledBack(() => {
      flags.create('embedder', { name: 'uow_flag', percentage: 10 });
      flags.setPercentage('embedder', 'new_trading_engine', 77);
      expect(flags.get('new_trading_engine')).toEqual(before);
    });
    expect(flags.get('uow_flag')).toBeNull();
    expect(flags.get('new_trading_engine')).toEqual(before);
    expect(app.db.prepare('SELECT count(*) AS n FROM feature_flags WHERE name = ?').get('uow_flag')).toEqual({ n: 0 });
  });

  it('breakers: the breaker is back in its state (a created one is forgotten), no transition published or stored', async () => {
    const { breakers } = app.services;
    breakers.configure('embedder', 'payments', { failureThreshold: 3 });
    published = [];
    rolledBack(() => {
      breakers.open('embedder', 'payments');
      expect(breakers.get('payments')!.state).toBe('FORCED_OPEN');
      breakers.configure('embedder', 'brand_new', {});
      breakers.configure('embedder', 'payments', { failureThreshold: 9 });
    });
    expect(breakers.get('payments')!.state).toBe('CLOSED');
    expect(breakers.get('payments')!.config.failureThreshold).toBe(3);
    expect(breakers.get('brand_new')).toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(published).toEqual([]);
    expect(breakers.transitions('payments', 10)).toEqual([]);
    expect(app.db.prepare("SELECT state FROM circuit_breakers WHERE name = 'payments'").get()).toEqual({ state: 'CLOSED' });
  });

  it('breakers: a transition a call caused inside it stands (the engine moved), and is stored and published once', async () => {
    const { breakers, uow } = app.services;
    const breaker = breakers.getOrCreate('flaky_dependency', { failureThreshold: 1 });
    published = [];
    expect(() =>
      uow.run(() => {
        breaker.tryAcquire()!.failure(new Error('down'), 1);
        expect(breaker.state).toBe('OPEN');
        boom();
      }),
    ).toThrow('caller changed its mind');
    await Promise.resolve();
    expect(breaker.state).toBe('OPEN');
    expect(published.map((p) => `${p.topic}:${(p.event as EventMap['breakerStateChanged']).to}`)).toEqual(['breakerStateChanged:OPEN']);
    expect(breakers.transitions('flaky_dependency', 10).map((t) => t.to)).toEqual(['OPEN']);
  });

  it('breakers: resetAll puts every breaker back', async () => {
    const { breakers } = app.services;
    breakers.configure('embedder', 'a', {});
    breakers.open('embedder', 'a');
    published = [];
    rolledBack(() => breakers.resetAll('embedder'));
    expect(breakers.get('a')!.state).toBe('FORCED_OPEN');
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(published).toEqual([]);
  });

  it('modules: an operation asked inside it never starts, and its promise says why', async () => {
    const { modules } = app.services;
    let registering: Promise<unknown> | null = null;
    rolledBack(() => {
      registering = modules.register('embedder', { name: 'counter', modulePath: 'counter.js', version: '1.0.0' });
    });
    await expect(registering).rejects.toMatchObject({ code: 'INVALID_MODULE_STATE', message: expect.stringMatching(/rolled back/) });
    expect(modules.get('counter')).toBeNull();
    expect(published).toEqual([]);
    expect(auditTargets()).not.toContain('registerModule:counter');
  });

  it('test runs: no run is stored or started, no progress published', async () => {
    await app.services.modules.register('embedder', { name: 'feature_extractor', modulePath: 'feature_extractor.js', version: '1.0.0' });
    published = [];
    let runId = '';
    rolledBack(() => {
      runId = app.services.testing.testModule('embedder', 'feature_extractor', 'DATA_PIPELINE').id;
    });
    expect(app.services.testing.get(runId)).toBeNull();
    expect(app.services.testing.page('feature_extractor', 10).runs).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(published).toEqual([]);
  });

  it('tokens: a revoked token still works, onRevoke and the bus hear nothing; a created one never works', () => {
    const { tokens } = app.services;
    const { token } = tokens.create('embedder', 'ci', 'OPERATOR');
    const heard: string[] = [];
    tokens.onRevoke((name) => heard.push(name));
    let secret = '';
    rolledBack(() => {
      tokens.revoke('embedder', 'ci');
      secret = tokens.create('embedder', 'other', 'VIEWER').token;
    });
    expect(heard).toEqual([]);
    expect(tokens.authenticate(token)).toEqual({ name: 'ci', role: 'OPERATOR' });
    expect(tokens.authenticate(secret)).toBeNull();
    expect(tokens.get('other')).toBeNull();
  });

  it('an inner unit that fails and is caught drops only its own changes and effects', () => {
    const { flags, breakers, uow } = app.services;
    uow.run(() => {
      flags.create('embedder', { name: 'kept', percentage: 5 });
      try {
        uow.run(() => {
          flags.create('embedder', { name: 'dropped', percentage: 5 });
          breakers.configure('embedder', 'dropped_breaker', {});
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

  it('audit: an entry is never written outside a unit of work', () => {
    const audit = new AuditRepository(app.db);
    const entry = { at: 1, actor: 'embedder', action: 'loneEntry', targetType: 'FEATURE_FLAG' as const, target: 'x', before: null, after: null };
    expect(() => audit.record(entry)).toThrow(/outside the change's unit of work/);
    expect(auditTargets()).not.toContain('loneEntry:x');
    app.services.uow.run(() => audit.record(entry));
    expect(auditTargets()).toContain('loneEntry:x');
  });

  it('a transaction opened with db.transaction() directly is refused rather than published before it commits', () => {
    const { flags } = app.services;
    expect(() =>
      app.db.transaction(() => {
        flags.create('embedder', { name: 'sneaky', percentage: 10 });
        boom();
      })(),
    ).toThrow(UnitOfWorkError);
    expect(flags.get('sneaky')).toBeNull();
    expect(published).toEqual([]);
  });
});

describe('a unit of work that commits', () => {
  it('keeps memory on the newest write when an after-commit callback changes a flag again before an older change is applied', () => {
    const { flags, uow } = app.services;
    flags.setPercentage('embedder', 'new_trading_engine', 1);
    uow.run(() => {
      // Queued first, so it runs first after the commit, and writes 30 in a unit of its own...
      uow.afterCommit(() => flags.setPercentage('embedder', 'new_trading_engine', 30));
      // ...before this change's own memory update (20) runs.
      flags.setPercentage('embedder', 'new_trading_engine', 20);
    });
    expect(flags.get('new_trading_engine')!.percentage).toBe(30);
    expect(flags.isEnabled('new_trading_engine', { userId: 'u' })).toBe(flags.evaluate('new_trading_engine', { userId: 'u' }).enabled);
    const stored = app.db.prepare('SELECT percentage FROM feature_flags WHERE name = ?').get('new_trading_engine') as { percentage: number };
    expect(stored.percentage).toBe(30);
  });

  it('publishes each change once, after the commit, in the order they were made; memory follows at commit', () => {
    const { flags, breakers, tokens, uow } = app.services;
    tokens.create('embedder', 'ci', 'OPERATOR');
    breakers.configure('embedder', 'payments', {});
    flags.setPercentage('embedder', 'new_trading_engine', 1);
    published = [];
    const heard: string[] = [];
    tokens.onRevoke((name) => heard.push(name));
    uow.run(() => {
      flags.setPercentage('embedder', 'new_trading_engine', 10);
      uow.run(() => {
        breakers.open('embedder', 'payments');
        tokens.revoke('embedder', 'ci');
      });
      flags.setPercentage('embedder', 'new_trading_engine', 50);
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
    expect(auditTargets().slice(0, 4)).toEqual([
      'setFlagPercentage:new_trading_engine',
      'revokeApiToken:ci',
      'openCircuitBreaker:payments',
      'setFlagPercentage:new_trading_engine',
    ]);
  });

  it('a module operation asked inside it starts after the commit', async () => {
    const { modules, flags, uow } = app.services;
    let registering: Promise<unknown> | null = null;
    uow.run(() => {
      flags.create('embedder', { name: 'with_module', percentage: 1 });
      registering = modules.register('embedder', { name: 'counter', modulePath: 'counter.js', version: '1.0.0' });
      expect(modules.get('counter')).toBeNull();
    });
    await registering;
    expect(modules.get('counter')).toMatchObject({ name: 'counter', state: 'UNLOADED' });
    expect(published.map((p) => p.topic)).toEqual(['featureFlagChanged', 'moduleStateChanged']);
  });

  it('test progress is on the bus: every event of a run, in order, ending with RUN_FINISHED', async () => {
    await app.services.modules.register('embedder', { name: 'feature_extractor', modulePath: 'feature_extractor.js', version: '1.0.0' });
    const run = app.services.testing.testModule('embedder', 'feature_extractor', 'DATA_PIPELINE');
    const progress = app.services.testing.progress(run.id);
    const viaFeed: string[] = [];
    for await (const event of progress) viaFeed.push(event.type);
    const viaBus = published.filter((p) => p.topic === 'testProgress').map((p) => p.event as EventMap['testProgress']);
    expect(viaBus.every((e) => e.runId === run.id)).toBe(true);
    expect(viaBus.map((e) => e.type)).toEqual(viaFeed);
    expect(viaFeed[0]).toBe('RUN_STARTED');
    expect(viaFeed.at(-1)).toBe('RUN_FINISHED');
  });
});
