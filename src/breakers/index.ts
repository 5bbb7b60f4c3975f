/**
 * Circuit breakers: the pure engine (state machine, windows, shared scheduler) and its
 * registry. The transition table and outcome rules are in engine.ts; persistence and GraphQL
 * live in service.ts / repository.ts and build on the registry's listeners and snapshots.
 */
export {
  BREAKER_STATES,
  TRANSITION_REASONS,
  isBreakerState,
  type BreakerChangeKind,
  type BreakerCounters,
  type BreakerMetrics,
  type BreakerSnapshot,
  type BreakerState,
  type BreakerTransition,
  type ManualResetReason,
  type TransitionReason,
} from './states.js';
export {
  BREAKER_CONFIG_FIELDS,
  BreakerConfigError,
  DEFAULT_BREAKER_CONFIG,
  checkBreakerName,
  resolveBreakerConfig,
  validateBreakerConfig,
  type BreakerConfig,
  type BreakerConfigIssue,
} from './config.js';
export { CallTimeoutError, CircuitOpenError } from './errors.js';
export {
  CircuitBreaker,
  type AcquireOptions,
  type BreakerFallback,
  type BreakerOptions,
  type BreakerPermit,
} from './engine.js';
export {
  BreakerRegistry,
  type BreakerChangeListener,
  type BreakerRegistryOptions,
  type BreakerTransitionListener,
} from './registry.js';
