/**
 * Modules: registration, lifecycle, hot swap and invocation, on top of the runtime (which loads
 * one version in isolation).
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
 * - `invokeModule` runs through the module's own circuit breaker (`module:<name>`), with a call
 *   timeout. It is a call, not a change of the control plane, so it is not audited (the
 *   breaker counts it).
 */
import { performance } from 'node:perf_hooks';
import type { AuditRepository } from '../audit/repository.js';
import type { BreakerService } from '../breakers/service.js';
import type { BreakerPermit } from '../breakers/engine.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { Db } from '../db/connection.js';
import { unitOfWorkFor, type UnitOfWork } from '../db/unit-of-work.js';
import { UserError, type ErrorCode } from '../errors.js';
import type { EventBus } from '../events.js';
import type { EvaluationContext } from '../flags/engine.js';
import type { FlagService } from '../flags/service.js';
import { errorFields, type Logger } from '../logger.js';
import { validateName } from '../validation.js';
import { MODULE_TYPES, type ModuleType } from './contract.js';
import { ModulePathError, resolveModulePath } from './paths.js';
import { ModuleRepository, type ModuleRecord } from './repository.js';
import { MODULE_STATES, type DesiredModuleState, type ModuleState, type ModuleStateEvent } from './states.js';
import {
  isModuleCallError,
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

export interface InvokeResult {
  result: unknown;
  servedBy: string;
}

/** What a reload hook receives: the version now serving. */
export interface ModuleHandle {
  name: string;
  version: string;
  call(method: string, arg?: unknown): Promise<unknown>;
}
export type ReloadHook = (handle: ModuleHandle) => void | Promise<void>;

/** Runs a staged test run of a module version; returns whether it passed and the run's id (issue: gated swaps). */
export type SwapTestGate = (actor: string, moduleName: string, version: { modulePath: string; absolutePath: string; version: string }, moduleType: ModuleType) => Promise<{ passed: boolean; runId: string; summary: string }>;

interface ModuleServiceDeps {
  db: Db;
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
}

interface Live {
  active: LoadedModuleVersion | null;
  /** Set while a swap switches versions: new calls wait for it. */
  gate: Promise<void> | null;
}

const VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
const MAX_CONFIG_BYTES = 64 * 1024;
export const MODULE_BREAKER_PREFIX = 'module:';
export const DEFAULT_MAX_RESTARTS = 5;
export const RESTART_WINDOW_MS = 60_000;
const RESTART_BASE_DELAY_MS = 1_000;
const RESTART_MAX_DELAY_MS = 60_000;

export class ModuleService {
  private readonly repo: ModuleRepository;
  private readonly uow: UnitOfWork;
  private readonly records = new Map<string, ModuleRecord>();
  private readonly live = new Map<string, Live>();
  private readonly hooks = new Map<string, Set<ReloadHook>>();
  private readonly permits = new Map<string, BreakerPermit>();
  private permitSeq = 0;
  private lifecycleChain: Promise<unknown> = Promise.resolve();
  private stopping = false;
  private testGate: SwapTestGate | null = null;
  /** Automatic restarts per module within the restart window (epoch ms). */
  private readonly restarts = new Map<string, number[]>();
  private readonly restartTimers = new Set<TimerHandle>();
  readonly host: ModuleHost;

  constructor(private readonly deps: ModuleServiceDeps) {
    this.repo = new ModuleRepository(deps.db);
    this.uow = unitOfWorkFor(deps.db);
    this.host = this.createHost();
  }

  /** Loads registrations and brings every module whose desired state is ACTIVE or LOADED back. */
  async start(): Promise<{ recovered: number; failed: number }> {
    for (const record of this.repo.all()) {
      this.records.set(record.name, { ...record, state: 'UNLOADED' });
      this.live.set(record.name, { active: null, gate: null });
      this.deps.breakers.getOrCreate(breakerNameOf(record.name));
    }
    let recovered = 0;
    let failed = 0;
    await this.serialized(async () => {
      const wanted = [...this.records.values()].filter((r) => r.desiredState !== 'UNLOADED').map((r) => r.name);
      for (const name of this.topologicalOrder(wanted)) {
        const record = this.records.get(name)!;
        const ok = await this.bringUp(record, 'recovery', 'system', record.desiredState === 'ACTIVE');
        if (ok) recovered++;
        else failed++;
      }
    });
    return { recovered, failed };
  }

  /** Disposes every loaded version (bounded by the runtime's dispose timeout). */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const timer of this.restartTimers) timer.cancel();
    this.restartTimers.clear();
    await this.lifecycleChain.catch(() => undefined);
    const versions = [...this.live.values()].map((l) => l.active).filter((v): v is LoadedModuleVersion => v !== null);
    for (const live of this.live.values()) live.active = null;
    await Promise.all(versions.map((v) => v.dispose().catch(() => v.terminate())));
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

  /** Registered modules that declare `name` as a dependency. */
  dependents(name: string): string[] {
    return this.list().filter((r) => r.dependencies.includes(name)).map((r) => r.name);
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
      if (this.records.has(name)) throw new UserError('MODULE_ALREADY_EXISTS', `Module "${name}" is already registered`, 'name');
      const version = validateVersion(input.version, 'version');
      const { relativePath } = this.resolve(input.modulePath, 'modulePath');
      const dependencies = [...new Set((input.dependencies ?? []).map((d) => validateName(d, 'dependencies', 'Dependency name')))];
      if (dependencies.includes(name)) throw new UserError('DEPENDENCY_CYCLE', `Module "${name}" cannot depend on itself`, 'dependencies');
      const cycle = this.findCycle(name, dependencies);
      if (cycle) throw new UserError('DEPENDENCY_CYCLE', `Dependencies would form a cycle: ${cycle.join(' -> ')}`, 'dependencies');
      if (input.moduleType && !MODULE_TYPES.includes(input.moduleType)) {
        throw new UserError('INVALID_ARGUMENT', `Unknown module type "${input.moduleType}"`, 'moduleType');
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
      this.uow.run(() => {
        this.repo.save(record, true);
        this.deps.audit.record({ at: now, actor, action: 'registerModule', targetType: 'MODULE', target: name, before: null, after: auditView(record) });
        this.deps.breakers.getOrCreate(breakerNameOf(name));
        this.uow.afterCommit(() => {
          this.records.set(name, record);
          this.live.set(name, { active: null, gate: null });
          this.publish(record, 'UNLOADED', 'registerModule', actor, null);
        });
      });
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
      for (const dep of this.dependencyOrder(name)) {
        const depRecord = this.records.get(dep)!;
        if (depRecord.state === 'ACTIVE') continue;
        const ok = await this.bringUp(depRecord, 'loadModule', actor, true);
        if (!ok) {
          throw new UserError('MODULE_LOAD_FAILED', `Dependency "${dep}" failed to load: ${depRecord.lastError ?? 'unknown error'}`, 'name');
        }
      }
      const live = this.live.get(name)!;
      if (live.active && record.state === 'ACTIVE' && !options.forceReload) return record;
      if (live.active && record.state === 'LOADED' && !options.forceReload) {
        if (activate) this.transition(record, 'ACTIVE', 'loadModule', actor, null, { desiredState: 'ACTIVE' });
        return record;
      }
      if (live.active && options.forceReload) {
        const { absolutePath } = this.resolve(record.modulePath, 'modulePath');
        await this.replaceVersion(record, { modulePath: record.modulePath, absolutePath, version: record.version }, 'loadModule', actor, { keepPrevious: true });
        return record;
      }
      const ok = await this.bringUp(record, 'loadModule', actor, activate);
      if (!ok) throw new UserError('MODULE_LOAD_FAILED', `Module "${name}" failed to load: ${record.lastError ?? 'unknown error'}`, 'name');
      return record;
    });
  }

  /** Unloads a module; refused while loaded dependents exist unless `cascade`. Returns the unloaded names. */
  unload(actor: string, name: string, cascade = false): Promise<{ record: ModuleRecord; unloaded: string[] }> {
    return this.serialized(async () => {
      const record = this.existing(name);
      const loadedDependents = this.loadedDependentsDeep(name);
      if (loadedDependents.length > 0 && !cascade) {
        throw new UserError(
          'DEPENDENTS_LOADED',
          `Module "${name}" is used by loaded modules: ${loadedDependents.join(', ')}. Unload them first or pass cascade: true`,
          'cascade',
        );
      }
      const unloaded: string[] = [];
      // Deepest dependents first.
      for (const dependent of [...this.topologicalOrder(loadedDependents)].reverse()) {
        await this.takeDown(this.records.get(dependent)!, 'unloadModule', actor);
        unloaded.push(dependent);
      }
      await this.takeDown(record, 'unloadModule', actor);
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
      this.uow.run(() => {
        this.repo.delete(name);
        this.deps.audit.record({ at: this.deps.clock.now(), actor, action: 'unregisterModule', targetType: 'MODULE', target: name, before: auditView(record), after: null });
        this.uow.afterCommit(() => {
          this.records.delete(name);
          this.live.delete(name);
          this.publish(record, 'UNLOADED', 'unregisterModule', actor, null);
        });
      });
      return record;
    });
  }

  /** Hot-swaps an ACTIVE module to the file at `newVersionPath` (see the file comment). */
  swap(actor: string, name: string, input: { newVersionPath: string; newVersion?: string | null; testWith?: ModuleType | null }): Promise<{ record: ModuleRecord; testRunId: string | null }> {
    return this.serialized(async () => {
      const record = this.existing(name);
      if (record.state !== 'ACTIVE') {
        throw new UserError('INVALID_MODULE_STATE', `Module "${name}" is ${record.state}; only an ACTIVE module can be swapped (load it first)`, 'name');
      }
      if (!record.hotReloadable) throw new UserError('NOT_HOT_RELOADABLE', `Module "${name}" is registered with hotReloadable: false`, 'name');
      const { absolutePath, relativePath } = this.resolve(input.newVersionPath, 'newVersionPath');
      const version = input.newVersion != null ? validateVersion(input.newVersion, 'newVersion') : defaultVersionFor(relativePath);
      const target = { modulePath: relativePath, absolutePath, version };
      let testRunId: string | null = null;
      if (input.testWith) {
        if (!this.testGate) throw new UserError('INVALID_ARGUMENT', 'Test runs are not available', 'testWith');
        const outcome = await this.testGate(actor, name, target, input.testWith);
        testRunId = outcome.runId;
        if (!outcome.passed) {
          const message = `Swap of "${name}" to ${version} refused: test run ${outcome.runId} failed (${outcome.summary}); ${record.version} keeps serving`;
          this.noteFailure(record, 'swapModule', actor, message);
          throw new SwapRefused('TESTS_FAILED', message, testRunId);
        }
      }
      await this.replaceVersion(record, target, 'swapModule', actor, { keepPrevious: false });
      return { record, testRunId };
    });
  }

  /** Swaps back to the previous version; the version rolled back from becomes the previous one. */
  rollback(actor: string, name: string): Promise<ModuleRecord> {
    return this.serialized(async () => {
      const record = this.existing(name);
      if (!record.previousVersion || !record.previousModulePath) {
        throw new UserError('NO_PREVIOUS_VERSION', `Module "${name}" has no previous version to roll back to`, 'name');
      }
      if (record.state !== 'ACTIVE') {
        throw new UserError('INVALID_MODULE_STATE', `Module "${name}" is ${record.state}; only an ACTIVE module can be rolled back`, 'name');
      }
      const { absolutePath } = this.resolve(record.previousModulePath, 'modulePath');
      await this.replaceVersion(record, { modulePath: record.previousModulePath, absolutePath, version: record.previousVersion }, 'rollbackModule', actor, { keepPrevious: false });
      return record;
    });
  }

  /** Calls `method(args)` on the active version through the module's breaker. */
  async invoke(name: string, method: string, args: unknown, context: EvaluationContext | null = null): Promise<InvokeResult> {
    const record = this.records.get(name);
    if (!record) throw new UserError('MODULE_NOT_FOUND', `Module "${name}" is not registered`, 'name');
    const live = this.live.get(name)!;
    while (live.gate) await live.gate;
    const version = live.active;
    if (!version || record.state !== 'ACTIVE') {
      throw new UserError('INVALID_MODULE_STATE', `Module "${name}" is ${record.state}, not ACTIVE`, 'name');
    }
    const breaker = this.deps.breakers.getOrCreate(breakerNameOf(name));
    const permit = breaker.tryAcquire();
    if (!permit) {
      const until = breaker.openUntil;
      throw new UserError(
        'CIRCUIT_OPEN',
        `Circuit breaker "${breaker.name}" is ${breaker.state}${until ? ` until ${new Date(until).toISOString()}` : ''}: call rejected`,
        'name',
      );
    }
    const started = performance.now();
    try {
      const result = await version.call(method, args, context ? { context } : undefined);
      permit.success(performance.now() - started);
      return { result, servedBy: version.version };
    } catch (error) {
      const duration = performance.now() - started;
      if (isModuleCallError(error)) {
        switch (error.code) {
          case 'UNKNOWN_METHOD':
          case 'RESERVED_METHOD':
          case 'NOT_CLONEABLE':
            // The caller's mistake says nothing about the module's health.
            permit.release();
            throw new UserError(error.code, error.message, error.code === 'NOT_CLONEABLE' ? 'args' : 'method');
          case 'RESULT_TOO_LARGE':
            permit.failure(error, duration);
            throw new UserError('RESULT_TOO_LARGE', error.message, null);
          case 'CALL_TIMEOUT':
            permit.timeout();
            throw new UserError('CALL_TIMEOUT', error.message, null);
          case 'MODULE_TERMINATED':
          case 'MODULE_CRASHED':
            permit.failure(error, duration);
            throw new UserError('MODULE_UNAVAILABLE', error.message, null);
          default:
            permit.failure(error, duration);
            throw new UserError('CALL_FAILED', error.message, null);
        }
      }
      permit.failure(error, duration);
      throw error;
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
    if (!record) throw new UserError('MODULE_NOT_FOUND', `Module "${name}" is not registered`, 'name');
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
  private async bringUp(record: ModuleRecord, action: string, actor: string, activate: boolean): Promise<boolean> {
    const missing = record.dependencies.filter((d) => this.records.get(d)?.state !== 'ACTIVE');
    if (missing.length > 0) {
      const message = `Dependencies not active: ${missing.join(', ')}`;
      this.transition(record, 'FAILED', action, actor, message, { lastError: message, desiredState: activate ? 'ACTIVE' : 'LOADED' });
      return false;
    }
    this.transition(record, 'LOADING', action, actor, null, { persist: false });
    let version: LoadedModuleVersion | null = null;
    try {
      const { absolutePath } = this.resolve(record.modulePath, 'modulePath');
      version = await this.loadVersion(record, absolutePath, record.version);
      const health = await version.healthCheck();
      if (!health.ok) throw new Error(`health check failed${health.detail !== undefined ? `: ${JSON.stringify(health.detail)}` : ''}`);
    } catch (error) {
      await version?.dispose().catch(() => undefined);
      const message = describeError(error);
      this.transition(record, 'FAILED', action, actor, message, { lastError: message, desiredState: activate ? 'ACTIVE' : 'LOADED', loadedAt: null });
      this.deps.logger.warn('module failed to load', { module: record.name, error: message });
      return false;
    }
    this.live.get(record.name)!.active = version;
    this.attach(record, version);
    this.transition(record, activate ? 'ACTIVE' : 'LOADED', action, actor, null, {
      lastError: null, desiredState: activate ? 'ACTIVE' : 'LOADED', loadedAt: this.deps.clock.now(),
    });
    this.runHooks(record, version);
    return true;
  }

  /** -> UNLOADING -> UNLOADED: stop routing, drain, dispose. */
  private async takeDown(record: ModuleRecord, action: string, actor: string): Promise<void> {
    const live = this.live.get(record.name)!;
    const version = live.active;
    if (version) {
      this.transition(record, 'UNLOADING', action, actor, null, { persist: false });
      live.active = null;
      await version.drain(this.deps.drainTimeoutMs ?? 5000);
      await version.dispose().catch(() => version.terminate());
    }
    this.transition(record, 'UNLOADED', action, actor, null, { desiredState: 'UNLOADED', lastError: null, loadedAt: null });
  }

  /** Loads `target` beside the serving version and switches to it (see the file comment). */
  private async replaceVersion(
    record: ModuleRecord,
    target: { modulePath: string; absolutePath: string; version: string },
    action: string,
    actor: string,
    options: { keepPrevious: boolean },
  ): Promise<void> {
    const live = this.live.get(record.name)!;
    const old = live.active!;
    let next: LoadedModuleVersion;
    try {
      next = await this.loadVersion(record, target.absolutePath, target.version);
    } catch (error) {
      const message = `${action} of "${record.name}" to ${target.version} failed, ${record.version} keeps serving: ${describeError(error)}`;
      this.noteFailure(record, action, actor, message);
      throw new UserError('SWAP_FAILED', message, 'newVersionPath');
    }
    const abandon = async (why: string): Promise<never> => {
      await next.dispose().catch(() => next.terminate());
      const message = `${action} of "${record.name}" to ${target.version} failed, ${record.version} keeps serving: ${why}`;
      this.noteFailure(record, action, actor, message);
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
    this.transition(record, 'ACTIVE', action, actor, null, {
      modulePath: target.modulePath,
      version: target.version,
      loadedAt: this.deps.clock.now(),
      lastError: null,
      desiredState: 'ACTIVE',
      ...(options.keepPrevious ? {} : { previousVersion: fromVersion, previousModulePath: fromPath }),
      force: true,
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
      const message = `${exit.reason}: ${exit.message}`;
      this.deps.logger.error('module version stopped unexpectedly', { module: record.name, version: version.version, reason: exit.reason });
      this.transition(record, 'FAILED', 'crash', null, message, { lastError: message, loadedAt: null });
      this.scheduleRestart(record, message);
    });
  }

  /**
   * The supervisor, as an OTP supervisor with a restart intensity: a module that was meant to be
   * ACTIVE and crashed is loaded again after 1 s, 2 s, 4 s ... (at most 60 s); after
   * `maxRestarts` restarts within `RESTART_WINDOW_MS` it stays FAILED until an operator acts.
   */
  private scheduleRestart(record: ModuleRecord, cause: string): void {
    const max = this.deps.maxRestarts ?? DEFAULT_MAX_RESTARTS;
    if (this.stopping || max === 0 || record.desiredState !== 'ACTIVE') return;
    const now = this.deps.clock.now();
    const recent = (this.restarts.get(record.name) ?? []).filter((at) => now - at < RESTART_WINDOW_MS);
    if (recent.length >= max) {
      const message = `${cause}; gave up after ${recent.length} restarts within ${RESTART_WINDOW_MS / 1000} s: load it again when fixed`;
      this.transition(record, 'FAILED', 'restart', null, message, { lastError: message, force: true });
      return;
    }
    const delay = Math.min(RESTART_BASE_DELAY_MS * 2 ** recent.length, RESTART_MAX_DELAY_MS);
    this.restarts.set(record.name, [...recent, now]);
    const timer = this.deps.clock.setTimer(delay, () => {
      this.restartTimers.delete(timer);
      void this.serialized(async () => {
        // An operator may have loaded or unloaded it meanwhile.
        if (record.state !== 'FAILED' || record.desiredState !== 'ACTIVE' || this.live.get(record.name)?.active) return;
        const ok = await this.bringUp(record, 'restart', 'system', true);
        if (!ok) this.scheduleRestart(record, record.lastError ?? cause);
      }).catch((error: unknown) => this.deps.logger.error('module restart failed', { module: record.name, ...errorFields(error) }));
    });
    this.restartTimers.add(timer);
  }

  private noteFailure(record: ModuleRecord, action: string, actor: string, message: string): void {
    this.transition(record, record.state, action, actor, message, { lastError: message, force: true });
  }

  /**
   * Applies a state change to the record, persists it with an audit entry (unless
   * `persist: false`, for the passing LOADING/UNLOADING states) and publishes it.
   */
  private transition(
    record: ModuleRecord,
    to: ModuleState,
    action: string,
    actor: string | null,
    error: string | null,
    changes: Partial<ModuleRecord> & { persist?: boolean; force?: boolean } = {},
  ): void {
    const { persist = true, force = false, ...fields } = changes;
    const from = record.state;
    const before = auditView(record);
    const now = this.deps.clock.now();
    const next: ModuleRecord = { ...record, ...fields, state: to, updatedAt: now };
    this.uow.run(() => {
      if (persist) {
        this.repo.save(next);
        this.deps.audit.record({ at: now, actor: actor ?? 'system', action, targetType: 'MODULE', target: record.name, before, after: auditView(next) });
      }
      this.uow.afterCommit(() => {
        Object.assign(record, next);
        if (from !== to || force || error) this.publish(record, from, action, actor, error);
      });
    });
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

  // ---- internals: dependency graph ----

  /** The module's dependencies (transitively), in load order; throws on missing ones or cycles. */
  private dependencyOrder(name: string): string[] {
    const order: string[] = [];
    const visiting = new Set<string>();
    const done = new Set<string>();
    const visit = (current: string, path: string[]) => {
      if (done.has(current)) return;
      if (visiting.has(current)) {
        throw new UserError('DEPENDENCY_CYCLE', `Dependency cycle: ${[...path, current].join(' -> ')}`, 'name');
      }
      const record = this.records.get(current);
      if (!record) {
        throw new UserError('DEPENDENCY_NOT_FOUND', `Module "${path[path.length - 1]}" depends on "${current}", which is not registered`, 'name');
      }
      visiting.add(current);
      for (const dep of record.dependencies) visit(dep, [...path, current]);
      visiting.delete(current);
      done.add(current);
      if (current !== name) order.push(current);
    };
    visit(name, []);
    return order;
  }

  /** `names` ordered so that every module comes after its (registered) dependencies. */
  private topologicalOrder(names: readonly string[]): string[] {
    const wanted = new Set(names);
    const order: string[] = [];
    const seen = new Set<string>();
    const visit = (name: string, stack: Set<string>) => {
      if (seen.has(name) || stack.has(name)) return;
      stack.add(name);
      for (const dep of this.records.get(name)?.dependencies ?? []) visit(dep, stack);
      stack.delete(name);
      seen.add(name);
      if (wanted.has(name)) order.push(name);
    };
    for (const name of names) visit(name, new Set());
    return order;
  }

  /** A cycle that registering `name` with `dependencies` would create, as a path; null when none. */
  private findCycle(name: string, dependencies: readonly string[]): string[] | null {
    const search = (current: string, path: string[]): string[] | null => {
      if (current === name) return [...path, current];
      if (path.includes(current)) return null;
      for (const dep of this.records.get(current)?.dependencies ?? []) {
        const found = search(dep, [...path, current]);
        if (found) return found;
      }
      return null;
    };
    for (const dep of dependencies) {
      const found = search(dep, [name]);
      if (found) return found;
    }
    return null;
  }

  /** Loaded (or loading) modules that depend on `name`, directly or through others. */
  private loadedDependentsDeep(name: string): string[] {
    const result = new Set<string>();
    const visit = (current: string) => {
      for (const dependent of this.dependents(current)) {
        const state = this.records.get(dependent)!.state;
        if (state === 'UNLOADED' || state === 'FAILED') continue;
        if (!result.has(dependent)) {
          result.add(dependent);
          visit(dependent);
        }
      }
    };
    visit(name);
    return [...result];
  }

  // ---- the host that loaded versions talk to ----

  private createHost(): ModuleHost {
    const { flags, breakers, logger } = this.deps;
    return {
      flags: {
        isEnabled: (name, context) => flags.isEnabled(name, context ?? {}),
        snapshot: () => flags.list(),
        subscribe: (listener) => flags.onChange(() => listener(flags.list())),
      },
      breakers: {
        acquire: (name, config) => {
          const breaker = breakers.getOrCreate(name, config);
          const permit = breaker.tryAcquire();
          if (!permit) {
            return { rejected: { message: `Circuit breaker "${name}" is ${breaker.state}`, breakerName: name, openUntil: breaker.openUntil } };
          }
          const permitId = String(++this.permitSeq);
          this.permits.set(permitId, permit);
          return { permitId };
        },
        complete: (permitId, outcome, durationMs, error) => {
          const permit = this.permits.get(permitId);
          if (!permit) return;
          this.permits.delete(permitId);
          if (outcome === 'success') permit.success(durationMs);
          else permit.failure(new Error(error ?? 'failed'), durationMs);
        },
      },
      callDependency: async (fromModule, dependency, method, args) => {
        try {
          return (await this.invoke(dependency, method, args[0])).result;
        } catch (error) {
          if (error instanceof UserError) {
            const wrapped = new Error(`${dependency}.${method} (called by ${fromModule}): ${error.message}`) as Error & { code: ErrorCode };
            wrapped.code = error.code;
            throw wrapped;
          }
          throw error;
        }
      },
      log: (level, module, message, data) => logger[level](message, { module, ...(data === undefined ? {} : { data }) }),
    };
  }
}

/** A swap refused by its test run: carries the run's id for the payload. */
export class SwapRefused extends UserError {
  constructor(code: ErrorCode, message: string, readonly testRunId: string) {
    super(code, message, 'testWith');
  }
}

function breakerNameOf(name: string): string {
  return `${MODULE_BREAKER_PREFIX}${name}`;
}

function validateVersion(value: string, field: string): string {
  const version = value.trim();
  if (!VERSION_PATTERN.test(version)) {
    throw new UserError('INVALID_ARGUMENT', `${field} "${value}" must be 1 to 64 letters, digits, ".", "_", "+" or "-" (e.g. 2.0.0)`, field);
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
