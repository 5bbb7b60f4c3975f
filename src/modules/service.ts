/**
 * Modules: registration, lifecycle and hot swap, on top of the runtime (which loads one version
 * in isolation). The rooms around it: graph.ts (dependency order, pure), supervisor.ts
 * (restarts after a crash), host.ts (what loaded versions talk to), invocation.ts (calls).
 *
 * States: UNLOADED -> LOADING -> ACTIVE (serving) or LOADED (staged with `activate: false`), or
 * FAILED with `lastError`; UNLOADING -> UNLOADED. The desired state (UNLOADED, LOADED, ACTIVE)
 * and the active version are persisted, so a restart (or a crash) converges back to them.
 *
 * - Dependencies load first, in topological order; a cycle is refused when registered, a
 *   dependency that is not registered when loading. Unload is refused while loaded dependents
 *   exist, unless `cascade` (dependents go first).
 * - A swap (and a rollback, which is a swap back to the previous version) loads the new version
 *   beside the old one and checks its health (and its tests, with `testWith`) while the old one
 *   keeps serving. Then, like Erlang's suspend/change_code/resume: new calls wait at a gate,
 *   calls in flight on the old version finish (bounded by `drainTimeoutMs`), its state moves
 *   across (`exportState` -> `importState(state, fromVersion)`), traffic switches, the gate
 *   opens, and the old version is disposed. Any failure before the switch leaves the old
 *   version serving and says why; no call is refused because of a swap.
 * - Lifecycle operations are serialised (one at a time); invocations never wait for them
 *   except for the moment of a switch.
 * - Every write is a unit of work (src/db/unit-of-work.ts); the in-memory record changes and
 *   `moduleStateChanged` is published after it commits. Lifecycle operations are asynchronous
 *   (they load code), so one called inside a caller's unit of work cannot join its transaction:
 *   it starts after that unit commits, and never if it rolls back (its promise then rejects).
 *   A module's state writes are queued per module and applied in the order they were asked
 *   for, including the ones a worker's crash and the supervisor start, which nobody awaits
 *   (their failures are logged). Invocation and routing read memory only, never the database.
 * - `invokeModule` runs through the module's own circuit breaker (`module:<name>`), with a call
 *   timeout (invocation.ts).
 * - A rollout (src/rollouts/) stages a canary beside the active version: tests first (with
 *   `testWith`), then load, health check and the active version's exported state imported; it is
 *   dropped (routing stops at once, then drain and unload) or promoted (it becomes the active
 *   version, keeping the state it built while serving its share; the old one becomes
 *   previousVersion and is drained and disposed). While a module has a rollout, swap, rollback
 *   and unload are refused with ROLLOUT_IN_PROGRESS. Routing is in invocation.ts.
 *
 * In a cluster (PostgreSQL) the desired state is shared and each node runs its own workers:
 * - A command (register, load, reload, unload, unregister, swap, rollback, a rollout's promote)
 *   is carried out on the node it was asked on, its origin, which writes the shared row and the
 *   audit and appends `module.changed` (the committed record and the action) in the same unit.
 *   Every other node converges its own runtime to that record, in commit order, serialized with
 *   its own lifecycle: it registers or forgets the module, brings it up, takes it down, or loads
 *   the committed version beside the old one and switches (the promoted canary, when it serves
 *   it) — writing neither the row nor the audit. A gated swap's tests run on the origin only.
 *   A node that could not get there (the version failed to load here) tries again, with a
 *   growing wait, until it does or the module changes again (`retryConvergence`).
 * - A rollout's canary staged or dropped on the scheduler's node is announced on
 *   `module.canary`; the other nodes stage it beside the same stable version (no tests, routed
 *   by the same split flag, recording into `setRemoteCanaryStats`' statistics) or drop it.
 * - The shared row's `state`, `lastError` and `loadedAt` are the origin's view: what the node
 *   that carried out the last command reached. A node's own steps (recovery at start, a crash,
 *   a restart, giving up) stay on that node. Each node reports its own state and version on
 *   every transition (`node_states`, `nodeStates(name)`); `get(name).state` is this node's.
 * - Concurrent commands on one module from two nodes: the later commit wins everywhere.
 */
import type { AuditRepository } from '../audit/repository.js';
import type { CircuitBreaker } from '../breakers/engine.js';
import type { BreakerService } from '../breakers/service.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { UnitOfWork } from '../db/unit-of-work.js';
import { quoteValue, UserError, type ErrorCode } from '../errors.js';
import type { EventBus } from '../events.js';
import type { EvaluationContext } from '../flags/engine.js';
import type { FlagService } from '../flags/service.js';
import { storedErrorMessage } from '../hardening/safe-messages.js';
import { errorFields, type Logger } from '../logger.js';
import { validateName } from '../validation.js';
import type { CanaryPlan, RolloutModules, StageCanaryOptions } from '../rollouts/service.js';
import { RolloutStats } from '../rollouts/stats.js';
import type { ClusterEvents } from '../cluster/event-log.js';
import type { NodeState, NodeStates } from '../cluster/node-states.js';
import { isModuleType, MODULE_TYPES, type ModuleType } from './contract.js';
import { ModuleCounters } from './metrics-counts.js';
import { dependencyOrder, dependentsOf, findCycle, loadedDependentsDeep, topologicalOrder } from './graph.js';
import { createHost } from './host.js';
import { breakerNameOf, canaryBreakerNameOf, idleLive, Invocation, type InvokeResult, type Live } from './invocation.js';
import { ModulePathError, resolveModulePath } from './paths.js';
import { ModuleRepository, ModuleRowExistsError, type ModuleRecord } from './repository.js';
import { MODULE_STATES, type ModuleState } from './states.js';
import { DEFAULT_MAX_RESTARTS, Supervisor } from './supervisor.js';
import {
  isModuleLoadError,
  loadModuleVersion,
  type LoadedModuleVersion,
  type ModuleHost,
  type ModuleIsolation,
  type ModuleLimits,
} from './runtime/index.js';

export type { ModuleRecord };

export interface RegisterModuleInput {
  name: string;
  modulePath: string;
  version: string;
  dependencies?: readonly string[] | null;
  hotReloadable?: boolean | null;
  isolation?: ModuleIsolation | null;
  moduleType?: ModuleType | null;
  config?: unknown;
}

export type { InvokeResult };
export { MODULE_BREAKER_PREFIX } from './invocation.js';
export { DEFAULT_MAX_RESTARTS, RESTART_WINDOW_MS } from './supervisor.js';

/** What a reload hook receives: the version now serving. */
export interface ModuleHandle {
  name: string;
  version: string;
  call(method: string, arg?: unknown): Promise<unknown>;
}
export type ReloadHook = (handle: ModuleHandle) => void | Promise<void>;

/** Throws (or rejects with) ROLLOUT_IN_PROGRESS while a rollout owns the module (the rollout service's `assertNoRolloutInProgress`). */
export type RolloutGuard = (module: string, operation: string) => void | Promise<void>;

/** Who force-opens a canary's breaker when its version crashes. */
const ROLLOUT_ACTOR_FOR_CRASH = 'rollout';

/** Runs a staged test run of a module version; returns whether it passed and the run's id (issue: gated swaps). */
export type SwapTestGate = (actor: string, moduleName: string, version: { modulePath: string; absolutePath: string; version: string }, moduleType: ModuleType) => Promise<{ passed: boolean; runId: string; summary: string }>;

interface ModuleServiceDeps {
  uow: UnitOfWork;
  audit: AuditRepository;
  bus: EventBus;
  clock: Clock;
  logger: Logger;
  flags: FlagService;
  breakers: BreakerService;
  modulesDir: string;
  limits?: Partial<ModuleLimits>;
  /** How long a swap or unload waits for calls in flight on the old version. */
  drainTimeoutMs?: number;
  /** Automatic restarts of a crashed module within RESTART_WINDOW_MS before giving up; 0 disables. */
  maxRestarts?: number;
  /** Prometheus metrics on: count invocations and restarts (`counters`). */
  metrics?: boolean;
  /** The cluster (PostgreSQL): commands go to the other nodes, theirs come here; each node reports its own state. */
  cluster?: ModuleCluster;
  /**
   * In a cluster, the first wait before this node tries again to reach a module's committed
   * state it could not (then doubled each time, up to CONVERGE_RETRY_MAX_MS). Default 1 s.
   */
  convergeRetryMs?: number;
}

