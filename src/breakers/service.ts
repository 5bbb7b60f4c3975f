/**
 * Circuit breakers as a service: the registry (engine) is the live state; this service
 * persists it and publishes its transitions. A breaker call never waits for the database.
 *
 * - Memory first: the engine changes a breaker's state as it goes (calls, timers), and an
 *   operator's mutation applies its change to memory at once, synchronously, then writes it.
 * - A transition a call or a timer causes is written in the background: one write queue per
 *   service runs its writes one after the other, in the order memory changed, each in its own
 *   unit of work (never the caller's, even when a call happens inside one: the engine has moved,
 *   so the transition stands whatever that unit does). A write that fails is logged.
 * - An operator's mutation (configure, open, reset, disable, enable, resetAll, retire) writes
 *   its change, the transitions it caused and its audit entry in one unit of work, queued behind
 *   the background writes already waiting (so the history keeps memory's order) — or, when it is
 *   called inside a caller's unit, in that unit at once (the queue cannot run while the caller
 *   holds the connection). If its unit rolls back (its own, or a caller's it joined), every
 *   breaker it touched is put back to its snapshot from before (a breaker it created is
 *   forgotten) and none of its transitions is published. Restoring clears a TIME/COUNT window's
 *   samples.
 * - Published on `breakerStateChanged` once each, in the order memory changed per breaker: a
 *   call's transition at once, a mutation's after the outermost commit (later transitions of the
 *   same breaker wait behind it).
 * - Counters change on every call, so they are written at most once per `flushIntervalMs`
 *   (and at shutdown), never on the call path. `stop()` waits for every queued write.
 * - At start-up every persisted breaker is restored in its state; an OPEN breaker keeps its
 *   remaining time (one whose time ran out while Helios was down goes HALF_OPEN at once).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { AuditRepository } from '../audit/repository.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { UnitOfWork } from '../db/unit-of-work.js';
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
  uow: UnitOfWork;
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

/** A transition waiting for its turn on the bus: `held` until its mutation's unit settles. */
interface Outgoing {
  readonly event: BreakerTransition;
  state: 'held' | 'ready' | 'dropped';
}

/** The breakers a mutation is changing, and the transitions it caused (written in its unit). */
interface Applying {
  readonly names: ReadonlySet<string>;
  readonly events: BreakerTransition[];
}

export class BreakerService {
  readonly registry: BreakerRegistry;
  private readonly repo: BreakerRepository;
  private readonly uow: UnitOfWork;
  private readonly dirty = new Set<string>();
  private flushTimer: TimerHandle | null = null;
  private unsubscribe: Array<() => void> = [];
  private applying: Applying | null = null;
  /** The tail of the write queue; never rejects. */
  private writes: Promise<void> = Promise.resolve();
  private queuedWrites = 0;
  /** Runs a function outside every asynchronous context (so outside any caller's unit of work). */
  private readonly outside = AsyncLocalStorage.snapshot();
  private readonly outbox = new Map<string, Outgoing[]>();

  constructor(private readonly deps: BreakerServiceDeps) {
    this.uow = deps.uow;
    this.repo = new BreakerRepository(deps.uow);
    this.registry = new BreakerRegistry({
      clock: deps.clock,
      onListenerError: (error) => deps.logger.error('breaker listener failed', errorFields(error)),
      timeCalls: deps.metrics === true,
    });
  }

  async start(): Promise<{ restored: number }> {
    const snapshots = await this.repo.all();
    this.unsubscribe.push(
      this.registry.onTransition((event) => this.onTransition(event)),
      this.registry.onChange((breaker, kind) => {
        if (kind === 'metrics') this.markDirty(breaker.name);
        else if ((kind === 'created' || kind === 'configured') && !this.applying?.names.has(breaker.name)) this.persistSoon(breaker.name);
      }),
    );
    for (const snapshot of snapshots) this.registry.restore(snapshot);
    return { restored: snapshots.length };
  }

