/**
 * The composition root: opens the database, applies migrations, wires the services. The HTTP
 * and WebSocket transports (server.ts) and in-process callers (index.ts) share one `App`.
 */
import path from 'node:path';
import { AuditRepository } from './audit/repository.js';
import { AuditService } from './audit/service.js';
import { TokenService } from './auth/service.js';
import { systemClock, type Clock } from './clock.js';
import type { HeliosConfig } from './config.js';
import type { Db } from './db/connection.js';
import {
  migrateDatabase, migrationsDir, openPostgresDatabase, openSqliteDatabase, readMigrations, withStartupLock, type Database,
} from './db/database.js';
import { acquireDatabaseLock } from './db/lock.js';
import { UnitOfWork } from './db/unit-of-work.js';
import { EventBus } from './events.js';
import { Cluster } from './cluster/cluster.js';
import { BreakerService } from './breakers/service.js';
import { FlagService } from './flags/service.js';
import { rolloutFlagsOf } from './flags/split.js';
import { ModuleService } from './modules/service.js';
import { RolloutService } from './rollouts/service.js';
import { RolloutStats } from './rollouts/stats.js';
import { TestRunService } from './testing/service.js';
import { createLogger, errorFields, type Logger } from './logger.js';
import { packageRoot } from './paths.js';
import { readFileSync } from 'node:fs';

export interface Services {
  version: string;
  startedAt: number;
  clock: Clock;
  bus: EventBus;
  /** Runs several changes of any services in one transaction; effects happen after it commits. */
  uow: UnitOfWork;
  /** This node, the others, and the event log between them (a cluster of one on SQLite). */
  cluster: Cluster;
  logger: Logger;
  audit: AuditService;
  flags: FlagService;
  breakers: BreakerService;
  modules: ModuleService;
  testing: TestRunService;
  rollouts: RolloutService;
  tokens: TokenService;
}

export interface App {
  config: HeliosConfig;
  /** The store's database (SQLite or PostgreSQL, see db/database.ts). */
  database: Database;
  /** The SQLite connection under it; null on PostgreSQL. */
  db: Db | null;
  services: Services;
  /** Stops timers and closes the database. Idempotent. */
  close(): Promise<void>;
}

export interface AppOptions {
  clock?: Clock;
  logger?: Logger;
  /** Where a first-start admin token is shown (default: stdout). */
  print?: (text: string) => void;
  /** Randomness for flag evaluations without a sticky value (tests inject it). */
  random?: () => number;
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? '0.0.0';
}

