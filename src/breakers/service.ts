/**
 * Circuit breakers as a service: the registry (engine) is the live state; this service
 * persists it and publishes its transitions.
 *
 * - Every transition is written (history row + current state) in the unit of work open at the
 *   time (src/db/unit-of-work.ts), or its own, and published on `breakerStateChanged` after the
 *   outermost commit, once, in order. Transitions caused by an operator's mutation are written
 *   in the mutation's unit of work, with its audit entry.
 * - The registry changes its breakers' state as it goes, so memory cannot wait for the commit:
 *   a mutation whose unit of work rolls back (its own, or a caller's it joined) puts every
 *   breaker it touched back to its snapshot from before (a breaker it created is forgotten),
 *   and publishes nothing. Restoring clears a TIME/COUNT window's samples.
 * - Counters change on every call, so they are written at most once per `flushIntervalMs`
 *   (and at shutdown), never on the call path.
 * - At start-up every persisted breaker is restored in its state; an OPEN breaker keeps its
 *   remaining time (one whose time ran out while Helios was down goes HALF_OPEN at once).
 */
import type { AuditRepository } from '../audit/repository.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { Db } from '../db/connection.js';
import { unitOfWorkFor, type UnitOfWork } from '../db/unit-of-work.js';
import { quoteValue, UserError, UserErrors } from '../errors.js';
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
  private readonly uow: UnitOfWork;
  private unsubscribe: Array<() => void> = [];

  constructor(private readonly deps: BreakerServiceDeps) {
    this.repo = new BreakerRepository(deps.db);
    this.uow = unitOfWorkFor(deps.db);
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
    this.uow.run(() => {
      const before = new Map(this.registry.list().map((b) => [b.name, b.snapshot()]));
      this.uow.onRollback(() => {
        for (const snapshot of before.values()) this.putBack(snapshot.name, snapshot);
      });
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
    return this.list();
  }

  // ---- internals ----

  /**
   * Removes a breaker for good, with its stored row and transitions, audited: a rollout's canary
   * breaker (`module:<name>@<version>`) once that version is promoted or gone. Memory forgets it
   * after the commit. False when there is no such breaker.
   */
  retire(actor: string, name: string): boolean {
    const breaker = this.registry.get(name);
    if (!breaker) return false;
    const now = this.deps.clock.now();
    this.uow.run(() => {
      this.repo.delete(name);
      this.deps.audit.record({
        at: now, actor, action: 'removeCircuitBreaker', targetType: 'CIRCUIT_BREAKER', target: name,
        before: auditView(breaker.snapshot()), after: null,
      });
      this.uow.afterCommit(() => {
        this.dirty.delete(name);
        this.registry.remove(name);
      });
    });
    return true;
  }

  private existing(name: string): CircuitBreaker {
    const breaker = this.registry.get(name);
    if (!breaker) throw new UserError('BREAKER_NOT_FOUND', `Circuit breaker ${quoteValue(name)} does not exist`, 'name');
    return breaker;
  }

  /**
   * Runs an operator's change in one unit of work with its audit entry; transitions it causes
   * are written by `onTransition` within it and published after the outermost commit. On
   * rollback the breaker is put back as it was (see the file comment).
   */
  private mutate<T>(actor: string, action: string, name: string, change: () => T, breakerOf: (result: T) => CircuitBreaker = (r) => r as CircuitBreaker): T {
    const now = this.deps.clock.now();
    return this.uow.run(() => {
      const before = this.registry.get(name)?.snapshot() ?? null;
      this.uow.onRollback(() => this.putBack(name, before));
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
  }

  /** Memory after a rollback: the breaker as it was before the mutation, or gone if it did not exist. */
  private putBack(name: string, before: BreakerSnapshot | null): void {
    if (before) this.registry.restore(before);
    else this.registry.remove(name);
  }

  private onTransition(event: BreakerTransition): void {
    const publish = () => this.deps.bus.publish('breakerStateChanged', event);
    try {
      this.uow.run(() => {
        this.persistTransition(event);
        this.uow.afterCommit(publish);
      });
      // A transition a call caused inside someone's unit of work stands even if that unit rolls
      // back (the engine has moved); one a mutation caused is put back by the mutation.
      this.uow.onRollback(() => queueMicrotask(() => this.keepIfStillTrue(event)));
    } catch (error) {
      // The engine has already moved: publish what memory now says even if the write failed.
      this.deps.logger.error('could not persist a breaker transition', { breaker: event.name, ...errorFields(error) });
      this.uow.afterCommit(publish);
    }
    this.dirty.delete(event.name);
  }

  private persistTransition(event: BreakerTransition): void {
    this.repo.recordTransition(event);
    const breaker = this.registry.get(event.name);
    if (breaker) this.repo.save(breaker.snapshot(), event.at);
  }

  /**
   * After a rollback took a transition's write with it: when memory still shows that transition
   * (no mutation put the breaker back), write it again and publish it. Runs as a microtask, when
   * no unit of work can be open (they are synchronous).
   */
  private keepIfStillTrue(event: BreakerTransition): void {
    const breaker = this.registry.get(event.name);
    if (!breaker || breaker.state !== event.to || breaker.stateChangedAt !== event.at) return;
    try {
      this.uow.run(() => this.persistTransition(event));
    } catch (error) {
      this.deps.logger.error('could not persist a breaker transition', { breaker: event.name, ...errorFields(error) });
    }
    this.deps.bus.publish('breakerStateChanged', event);
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
      this.uow.run(() => {
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
