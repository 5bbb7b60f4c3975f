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
import { openDatabase, type Db } from './db/connection.js';
import { acquireDatabaseLock } from './db/lock.js';
import { migrate, readMigrations } from './db/migrate.js';
import { unitOfWorkFor, type UnitOfWork } from './db/unit-of-work.js';
import { EventBus } from './events.js';
import { BreakerService } from './breakers/service.js';
import { FlagService } from './flags/service.js';
import { rolloutFlagsOf } from './flags/split.js';
import { ModuleService } from './modules/service.js';
import { RolloutService } from './rollouts/service.js';
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
  db: Db;
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
  const lock = acquireDatabaseLock(config.dbPath, Date.now());
  let db: Db;
  try {
    db = openDatabase(config.dbPath);
  } catch (error) {
    lock?.release();
    throw error;
  }
  try {
    const applied = migrate(db, readMigrations(path.join(packageRoot(), 'migrations')));
    if (applied.length > 0) logger.info('applied migrations', { versions: applied, db: config.dbPath });

    const bus = new EventBus();
    const uow = unitOfWorkFor(db);
    uow.setErrorReporter((message, error) => logger.error(message, errorFields(error)));
    const auditRepo = new AuditRepository(db);
    const tokens = new TokenService({ db, audit: auditRepo, bus, clock, logger: logger.child({ domain: 'auth' }) });
    tokens.bootstrap({
      adminToken: config.adminToken,
      tokenFile: config.adminTokenFile,
      logger,
      print: options.print ?? ((text) => process.stdout.write(text)),
    });
    const flags = new FlagService({
      db, audit: auditRepo, bus, clock, logger: logger.child({ domain: 'flags' }), flagsFile: config.flagsFile, metrics: config.metrics,
      ...(options.random ? { random: options.random } : {}),
    });
    flags.start();
    const breakers = new BreakerService({ db, audit: auditRepo, bus, clock, logger: logger.child({ domain: 'breakers' }), metrics: config.metrics });
    breakers.start();
    const modules = new ModuleService({
      db, audit: auditRepo, bus, clock, logger: logger.child({ domain: 'modules' }), flags, breakers, modulesDir: config.modulesDir,
      limits: {
        maxOldGenerationSizeMb: config.modules.maxHeapMb,
        loadTimeoutMs: config.modules.loadTimeoutMs,
        initTimeoutMs: config.modules.initTimeoutMs,
        callTimeoutMs: config.modules.callTimeoutMs,
        maxResultBytes: config.modules.maxResultBytes,
      },
      drainTimeoutMs: config.modules.drainTimeoutMs,
      maxRestarts: config.modules.maxRestarts,
      metrics: config.metrics,
    });
    const testing = new TestRunService({ db, audit: auditRepo, bus, clock, logger: logger.child({ domain: 'testing' }), modules });
    const { interrupted } = testing.start();
    if (interrupted > 0) logger.warn('test runs left unfinished by the last stop were marked INTERRUPTED', { interrupted });
    const recovery = await modules.start();
    if (recovery.recovered + recovery.failed > 0) logger.info('modules recovered', recovery);
    // After the stable versions are back: an unfinished rollout stages its canary beside them.
    const rollouts = new RolloutService({
      db, audit: auditRepo, modules: modules.rolloutModules(), flags: rolloutFlagsOf(flags), clock, logger: logger.child({ domain: 'rollouts' }),
      publish: (event) => bus.publish('rolloutProgress', event),
    });
    modules.setRolloutGuard((module, operation) => rollouts.assertNoRolloutInProgress(module, operation));
    const resumed = await rollouts.start();
    if (resumed.resumed + resumed.finished > 0) logger.info('rollouts recovered', resumed);

    const services: Services = {
      version: packageVersion(),
      startedAt: clock.now(),
      clock,
      bus,
      uow,
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
      db,
      services,
      async close() {
        if (closed) return;
        closed = true;
        try {
          await testing.stop();
          rollouts.stop();
          await modules.stop();
          flags.stop();
          breakers.stop();
        } finally {
          // Whatever failed above, the database and its lock are let go.
          db.close();
          lock?.release();
        }
      },
    };
  } catch (error) {
    db.close();
    lock?.release();
    throw error;
  }
}
