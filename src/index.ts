/**
 * The in-process library API, for code running inside the Helios server process (and for
 * embedding Helios in another Node service): the same engines the GraphQL API uses, without
 * GraphQL in between.
 *
 *   const helios = await startServer(loadConfig());
 *   if (helios.app.services.flags.isEnabled('new_trading_engine', { userId })) { ... }
 */
export { createApp, type App, type AppOptions, type Services } from './app.js';
export { loadConfig, type HeliosConfig } from './config.js';
export { startServer, type HeliosServer } from './server.js';
export { DatabaseInUseError, type DatabaseLockHolder } from './db/lock.js';
export { systemClock, ManualClock, type Clock } from './clock.js';
export type { EvaluationContext, FlagDefinition, FlagEvaluation, RolloutStrategy } from './flags/engine.js';
export type { FlagService } from './flags/service.js';
export type { FlagChangeEvent } from './flags/events.js';
export { CircuitOpenError, CallTimeoutError } from './breakers/errors.js';
export type { CircuitBreaker, BreakerPermit } from './breakers/engine.js';
export type { BreakerConfig } from './breakers/config.js';
export type { BreakerState, BreakerTransition, BreakerMetrics } from './breakers/states.js';
export { defineModule } from './modules/contract.js';
export type {
  InvocationContext,
  ModuleContext,
  ModuleDefinition,
  ModuleTestDefinition,
  ModuleType,
} from './modules/contract.js';
export type { ModuleService, ModuleHandle, ReloadHook } from './modules/service.js';
