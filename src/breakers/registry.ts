/**
 * The registry owns every breaker of a process, the one DeadlineScheduler that times them all,
 * and the listeners a service hangs persistence and publishing on. Listeners run
 * synchronously; a transition raised by a listener (say, one that resets a breaker) is queued
 * and delivered after the current one, so every listener sees each breaker's transitions in
 * the order they happened.
 */
import type { Clock } from '../clock.js';
import { BreakerConfigError, checkBreakerName, resolveBreakerConfig, type BreakerConfig } from './config.js';
import { CircuitBreaker, type BreakerHost, type BreakerOptions } from './engine.js';
import { DeadlineScheduler } from './scheduler.js';
import {
  BREAKER_STATES,
  isBreakerState,
  type BreakerChangeKind,
  type BreakerSnapshot,
  type BreakerState,
  type BreakerTransition,
  type ManualResetReason,
} from './states.js';

export type BreakerTransitionListener = (event: BreakerTransition) => void;
export type BreakerChangeListener = (breaker: CircuitBreaker, kind: BreakerChangeKind) => void;

export interface BreakerRegistryOptions {
  clock: Clock;
  /** Base config for new breakers (over DEFAULT_BREAKER_CONFIG). */
  defaults?: Partial<BreakerConfig>;
  /** Where a throwing listener's or timer task's error goes; the engine itself does no I/O. Default: console.error. */
  onListenerError?: (error: unknown) => void;
  /** Time every call for the Prometheus call histograms (BreakerHost.timeCalls). Default false. */
  timeCalls?: boolean;
  /** Uniform in [0, 1) for the timed-call sample (BreakerHost.random). Default Math.random. */
  random?: () => number;
}

export class BreakerRegistry {
  readonly clock: Clock;
  private readonly defaults: Readonly<BreakerConfig>;
  private readonly breakers = new Map<string, CircuitBreaker>();
  private readonly scheduler: DeadlineScheduler;
  private readonly reportError: (error: unknown) => void;
  // Copy-on-write: emitting iterates a stable array while listeners come and go.
  private transitionListeners: readonly BreakerTransitionListener[] = [];
  private changeListeners: readonly BreakerChangeListener[] = [];
  private readonly queued: BreakerTransition[] = [];
  private draining = false;
  private disposed = false;
  private readonly host: BreakerHost;

  constructor(opts: BreakerRegistryOptions) {
    this.clock = opts.clock;
    this.defaults = resolveBreakerConfig(opts.defaults);
    this.reportError = opts.onListenerError ?? ((error) => console.error('[breakers] listener failed:', error));
    this.scheduler = new DeadlineScheduler(opts.clock, this.reportError);
    this.host = {
      clock: opts.clock,
      scheduler: this.scheduler,
      transitioned: (event) => this.emitTransition(event),
      changed: (breaker, kind) => this.emitChange(breaker, kind),
      timeCalls: opts.timeCalls === true,
      random: opts.random ?? Math.random,
    };
  }

  /**
   * The breaker called `name`, created with `config` (over the registry's defaults) if it does
   * not exist. An existing breaker keeps its config: module code calling this on every
   * invocation, as the seed does, must not undo an operator's `configure`. `options`
   * (fallback, isFailure) are code, not persisted state, so given ones replace the breaker's.
   * Throws BreakerConfigError for an invalid name or config.
   */
  getOrCreate(name: string, config?: Partial<BreakerConfig>, options?: BreakerOptions): CircuitBreaker {
    const existing = this.breakers.get(name);
    if (existing !== undefined) {
      if (options?.fallback !== undefined) existing.fallback = options.fallback;
      if (options?.isFailure !== undefined) existing.isFailure = options.isFailure;
      return existing;
    }
    this.assertUsable();
    const problem = checkBreakerName(name);
    if (problem !== null) throw new BreakerConfigError([{ field: 'name', message: problem }]);
    const breaker = new CircuitBreaker(name, resolveBreakerConfig(config, this.defaults), this.host, options);
    this.breakers.set(name, breaker);
    this.emitChange(breaker, 'created');
    return breaker;
  }

  get(name: string): CircuitBreaker | undefined {
    return this.breakers.get(name);
  }

  has(name: string): boolean {
    return this.breakers.has(name);
  }

  /** In creation order. */
  list(): CircuitBreaker[] {
    return [...this.breakers.values()];
  }

  get size(): number {
    return this.breakers.size;
  }

  /** Counts per state, every state present (for `modularityStatus`). */
  countByState(): Record<BreakerState, number> {
    const counts = Object.fromEntries(BREAKER_STATES.map((s) => [s, 0])) as Record<BreakerState, number>;
    for (const breaker of this.breakers.values()) counts[breaker.state]++;
    return counts;
  }

