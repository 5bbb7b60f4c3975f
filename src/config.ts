/**
 * Every setting in one place. Values come from the environment (see the README's
 * configuration table); `loadConfig` validates them once so the rest of the code gets
 * plain typed values.
 */
import path from 'node:path';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

export interface HeliosConfig {
  port: number;
  host: string;
  dbPath: string;
  modulesDir: string;
  flagsFile: string;
  adminToken: string | null;
  logLevel: LogLevel;
  /** Upper bound for a graceful shutdown before connections are cut. */
  shutdownTimeoutMs: number;
  graphiql: boolean;
  /** Limits for every loaded module version (see the README). */
  modules: {
    maxHeapMb: number;
    loadTimeoutMs: number;
    initTimeoutMs: number;
    callTimeoutMs: number;
    drainTimeoutMs: number;
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
  return {
    port: intFrom(env, 'PORT', 8000, 0, 65535),
    host: env.HOST || '127.0.0.1',
    dbPath: dbPath === ':memory:' ? dbPath : path.resolve(cwd, dbPath),
    modulesDir: path.resolve(cwd, env.HELIOS_MODULES_DIR || './examples/modules'),
    flagsFile: path.resolve(cwd, env.HELIOS_FLAGS_FILE || './config/feature_flags.json'),
    adminToken: env.HELIOS_ADMIN_TOKEN || null,
    logLevel,
    shutdownTimeoutMs: intFrom(env, 'HELIOS_SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
    graphiql: boolFrom(env, 'HELIOS_GRAPHIQL', true),
    modules: {
      maxHeapMb: intFrom(env, 'HELIOS_MODULE_MAX_HEAP_MB', 128, 8, 65_536),
      loadTimeoutMs: intFrom(env, 'HELIOS_MODULE_LOAD_TIMEOUT_MS', 10_000, 100, 600_000),
      initTimeoutMs: intFrom(env, 'HELIOS_MODULE_INIT_TIMEOUT_MS', 5_000, 100, 600_000),
      callTimeoutMs: intFrom(env, 'HELIOS_MODULE_CALL_TIMEOUT_MS', 5_000, 10, 600_000),
      drainTimeoutMs: intFrom(env, 'HELIOS_MODULE_DRAIN_TIMEOUT_MS', 5_000, 0, 600_000),
    },
  };
}