/** The longest wait between two tries at a committed module state this node could not reach. */
export const CONVERGE_RETRY_MAX_MS = 60_000;

/** What the module service needs of the cluster (src/cluster/cluster.ts). */
export interface ModuleCluster {
  readonly nodeId: string;
  readonly clustered: boolean;
  readonly events: ClusterEvents;
  readonly nodeStates: Pick<NodeStates, 'report' | 'forget' | 'list'>;
}

/** A committed change of a module's shared record (desired state, version...), for the other nodes. */
export const MODULE_EVENT_TOPIC = 'module.changed';
/** A rollout's canary staged or dropped on the scheduler's node, for the other nodes. */
export const MODULE_CANARY_TOPIC = 'module.canary';

export interface ModuleChangeEvent {
  /** The operation as audited: registerModule, loadModule, unloadModule, swapModule, rollbackModule, promoteRollout, unregisterModule. */
  action: string;
  actor: string | null;
  /** The record as committed (the origin's `state` and `lastError` included, for information). */
  record: ModuleRecord;
  /** The registration was removed. */
  deleted: boolean;
  /** A forced reload of the same version (loadModule forceReload). */
  reload: boolean;
}

export type ModuleCanaryEvent =
  | { op: 'stage'; module: string; fromVersion: string; version: string; modulePath: string; flag: string }
  | { op: 'drop'; module: string };

/**
 * Who a lifecycle step is for. `command`: an operator's (or a rollout's) command carried out on
 * this node, its origin: the shared row and the audit are written and, in a cluster, an event
 * tells the other nodes. `local`: this node's own doing (recovery at start, a crash, a
 * restart): written as today on SQLite; in a cluster only reported as this node's state (the
 * shared row is the origin's view of the last command). `remote`: converging to a change
 * another node committed: memory and this node's reported state only.
 */
type Scope = 'command' | 'local' | 'remote';

/** A module's state on one node. */
export interface ModuleNodeState {
  node: string;
  state: ModuleState;
  version: string | null;
  updatedAt: number;
}

const VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
const MAX_CONFIG_BYTES = 64 * 1024;

export class ModuleService {
  private readonly repo: ModuleRepository;
  private readonly uow: UnitOfWork;
  private readonly records = new Map<string, ModuleRecord>();
  private readonly live = new Map<string, Live>();
  private readonly hooks = new Map<string, Set<ReloadHook>>();
  private lifecycleChain: Promise<unknown> = Promise.resolve();
  /** Per module, the last state write queued (see `transition`): they apply one after the other. */
  private readonly writes = new Map<string, Promise<void>>();
  private stopping = false;
  private testGate: SwapTestGate | null = null;
  private readonly supervisor: Supervisor;
  /** Canary breaker name -> module, for `onCanaryBreakerOpen`. */
  private readonly canaryBreakers = new Map<string, string>();
  private rolloutGuard: RolloutGuard | null = null;
  /** Modules whose committed state this node failed to reach: the timer of the next try (see `retryConvergence`). */
  private readonly convergeRetries = new Map<string, TimerHandle>();
  /** Where a canary staged by another node's rollout records its calls on this node. */
  private remoteCanaryStats: (module: string, flag: string) => RolloutStats = () => new RolloutStats();
  private readonly invocation: Invocation;
  readonly host: ModuleHost;
  /** Invocations and restarts for Prometheus; null with metrics off. */
  readonly counters: ModuleCounters | null;

  constructor(private readonly deps: ModuleServiceDeps) {
    this.uow = deps.uow;
    this.repo = new ModuleRepository(deps.uow);
    this.counters = deps.metrics === true ? new ModuleCounters() : null;
    this.invocation = new Invocation({ breakers: deps.breakers, records: this.records, live: this.live, counters: this.counters });
    this.host = createHost({ flags: deps.flags, breakers: deps.breakers, logger: deps.logger, invoke: (name, method, arg) => this.invoke(name, method, arg) });
    this.supervisor = new Supervisor({
      clock: deps.clock,
      logger: deps.logger,
      maxRestarts: deps.maxRestarts ?? DEFAULT_MAX_RESTARTS,
      stopping: () => this.stopping,
      giveUp: (record, cause) => {
        const message = storedErrorMessage(cause);
        // From a restart timer: nobody awaits it, so a failed write is logged.
        this.transition(record, 'FAILED', 'restart', null, message, { lastError: message, force: true, scope: 'local' }).catch((error: unknown) => {
          this.deps.logger.error('could not record a module giving up', { module: record.name, ...errorFields(error) });
        });
      },
      restart: (record) => this.serialized(async () => {
        // An operator may have loaded or unloaded it meanwhile.
        if (record.state !== 'FAILED' || record.desiredState !== 'ACTIVE' || this.live.get(record.name)?.active) return null;
        this.counters?.restarted(record.name);
        return this.bringUp(record, 'restart', 'system', true, 'local');
      }),
    });
    deps.cluster?.events.on(MODULE_EVENT_TOPIC, (payload) => this.onRemoteChange(payload as ModuleChangeEvent));
    deps.cluster?.events.on(MODULE_CANARY_TOPIC, (payload) => this.onRemoteCanary(payload as ModuleCanaryEvent));
  }

  private get clustered(): boolean {
    return this.deps.cluster?.clustered === true;
  }

  /** Loads registrations and brings every module whose desired state is ACTIVE or LOADED back. */
  async start(): Promise<{ recovered: number; failed: number }> {
    for (const record of await this.repo.all()) {
      // Rows written before errors were sanitized on write get the same treatment once, here.
      const lastError = record.lastError === null ? null : storedErrorMessage(record.lastError);
      this.records.set(record.name, { ...record, state: 'UNLOADED', lastError });
      const live = idleLive(record.name);
      this.live.set(record.name, live);
      await this.deps.breakers.getOrCreate(live.breakerName);
      this.reportState(this.records.get(record.name)!);
    }
    let recovered = 0;
    let failed = 0;
    await this.serialized(async () => {
      const wanted = [...this.records.values()].filter((r) => r.desiredState !== 'UNLOADED').map((r) => r.name);
      for (const name of topologicalOrder(this.records, wanted)) {
        const record = this.records.get(name)!;
        const ok = await this.bringUp(record, 'recovery', 'system', record.desiredState === 'ACTIVE', 'local');
        if (ok) recovered++;
        else failed++;
      }
    });
    return { recovered, failed };
  }

  /** Disposes every loaded version (bounded by the runtime's dispose timeout). */
  async stop(): Promise<void> {
    this.stopping = true;
    this.supervisor.stop();
    for (const timer of this.convergeRetries.values()) timer.cancel();
    this.convergeRetries.clear();
    await this.lifecycleChain.catch(() => undefined);
    const versions = [...this.live.values()].flatMap((l) => [l.active, l.canary?.version ?? null]).filter((v): v is LoadedModuleVersion => v !== null);
    for (const live of this.live.values()) {
      live.active = null;
      live.canary = null;
    }
    this.canaryBreakers.clear();
    await Promise.all(versions.map((v) => v.dispose().catch(() => v.terminate())));
    // State writes still queued (a crash just before the stop) land before the database closes.
    await Promise.all([...this.writes.values()]);
  }

  /** Refuses swap, rollback and unload of a module a rollout owns; set by the composition root. */
  setRolloutGuard(guard: RolloutGuard): void {
    this.rolloutGuard = guard;
  }

  /**
   * Where a canary another node's rollout staged records its calls on this node (the rollout
   * service reports them for the gates); default: kept on this node only.
   */
  setRemoteCanaryStats(provider: (module: string, flag: string) => RolloutStats): void {
    this.remoteCanaryStats = provider;
  }

  /** The gate a swap with `testWith` runs; set by the test-run service. */
  setTestGate(gate: SwapTestGate): void {
    this.testGate = gate;
  }

  // ---- reads ----