  /**
   * Get-or-create, then apply `partial` in place keeping the state (GraphQL's
   * `configureCircuitBreaker`). Throws BreakerConfigError, changing nothing, when invalid.
   */
  configure(name: string, partial: Partial<BreakerConfig>): CircuitBreaker {
    const existing = this.breakers.get(name);
    if (existing === undefined) return this.getOrCreate(name, partial);
    existing.configure(partial);
    return existing;
  }

  /** Forgets the breaker, stopping its timers and events; false when there was none. */
  remove(name: string): boolean {
    const breaker = this.breakers.get(name);
    if (breaker === undefined) return false;
    this.breakers.delete(name);
    this.emitChange(breaker, 'removed');
    breaker.dispose();
    return true;
  }

  /**
   * Resets every breaker to CLOSED, except DISABLED ones (an operator disabled those on
   * purpose; `reset()` one to close it). Returns the breakers that changed state.
   */
  resetAll(reason: ManualResetReason = 'RESET_ALL'): CircuitBreaker[] {
    const changed: CircuitBreaker[] = [];
    for (const breaker of [...this.breakers.values()]) {
      if (breaker.state === 'DISABLED') continue;
      const before = breaker.state;
      breaker.reset(reason);
      if (breaker.state !== before) changed.push(breaker);
    }
    return changed;
  }

  /**
   * Recreates a persisted breaker (or loads the snapshot into an existing one), honouring the
   * remaining OPEN time; see `CircuitBreaker.restore`. Throws on an invalid snapshot.
   */
  restore(snapshot: BreakerSnapshot, options?: BreakerOptions): CircuitBreaker {
    const existing = this.breakers.get(snapshot.name);
    if (existing !== undefined) {
      existing.restore(snapshot);
      if (options?.fallback !== undefined) existing.fallback = options.fallback;
      if (options?.isFailure !== undefined) existing.isFailure = options.isFailure;
      return existing;
    }
    this.assertUsable();
    const problem = checkBreakerName(snapshot.name);
    if (problem !== null) throw new BreakerConfigError([{ field: 'name', message: problem }]);
    if (!isBreakerState(snapshot.state)) throw new Error(`snapshot of "${snapshot.name}" has unknown state ${String(snapshot.state)}`);
    // Validated up front so a bad snapshot leaves no half-made breaker behind; registered before
    // loading so a 'restored' listener can already find it.
    const breaker = new CircuitBreaker(snapshot.name, resolveBreakerConfig(snapshot.config), this.host, options);
    this.breakers.set(snapshot.name, breaker);
    breaker.restore(snapshot);
    return breaker;
  }

  /** Every transition of every breaker, synchronously; returns the unsubscribe function. */
  onTransition(listener: BreakerTransitionListener): () => void {
    this.transitionListeners = [...this.transitionListeners, listener];
    return () => {
      this.transitionListeners = this.transitionListeners.filter((l) => l !== listener);
    };
  }

  /**
   * Every change worth persisting: created, configured, state, restored, removed, and
   * `metrics` on every outcome or rejection (hot path: mark dirty and return).
   */
  onChange(listener: BreakerChangeListener): () => void {
    this.changeListeners = [...this.changeListeners, listener];
    return () => {
      this.changeListeners = this.changeListeners.filter((l) => l !== listener);
    };
  }

  /** Stops the scheduler and all breakers' timers and events; the registry is unusable after. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.scheduler.dispose();
    for (const breaker of this.breakers.values()) breaker.dispose();
    this.breakers.clear();
    this.transitionListeners = [];
    this.changeListeners = [];
  }

  private assertUsable(): void {
    if (this.disposed) throw new Error('BreakerRegistry is disposed');
  }

  private emitTransition(event: BreakerTransition): void {
    if (this.transitionListeners.length === 0) return;
    this.queued.push(event);
    if (this.draining) return;
    this.draining = true;
    try {
      for (let i = 0; i < this.queued.length; i++) {
        const next = this.queued[i];
        if (next === undefined) continue;
        for (const listener of this.transitionListeners) {
          try {
            listener(next);
          } catch (error) {
            this.reportError(error);
          }
        }
      }
    } finally {
      this.queued.length = 0;
      this.draining = false;
    }
  }

  private emitChange(breaker: CircuitBreaker, kind: BreakerChangeKind): void {
    const listeners = this.changeListeners;
    if (listeners.length === 0) return;
    for (const listener of listeners) {
      try {
        listener(breaker, kind);
      } catch (error) {
        this.reportError(error);
      }
    }
  }
}