export async function createApp(config: HeliosConfig, options: AppOptions = {}): Promise<App> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger(config.logLevel);
  // Before anything opens the database: a second process must change nothing (see db/lock.ts).
  // PostgreSQL is shared by design: nodes coordinate through it instead.
  const lock = config.databaseUrl ? null : acquireDatabaseLock(config.dbPath, Date.now());
  let database: Database;
  try {
    database = config.databaseUrl ? openPostgresDatabase(config.databaseUrl) : openSqliteDatabase(config.dbPath);
  } catch (error) {
    lock?.release();
    throw error;
  }
  try {
    const applied = await migrateDatabase(database, readMigrations(migrationsDir(packageRoot(), database.dialect)));
    if (applied.length > 0) logger.info('applied migrations', { versions: applied, db: database.location });

    const bus = new EventBus();
    const uow = new UnitOfWork(database);
    uow.setErrorReporter((message, error) => logger.error(message, errorFields(error)));
    const version = packageVersion();
    const cluster = new Cluster({ config, database, uow, clock, logger, version });
    // Nodes starting together load and seed their state one at a time (db/database.ts).
    const { auditRepo, tokens, flags, breakers, modules, testing, rollouts } = await withStartupLock(database, async () => {
      // Before any service loads its state: events committed meanwhile are applied after it.
      await cluster.events.begin();
      const auditRepo = new AuditRepository(uow);
      const tokens = new TokenService({ uow, events: cluster.events, sqlite: database.sqlite, audit: auditRepo, bus, clock, logger: logger.child({ domain: 'auth' }) });
      await tokens.bootstrap({
        adminToken: config.adminToken,
        tokenFile: config.adminTokenFile,
        logger,
        print: options.print ?? ((text) => process.stdout.write(text)),
      });
      const flags = new FlagService({
        uow, dialect: database.dialect, events: cluster.events, audit: auditRepo, bus, clock, logger: logger.child({ domain: 'flags' }), flagsFile: config.flagsFile, metrics: config.metrics,
        ...(options.random ? { random: options.random } : {}),
      });
      await flags.start();
      const breakers = new BreakerService({ uow, cluster, audit: auditRepo, bus, clock, logger: logger.child({ domain: 'breakers' }), metrics: config.metrics });
      await breakers.start();
      const modules = new ModuleService({
        uow, cluster, audit: auditRepo, bus, clock, logger: logger.child({ domain: 'modules' }), flags, breakers, modulesDir: config.modulesDir,
        limits: {
          maxOldGenerationSizeMb: config.modules.maxHeapMb,
          loadTimeoutMs: config.modules.loadTimeoutMs,
          initTimeoutMs: config.modules.initTimeoutMs,
          callTimeoutMs: config.modules.callTimeoutMs,
          maxResultBytes: config.modules.maxResultBytes,
          workerSpinMicros: config.modules.workerSpinMicros,
        },
        drainTimeoutMs: config.modules.drainTimeoutMs,
        maxRestarts: config.modules.maxRestarts,
        metrics: config.metrics,
        convergeRetryMs: Math.max(1_000, config.cluster.heartbeatMs),
      });
      const testing = new TestRunService({ uow, audit: auditRepo, bus, clock, logger: logger.child({ domain: 'testing' }), modules, node: { id: cluster.nodeId, clustered: cluster.clustered }, events: cluster.events });
      const { interrupted } = await testing.start();
      if (interrupted > 0) logger.warn('test runs left unfinished by the last stop were marked INTERRUPTED', { interrupted });
      const recovery = await modules.start();
      if (recovery.recovered + recovery.failed > 0) logger.info('modules recovered', recovery);
      // After the stable versions are back: an unfinished rollout stages its canary beside them.
      const rollouts = new RolloutService({
        uow, audit: auditRepo, modules: modules.rolloutModules(), flags: rolloutFlagsOf(flags), clock, logger: logger.child({ domain: 'rollouts' }),
        publish: (event) => bus.publish('rolloutProgress', event),
        cluster: { nodeId: cluster.nodeId, clustered: cluster.clustered, events: cluster.events, membership: cluster.membership, heartbeatMs: config.cluster.heartbeatMs },
      });
      modules.setRolloutGuard((module, operation) => rollouts.assertNoRolloutInProgress(module, operation));
      // A canary another node's rollout staged records this node's calls where the rollout reads them (rollout_node_stats).
      modules.setRemoteCanaryStats((module) => rollouts.canaryStats(module) ?? new RolloutStats());
      const resumed = await rollouts.start();
      if (resumed.resumed + resumed.finished > 0) logger.info('rollouts recovered', resumed);

      await cluster.start();
      if (cluster.clustered) {
        logger.info('joined the cluster', { node: cluster.nodeId, revision: cluster.events.revision });
        // The leader ends the test runs of nodes that left (a node killed mid-run).
        testing.watchNodes(cluster.membership, config.cluster.heartbeatMs);
      }
      return { auditRepo, tokens, flags, breakers, modules, testing, rollouts };
    });

    const services: Services = {
      version,
      startedAt: clock.now(),
      clock,
      bus,
      uow,
      cluster,
      logger,
      audit: new AuditService(auditRepo),
      flags,
      breakers,
      modules,
      testing,
      rollouts,
      tokens,
    };

    let closed = false;
    return {
      config,
      database,
      db: database.sqlite,
      services,
      async close() {
        if (closed) return;
        closed = true;
        try {
          await cluster.stop();
          await testing.stop();
          await rollouts.stop();
          await modules.stop();
          await flags.stop();
          await breakers.stop();
          await tokens.stop(); // last_used_at writes still under way
        } finally {
          // Whatever failed above, the database and its lock are let go.
          await database.close();
          lock?.release();
        }
      },
    };
  } catch (error) {
    await database.close();
    lock?.release();
    throw error;
  }
}
