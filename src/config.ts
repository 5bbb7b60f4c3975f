/**
 * Every setting in one place. Values come from the environment (see the README's
 * configuration table); `loadConfig` validates them once so the rest of the code gets
 * plain typed values.
 */
import path from 'node:path';
import { parseAnonymousMode, resolveAnonymousRole, type AnonymousMode } from './auth/anonymous.js';
import { DEFAULT_HARDENING_LIMITS, type HardeningLimits } from './hardening/limits.js';
import { DEFAULT_SPIN_MICROS } from './modules/runtime/spin-wait.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

export interface HeliosConfig {
  port: number;
  host: string;
  dbPath: string;
  /** `HELIOS_DATABASE_URL` (postgres://...): PostgreSQL, for a cluster; null: SQLite at `dbPath`. */
  databaseUrl: string | null;
  /** This node's name in a cluster (HELIOS_NODE_ID; default host:port). */
  nodeId: string | null;
  cluster: {
    /** How often a node heartbeats and, when not the leader, tries the leader lock. */
    heartbeatMs: number;
    /** A node not seen for this long is dropped from clusterStatus. */
    nodeTimeoutMs: number;
  };
  modulesDir: string;
  flagsFile: string;
  adminToken: string | null;
  /** Where the first start writes the admin token it creates (mode 0600). */
  adminTokenFile: string | null;
  /** What a caller without a token may do: `viewer` (read) or `none`. */
  anonymous: AnonymousMode;
  /** Browser origins allowed besides Helios's own (CSRF / cross-site WebSocket protection). */
  allowedOrigins: string[];
  introspection: boolean;
  limits: HardeningLimits;
  logLevel: LogLevel;
  /** Upper bound for a graceful shutdown before connections are cut. */
  shutdownTimeoutMs: number;
  graphiql: boolean;
  /** The operations dashboard at /dashboard. */
  dashboard: boolean;
  /** Prometheus `/metrics` and the hot-path counting behind it (HELIOS_METRICS, default on). */
  metrics: boolean;
  /** Limits for every loaded module version (see the README). */
  modules: {
    maxHeapMb: number;
    loadTimeoutMs: number;
    initTimeoutMs: number;
    callTimeoutMs: number;
    drainTimeoutMs: number;
    maxRestarts: number;
    /** The largest result a module call may return (its structured-clone size). */
    maxResultBytes: number;
    /** WORKER: how long each side of a call waits awake for the other before sleeping (0: off). */
    workerSpinMicros: number;
  };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function intFrom(env: NodeJS.ProcessEnv, key: string, fallback: number, min: number, max: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${key} must be an integer between ${min} and ${max}, got "${raw}"`);
  }
  return value;
}

function boolFrom(env: NodeJS.ProcessEnv, key: string, fallback: boolean): boolean {
  const raw = env[key]?.toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(`${key} must be true or false, got "${env[key]}"`);
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): HeliosConfig {
  const logLevel = (env.LOG_LEVEL ?? 'info').toLowerCase() as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${env.LOG_LEVEL}"`);
  }
  const dbPath = env.HELIOS_DB_PATH || './data/helios.db';
  const host = env.HOST || '127.0.0.1';
  let anonymousMode: AnonymousMode | undefined;
  try {
    anonymousMode = parseAnonymousMode(env.HELIOS_ANONYMOUS);
  } catch (error) {
    throw new ConfigError(`HELIOS_ANONYMOUS ${(error as Error).message}`);
  }
  const resolvedDb = dbPath === ':memory:' ? dbPath : path.resolve(cwd, dbPath);
  const L = DEFAULT_HARDENING_LIMITS;
  return {
    port: intFrom(env, 'PORT', 8000, 0, 65535),
    host,
    dbPath: resolvedDb,
    databaseUrl: databaseUrlFrom(env),
    nodeId: nodeIdFrom(env),
    cluster: {
      heartbeatMs: intFrom(env, 'HELIOS_HEARTBEAT_MS', 2_000, 100, 600_000),
      nodeTimeoutMs: intFrom(env, 'HELIOS_NODE_TIMEOUT_MS', 10_000, 500, 3_600_000),
    },
    modulesDir: path.resolve(cwd, env.HELIOS_MODULES_DIR || './examples/modules'),
    flagsFile: path.resolve(cwd, env.HELIOS_FLAGS_FILE || './config/feature_flags.json'),
    adminToken: env.HELIOS_ADMIN_TOKEN || null,
    adminTokenFile: env.HELIOS_ADMIN_TOKEN_FILE
      ? path.resolve(cwd, env.HELIOS_ADMIN_TOKEN_FILE)
      : resolvedDb === ':memory:'
        ? null
        : path.join(path.dirname(resolvedDb), 'admin-token'),
    anonymous: resolveAnonymousRole(anonymousMode, host),
    allowedOrigins: (env.HELIOS_ALLOWED_ORIGINS ?? '').split(',').map((o) => o.trim()).filter(Boolean),
    introspection: boolFrom(env, 'HELIOS_INTROSPECTION', true),
    limits: {
      maxDepth: intFrom(env, 'HELIOS_MAX_DEPTH', L.maxDepth, 1, 1000),
      maxAliases: intFrom(env, 'HELIOS_MAX_ALIASES', L.maxAliases, 0, 100_000),
      maxDirectives: intFrom(env, 'HELIOS_MAX_DIRECTIVES', L.maxDirectives, 0, 100_000),
      maxTokens: intFrom(env, 'HELIOS_MAX_TOKENS', L.maxTokens, 10, 1_000_000),
      maxCost: intFrom(env, 'HELIOS_MAX_COST', L.maxCost, 1, 100_000_000),
      listFactor: L.listFactor,
      maxBatchSize: intFrom(env, 'HELIOS_MAX_BATCH_SIZE', L.maxBatchSize, 1, 1000),
      maxRequestBodyBytes: intFrom(env, 'HELIOS_MAX_BODY_BYTES', L.maxRequestBodyBytes, 1024, 100 * 1024 * 1024),
      maxWsConnectionsPerClient: intFrom(env, 'HELIOS_MAX_WS_PER_CLIENT', L.maxWsConnectionsPerClient, 1, 1_000_000),
      maxOperationsPerConnection: intFrom(env, 'HELIOS_MAX_OPERATIONS_PER_SOCKET', L.maxOperationsPerConnection, 1, 100_000),
    },
    logLevel,
    shutdownTimeoutMs: intFrom(env, 'HELIOS_SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
    graphiql: boolFrom(env, 'HELIOS_GRAPHIQL', true),
    dashboard: boolFrom(env, 'HELIOS_DASHBOARD', true),
    metrics: boolFrom(env, 'HELIOS_METRICS', true),
    modules: {
      maxHeapMb: intFrom(env, 'HELIOS_MODULE_MAX_HEAP_MB', 128, 8, 65_536),
      loadTimeoutMs: intFrom(env, 'HELIOS_MODULE_LOAD_TIMEOUT_MS', 10_000, 100, 600_000),
      initTimeoutMs: intFrom(env, 'HELIOS_MODULE_INIT_TIMEOUT_MS', 5_000, 100, 600_000),
      callTimeoutMs: intFrom(env, 'HELIOS_MODULE_CALL_TIMEOUT_MS', 5_000, 10, 600_000),
      drainTimeoutMs: intFrom(env, 'HELIOS_MODULE_DRAIN_TIMEOUT_MS', 5_000, 0, 600_000),
      maxRestarts: intFrom(env, 'HELIOS_MODULE_MAX_RESTARTS', 5, 0, 1000),
      maxResultBytes: intFrom(env, 'HELIOS_MODULE_MAX_RESULT_BYTES', 1024 * 1024, 1024, 1024 * 1024 * 1024),
      workerSpinMicros: intFrom(env, 'HELIOS_MODULE_WORKER_SPIN_US', DEFAULT_SPIN_MICROS, 0, 1_000),
    },
  };
}

function databaseUrlFrom(env: NodeJS.ProcessEnv): string | null {
  const raw = env.HELIOS_DATABASE_URL?.trim();
  if (!raw) return null;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError('HELIOS_DATABASE_URL must be a URL like postgres://user@host:5432/helios');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError(`HELIOS_DATABASE_URL must start with postgres:// or postgresql://, got "${url.protocol}//..."`);
  }
  return raw;
}

const NODE_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

function nodeIdFrom(env: NodeJS.ProcessEnv): string | null {
  const raw = env.HELIOS_NODE_ID?.trim();
  if (!raw) return null;
  if (!NODE_ID.test(raw)) {
    throw new ConfigError('HELIOS_NODE_ID must be 1-128 characters of letters, digits, ".", "_", ":", "@" or "-"');
  }
  return raw;
}
