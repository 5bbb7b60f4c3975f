/** Config, migrations, the flags file parser and the bounded subscription feed. */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GraphQLError } from 'graphql';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/db/connection.js';
import { migrate, readMigrations } from '../../src/db/migrate.js';
import { EventBus, SlowConsumerError, feed } from '../../src/events.js';
import { UserErrors } from '../../src/errors.js';
import { parseFlagsFile } from '../../src/flags/file.js';

describe('loadConfig', () => {
  it('uses the documented defaults', () => {
    const config = loadConfig({}, '/srv/helios');
    expect(config).toMatchObject({
      port: 8000,
      host: '127.0.0.1',
      dbPath: '/srv/helios/data/helios.db',
      modulesDir: '/srv/helios/examples/modules',
      flagsFile: '/srv/helios/config/feature_flags.json',
      adminToken: null,
      logLevel: 'info',
    });
  });

  it('reads the environment and rejects bad values with the variable named', () => {
    expect(loadConfig({ PORT: '9000', HOST: '0.0.0.0', LOG_LEVEL: 'DEBUG', HELIOS_ADMIN_TOKEN: 't' }, '/x')).toMatchObject({
      port: 9000, host: '0.0.0.0', logLevel: 'debug', adminToken: 't',
    });
    expect(() => loadConfig({ PORT: 'eighty' })).toThrow(ConfigError);
    expect(() => loadConfig({ PORT: '70000' })).toThrow(/PORT/);
    expect(() => loadConfig({ LOG_LEVEL: 'loud' })).toThrow(/LOG_LEVEL/);
    expect(() => loadConfig({ HELIOS_GRAPHIQL: 'maybe' })).toThrow(/HELIOS_GRAPHIQL/);
  });

  it('reads how long WORKER calls wait awake: 50 us by default, 0 turns it off, past 1000 refused', () => {
    expect(loadConfig({}).modules.workerSpinMicros).toBe(50);
    expect(loadConfig({ HELIOS_MODULE_WORKER_SPIN_US: '0' }).modules.workerSpinMicros).toBe(0);
    expect(loadConfig({ HELIOS_MODULE_WORKER_SPIN_US: '200' }).modules.workerSpinMicros).toBe(200);
    expect(() => loadConfig({ HELIOS_MODULE_WORKER_SPIN_US: '1001' })).toThrow(/HELIOS_MODULE_WORKER_SPIN_US must be an integer between 0 and 1000/);
    expect(() => loadConfig({ HELIOS_MODULE_WORKER_SPIN_US: '-1' })).toThrow(ConfigError);
  });
});

describe('migrations', () => {
  it('apply in order, once, each in a transaction', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'helios-mig-'));
    try {
      const migrations = path.join(dir, 'migrations');
      mkdirSync(migrations);
      writeFileSync(path.join(migrations, '0002_second.sql'), 'INSERT INTO t (v) VALUES (2);');
      writeFileSync(path.join(migrations, '0001_first.sql'), 'CREATE TABLE t (v INTEGER); INSERT INTO t (v) VALUES (1);');
      const db = openDatabase(path.join(dir, 'db.sqlite'));
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
      expect(migrate(db, readMigrations(migrations))).toEqual([1, 2]);
      expect(migrate(db, readMigrations(migrations))).toEqual([]);
      expect(db.prepare('SELECT v FROM t ORDER BY v').pluck().all()).toEqual([1, 2]);

      // A failing migration leaves no trace, and the earlier ones stay applied.
      writeFileSync(path.join(migrations, '0003_broken.sql'), 'INSERT INTO t (v) VALUES (3); INSERT INTO missing VALUES (1);');
      expect(() => migrate(db, readMigrations(migrations))).toThrow();
      expect(db.prepare('SELECT v FROM t ORDER BY v').pluck().all()).toEqual([1, 2]);
      expect(db.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all()).toEqual([1, 2]);
      db.close();

      writeFileSync(path.join(migrations, 'bad-name.sql'), '');
      expect(() => readMigrations(migrations)).toThrow(/0001_name\.sql/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the shipped migrations apply to an empty database', () => {
    const db = openDatabase(':memory:');
    expect(migrate(db, readMigrations('migrations/sqlite')).length).toBeGreaterThan(0);
    db.close();
  });
});

