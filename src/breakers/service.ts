/**
 * Circuit breakers as a service: the registry (engine) is the live state; this service
 * persists it and publishes its transitions.
 *
 * - Every transition is written (history row + current state) in a transaction and then
 *   published on `breakerStateChanged`, once, in order per breaker. Transitions caused by an
 *   operator's mutation are written in the mutation's transaction, with its audit entry, and
 *   published after it commits.
 * - Counters change on every call, so they are written at most once per `flushIntervalMs`
 *   (and at shutdown), never on the call path.
 * - At start-up every persisted breaker is restored in its state; an OPEN breaker keeps its
 *   remaining time (one whose time ran out while Helios was down goes HALF_OPEN at once).
 */
import type { AuditRepository } from '../audit/repository.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { Db } from '../db/connection.js';
import { UserError, UserErrors } from '../errors.js';
import type { EventBus } from '../events.js';
import { errorFields, type Logger } from '../logger.js';
import { validateName } from '../validation.js';
import { DEFAULT_BREAKER_CONFIG, validateBreakerConfig, type BreakerConfig } from './config.js';
import type { CircuitBreaker } from './engine.js';
import { BreakerRegistry } from './registry.js';
import { BreakerRepository } from './repository.js';
import type { BreakerSnapshot, BreakerState, BreakerTransition } from './states.js';

interface BreakerServiceDeps {
  db: Db;
  audit: AuditRepository;
  bus: EventBus;
  clock: Clock;
  logger: Logger;
  /** How often changed counters are written (default 1000 ms). */
  flushIntervalMs?: number;
  /** Prometheus metrics on: breakers time every call (see BreakerHost.timeCalls). */
  metrics?: boolean;
}

export const MAX_TRANSITIONS_PAGE = 1000;

export class BreakerService {
  readonly registry: BreakerRegistry;
  private readonly repo: BreakerRepository;
  private readonly dirty = new Set<string>();
  private flushTimer: TimerHandle | null = null;
  /** >0 while a mutation's transaction is open: transitions wait for its commit to be published. */
  private mutationDepth = 0;
  private pending: BreakerTransition[] = [];
  private unsubscribe: Array<() => void> = [];

  constructor(private readonly deps: BreakerServiceDeps) {
    this.repo = new BreakerRepository(deps.db);
    this.registry = new BreakerRegistry({
      clock: deps.clock,
      onListenerError: (error) => deps.logger.error('breaker listener failed', errorFields(error)),
      timeCalls: deps.metrics === true,
    });
  }

  start(): { restored: number } {
    const snapshots = this.repo.all();
    this.unsubscribe.push(
      this.registry.onTransition((event) => this.onTransition(event)),
      this.registry.onChange((breaker, kind) => {
        if (kind === 'metrics') this.markDirty(breaker.name);
        else if (kind === 'created' || kind === 'configured') this.persistNow(breaker);
      }),
    );
    for (const snapshot of snapshots) this.registry.restore(snapshot);
    return { restored: snapshots.length };
  }

  /** Writes outstanding counters and stops every breaker timer. */
  stop(): void {
    this.flush();
    this.flushTimer?.cancel();
    this.flushTimer = null;
    this.unsubscribe.splice(0).forEach((off) => off());
    this.registry.dispose();
  }

  // ---- reads ----

  list(): CircuitBreaker[] {
    return this.registry.list().sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): CircuitBreaker | null {
    return this.registry.get(name) ?? null;
  }

  countByState(): Record<BreakerState, number> {
    return this.registry.countByState();
  }

  /** The last `last` transitions of a breaker, oldest first. */
  transitions(name: string, last: number): BreakerTransition[] {
    return this.repo.transitions(name, Math.min(Math.max(1, last), MAX_TRANSITIONS_PAGE));
  }

  /** The library API (seed's `circuit_breaker_manager.get_or_create`): never reconfigures an existing breaker. */
  getOrCreate(name: string, config?: Partial<BreakerConfig>): CircuitBreaker {
    return this.registry.getOrCreate(name, config);
  }

  // ---- mutations (audited) ----

  /** Creates the breaker, or changes an existing one's config in place (its state is kept). */
  configure(actor: string, rawName: string, partial: Partial<BreakerConfig>): { breaker: CircuitBreaker; created: boolean } {
    const name = validateName(rawName, 'name', 'Breaker name');
    const issues = validateBreakerConfig(partial, this.registry.get(name)?.config ?? DEFAULT_BREAKER_CONFIG);
    if (issues.length > 0) {
      throw new UserErrors(issues.map((i) => new UserError('INVALID_BREAKER_CONFIG', `${i.field} ${i.message}`, i.field)));
    }
    return this.mutate(actor, 'configureCircuitBreaker', name, () => {
      const existing = this.registry.get(name);
      const breaker = existing ? this.registry.configure(name, partial) : this.registry.getOrCreate(name, partial);
      return { breaker, created: !existing };
    }, (r) => r.breaker);
  }