  list(): ModuleRecord[] {
    return [...this.records.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): ModuleRecord | null {
    return this.records.get(name) ?? null;
  }

  countByState(): Record<ModuleState, number> {
    const counts = Object.fromEntries(MODULE_STATES.map((s) => [s, 0])) as Record<ModuleState, number>;
    for (const record of this.records.values()) counts[record.state]++;
    return counts;
  }

  /**
   * The module's state and version on every live node (PostgreSQL: as each node reported it;
   * SQLite: this node, from memory).
   */
  async nodeStates(name: string): Promise<ModuleNodeState[]> {
    const record = this.records.get(name);
    const cluster = this.deps.cluster;
    if (!cluster?.clustered) {
      if (!record) return [];
      return [{ node: cluster?.nodeId ?? 'local', state: record.state, version: this.servedVersion(record), updatedAt: record.updatedAt }];
    }
    const rows: NodeState[] = await cluster.nodeStates.list('MODULE', name);
    return rows.map((r) => ({ node: r.node, state: r.state as ModuleState, version: r.version, updatedAt: r.updatedAt }));
  }

  /** Registered modules that declare `name` as a dependency. */
  dependents(name: string): string[] {
    return dependentsOf(this.records, name);
  }

  activeVersion(name: string): LoadedModuleVersion | null {
    return this.live.get(name)?.active ?? null;
  }

  breakerName(name: string): string {
    return breakerNameOf(name);
  }

  /** Resolves a path under the modules root, as registration does (for staged test runs). */
  resolvePath(modulePath: string): { absolutePath: string; relativePath: string } {
    return this.resolve(modulePath, 'modulePath');
  }

  /** Loads a staged, never-serving instance of a module version (for test runs). */
  stage(record: ModuleRecord, version: { absolutePath: string; version: string }): Promise<LoadedModuleVersion> {
    return loadModuleVersion({
      name: record.name,
      version: version.version,
      absolutePath: version.absolutePath,
      isolation: record.isolation,
      config: record.config,
      dependencyNames: record.dependencies,
      host: this.host,
      clock: this.deps.clock,
      ...(this.deps.limits ? { limits: this.deps.limits } : {}),
    });
  }

  /** The seed's `add_reload_hook`: `fn` runs after each load, swap or rollback of `name`. */
  onReload(name: string, fn: ReloadHook): () => void {
    const set = this.hooks.get(name) ?? new Set<ReloadHook>();
    set.add(fn);
    this.hooks.set(name, set);
    return () => set.delete(fn);
  }

  // ---- mutations ----

  register(actor: string, input: RegisterModuleInput): Promise<ModuleRecord> {
    return this.serialized(async () => {
      const name = validateName(input.name, 'name', 'Module name');
      if (this.records.has(name)) throw new UserError('MODULE_ALREADY_EXISTS', `Module ${quoteValue(name)} is already registered`, 'name');
      const version = validateVersion(input.version, 'version');
      const { relativePath } = this.resolve(input.modulePath, 'modulePath');
      const dependencies = [...new Set((input.dependencies ?? []).map((d) => validateName(d, 'dependencies', 'Dependency name')))];
      if (dependencies.includes(name)) throw new UserError('DEPENDENCY_CYCLE', `Module ${quoteValue(name)} cannot depend on itself`, 'dependencies');
      const cycle = findCycle(this.records, name, dependencies);
      if (cycle) throw new UserError('DEPENDENCY_CYCLE', `Dependencies would form a cycle: ${cycle.join(' -> ')}`, 'dependencies');
      if (input.moduleType && !MODULE_TYPES.includes(input.moduleType)) {
        throw new UserError('INVALID_ARGUMENT', `Unknown module type ${quoteValue(input.moduleType)}`, 'moduleType');
      }
      const config = validateConfig(input.config);
      const now = this.deps.clock.now();
      const record: ModuleRecord = {
        name, modulePath: relativePath, version, dependencies,
        hotReloadable: input.hotReloadable ?? true,
        isolation: input.isolation ?? 'WORKER',
        moduleType: input.moduleType ?? null,
        config,
        desiredState: 'UNLOADED', state: 'UNLOADED', lastError: null, loadedAt: null,
        previousVersion: null, previousModulePath: null, createdAt: now, updatedAt: now,
      };
      try {
        await this.uow.run(async () => {
          await this.repo.insert(record);
          await this.deps.audit.record({ at: now, actor, action: 'registerModule', targetType: 'MODULE', target: name, before: null, after: auditView(record) });
          await this.deps.breakers.getOrCreate(breakerNameOf(name));
          this.announce('registerModule', actor, record, { deleted: false, reload: false });
          this.uow.afterCommit(() => {
            this.records.set(name, record);
            this.live.set(name, idleLive(name));
            this.publish(record, 'UNLOADED', 'registerModule', actor, null);
            this.reportState(record);
          });
        });
      } catch (error) {
        // Another node sharing the database registered it first.
        if (error instanceof ModuleRowExistsError) throw new UserError('MODULE_ALREADY_EXISTS', `Module ${quoteValue(name)} is already registered`, 'name');
        throw error;
      }
      return record;
    });
  }

  /**
   * Loads a module (dependencies first) and activates it. An ACTIVE module is left alone
   * unless `forceReload`, which loads its file again as a swap to the same version. With
   * `activate: false` the module is loaded but does not serve (LOADED).
   */
  load(actor: string, name: string, options: { forceReload?: boolean; activate?: boolean } = {}): Promise<ModuleRecord> {
    return this.serialized(async () => {
      const record = this.existing(name);
      const activate = options.activate ?? true;
      for (const dep of dependencyOrder(this.records, name)) {
        const depRecord = this.records.get(dep)!;
        if (depRecord.state === 'ACTIVE') continue;
        const ok = await this.bringUp(depRecord, 'loadModule', actor, true, 'command');
        if (!ok) {
          throw new UserError('MODULE_LOAD_FAILED', `Dependency ${quoteValue(dep)} failed to load: ${depRecord.lastError ?? 'unknown error'}`, 'name');
        }
      }
      const live = this.live.get(name)!;
      if (live.active && record.state === 'ACTIVE' && !options.forceReload) return record;
      if (live.active && record.state === 'LOADED' && !options.forceReload) {
        if (activate) await this.transition(record, 'ACTIVE', 'loadModule', actor, null, { desiredState: 'ACTIVE', scope: 'command' });
        return record;
      }
      if (live.active && options.forceReload) {
        await this.assertNoRollout(name, 'reload');
        const { absolutePath } = this.resolve(record.modulePath, 'modulePath');
        await this.replaceVersion(record, { modulePath: record.modulePath, absolutePath, version: record.version }, 'loadModule', actor, { keepPrevious: true, reload: true }, 'command');
        return record;
      }
      const ok = await this.bringUp(record, 'loadModule', actor, activate, 'command');
      if (!ok) throw new UserError('MODULE_LOAD_FAILED', `Module ${quoteValue(name)} failed to load: ${record.lastError ?? 'unknown error'}`, 'name');
      return record;
    });
  }

  /** Unloads a module; refused while loaded dependents exist unless `cascade`. Returns the unloaded names. */
  unload(actor: string, name: string, cascade = false): Promise<{ record: ModuleRecord; unloaded: string[] }> {
    return this.serialized(async () => {
      const record = this.existing(name);
      await this.assertNoRollout(name, 'unload');
      const loadedDependents = loadedDependentsDeep(this.records, name);
      if (loadedDependents.length > 0 && !cascade) {
        throw new UserError(
          'DEPENDENTS_LOADED',
          `Module ${quoteValue(name)} is used by loaded modules: ${loadedDependents.join(', ')}. Unload them first or pass cascade: true`,
          'cascade',
        );
      }
      if (cascade) for (const dependent of loadedDependents) await this.assertNoRollout(dependent, 'unload');
      const unloaded: string[] = [];
      // Deepest dependents first.
      for (const dependent of [...topologicalOrder(this.records, loadedDependents)].reverse()) {
        await this.takeDown(this.records.get(dependent)!, 'unloadModule', actor, 'command');
        unloaded.push(dependent);
      }
      await this.takeDown(record, 'unloadModule', actor, 'command');
      unloaded.push(name);
      return { record, unloaded };
    });
  }

  /** Removes an UNLOADED module's registration; refused while another module depends on it. */
  unregister(actor: string, name: string): Promise<ModuleRecord> {
    return this.serialized(async () => {
      const record = this.existing(name);
      if (record.state !== 'UNLOADED') {
        throw new UserError('INVALID_MODULE_STATE', `Module "${name}" is ${record.state}; unload it before unregistering it`, 'name');
      }
      const dependents = this.dependents(name);
      if (dependents.length > 0) {
        throw new UserError('MODULE_HAS_DEPENDENTS', `Module "${name}" is a dependency of ${dependents.join(', ')}; unregister them first`, 'name');
      }
      await this.uow.run(async () => {
        await this.repo.delete(name);
        await this.deps.audit.record({ at: this.deps.clock.now(), actor, action: 'unregisterModule', targetType: 'MODULE', target: name, before: auditView(record), after: null });
        this.announce('unregisterModule', actor, record, { deleted: true, reload: false });
        this.uow.afterCommit(() => this.forgetLocally(record, 'unregisterModule', actor));
      });
      return record;
    });
  }

  /** Hot-swaps an ACTIVE module to the file at `newVersionPath` (see the file comment). */
  swap(actor: string, name: string, input: { newVersionPath: string; newVersion?: string | null; testWith?: ModuleType | null }): Promise<{ record: ModuleRecord; testRunId: string | null }> {
    return this.serialized(async () => {
      const record = this.existing(name);
      await this.assertNoRollout(name, 'swap');
      if (record.state !== 'ACTIVE') {
        throw new UserError('INVALID_MODULE_STATE', `Module ${quoteValue(name)} is ${record.state}; only an ACTIVE module can be swapped (load it first)`, 'name');
      }
      if (!record.hotReloadable) throw new UserError('NOT_HOT_RELOADABLE', `Module ${quoteValue(name)} is registered with hotReloadable: false`, 'name');
      const { absolutePath, relativePath } = this.resolve(input.newVersionPath, 'newVersionPath');
      const version = input.newVersion != null ? validateVersion(input.newVersion, 'newVersion') : defaultVersionFor(relativePath);
      const target = { modulePath: relativePath, absolutePath, version };
      let testRunId: string | null = null;
      if (input.testWith) {
        if (!this.testGate) throw new UserError('INVALID_ARGUMENT', 'Test runs are not available', 'testWith');
        const outcome = await this.testGate(actor, name, target, input.testWith);
        testRunId = outcome.runId;
        if (!outcome.passed) {
          const message = storedErrorMessage(`Swap of ${quoteValue(name)} to ${version} refused: test run ${outcome.runId} failed (${outcome.summary}); ${record.version} keeps serving`);
          await this.noteFailure(record, 'swapModule', actor, message, 'command');
          throw new SwapRefused('TESTS_FAILED', message, testRunId);
        }
      }
      await this.replaceVersion(record, target, 'swapModule', actor, { keepPrevious: false }, 'command');
      return { record, testRunId };
    });
  }

  /** Swaps back to the previous version; the version rolled back from becomes the previous one. */
  rollback(actor: string, name: string): Promise<ModuleRecord> {
    return this.serialized(async () => {
      const record = this.existing(name);
      await this.assertNoRollout(name, 'roll back');
      if (!record.previousVersion || !record.previousModulePath) {
        throw new UserError('NO_PREVIOUS_VERSION', `Module ${quoteValue(name)} has no previous version to roll back to`, 'name');
      }
      if (record.state !== 'ACTIVE') {
        throw new UserError('INVALID_MODULE_STATE', `Module ${quoteValue(name)} is ${record.state}; only an ACTIVE module can be rolled back`, 'name');
      }
      const { absolutePath } = this.resolve(record.previousModulePath, 'modulePath');
      await this.replaceVersion(record, { modulePath: record.previousModulePath, absolutePath, version: record.previousVersion }, 'rollbackModule', actor, { keepPrevious: false }, 'command');
      return record;
    });
  }

  /** Calls `method(args)` on the active version through the module's breaker (see invocation.ts). */
  invoke(name: string, method: string, args: unknown, context: EvaluationContext | null = null): Promise<InvokeResult> {
    return this.invocation.invoke(name, method, args, context);
  }

  // ---- canary (a rollout's second version; routing is in invocation.ts) ----

  /** The canary a rollout is routing to, if any. */
  canaryOf(name: string): { module: string; version: string; modulePath: string; flag: string; breakerName: string } | null {
    const canary = this.live.get(name)?.canary ?? null;
    return canary && { module: name, version: canary.version.version, modulePath: canary.modulePath, flag: canary.flag, breakerName: canary.breaker.name };
  }

  /** The modules side of a rollout (the interface the rollout service declares). */
  rolloutModules(): RolloutModules {
    return {
      planCanary: (module, newVersionPath, newVersion) => this.planCanary(module, newVersionPath, newVersion),
      activeVersion: (module) => this.live.get(module)?.active?.version ?? null,
      stageCanary: async (plan, options) => {
        const { testRunId, staged } = await this.stageCanary(plan, options);
        if (staged) await this.announceCanary({ op: 'stage', module: plan.module, fromVersion: plan.fromVersion, version: plan.toVersion, modulePath: plan.modulePath, flag: options.flag });
        return { testRunId };
      },
      dropCanary: async (module) => {
        // Routing stops here, in the caller's turn (before the first await); then the other nodes are told.
        const dropped = this.dropCanary(module);
        try {
          await this.announceCanary({ op: 'drop', module });
        } finally {
          await dropped;
        }
      },
      promoteCanary: (module, actor) => this.promoteCanary(module, actor),
      canaryBreakerState: (module) => this.live.get(module)?.canary?.breaker.state ?? null,
      // The registry's own transitions (not the bus, whose listeners are the live feeds): at once, in order.
      onCanaryBreakerOpen: (listener) => this.deps.breakers.registry.onTransition((event) => {
        if (event.to !== 'OPEN' && event.to !== 'FORCED_OPEN') return;
        const module = this.canaryBreakers.get(event.name);
        if (module !== undefined) listener(module, event.to);
      }),
    };
  }

  /** Synchronous checks of a rollout's new version before anything is written or loaded. */
  private planCanary(name: string, newVersionPath: string, newVersion: string | null): CanaryPlan {
    const record = this.records.get(name);
    if (!record) throw new UserError('MODULE_NOT_FOUND', `Module ${quoteValue(name)} is not registered`, 'module');
    const live = this.live.get(name)!;
    if (record.state !== 'ACTIVE' || !live.active) {
      throw new UserError('INVALID_MODULE_STATE', `Module ${quoteValue(name)} is ${record.state}; only an ACTIVE module can be rolled out to a new version (load it first)`, 'module');
    }
    if (!record.hotReloadable) throw new UserError('NOT_HOT_RELOADABLE', `Module ${quoteValue(name)} is registered with hotReloadable: false`, 'module');
    if (live.canary) throw new UserError('ROLLOUT_IN_PROGRESS', `Module ${quoteValue(name)} already serves a canary (${live.canary.version.version})`, 'module');
    const { relativePath } = this.resolve(newVersionPath, 'newVersionPath');
    const version = newVersion !== null ? validateVersion(newVersion, 'newVersion') : defaultVersionFor(relativePath);
    if (version === live.active.version) {
      throw new UserError('INVALID_ARGUMENT', `Module ${quoteValue(name)} already runs ${version}: give the new version another name (newVersion)`, 'newVersion');
    }
    return { module: name, fromVersion: live.active.version, toVersion: version, modulePath: relativePath };
  }

  /**
   * Runs the new version's tests (with `testWith`), loads it beside the stable version, checks
   * its health, imports the stable version's exported state and makes it routable by the split
   * flag. Any failure leaves nothing loaded and the stable version serving everything.
   */
  private stageCanary(plan: CanaryPlan, options: StageCanaryOptions): Promise<{ testRunId: string | null; staged: boolean }> {
    return this.serialized(async () => {
      const record = this.existing(plan.module);
      const live = this.live.get(plan.module)!;
      const stable = live.active;
      const current = live.canary;
      if (this.clustered && current && options.testWith === null && current.version.version === plan.toVersion && current.modulePath === plan.modulePath && current.flag === options.flag) {
        // Already staged here for another node's rollout (its event came first): the same canary, recorded into these statistics from now on.
        live.canary = { ...current, stats: options.stats };
        return { testRunId: null, staged: false };
      }
      if (record.state !== 'ACTIVE' || !stable || stable.version !== plan.fromVersion) {
        throw new UserError('INVALID_MODULE_STATE', `Module ${quoteValue(plan.module)} no longer serves ${plan.fromVersion} (it is ${record.state}${stable ? ` at ${stable.version}` : ''})`, 'module');
      }
      if (live.canary) throw new UserError('ROLLOUT_IN_PROGRESS', `Module ${quoteValue(plan.module)} already serves a canary (${live.canary.version.version})`, 'module');
      const { absolutePath } = this.resolve(plan.modulePath, 'newVersionPath');
      const target = { modulePath: plan.modulePath, absolutePath, version: plan.toVersion };
      let testRunId: string | null = null;
      if (options.testWith !== null) {
        if (!this.testGate) throw new UserError('INVALID_ARGUMENT', 'Test runs are not available', 'testWith');
        if (!isModuleType(options.testWith)) throw new UserError('INVALID_ARGUMENT', `Unknown module type ${quoteValue(options.testWith)}`, 'testWith');
        const outcome = await this.testGate(options.actor, plan.module, target, options.testWith);
        testRunId = outcome.runId;
        if (!outcome.passed) {
          throw new SwapRefused('TESTS_FAILED', `test run ${outcome.runId} failed (${outcome.summary})`, outcome.runId);
        }
      }
      let canaryVersion: LoadedModuleVersion;
      try {
        canaryVersion = await this.loadVersion(record, absolutePath, plan.toVersion);
      } catch (error) {
        throw new UserError('MODULE_LOAD_FAILED', describeError(error), 'newVersionPath');
      }
      try {
        const health = await canaryVersion.healthCheck();
        if (!health.ok) throw new Error(`health check failed${health.detail !== undefined ? `: ${JSON.stringify(health.detail)}` : ''}`);
        // A snapshot: the stable version keeps serving (and changing) its own state from here.
        const state = await stable.exportState();
        if (state !== undefined) await canaryVersion.importState(state, stable.version);
        if (live.active !== stable) throw new Error(`${plan.fromVersion} stopped serving while the canary was staged`);
      } catch (error) {
        await canaryVersion.dispose().catch(() => canaryVersion.terminate());
        throw new UserError('MODULE_LOAD_FAILED', describeError(error), 'newVersionPath');
      }
      const breaker = await this.canaryBreaker(record.name, plan.toVersion, options.actor);
      if (live.active !== stable) {
        // The stable version died while the breaker was written.
        await canaryVersion.dispose().catch(() => canaryVersion.terminate());
        await this.retireCanaryBreaker(breaker.name);
        throw new UserError('MODULE_LOAD_FAILED', `${plan.fromVersion} stopped serving while the canary was staged`, 'newVersionPath');
      }
      live.canary = { version: canaryVersion, modulePath: plan.modulePath, flag: options.flag, split: this.deps.flags.decider(options.flag), stats: options.stats, breaker };
      this.canaryBreakers.set(breaker.name, record.name);
      canaryVersion.onExit((exit) => {
        if (exit.expected || live.canary?.version !== canaryVersion) return;
        // Stop routing at once; the forced-open breaker tells the rollout, which aborts.
        live.canary = null;
        this.deps.logger.error('canary version stopped unexpectedly', { module: record.name, version: canaryVersion.version, reason: exit.reason });
        // From a worker's exit event: nobody awaits this, so failures are logged.
        void (async () => {
          try {
            await this.deps.breakers.open(ROLLOUT_ACTOR_FOR_CRASH, breaker.name);
          } catch (error) {
            this.deps.logger.error('could not force open a crashed canary\'s breaker', { breaker: breaker.name, ...errorFields(error) });
          } finally {
            this.canaryBreakers.delete(breaker.name);
          }
          // The open has told the rollout (which aborts); then the breaker of a dead version goes.
          await this.retireCanaryBreaker(breaker.name);
        })();
      });
      this.deps.logger.info('canary staged', { module: record.name, stable: stable.version, canary: plan.toVersion, flag: options.flag });
      return { testRunId, staged: true };
    });
  }

  /** A canary's breaker outlives nothing it guarded: removed (audited) once its version is promoted or gone. */
  private async retireCanaryBreaker(breakerName: string): Promise<void> {
    try {
      await this.deps.breakers.retire(ROLLOUT_ACTOR_FOR_CRASH, breakerName);
    } catch (error) {
      this.deps.logger.error('could not remove a canary breaker', { breaker: breakerName, ...errorFields(error) });
    }
  }

  /** The canary's own breaker, with the stable breaker's config; a fresh canary starts CLOSED. */
  private async canaryBreaker(name: string, version: string, actor: string): Promise<CircuitBreaker> {
    const stableBreaker = await this.deps.breakers.getOrCreate(breakerNameOf(name));
    const breakerName = canaryBreakerNameOf(name, version);
    const breaker = await this.deps.breakers.getOrCreate(breakerName, stableBreaker.config);
    if (breaker.state !== 'CLOSED' && breaker.state !== 'DISABLED') await this.deps.breakers.reset(actor, breakerName);
    return breaker;
  }

  /**
   * Stops routing to the canary at once (before the first await), then drains its calls in
   * flight and unloads it. Not serialised with the lifecycle: it never waits behind a load.
   */
  private async dropCanary(name: string, retire = true): Promise<void> {
    // Everything up to the first await runs in the caller's turn: routing stops there.
    const live = this.live.get(name);
    const canary = live?.canary ?? null;
    if (!live || !canary) return;
    live.canary = null;
    this.canaryBreakers.delete(canary.breaker.name);
    const version = canary.version;
    try {
      await version.drain(this.deps.drainTimeoutMs ?? 5000);
      await version.dispose();
    } catch {
      await version.terminate();
    }
    // A canary staged for another node's rollout: its breaker is that node's to remove.
    if (retire) await this.retireCanaryBreaker(canary.breaker.name);
    this.deps.logger.info('canary unloaded', { module: name, version: version.version });
  }

  /**
   * The canary becomes the active version (its state is the one it built while serving its
   * share; the stable version's is not moved again), the old one its previousVersion (the
   * rollback target); the old one is drained and disposed. Switching needs no gate: both
   * versions were serving.
   */
  private promoteCanary(name: string, actor: string): Promise<void> {
    return this.serialized(async () => {
      const record = this.existing(name);
      const live = this.live.get(name)!;
      const canary = live.canary;
      const old = live.active;
      if (!canary) throw new UserError('INVALID_MODULE_STATE', `Module ${quoteValue(name)} has no canary to promote`, 'module');
      if (record.state !== 'ACTIVE' || !old) throw new UserError('INVALID_MODULE_STATE', `Module ${quoteValue(name)} is ${record.state}, not ACTIVE`, 'module');
      const fromPath = record.modulePath;
      const fromVersion = record.version;
      live.active = canary.version;
      live.canary = null;
      // Watched from the switch on (the write below awaits); a crash after a failed write finds `live.active` put back and is ignored.
      this.attach(record, canary.version);
      try {
        await this.transition(record, 'ACTIVE', 'promoteRollout', actor, null, {
          modulePath: canary.modulePath, version: canary.version.version, loadedAt: this.deps.clock.now(), lastError: null,
          desiredState: 'ACTIVE', previousVersion: fromVersion, previousModulePath: fromPath, force: true, scope: 'command',
        });
      } catch (error) {
        live.active = old;
        live.canary = canary;
        throw error;
      }
      this.canaryBreakers.delete(canary.breaker.name);
      // The promoted version now serves through the module's own breaker.
      await this.retireCanaryBreaker(canary.breaker.name);
      void old.drain(this.deps.drainTimeoutMs ?? 5000).then(() => old.dispose()).catch(() => old.terminate());
      this.runHooks(record, canary.version);
    });
  }

  private async assertNoRollout(name: string, operation: string): Promise<void> {
    await this.rolloutGuard?.(name, operation);
    const canary = this.live.get(name)?.canary;
    if (canary) {
      throw new UserError('ROLLOUT_IN_PROGRESS', `Cannot ${operation} ${quoteValue(name)}: it serves a canary (${canary.version.version}) of a rollout; promote or abort it first`, 'name');
    }
  }

  // ---- internals: lifecycle ----

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    if (this.stopping) return Promise.reject(new UserError('INVALID_MODULE_STATE', 'Helios is shutting down', null));
    if (this.uow.active) return this.afterCallersUnit(() => this.serialized(fn));
    const run = this.lifecycleChain.then(fn, fn);
    this.lifecycleChain = run.catch(() => undefined);
    return run;
  }