describe('parseFlagsFile', () => {
  const now = Date.UTC(2026, 0, 1);

  it('reads the seed format, lower-case strategies and whitelist aliases', () => {
    const flags = parseFlagsFile(
      JSON.stringify({
        a: { enabled: true, strategy: 'all_on', description: 'A' },
        b: { strategy: 'percentage', percentage: 12.345 },
        c: { strategy: 'whitelist', whitelist: { symbols: ['BTCZAR'], users: ['u1'] } },
        d: { strategy: 'GRADUAL', gradual: { start_percentage: 1, target_percentage: 10, duration_seconds: 60, start_at: '2026-02-01T00:00:00Z' } },
      }),
      now,
    );
    expect(flags.map((f) => [f.name, f.strategy, f.enabled])).toEqual([
      ['a', 'ALL_ON', true], ['b', 'PERCENTAGE', false], ['c', 'WHITELIST', false], ['d', 'GRADUAL', false],
    ]);
    expect(flags[1]!.percentage).toBe(12.35);
    expect(flags[2]!.whitelist).toEqual([{ attribute: 'symbol', values: ['BTCZAR'] }, { attribute: 'userId', values: ['u1'] }]);
    expect(flags[3]!.gradual).toEqual({ startPercentage: 1, targetPercentage: 10, durationSeconds: 60, startAt: Date.UTC(2026, 1, 1) });
  });

  it('reports every problem at once', () => {
    try {
      parseFlagsFile(JSON.stringify({ ok: { strategy: 'all_on' }, x: { strategy: 'nope' }, y: { strategy: 'percentage', percentage: 300 }, 'bad name': { strategy: 'all_on' } }), now);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(UserErrors);
      const errors = (error as UserErrors).errors;
      expect(errors.map((e) => [e.code, e.field])).toEqual([
        ['INVALID_CONFIG_FILE', 'x'], ['INVALID_CONFIG_FILE', 'y'], ['INVALID_CONFIG_FILE', 'bad name'],
      ]);
    }
  });

  it('reports every problem of one flag, not only its first', () => {
    try {
      parseFlagsFile(
        JSON.stringify({
          z: { enabled: 'yes', strategy: 'sometimes', percentage: 300, gradual: { start_percentage: 1 } },
        }),
        now,
      );
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(UserErrors);
      const errors = (error as UserErrors).errors;
      expect(errors.every((e) => e.code === 'INVALID_CONFIG_FILE' && e.field === 'z')).toBe(true);
      const messages = errors.map((e) => e.message).join('\n');
      expect(messages).toMatch(/enabled must be true or false/);
      expect(messages).toMatch(/sometimes/);
      expect(messages).toMatch(/target_percentage is required/);
      expect(messages).toMatch(/duration_seconds is required/);
      expect(messages).toMatch(/300/);
      expect(errors).toHaveLength(5);
    }
  });
});

describe('subscription feeds', () => {
  it('deliver in order and detach on return', async () => {
    const bus = new EventBus<{ tick: number }>();
    const it1 = bus.subscribe('tick', (n) => n % 2 === 0);
    bus.publish('tick', 1);
    bus.publish('tick', 2);
    bus.publish('tick', 4);
    expect(await it1.next()).toEqual({ value: 2, done: false });
    expect(await it1.next()).toEqual({ value: 4, done: false });
    const pending = it1.next();
    bus.publish('tick', 6);
    expect(await pending).toEqual({ value: 6, done: false });
    await it1.return!();
    expect(bus.listenerCount('tick')).toBe(0);
    expect(await it1.next()).toEqual({ value: undefined, done: true });
  });

  it('end a subscriber that falls too far behind, without affecting others', async () => {
    let push: (n: number) => void = () => {};
    let detached = false;
    const slow = feed<number>((p) => {
      push = p;
      return () => {
        detached = true;
      };
    }, 3);
    for (let i = 0; i < 4; i++) push(i);
    expect(detached).toBe(true);
    const failure = await slow.next().catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(SlowConsumerError);
    // Sent to the client as is (a GraphQLError is never masked), with its code.
    expect(failure).toBeInstanceOf(GraphQLError);
    expect((failure as GraphQLError).extensions.code).toBe('SLOW_CONSUMER');
    expect(await slow.next()).toEqual({ value: undefined, done: true });
  });
});
