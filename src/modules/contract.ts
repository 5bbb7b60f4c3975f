/**
 * The module contract: what a file under the modules root exports, and what Helios hands it.
 *
 * A module file default-exports a definition: an optional `type`, a `create(ctx)` factory and
 * optional `tests`. `create` returns the instance; every own or inherited function of the
 * instance is a method `invokeModule` can call with ONE argument, except the lifecycle names
 * (`create`, `healthCheck`, `dispose`, `exportState`, `importState`), `constructor` and names
 * starting with `_` (private by convention). Lifecycle methods are optional:
 *
 *   healthCheck()                   true/undefined/{ ok: true } = healthy; false, { ok: false }
 *                                   or a throw = unhealthy; absent = healthy
 *   exportState()                   a structured-cloneable snapshot, read during a swap
 *   importState(state, fromVersion) receives the previous version's snapshot during a swap
 *   dispose()                       frees resources before the version is unloaded
 *
 * `defineModule` only adds types: a plain object default export with a `create` function
 * works the same, so a module needs no import from Helios.
 *
 * ```js
 * export default defineModule({
 *   type: 'ML',
 *   async create(ctx) {
 *     let served = ctx.previousState?.served ?? 0;
 *     const guard = ctx.breakers.getOrCreate('feature_store', { failureThreshold: 3 });
 *     return {
 *       async predict(input) {
 *         served++;
 *         const features = await guard.call(() => ctx.dependencies.feature_extractor.extract(input));
 *         const v2 = ctx.flags.isEnabled('neural_network_v2', { sessionId: input.sessionId });
 *         return { score: v2 ? features.sum * 2 : features.sum, served };
 *       },
 *       exportState: () => ({ served }),
 *       importState: (state) => { served = state.served; },
 *     };
 *   },
 *   tests: [{ name: 'predicts', required: true, timeoutMs: 2000, run: (m) => m.predict({ x: 1 }) }],
 * });
 * ```
 */
import type { BreakerConfig } from '../breakers/config.js';
import type { EvaluationContext } from '../flags/engine.js';

export type { BreakerConfig, EvaluationContext };

export const MODULE_TYPES = ['GENERIC', 'TRADING', 'ML', 'DATA_PIPELINE'] as const;
export type ModuleType = (typeof MODULE_TYPES)[number];

export function isModuleType(value: unknown): value is ModuleType {
  return typeof value === 'string' && (MODULE_TYPES as readonly string[]).includes(value);
}

/** Names that are part of the contract itself and never callable through `invokeModule`. */
export const LIFECYCLE_METHODS = ['create', 'healthCheck', 'dispose', 'exportState', 'importState'] as const;
export type LifecycleMethod = (typeof LIFECYCLE_METHODS)[number];

export function isLifecycleMethod(name: string): name is LifecycleMethod {
  return (LIFECYCLE_METHODS as readonly string[]).includes(name);
}

export const MODULE_LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type ModuleLogLevel = (typeof MODULE_LOG_LEVELS)[number];

/** `data` must be structured-cloneable to arrive intact from a worker; anything else is stringified. */
export type ModuleLogger = Record<ModuleLogLevel, (message: string, data?: unknown) => void>;

/**
 * Calls a method of a dependency's CURRENT active version through the host, so swapping the
 * dependency never forces its dependents to reload. Methods take one argument, like
 * `invokeModule`.
 */
export type DependencyProxy = Readonly<Record<string, (arg?: unknown) => Promise<unknown>>>;

export interface ModuleFlags {
  /** Synchronous and answered from memory in both isolation modes; unknown flags are false. */
  isEnabled(name: string, context?: EvaluationContext): boolean;
}

export interface ModuleBreaker {
  /**
   * Runs `fn(...args)` if the breaker admits the call, and reports its outcome and duration.
   * A rejected call throws a `CircuitOpenError` (`code === 'CIRCUIT_OPEN'`) without running `fn`.
   */
  call<A extends unknown[], T>(fn: (...args: A) => T | Promise<T>, ...args: A): Promise<Awaited<T>>;
}

export interface ModuleBreakers {
  getOrCreate(name: string, config?: Partial<BreakerConfig>): ModuleBreaker;
}

export interface ModuleContext {
  readonly name: string;
  readonly version: string;
  readonly config: Readonly<Record<string, unknown>>;
  readonly logger: ModuleLogger;
  /** One proxy per declared dependency; undeclared names are absent. */
  readonly dependencies: Readonly<Record<string, DependencyProxy>>;
  /** The state handed over when this version was loaded with one (else null). */
  readonly previousState: unknown;
  /** The version that `previousState` came from (else null). */
  readonly previousVersion: string | null;
  readonly flags: ModuleFlags;
  readonly breakers: ModuleBreakers;
}

/**
 * The second argument of every method called through `invokeModule`: who the call is for, so
 * module code can evaluate flags for the caller (`ctx.flags.isEnabled(name, call.context)`).
 */
export interface InvocationContext {
  context: EvaluationContext | null;
}

/** Optional lifecycle methods; an instance may implement any of them. */
export interface ModuleLifecycle {
  healthCheck?(): unknown;
  dispose?(): unknown;
  exportState?(): unknown;
  importState?(state: unknown, fromVersion: string): unknown;
}

/** Any object; its functions are its methods (see the file comment). */
export type ModuleInstance = object;

export interface ModuleTestDefinition<I extends ModuleInstance = ModuleInstance> {
  name: string;
  /** Whether a failure fails the run. Default true. */
  required?: boolean;
  /** Default 10000. */
  timeoutMs?: number;
  /** Passes unless it throws, rejects or returns `false` (the seed's boolean tests). */
  run(instance: I, ctx: ModuleContext): unknown;
}

export interface ModuleDefinition<I extends ModuleInstance = ModuleInstance> {
  type?: ModuleType;
  create(ctx: ModuleContext): I | Promise<I>;
  tests?: ModuleTestDefinition<I>[];
}

export const DEFAULT_TEST_TIMEOUT_MS = 10_000;

/** Types a module definition; returns it unchanged. */
export function defineModule<I extends ModuleInstance>(def: ModuleDefinition<I>): ModuleDefinition<I> {
  return def;
}

/** What `ctx.breakers.getOrCreate(...).call` throws when the breaker rejects the call. */
export class CircuitOpenError extends Error {
  override name = 'CircuitOpenError';
  readonly code = 'CIRCUIT_OPEN';
  constructor(
    message: string,
    readonly breakerName: string,
    /** Epoch ms at which the breaker will let a trial call through, when known. */
    readonly openUntil: number | null,
  ) {
    super(message);
  }
}