  /** An operation asked for inside a caller's unit of work: started once it commits, refused if it rolls back. */
  private afterCallersUnit<T>(start: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      this.uow.afterCommit(() => {
        settled = true;
        start().then(resolve, reject);
      });
      this.uow.onRollback(() => {
        if (settled) return;
        settled = true;
        reject(new UserError('INVALID_MODULE_STATE', 'The unit of work this module operation was asked in rolled back; nothing was done', null));
      });
    });
  }

  private existing(name: string): ModuleRecord {
    const record = this.records.get(name);
    if (!record) throw new UserError('MODULE_NOT_FOUND', `Module ${quoteValue(name)} is not registered`, 'name');
    return record;
  }

  private resolve(modulePath: string, field: string): { absolutePath: string; relativePath: string } {
    try {
      return resolveModulePath(this.deps.modulesDir, modulePath);
    } catch (error) {
      if (error instanceof ModulePathError) {
        throw new UserError(error.code === 'MODULE_NOT_FOUND' ? 'MODULE_FILE_NOT_FOUND' : 'INVALID_MODULE_PATH', error.message, field);
      }
      throw error;
    }
  }

  private loadVersion(record: ModuleRecord, absolutePath: string, version: string): Promise<LoadedModuleVersion> {
    return this.stage(record, { absolutePath, version });
  }

  /** UNLOADED/FAILED -> LOADING -> ACTIVE or LOADED (or FAILED). Returns whether it worked. */
  private async bringUp(record: ModuleRecord, action: string, actor: string, activate: boolean, scope: Scope): Promise<boolean> {
    const missing = record.dependencies.filter((d) => this.records.get(d)?.state !== 'ACTIVE');
    if (missing.length > 0) {
      const message = storedErrorMessage(`Dependencies not active: ${missing.join(', ')}`);
      await this.transition(record, 'FAILED', action, actor, message, { lastError: message, desiredState: activate ? 'ACTIVE' : 'LOADED', scope });
      return false;
    }
    await this.transition(record, 'LOADING', action, actor, null, { persist: false, scope });
    let version: LoadedModuleVersion | null = null;
    try {
      const { absolutePath } = this.resolve(record.modulePath, 'modulePath');
      version = await this.loadVersion(record, absolutePath, record.version);
      const health = await version.healthCheck();
      if (!health.ok) throw new Error(`health check failed${health.detail !== undefined ? `: ${JSON.stringify(health.detail)}` : ''}`);
    } catch (error) {
      await version?.dispose().catch(() => undefined);
      const message = storedErrorMessage(describeError(error));
      await this.transition(record, 'FAILED', action, actor, message, { lastError: message, desiredState: activate ? 'ACTIVE' : 'LOADED', loadedAt: null, scope });
      this.deps.logger.warn('module failed to load', { module: record.name, error: message });
      return false;
    }
    this.live.get(record.name)!.active = version;
    this.attach(record, version);
    await this.transition(record, activate ? 'ACTIVE' : 'LOADED', action, actor, null, {
      lastError: null, desiredState: activate ? 'ACTIVE' : 'LOADED', loadedAt: this.deps.clock.now(), scope,
    });
    this.runHooks(record, version);
    return true;
  }

  /** -> UNLOADING -> UNLOADED: stop routing, drain, dispose. */
  private async takeDown(record: ModuleRecord, action: string, actor: string, scope: Scope): Promise<void> {
    const live = this.live.get(record.name)!;
    const version = live.active;
    await this.dropCanary(record.name, scope !== 'remote');
    if (version) {
      await this.transition(record, 'UNLOADING', action, actor, null, { persist: false, scope });
      live.active = null;
      await version.drain(this.deps.drainTimeoutMs ?? 5000);
      await version.dispose().catch(() => version.terminate());
    }
    await this.transition(record, 'UNLOADED', action, actor, null, { desiredState: 'UNLOADED', lastError: null, loadedAt: null, scope });
  }

  /** Loads `target` beside the serving version and switches to it (see the file comment). */
  private async replaceVersion(
    record: ModuleRecord,
    target: { modulePath: string; absolutePath: string; version: string },
    action: string,
    actor: string,
    options: { keepPrevious: boolean; reload?: boolean },
    scope: Scope,
  ): Promise<void> {
    const live = this.live.get(record.name)!;
    const old = live.active!;
    let next: LoadedModuleVersion;
    try {
      next = await this.loadVersion(record, target.absolutePath, target.version);
    } catch (error) {
      const message = storedErrorMessage(`${action} of "${record.name}" to ${target.version} failed, ${record.version} keeps serving: ${describeError(error)}`);
      await this.noteFailure(record, action, actor, message, scope);
      throw new UserError('SWAP_FAILED', message, 'newVersionPath');
    }
    const abandon = async (why: string): Promise<never> => {
      await next.dispose().catch(() => next.terminate());
      const message = storedErrorMessage(`${action} of "${record.name}" to ${target.version} failed, ${record.version} keeps serving: ${why}`);
      await this.noteFailure(record, action, actor, message, scope);
      throw new UserError('SWAP_FAILED', message, null);
    };
    const health = await next.healthCheck();
    if (!health.ok) await abandon(`health check failed${health.detail !== undefined ? `: ${JSON.stringify(health.detail)}` : ''}`);

    // Suspend: new calls wait at the gate while the old version finishes what it has.
    let openGate!: () => void;
    live.gate = new Promise<void>((resolve) => {
      openGate = resolve;
    });
    try {
      await old.drain(this.deps.drainTimeoutMs ?? 5000);
      try {
        const state = await old.exportState();
        if (state !== undefined) await next.importState(state, old.version);
      } catch (error) {
        return await abandon(`moving state failed: ${describeError(error)}`);
      }
      live.active = next;
    } finally {
      live.gate = null;
      openGate();
    }
    this.attach(record, next);
    const fromPath = record.modulePath;
    const fromVersion = record.version;
    await this.transition(record, 'ACTIVE', action, actor, null, {
      modulePath: target.modulePath,
      version: target.version,
      loadedAt: this.deps.clock.now(),
      lastError: null,
      desiredState: 'ACTIVE',
      ...(options.keepPrevious ? {} : { previousVersion: fromVersion, previousModulePath: fromPath }),
      force: true,
      scope,
      ...(options.reload ? { reload: true } : {}),
    });
    // Calls that outlived the drain deadline get until the dispose timeout, then the worker is terminated.
    void old.drain(this.deps.drainTimeoutMs ?? 5000).then(() => old.dispose()).catch(() => old.terminate());
    this.runHooks(record, next);
  }

  /** Marks the module FAILED if its serving version dies unexpectedly. */
  private attach(record: ModuleRecord, version: LoadedModuleVersion): void {
    version.onExit((exit) => {
      if (exit.expected) return;
      const live = this.live.get(record.name);
      if (!live || live.active !== version) return;
      live.active = null;
      const message = storedErrorMessage(`${exit.reason}: ${exit.message}`);
      this.deps.logger.error('module version stopped unexpectedly', { module: record.name, version: version.version, reason: exit.reason });
      // From a worker's exit event: nobody awaits it, so a failed write is logged. The restart
      // is scheduled once the record says FAILED (the restart checks it).
      this.transition(record, 'FAILED', 'crash', null, message, { lastError: message, loadedAt: null, scope: 'local' }).then(
        () => this.supervisor.scheduleRestart(record, message),
        (error: unknown) => this.deps.logger.error('could not record a module crash', { module: record.name, ...errorFields(error) }),
      );
    });
  }

  private noteFailure(record: ModuleRecord, action: string, actor: string, message: string, scope: Scope): Promise<void> {
    // Nothing changed that the other nodes must do: the failure is this node's.
    return this.transition(record, null, action, actor, message, { lastError: message, force: true, scope, announce: false });
  }

  /**
   * Applies a state change to the record, persists it with an audit entry (unless
   * `persist: false`, for the passing LOADING/UNLOADING states) and publishes it, once its
   * unit commits. A module's changes are queued and applied one after the other, in the order
   * they were asked for (a crash reported by a worker while a lifecycle write is under way
   * lands after it), each computed from the record as the previous one left it. `to: null`
   * keeps the state the record then has. Rejects, changing nothing, when the write fails.
   */
  private transition(
    record: ModuleRecord,
    to: ModuleState | null,
    action: string,
    actor: string | null,
    error: string | null,
    changes: TransitionChanges,
  ): Promise<void> {
    const apply = () => this.applyTransition(record, to, action, actor, error, changes);
    const previous = this.writes.get(record.name) ?? Promise.resolve();
    const run = previous.then(apply);
    const tail = run.catch(() => undefined);
    this.writes.set(record.name, tail);
    void tail.then(() => {
      if (this.writes.get(record.name) === tail) this.writes.delete(record.name);
    });
    return run;
  }

  private async applyTransition(
    record: ModuleRecord,
    toState: ModuleState | null,
    action: string,
    actor: string | null,
    error: string | null,
    changes: TransitionChanges,
  ): Promise<void> {
    const { persist: persistAsked = true, force = false, scope, reload = false, announce = true, ...fields } = changes;
    // In a cluster the shared row and the audit are the origin's: this node's own and converged steps stay in memory.
    const persist = persistAsked && (scope === 'command' || (scope === 'local' && !this.clustered));
    const from = record.state;
    const to = toState ?? from;
    const before = auditView(record);
    const now = this.deps.clock.now();
    const next: ModuleRecord = { ...record, ...fields, state: to, updatedAt: now };
    const applyToMemory = () => {
      Object.assign(record, next);
      if (from !== to || force || error) this.publish(record, from, action, actor, error);
      this.reportState(record);
    };
    if (!persist) {
      // Nothing to write: memory changes now (inside a caller's unit it still waits for the commit).
      this.uow.afterCommit(applyToMemory);
      return;
    }
    await this.uow.run(async () => {
      await this.repo.save(next);
      await this.deps.audit.record({ at: now, actor: actor ?? 'system', action, targetType: 'MODULE', target: record.name, before, after: auditView(next) });
      if (scope === 'command' && announce) this.announce(action, actor, next, { deleted: false, reload });
      this.uow.afterCommit(applyToMemory);
    });
  }

  // ---- internals: the cluster ----

  /** In the open unit of work: tells the other nodes about a committed change of `record` (no-op on SQLite). */
  private announce(action: string, actor: string | null, record: ModuleRecord, options: { deleted: boolean; reload: boolean }): void {
    const event: ModuleChangeEvent = { action, actor, record: { ...record }, deleted: options.deleted, reload: options.reload };
    this.deps.cluster?.events.append(MODULE_EVENT_TOPIC, event);
  }

  /** A canary staged or dropped here, for the other nodes: a unit of its own (nothing on SQLite). */
  private async announceCanary(event: ModuleCanaryEvent): Promise<void> {
    if (!this.clustered) return;
    await this.uow.run(async () => {
      this.deps.cluster!.events.append(MODULE_CANARY_TOPIC, event);
    });
  }

  /** The version this node serves of `record`, null when none. */
  private servedVersion(record: ModuleRecord): string | null {
    return this.live.get(record.name)?.active?.version ?? null;
  }

  /** This node's state of the module, for `module { nodes }` (PostgreSQL; background). */
  private reportState(record: ModuleRecord): void {
    if (!this.records.has(record.name)) return;
    this.deps.cluster?.nodeStates.report('MODULE', record.name, record.state, this.servedVersion(record));
  }

  private forgetLocally(record: ModuleRecord, action: string, actor: string | null): void {
    this.records.delete(record.name);
    this.live.delete(record.name);
    this.publish(record, 'UNLOADED', action, actor, null);
    this.deps.cluster?.nodeStates.forget('MODULE', record.name);
  }

  /** Another node committed a change of a module: this node converges to it, in commit order, with its other lifecycle steps. */
  private onRemoteChange(event: ModuleChangeEvent): void {
    if (this.stopping) return;
    // A newer change replaces whatever an earlier one left to try again.
    this.cancelConvergeRetry(event.record.name);
    this.convergeTo(event, 0);
  }

  private convergeTo(event: ModuleChangeEvent, attempt: number): void {
    this.serialized(async () => {
      if (!(await this.converge(event))) this.retryConvergence(event.record.name, attempt);
    }).catch((error: unknown) => {
      this.deps.logger.error('could not converge to a module change made on another node', { module: event.record.name, action: event.action, ...errorFields(error) });
      this.retryConvergence(event.record.name, attempt);
    });
  }

  /**
   * This node could not reach a module's committed state (its version failed to load here, the
   * old one serving; or it failed to come up): it tries again after `convergeRetryMs`, doubled
   * each time up to CONVERGE_RETRY_MAX_MS, converging to the record as committed then (read
   * again, so a command carried out here meanwhile is not undone), until it gets there or
   * another change of the module arrives.
   */
  private retryConvergence(name: string, attempt: number): void {
    if (this.stopping) return;
    this.cancelConvergeRetry(name);
    const delay = Math.min((this.deps.convergeRetryMs ?? 1000) * 2 ** attempt, CONVERGE_RETRY_MAX_MS);
    const timer = this.deps.clock.setTimer(delay, () => {
      if (this.convergeRetries.get(name) !== timer) return;
      this.convergeRetries.delete(name);
      if (this.stopping) return;
      this.repo.get(name).then(
        (committed) => {
          const known = this.records.get(name);
          // Forgotten here meanwhile, and gone: nothing to reach.
          if (!committed && !known) return;
          const record = committed ?? known!;
          this.deps.logger.info('trying again to reach the committed state of a module', { module: name, version: record.version, attempt: attempt + 1 });
          this.convergeTo({ action: 'converge', actor: null, record, deleted: committed === null, reload: false }, attempt + 1);
        },
        (error: unknown) => {
          this.deps.logger.warn('could not read a module to converge to it', { module: name, ...errorFields(error) });
          this.retryConvergence(name, attempt + 1);
        },
      );
    });
    this.convergeRetries.set(name, timer);
  }

  private cancelConvergeRetry(name: string): void {
    this.convergeRetries.get(name)?.cancel();
    this.convergeRetries.delete(name);
  }

  private onRemoteCanary(event: ModuleCanaryEvent): void {
    if (this.stopping) return;
    const step = event.op === 'stage' ? () => this.stageRemoteCanary(event) : () => this.dropCanary(event.module, false);
    this.serialized(step).catch((error: unknown) => {
      this.deps.logger.error('could not follow a canary change made on another node', { module: event.module, op: event.op, ...errorFields(error) });
    });
  }

  /**
   * Brings this node's runtime to the committed record: registers or forgets it, brings it up,
   * takes it down, or switches to the committed version (the canary, if it is the one
   * promoted). Writes neither the shared row nor the audit (the origin did). Idempotent: an
   * event applied twice finds nothing left to do. False when this node could not get there (see
   * `retryConvergence`).
   */
  private async converge(event: ModuleChangeEvent): Promise<boolean> {
    const shared = event.record;
    const name = shared.name;
    const actor = event.actor;
    const who = actor ?? 'system';
    let record = this.records.get(name);
    if (event.deleted) {
      if (!record) return true;
      const live = this.live.get(name);
      if (live?.active || live?.canary) await this.takeDown(record, event.action, who, 'remote');
      this.forgetLocally(record, event.action, actor);
      return true;
    }
    if (!record) {
      record = { ...shared, state: 'UNLOADED', lastError: null, loadedAt: null };
      this.records.set(name, record);
      const idle = idleLive(name);
      this.live.set(name, idle);
      this.deps.breakers.getOrCreate(idle.breakerName);
      this.publish(record, 'UNLOADED', event.action, actor, null);
      this.reportState(record);
    }
    const adopt = () => Object.assign(record, sharedFields(shared));
    const live = this.live.get(name)!;
    if (shared.desiredState === 'UNLOADED') {
      if (live.active || live.canary || record.state !== 'UNLOADED') await this.takeDown(record, event.action, who, 'remote');
      adopt();
      return true;
    }
    const activate = shared.desiredState === 'ACTIVE';
    const active = live.active;
    if (!active) {
      adopt();
      return this.bringUp(record, event.action, who, activate, 'remote');
    }
    if (active.version !== shared.version || record.modulePath !== shared.modulePath || event.reload) {
      const canary = live.canary;
      if (canary && canary.version.version === shared.version && canary.modulePath === shared.modulePath && !event.reload) {
        await this.promoteLocally(record, shared, event.action, who);
        return true;
      }
      const { absolutePath } = this.resolve(shared.modulePath, 'modulePath');
      try {
        await this.replaceVersion(record, { modulePath: shared.modulePath, absolutePath, version: shared.version }, event.action, who, { keepPrevious: true }, 'remote');
      } catch (error) {
        // The old version keeps serving here; this node reports it (module { nodes }).
        this.deps.logger.error('a module version committed on another node could not be loaded here; the old one keeps serving', { module: name, version: shared.version, ...errorFields(error) });
        return false;
      }
      adopt();
      return true;
    }
    if (activate && record.state === 'LOADED') {
      await this.transition(record, 'ACTIVE', event.action, who, null, { ...sharedFields(shared), scope: 'remote' });
      return true;
    }
    adopt();
    return true;
  }

  /** Another node promoted the canary this node also serves: switch to it here (no write: the origin did). */
  private async promoteLocally(record: ModuleRecord, shared: ModuleRecord, action: string, actor: string): Promise<void> {
    const live = this.live.get(record.name)!;
    const canary = live.canary!;
    const old = live.active!;
    live.active = canary.version;
    live.canary = null;
    this.canaryBreakers.delete(canary.breaker.name);
    this.attach(record, canary.version);
    await this.transition(record, 'ACTIVE', action, actor, null, { ...sharedFields(shared), loadedAt: this.deps.clock.now(), lastError: null, force: true, scope: 'remote' });
    void old.drain(this.deps.drainTimeoutMs ?? 5000).then(() => old.dispose()).catch(() => old.terminate());
    this.runHooks(record, canary.version);
  }

  /**
   * A canary another node's rollout staged: loaded here beside the same stable version, with
   * that version's exported state, routed by the same split flag (which follows the flag's
   * changes from every node). No tests (the origin ran them), no writes. A node that does not
   * serve the plan's stable version skips it (and says so).
   */
  private async stageRemoteCanary(event: Extract<ModuleCanaryEvent, { op: 'stage' }>): Promise<void> {
    const record = this.records.get(event.module);
    const live = this.live.get(event.module);
    const stable = live?.active ?? null;
    if (!record || !live || !stable) {
      this.deps.logger.warn('a canary staged on another node is not staged here: the module is not serving on this node', { module: event.module, canary: event.version });
      return;
    }
    if (live.canary) {
      if (live.canary.version.version !== event.version) {
        this.deps.logger.warn('a canary staged on another node is not staged here: another canary serves', { module: event.module, canary: event.version, serving: live.canary.version.version });
      }
      return;
    }
    if (stable.version !== event.fromVersion) {
      this.deps.logger.warn('a canary staged on another node is not staged here: this node serves another stable version', { module: event.module, canary: event.version, stable: stable.version, expected: event.fromVersion });
      return;
    }
    const { absolutePath } = this.resolve(event.modulePath, 'newVersionPath');
    const canaryVersion = await this.loadVersion(record, absolutePath, event.version);
    try {
      const health = await canaryVersion.healthCheck();
      if (!health.ok) throw new Error(`health check failed${health.detail !== undefined ? `: ${JSON.stringify(health.detail)}` : ''}`);
      const state = await stable.exportState();
      if (state !== undefined) await canaryVersion.importState(state, stable.version);
      if (live.active !== stable) throw new Error(`${event.fromVersion} stopped serving while the canary was staged`);
    } catch (error) {
      await canaryVersion.dispose().catch(() => canaryVersion.terminate());
      throw error;
    }
    const stableBreaker = this.deps.breakers.getOrCreate(breakerNameOf(record.name));
    const breaker = this.deps.breakers.getOrCreate(canaryBreakerNameOf(record.name, event.version), stableBreaker.config);
    live.canary = {
      version: canaryVersion, modulePath: event.modulePath, flag: event.flag, split: this.deps.flags.decider(event.flag),
      stats: this.remoteCanaryStats(record.name, event.flag), breaker,
    };
    this.canaryBreakers.set(breaker.name, record.name);
    canaryVersion.onExit((exit) => {
      if (exit.expected || live.canary?.version !== canaryVersion) return;
      // This node stops routing to it; the rollout is the scheduler's node's to abort.
      live.canary = null;
      this.canaryBreakers.delete(breaker.name);
      this.deps.logger.error('canary version stopped unexpectedly', { module: record.name, version: canaryVersion.version, reason: exit.reason });
    });
    this.deps.logger.info('canary staged (for a rollout on another node)', { module: record.name, stable: stable.version, canary: event.version, flag: event.flag });
  }

  private publish(record: ModuleRecord, from: ModuleState, action: string, actor: string | null, error: string | null): void {
    this.deps.bus.publish('moduleStateChanged', {
      name: record.name, from, to: record.state, version: record.version, action, actor, error, at: this.deps.clock.now(),
    });
  }

  private runHooks(record: ModuleRecord, version: LoadedModuleVersion): void {
    const hooks = this.hooks.get(record.name);
    if (!hooks || hooks.size === 0) return;
    const handle: ModuleHandle = {
      name: record.name,
      version: version.version,
      call: (method, arg) => version.call(method, arg),
    };
    for (const hook of hooks) {
      Promise.resolve()
        .then(() => hook(handle))
        .catch((error: unknown) => this.deps.logger.error('reload hook failed', { module: record.name, ...errorFields(error) }));
    }
  }
}

