/** Entry point of the runtime: loads one module version in the requested isolation. */
import path from 'node:path';
import { systemClock } from '../../clock.js';
import { loadInlineVersion } from './inline-version.js';
import type { ResolvedLoadOptions } from './version-base.js';
import {
  DEFAULT_MODULE_LIMITS,
  MODULE_ISOLATIONS,
  type LoadedModuleVersion,
  type LoadModuleVersionOptions,
  type ModuleLimits,
} from './version.js';
import { loadWorkerVersion } from './worker-version.js';

/** Limits where 0 means "off" rather than an impossible bound. */
const MAY_BE_ZERO: ReadonlySet<keyof ModuleLimits> = new Set(['workerSpinMicros']);

function resolveLimits(given: Partial<ModuleLimits> | undefined): ModuleLimits {
  const limits: ModuleLimits = { ...DEFAULT_MODULE_LIMITS };
  for (const [key, value] of Object.entries(given ?? {}) as [keyof ModuleLimits, number | undefined][]) {
    if (value === undefined) continue;
    if (MAY_BE_ZERO.has(key)) {
      if (!(typeof value === 'number' && Number.isFinite(value) && value >= 0)) throw new TypeError(`limits.${key} must be a number >= 0, got ${String(value)}`);
    } else if (!(typeof value === 'number' && value > 0)) {
      throw new TypeError(`limits.${key} must be a positive number, got ${String(value)}`);
    }
    limits[key] = value;
  }
  return limits;
}

/**
 * Loads `absolutePath` as version `version` of module `name` and creates its instance.
 * Rejects with a `ModuleLoadError` when the module cannot be imported, has no valid
 * definition, fails or times out in `create`, runs out of memory or crashes while loading;
 * with a TypeError for invalid options. Never calls `importState`: the previous state, if any,
 * is `ctx.previousState`.
 */
export async function loadModuleVersion(options: LoadModuleVersionOptions): Promise<LoadedModuleVersion> {
  if (!options.name) throw new TypeError('name is required');
  if (!options.version) throw new TypeError('version is required');
  if (!path.isAbsolute(options.absolutePath)) throw new TypeError('absolutePath must be absolute (see resolveModulePath)');
  const isolation = options.isolation ?? 'WORKER';
  if (!MODULE_ISOLATIONS.includes(isolation)) throw new TypeError(`isolation must be one of ${MODULE_ISOLATIONS.join(', ')}`);
  const resolved: ResolvedLoadOptions = {
    name: options.name,
    version: options.version,
    absolutePath: options.absolutePath,
    isolation,
    config: options.config ?? {},
    dependencyNames: [...options.dependencyNames],
    previousState: options.previousState ?? null,
    limits: resolveLimits(options.limits),
    host: options.host,
    clock: options.clock ?? systemClock,
    signal: options.signal ?? null,
  };
  return resolved.isolation === 'WORKER' ? loadWorkerVersion(resolved) : loadInlineVersion(resolved);
}
