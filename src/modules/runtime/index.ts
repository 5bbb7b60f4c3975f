/**
 * The module runtime loads ONE version of a module in isolation and talks to it; the module
 * service (registry, persistence, dependency order, swaps) is built on top of it.
 *
 * - `loadModuleVersion` imports the file, calls `create(ctx)` and returns a
 *   `LoadedModuleVersion` once the instance exists, or rejects with a `ModuleLoadError`.
 * - WORKER isolation (default) runs each version in its own worker thread: load, init and call
 *   timeouts really stop it, `resourceLimits` cap its heap, and terminating it frees all its
 *   memory. A worker costs tens of milliseconds to start and about 0.1 ms per call round trip.
 * - INLINE isolation runs it on the host's thread: the lowest latency, but a module can never
 *   be unloaded and nothing can stop a synchronous loop (see inline-version.ts).
 * - In both, `ctx.flags` is synchronous, `ctx.breakers` runs code through host breakers, and
 *   `ctx.dependencies` calls the current active version of each declared dependency.
 */
export { loadModuleVersion } from './load.js';
export {
  DEFAULT_MODULE_LIMITS,
  MODULE_EXIT_REASONS,
  MODULE_ISOLATIONS,
  type CallOptions,
  type LoadedModuleVersion,
  type LoadModuleVersionOptions,
  type ModuleExitInfo,
  type ModuleExitReason,
  type ModuleHealth,
  type ModuleIsolation,
  type ModuleLimits,
  type ModuleMemoryUsage,
  type ModuleTestInfo,
  type ModuleTestResult,
} from './version.js';
export {
  MODULE_CALL_ERROR_CODES,
  MODULE_LOAD_ERROR_CODES,
  ModuleCallError,
  ModuleLoadError,
  isModuleCallError,
  isModuleLoadError,
  type ModuleCallErrorCode,
  type ModuleLoadErrorCode,
  type RemoteError,
} from './errors.js';
export type {
  BreakerAdmission,
  BreakerOutcome,
  BreakerPermit,
  BreakerRejection,
  ModuleHost,
  ModuleHostBreakers,
  ModuleHostFlags,
} from './host.js';
export { InMemoryModuleHost, flagDefinition, type DependencyTarget } from './memory-host.js';