type TransitionChanges = Partial<ModuleRecord> & {
  /** false: a passing state (LOADING, UNLOADING), memory only. */
  persist?: boolean;
  /** Publish even when the state stays. */
  force?: boolean;
  scope: Scope;
  /** A forced reload of the same version (the other nodes reload too). */
  reload?: boolean;
  /** false: a command's write the other nodes have nothing to do about (a failure noted). */
  announce?: boolean;
};

/** What every node shares of a module: the registration and its desired state, not any node's state. */
function sharedFields(record: ModuleRecord): Partial<ModuleRecord> {
  return {
    modulePath: record.modulePath, version: record.version, dependencies: [...record.dependencies], hotReloadable: record.hotReloadable,
    isolation: record.isolation, moduleType: record.moduleType, config: record.config, desiredState: record.desiredState,
    previousVersion: record.previousVersion, previousModulePath: record.previousModulePath, createdAt: record.createdAt,
  };
}

/** A swap refused by its test run: carries the run's id for the payload. */
export class SwapRefused extends UserError {
  constructor(code: ErrorCode, message: string, readonly testRunId: string) {
    super(code, message, 'testWith');
  }
}

function validateVersion(value: string, field: string): string {
  const version = value.trim();
  if (!VERSION_PATTERN.test(version)) {
    throw new UserError('INVALID_ARGUMENT', `${field} ${quoteValue(value)} must be 1 to 64 letters, digits, ".", "_", "+" or "-" (e.g. 2.0.0)`, field);
  }
  return version;
}

/** Without an explicit version, a swapped-in file is named after its path: `ml/x_v2.js` -> `x_v2`. */
function defaultVersionFor(relativePath: string): string {
  const base = relativePath.split('/').pop()!.replace(/\.(m|c)?js$/, '');
  return VERSION_PATTERN.test(base) ? base : 'swapped';
}

function validateConfig(config: unknown): Record<string, unknown> {
  if (config === undefined || config === null) return {};
  if (typeof config !== 'object' || Array.isArray(config)) throw new UserError('INVALID_ARGUMENT', 'config must be a JSON object', 'config');
  if (JSON.stringify(config).length > MAX_CONFIG_BYTES) throw new UserError('INVALID_ARGUMENT', `config must be at most ${MAX_CONFIG_BYTES} bytes of JSON`, 'config');
  return config as Record<string, unknown>;
}

function describeError(error: unknown): string {
  if (isModuleLoadError(error)) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** What the audit log keeps of a module. */
function auditView(record: ModuleRecord): Record<string, unknown> {
  return {
    modulePath: record.modulePath, version: record.version, state: record.state, desiredState: record.desiredState,
    dependencies: record.dependencies, isolation: record.isolation, previousVersion: record.previousVersion, lastError: record.lastError,
  };
}