  /** Forces a breaker open until an operator resets it. */
  open(actor: string, name: string): CircuitBreaker {
    return this.mutate(actor, 'openCircuitBreaker', name, () => {
      const breaker = this.existing(name);
      breaker.open();
      return breaker;
    });
  }

  reset(actor: string, name: string): CircuitBreaker {
    return this.mutate(actor, 'resetCircuitBreaker', name, () => {
      const breaker = this.existing(name);
      breaker.reset();
      return breaker;
    });
  }

  disable(actor: string, name: string): CircuitBreaker {
    return this.mutate(actor, 'disableCircuitBreaker', name, () => {
      const breaker = this.existing(name);
      breaker.disable();
      return breaker;
    });
  }

  enable(actor: string, name: string): CircuitBreaker {
    return this.mutate(actor, 'enableCircuitBreaker', name, () => {
      const breaker = this.existing(name);
      breaker.enable();
      return breaker;
    });
  }

  /** Closes every breaker except DISABLED ones; returns the breakers. */
  resetAll(actor: string): CircuitBreaker[] {
    const now = this.deps.clock.now();
    this.mutationDepth++;
    try {
      this.repo.transaction(() => {
        const before = new Map(this.registry.list().map((b) => [b.name, b.snapshot()]));
        this.registry.resetAll();
        for (const breaker of this.registry.list()) {
          const after = breaker.snapshot();
          this.repo.save(after, now);
          this.deps.audit.record({
            at: now, actor, action: 'resetAllCircuitBreakers', targetType: 'CIRCUIT_BREAKER', target: breaker.name,
            before: auditView(before.get(breaker.name) ?? null), after: auditView(after),
          });
        }
      });
    } finally {
      this.afterMutation();
    }
    return this.list();
  }

  // ---- internals ----

  private existing(name: string): CircuitBreaker {
    const breaker = this.registry.get(name);
    if (!breaker) throw new UserError('BREAKER_NOT_FOUND', `Circuit breaker "${name}" does not exist`, 'name');
    return breaker;
  }

  /**
   * Runs an operator's change inside one transaction with its audit entry; transitions it
   * causes are written by `onTransition` within the same transaction and published after commit.
   */
  private mutate<T>(actor: string, action: string, name: string, change: () => T, breakerOf: (result: T) => CircuitBreaker = (r) => r as CircuitBreaker): T {
    const now = this.deps.clock.now();
    this.mutationDepth++;
    try {
      return this.repo.transaction(() => {
        const before = this.registry.get(name)?.snapshot() ?? null;
        const result = change();
        const breaker = breakerOf(result);
        const after = breaker.snapshot();
        this.repo.save(after, now);
        this.deps.audit.record({
          at: now, actor, action, targetType: 'CIRCUIT_BREAKER', target: breaker.name,
          before: auditView(before), after: auditView(after),
        });
        return result;
      });
    } catch (error) {
      this.pending = [];
      throw error;
    } finally {
      this.afterMutation();
    }
  }

  private afterMutation(): void {
    this.mutationDepth--;
    if (this.mutationDepth === 0) this.publishPending();
  }

  private onTransition(event: BreakerTransition): void {
    const breaker = this.registry.get(event.name);
    try {
      this.repo.transaction(() => {
        this.repo.recordTransition(event);
        if (breaker) this.repo.save(breaker.snapshot(), event.at);
      });
    } catch (error) {
      this.deps.logger.error('could not persist a breaker transition', { breaker: event.name, ...errorFields(error) });
    }
    this.dirty.delete(event.name);
    this.pending.push(event);
    if (this.mutationDepth === 0) this.publishPending();
  }

  private publishPending(): void {
    const events = this.pending;
    this.pending = [];
    for (const event of events) this.deps.bus.publish('breakerStateChanged', event);
  }

  private persistNow(breaker: CircuitBreaker): void {
    this.repo.save(breaker.snapshot(), this.deps.clock.now());
    this.dirty.delete(breaker.name);
  }

  private markDirty(name: string): void {
    this.dirty.add(name);
    this.flushTimer ??= this.deps.clock.setTimer(this.deps.flushIntervalMs ?? 1000, () => {
      this.flushTimer = null;
      this.flush();
    });
  }

  /** Writes the counters of every breaker that changed since the last flush. */
  flush(): void {
    if (this.dirty.size === 0) return;
    const now = this.deps.clock.now();
    const names = [...this.dirty];
    this.dirty.clear();
    try {
      this.repo.transaction(() => {
        for (const name of names) {
          const breaker = this.registry.get(name);
          if (breaker) this.repo.save(breaker.snapshot(), now);
        }
      });
    } catch (error) {
      this.deps.logger.error('could not persist breaker counters', errorFields(error));
    }
  }
}

/** What the audit log keeps of a breaker: config and state, not the call counters. */
function auditView(snapshot: BreakerSnapshot | null): unknown {
  if (!snapshot) return null;
  return { state: snapshot.state, openUntil: snapshot.openUntil, config: snapshot.config };
}
