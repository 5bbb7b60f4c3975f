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
 *
 * In a cluster (PostgreSQL) each node has its own instance of every breaker and protects its
 * own calls with it, as resilience4j instances do:
 * - An operator's command (configure, open, reset, disable, enable, resetAll, retire) is
 *   appended to the cluster's event log in its unit (`breaker.command`, carrying what it takes
 *   to redo it); every other node applies it to its own breaker, in memory only (no audit entry,
 *   no second write of the shared row), and reports and records what that did to its breaker.
 * - Every transition is stamped with its node. Each node records its own transitions and appends
 *   them to the log (`breaker.transition`) from its write queue, in its own unit, never on the
 *   call path; the other nodes publish them on their local bus only (never into their breakers).
 * - The shared `circuit_breakers` row is the configuration; its state columns are written by
 *   operator commands only (the issuing node's breaker just after the command), so a node that
 *   joins later starts FORCED_OPEN or DISABLED when an operator left the breaker so. Each node's
 *   own state, timers and counters are reported to `node_states` (on every transition, command
 *   and counter flush); a restarting node takes its own state from there, unless a command
 *   committed after its last report (it was down): then the row's FORCED_OPEN, DISABLED or
 *   CLOSED wins. Without a row of its own a node starts CLOSED (or the operator's state).
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
import type { ClusterEvents } from '../cluster/event-log.js';
import type { NodeStates } from '../cluster/node-states.js';
import { isBreakerState, type BreakerCounters, type BreakerMetrics, type BreakerSnapshot, type BreakerState, type BreakerTransition } from './states.js';

/** What the service needs of the cluster (src/cluster/cluster.ts): a cluster of one on SQLite. */
export interface BreakerCluster {
  readonly nodeId: string;
  readonly clustered: boolean;
  readonly events: ClusterEvents;
  readonly nodeStates: Pick<NodeStates, 'report' | 'forget' | 'list' | 'flushed'>;
}

/** Operator commands, carried to the other nodes (each applies it to its own breaker). */
export const BREAKER_COMMAND_TOPIC = 'breaker.command';
/** Each node's own transitions, published on the other nodes' buses. */
export const BREAKER_TRANSITION_TOPIC = 'breaker.transition';

/** A command as the log carries it: enough to redo it on a node that may not know the breaker yet. */
export type BreakerCommand =
  | { op: 'configure' | 'open' | 'reset' | 'disable' | 'enable'; name: string; config: BreakerConfig; at: number }
  | { op: 'resetAll'; at: number }
  | { op: 'remove'; name: string; at: number };

/** One node's instance of a breaker (`circuitBreaker { nodes }`). */
export interface BreakerNodeState {
  node: string;
  state: BreakerState;
  /** Null when the node reported none. */
  metrics: BreakerMetrics | null;
  /** Epoch ms of the node's report (now, for this node: its memory). */
  updatedAt: number;
}

/** What a node reports of its breaker in node_states.detail_json. */
interface NodeDetail {
  metrics: BreakerMetrics;
  stateChangedAt: number;
  openUntil: number | null;
  openAttempts: number;
  /** `at` of the last command this node applied to the breaker (the issuer's clock, as the row's updated_at). */
  commandAt: number;
}

const ZERO_COUNTERS: BreakerCounters = {
  calls: 0, successes: 0, failures: 0, rejections: 0, timeouts: 0, slowCalls: 0,
  consecutiveFailures: 0, consecutiveSuccesses: 0, lastFailureAt: null, lastError: null,
};

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
  /** This node and the others (absent: a node called 'local' on its own). */
  cluster?: BreakerCluster;
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
  /** This node's id, stamped on its transitions. */
  readonly nodeId: string;
  private readonly clustered: boolean;
  /** Per breaker, `at` of the last command applied here (see NodeDetail.commandAt). */
  private readonly commandAt = new Map<string, number>();
  /** A command of another node is being applied: its effects are not this node's to persist. */
  private applyingRemote = false;

  constructor(private readonly deps: BreakerServiceDeps) {
    this.uow = deps.uow;
    this.nodeId = deps.cluster?.nodeId ?? 'local';
    this.clustered = deps.cluster?.clustered === true;
    deps.cluster?.events.on(BREAKER_COMMAND_TOPIC, (payload) => this.applyCommand(payload as BreakerCommand));
    deps.cluster?.events.on(BREAKER_TRANSITION_TOPIC, (payload) => this.publishRemote(payload as BreakerTransition));
    this.repo = new BreakerRepository(deps.uow);
    this.registry = new BreakerRegistry({
      clock: deps.clock,
      onListenerError: (error) => deps.logger.error('breaker listener failed', errorFields(error)),
      timeCalls: deps.metrics === true,
    });
  }

  async start(): Promise<{ restored: number }> {
    const stored = await this.repo.all();
    const own = this.clustered ? await this.repo.nodeStates(this.nodeId) : null;
    this.unsubscribe.push(
      this.registry.onTransition((event) => this.onTransition(event)),
      this.registry.onChange((breaker, kind) => {
        if (kind === 'metrics') this.markDirty(breaker.name);
        else if ((kind === 'created' || kind === 'configured') && !this.applying?.names.has(breaker.name) && !this.applyingRemote) this.persistSoon(breaker.name);
      }),
    );
    for (const { updatedAt, ...snapshot } of stored) {
      if (!own) {
        this.registry.restore(snapshot);
        continue;
      }
      const mine = own.get(snapshot.name);
      const detail = nodeDetail(mine?.detail);
      this.registry.restore(this.nodeSnapshot(snapshot, updatedAt, mine?.state, detail));
      this.commandAt.set(snapshot.name, Math.max(detail?.commandAt ?? 0, updatedAt));
      this.report(snapshot.name);
    }
    // Rows this node left for breakers removed while it was down.
    for (const name of own?.keys() ?? []) if (!this.registry.has(name)) this.deps.cluster?.nodeStates.forget('BREAKER', name);
    return { restored: stored.length };
  }

  /**
   * A cluster node's breaker at start-up (see the file comment): its own last reported state,
   * timers and counters, unless a command committed after that report, whose outcome on the row
   * (FORCED_OPEN, DISABLED, CLOSED) then wins; with no report of its own, the operator's
   * FORCED_OPEN or DISABLED, else CLOSED, with counters from zero.
   */
  private nodeSnapshot(row: BreakerSnapshot, rowAt: number, ownState: string | undefined, detail: NodeDetail | null): BreakerSnapshot {
    const mine = detail && isBreakerState(ownState) ? { state: ownState, detail } : null;
    const upToDate = mine !== null && mine.detail.commandAt >= rowAt;
    const operator = row.state === 'FORCED_OPEN' || row.state === 'DISABLED';
    const state: BreakerState = upToDate
      ? mine.state
      : operator ? row.state : mine === null || row.state === 'CLOSED' ? 'CLOSED' : mine.state;
    const counters = mine ? countersOf(mine.detail.metrics) : { ...ZERO_COUNTERS };
    if (mine && state === mine.state) {
      return { ...row, state, stateChangedAt: mine.detail.stateChangedAt, openUntil: mine.detail.openUntil, openAttempts: mine.detail.openAttempts, counters };
    }
    const stateChangedAt = state === row.state ? row.stateChangedAt : this.deps.clock.now();
    return { ...row, state, stateChangedAt, openUntil: null, openAttempts: 0, counters };
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
    await this.deps.cluster?.nodeStates.flushed();
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
    return this.repo.transitions(name, Math.min(Math.max(1, last), MAX_TRANSITIONS_PAGE), this.nodeId);
  }

  /**
   * Every node's instance of the breaker, by node id: this node's from memory, the other live
   * nodes' as they last reported them (on SQLite, this node alone).
   */
  async nodes(name: string): Promise<BreakerNodeState[]> {
    const breaker = this.registry.get(name);
    const list: BreakerNodeState[] = breaker
      ? [{ node: this.nodeId, state: breaker.state, metrics: breaker.metrics, updatedAt: this.deps.clock.now() }]
      : [];
    if (!this.clustered || !this.deps.cluster) return list;
    for (const row of await this.deps.cluster.nodeStates.list('BREAKER', name)) {
      if (row.node === this.nodeId || !isBreakerState(row.state)) continue;
      list.push({ node: row.node, state: row.state, metrics: nodeDetail(row.detail)?.metrics ?? null, updatedAt: row.updatedAt });
    }
    return list.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
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
    return this.mutate(actor, 'configureCircuitBreaker', 'configure', name, () => {
      const existing = this.registry.get(name);
      const breaker = existing ? this.registry.configure(name, partial) : this.registry.getOrCreate(name, partial);
      return { breaker, created: !existing };
    }, (r) => r.breaker);
  }

  /** Forces a breaker open until an operator resets it. */
  async open(actor: string, name: string): Promise<CircuitBreaker> {
    return this.mutate(actor, 'openCircuitBreaker', 'open', name, () => {
      const breaker = this.existing(name);
      breaker.open();
      return breaker;
    });
  }

  async reset(actor: string, name: string): Promise<CircuitBreaker> {
    return this.mutate(actor, 'resetCircuitBreaker', 'reset', name, () => {
      const breaker = this.existing(name);
      breaker.reset();
      return breaker;
    });
  }

  async disable(actor: string, name: string): Promise<CircuitBreaker> {
    return this.mutate(actor, 'disableCircuitBreaker', 'disable', name, () => {
      const breaker = this.existing(name);
      breaker.disable();
      return breaker;
    });
  }

  async enable(actor: string, name: string): Promise<CircuitBreaker> {
    return this.mutate(actor, 'enableCircuitBreaker', 'enable', name, () => {
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
    const command: BreakerCommand = { op: 'resetAll', at: now };
    await this.persist(events, command, async () => {
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
    await this.persist([], { op: 'remove', name, at: now }, async () => {
      await this.repo.delete(name);
      await this.deps.audit.record({
        at: now, actor, action: 'removeCircuitBreaker', targetType: 'CIRCUIT_BREAKER', target: name,
        before: auditView(breaker.snapshot()), after: null,
      });
      this.uow.afterCommit(() => this.forget(name));
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
    // In a cluster the counters are this node's: reported, not written to the shared row.
    if (this.clustered) {
      for (const name of names) this.report(name);
      return this.writes;
    }
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
  private async mutate<T>(
    actor: string, action: string, op: 'configure' | 'open' | 'reset' | 'disable' | 'enable', name: string, change: () => T,
    breakerOf: (result: T) => CircuitBreaker = (r) => r as CircuitBreaker,
  ): Promise<T> {
    const now = this.deps.clock.now();
    const before = this.registry.get(name)?.snapshot() ?? null;
    const { result, events } = this.apply(new Set([name]), change);
    const breaker = breakerOf(result);
    const after = breaker.snapshot();
    await this.persist(events, { op, name, config: { ...after.config }, at: now }, async () => {
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
  private async persist(events: BreakerTransition[], command: BreakerCommand, write: () => Promise<void>, undo: () => void): Promise<void> {
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
      for (const event of events) {
        await this.repo.recordTransition(event);
        if (this.clustered) this.deps.cluster?.events.append(BREAKER_TRANSITION_TOPIC, event);
      }
      await write();
      if (this.clustered) this.deps.cluster?.events.append(BREAKER_COMMAND_TOPIC, command);
      this.uow.afterCommit(() => {
        this.settle(outgoing, 'ready');
        this.commanded(command);
      });
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

  private onTransition(raw: BreakerTransition): void {
    const event: BreakerTransition = { ...raw, node: this.nodeId };
    this.dirty.delete(event.name);
    if (this.applying?.names.has(event.name)) {
      this.applying.events.push(event);
      return;
    }
    // A call, a timer or another node's command moved the breaker: published now, written in the background.
    this.toBus(event, 'ready');
    void this.inBackground('could not persist a breaker transition', { breaker: event.name }, async () => {
      const breaker = this.registry.get(event.name);
      if (!breaker) return; // removed (retired, or its creation rolled back) since
      await this.repo.recordTransition(event);
      if (this.clustered) {
        // The shared row is the operator's; this node's state goes to node_states.
        this.deps.cluster?.events.append(BREAKER_TRANSITION_TOPIC, event);
        this.report(event.name);
      } else {
        await this.repo.save(breaker.snapshot(), event.at);
      }
    });
  }

  /** A breaker created or configured outside a mutation (the library API): its row, soon. */
  private persistSoon(name: string): void {
    const now = this.deps.clock.now();
    this.dirty.delete(name);
    if (this.clustered && !this.commandAt.has(name)) this.commandAt.set(name, now);
    void this.inBackground('could not persist a breaker', { breaker: name }, async () => {
      const breaker = this.registry.get(name);
      if (!breaker) return;
      if (this.clustered) {
        // Another node may have made the row (with an operator's config): it stays as it is.
        await this.repo.saveIfMissing(breaker.snapshot(), now);
        this.report(name);
      } else {
        await this.repo.save(breaker.snapshot(), now);
      }
    });
  }

  /** A command committed here or applied from another node: the breakers it touched are reported. */
  private commanded(command: BreakerCommand): void {
    if (!this.clustered) return;
    if (command.op === 'remove') return;
    const names = command.op === 'resetAll' ? this.registry.list().map((b) => b.name) : [command.name];
    for (const name of names) {
      if (!this.registry.has(name)) continue;
      this.commandAt.set(name, Math.max(this.commandAt.get(name) ?? 0, command.at));
      this.report(name);
    }
  }

  /** Forgets a removed breaker here (memory and this node's node_states row). */
  private forget(name: string): void {
    this.dirty.delete(name);
    this.commandAt.delete(name);
    this.registry.remove(name);
    if (this.clustered) this.deps.cluster?.nodeStates.forget('BREAKER', name);
  }

  /**
   * Another node's command, applied to this node's breaker: memory only (the issuer wrote the row
   * and the audit entry). The transitions it causes are this node's: recorded, appended and
   * published like a call's. Idempotent (a command may arrive twice around a start-up).
   */
  private applyCommand(command: BreakerCommand): void {
    if (command.op === 'remove') {
      this.forget(command.name);
      return;
    }
    this.applyingRemote = true;
    try {
      if (command.op === 'resetAll') {
        this.registry.resetAll();
      } else if (command.op === 'configure') {
        this.registry.configure(command.name, command.config);
      } else {
        const breaker = this.registry.get(command.name) ?? this.registry.getOrCreate(command.name, command.config);
        if (command.op === 'open') breaker.open();
        else if (command.op === 'reset') breaker.reset();
        else if (command.op === 'disable') breaker.disable();
        else breaker.enable();
      }
    } finally {
      this.applyingRemote = false;
    }
    this.commanded(command);
  }

  /** Another node's transition: told to this node's subscribers, never applied to its breakers. */
  private publishRemote(event: BreakerTransition): void {
    if (typeof event?.name !== 'string' || !isBreakerState(event.from) || !isBreakerState(event.to)) return;
    this.deps.bus.publish('breakerStateChanged', event);
  }

  /** This node's instance of the breaker, to node_states (background, coalesced; cluster only). */
  private report(name: string): void {
    const breaker = this.registry.get(name);
    if (!this.clustered || !breaker || !this.deps.cluster) return;
    const snapshot = breaker.snapshot();
    const detail: NodeDetail = {
      metrics: breaker.metrics,
      stateChangedAt: snapshot.stateChangedAt,
      openUntil: snapshot.openUntil,
      openAttempts: snapshot.openAttempts ?? 0,
      commandAt: this.commandAt.get(name) ?? 0,
    };
    this.deps.cluster.nodeStates.report('BREAKER', name, snapshot.state, null, detail);
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

/** A node_states detail as this service wrote it, or null. */
function nodeDetail(value: unknown): NodeDetail | null {
  if (typeof value !== 'object' || value === null) return null;
  const d = value as Partial<NodeDetail>;
  if (typeof d.metrics !== 'object' || d.metrics === null || typeof d.stateChangedAt !== 'number') return null;
  return {
    metrics: d.metrics,
    stateChangedAt: d.stateChangedAt,
    openUntil: typeof d.openUntil === 'number' ? d.openUntil : null,
    openAttempts: typeof d.openAttempts === 'number' ? d.openAttempts : 0,
    commandAt: typeof d.commandAt === 'number' ? d.commandAt : 0,
  };
}

function countersOf(metrics: BreakerMetrics): BreakerCounters {
  const { failureRate: _rate, ...counters } = metrics;
  return { ...ZERO_COUNTERS, ...counters };
}

/** What the audit log keeps of a breaker: config and state, not the call counters. */
function auditView(snapshot: BreakerSnapshot | null): unknown {
  if (!snapshot) return null;
  return { state: snapshot.state, openUntil: snapshot.openUntil, config: snapshot.config };
}