  /** Writes outstanding counters, waits for every queued write, and stops every breaker timer. */
  async stop(): Promise<void> {
    this.cancelFlushTimer();
    // A call still settling may queue more while the queue drains: a few rounds, then stop listening.
    for (let round = 0; round < 10 && (this.dirty.size > 0 || this.queuedWrites > 0); round++) {
      await this.flush();
      await this.drained();
    }
    this.cancelFlushTimer();
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

  /**
   * The last `last` transitions of a breaker, oldest first. Outside a unit of work it first
   * waits for the writes queued so far, so it includes every transition memory has made.
   */
  async transitions(name: string, last: number): Promise<BreakerTransition[]> {
    if (!this.uow.active) await this.writes;
    return this.repo.transitions(name, Math.min(Math.max(1, last), MAX_TRANSITIONS_PAGE));
  }

  /** The library API (seed's `circuit_breaker_manager.get_or_create`): never reconfigures an existing breaker. */
  getOrCreate(name: string, config?: Partial<BreakerConfig>): CircuitBreaker {
    return this.registry.getOrCreate(name, config);
  }

  // ---- mutations (audited) ----

  /** Creates the breaker, or changes an existing one's config in place (its state is kept). */
  async configure(actor: string, rawName: string, partial: Partial<BreakerConfig>): Promise<{ breaker: CircuitBreaker; created: boolean }> {
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
  async open(actor: string, name: string): Promise<CircuitBreaker> {
    return this.mutate(actor, 'openCircuitBreaker', name, () => {
      const breaker = this.existing(name);
      breaker.open();
      return breaker;
    });
  }

  async reset(actor: string, name: string): Promise<CircuitBreaker> {
    return this.mutate(actor, 'resetCircuitBreaker', name, () => {
      const breaker = this.existing(name);
      breaker.reset();
      return breaker;
    });
  }

  async disable(actor: string, name: string): Promise<CircuitBreaker> {
    return this.mutate(actor, 'disableCircuitBreaker', name, () => {
      const breaker = this.existing(name);
      breaker.disable();
      return breaker;
    });
  }

  async enable(actor: string, name: string): Promise<CircuitBreaker> {
    return this.mutate(actor, 'enableCircuitBreaker', name, () => {
      const breaker = this.existing(name);
      breaker.enable();
      return breaker;
    });
  }

  /** Closes every breaker except DISABLED ones; returns the breakers. */
  async resetAll(actor: string): Promise<CircuitBreaker[]> {
    const now = this.deps.clock.now();
    const before = new Map(this.registry.list().map((b) => [b.name, b.snapshot()]));
    const { events } = this.apply(new Set(before.keys()), () => this.registry.resetAll());
    const afters = this.registry.list().map((breaker) => breaker.snapshot());
    await this.persist(events, async () => {
      for (const after of afters) {
        await this.repo.save(this.current(after.name) ?? after, now);
        await this.deps.audit.record({
          at: now, actor, action: 'resetAllCircuitBreakers', targetType: 'CIRCUIT_BREAKER', target: after.name,
          before: auditView(before.get(after.name) ?? null), after: auditView(after),
        });
      }
    }, () => {
      for (const snapshot of before.values()) this.putBack(snapshot.name, snapshot);
    });
    return this.list();
  }

  /**
   * Removes a breaker for good, with its stored row and transitions, audited: a rollout's canary
   * breaker (`module:<name>@<version>`) once that version is promoted or gone. Memory forgets it
   * after the commit. False when there is no such breaker.
   */
  async retire(actor: string, name: string): Promise<boolean> {
    const breaker = this.registry.get(name);
    if (!breaker) return false;
    const now = this.deps.clock.now();
    await this.persist([], async () => {
      await this.repo.delete(name);
      await this.deps.audit.record({
        at: now, actor, action: 'removeCircuitBreaker', targetType: 'CIRCUIT_BREAKER', target: name,
        before: auditView(breaker.snapshot()), after: null,
      });
      this.uow.afterCommit(() => {
        this.dirty.delete(name);
        this.registry.remove(name);
      });
    }, () => undefined);
    return true;
  }

  /**
   * Writes the counters of every breaker that changed since the last flush (queued behind the
   * writes before it); resolves once every write queued so far is done. A failure is logged,
   * never thrown.
   */
  flush(): Promise<void> {
    if (this.dirty.size === 0) return this.writes;
    const now = this.deps.clock.now();
    const names = [...this.dirty];
    this.dirty.clear();
    return this.inBackground('could not persist breaker counters', {}, async () => {
      for (const name of names) {
        const breaker = this.registry.get(name);
        if (breaker) await this.repo.save(breaker.snapshot(), now);
      }
    });
  }

  // ---- internals ----

  private existing(name: string): CircuitBreaker {
    const breaker = this.registry.get(name);
    if (!breaker) throw new UserError('BREAKER_NOT_FOUND', `Circuit breaker ${quoteValue(name)} does not exist`, 'name');
    return breaker;
  }

  /**
   * An operator's change: applied to memory now, then written with its audit entry and the
   * transitions it caused in one unit of work (see `persist`). On rollback the breaker is put
   * back as it was (see the file comment).
   */
  private async mutate<T>(actor: string, action: string, name: string, change: () => T, breakerOf: (result: T) => CircuitBreaker = (r) => r as CircuitBreaker): Promise<T> {
    const now = this.deps.clock.now();
    const before = this.registry.get(name)?.snapshot() ?? null;
    const { result, events } = this.apply(new Set([name]), change);
    const breaker = breakerOf(result);
    const after = breaker.snapshot();
    await this.persist(events, async () => {
      await this.repo.save(this.current(name) ?? after, now);
      await this.deps.audit.record({
        at: now, actor, action, targetType: 'CIRCUIT_BREAKER', target: breaker.name,
        before: auditView(before), after: auditView(after),
      });
    }, () => this.putBack(name, before));
    return result;
  }

  /** Runs `change` (synchronous) collecting the transitions it causes to the breakers `names`. */
  private apply<T>(names: ReadonlySet<string>, change: () => T): { result: T; events: BreakerTransition[] } {
    const applying: Applying = { names, events: [] };
    const outer = this.applying;
    this.applying = applying;
    try {
      return { result: change(), events: applying.events };
    } finally {
      this.applying = outer;
    }
  }

  /**
   * Writes a mutation: its transitions (in order), then `write`, in one unit of work; its
   * transitions are published after the outermost commit. On rollback, or when the unit cannot
   * even start, `undo` puts memory back (once) and they are dropped.
   */
  private async persist(events: BreakerTransition[], write: () => Promise<void>, undo: () => void): Promise<void> {
    const outgoing = events.map((event) => this.toBus(event, 'held'));
    let undone = false;
    const rollBack = () => {
      if (undone) return;
      undone = true;
      undo();
      this.settle(outgoing, 'dropped');
    };
    const unit = () => this.uow.run(async () => {
      this.uow.onRollback(rollBack);
      for (const event of events) await this.repo.recordTransition(event);
      await write();
      this.uow.afterCommit(() => this.settle(outgoing, 'ready'));
    });
    try {
      // Inside a caller's unit the queue cannot run (the caller holds the connection): write now.
      await (this.uow.active ? unit() : this.enqueue(unit));
    } catch (error) {
      rollBack();
      throw error;
    }
  }

  /**
   * What the row gets: memory as it is when the write runs, which a call may have moved since
   * the mutation (the audit entry keeps the mutation's own before and after).
   */
  private current(name: string): BreakerSnapshot | null {
    return this.registry.get(name)?.snapshot() ?? null;
  }

  /** Memory after a rollback: the breaker as it was before the mutation, or gone if it did not exist. */
  private putBack(name: string, before: BreakerSnapshot | null): void {
    if (before) this.registry.restore(before);
    else this.registry.remove(name);
  }

  private onTransition(event: BreakerTransition): void {
    this.dirty.delete(event.name);
    if (this.applying?.names.has(event.name)) {
      this.applying.events.push(event);
      return;
    }
    // A call or a timer moved the breaker: published now, written in the background.
    this.toBus(event, 'ready');
    void this.inBackground('could not persist a breaker transition', { breaker: event.name }, async () => {
      const breaker = this.registry.get(event.name);
      if (!breaker) return; // removed (retired, or its creation rolled back) since
      await this.repo.recordTransition(event);
      await this.repo.save(breaker.snapshot(), event.at);
    });
  }

  /** A breaker created or configured outside a mutation (the library API): its row, soon. */
  private persistSoon(name: string): void {
    const now = this.deps.clock.now();
    this.dirty.delete(name);
    void this.inBackground('could not persist a breaker', { breaker: name }, async () => {
      const breaker = this.registry.get(name);
      if (breaker) await this.repo.save(breaker.snapshot(), now);
    });
  }

  private cancelFlushTimer(): void {
    this.flushTimer?.cancel();
    this.flushTimer = null;
  }

  private markDirty(name: string): void {
    this.dirty.add(name);
    this.flushTimer ??= this.deps.clock.setTimer(this.deps.flushIntervalMs ?? 1000, () => {
      this.flushTimer = null;
      void this.flush();
    });
  }

  /**
   * Queues `job` in its own unit of work, outside whatever unit the caller has open; its
   * failure is logged. Resolves (never rejects) once it ran.
   */
  private inBackground(message: string, fields: Record<string, unknown>, job: () => Promise<void>): Promise<void> {
    return this.enqueue(() => this.outside(() => this.uow.run(job))).catch((error: unknown) => {
      this.deps.logger.error(message, { ...fields, ...errorFields(error) });
    });
  }

  /** Runs `job` after every write queued before it; the queue goes on whatever it does. */
  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    this.queuedWrites++;
    const done = this.writes.then(job);
    this.writes = done.then(
      () => { this.queuedWrites--; },
      () => { this.queuedWrites--; },
    );
    return done;
  }

  /** Until the write queue is empty, including writes queued while waiting. */
  private async drained(): Promise<void> {
    while (this.queuedWrites > 0) await this.writes;
  }

  /** Adds a transition to its breaker's line for the bus, and publishes what is ready. */
  private toBus(event: BreakerTransition, state: Outgoing['state']): Outgoing {
    const entry: Outgoing = { event, state };
    const line = this.outbox.get(event.name);
    if (line) line.push(entry);
    else this.outbox.set(event.name, [entry]);
    if (state === 'ready') this.publishReady(event.name);
    return entry;
  }

  private settle(entries: Outgoing[], state: 'ready' | 'dropped'): void {
    for (const entry of entries) if (entry.state === 'held') entry.state = state;
    for (const name of new Set(entries.map((e) => e.event.name))) this.publishReady(name);
  }

  /** Publishes a breaker's transitions from the front of its line up to the first held one. */
  private publishReady(name: string): void {
    const line = this.outbox.get(name);
    if (!line) return;
    while (line.length > 0 && line[0]!.state !== 'held') {
      const entry = line.shift()!;
      if (entry.state !== 'ready') continue;
      try {
        this.deps.bus.publish('breakerStateChanged', entry.event);
      } catch (error) {
        this.deps.logger.error('could not publish a breaker transition', { breaker: name, ...errorFields(error) });
      }
    }
    if (line.length === 0 && this.outbox.get(name) === line) this.outbox.delete(name);
  }
}

/** What the audit log keeps of a breaker: config and state, not the call counters. */
function auditView(snapshot: BreakerSnapshot | null): unknown {
  if (!snapshot) return null;
  return { state: snapshot.state, openUntil: snapshot.openUntil, config: snapshot.config };
}
