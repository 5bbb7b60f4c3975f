/**
 * Feature flags: the service owns the compiled in-memory copy of every flag (evaluations never
 * touch the database), writes changes and their audit entries in one unit of work, and publishes a
 * `featureFlagChanged` event after the commit.
 *
 * Rules worth knowing:
 * - First start imports the flags file (`config/feature_flags.json`); later starts never do, so
 *   edits made through the API survive restarts.
 * - `reload` applies the file again: every flag the file names is created or replaced by the
 *   file's version (whitelist and schedule included, `createdAt` kept); flags the file does not
 *   name are left alone. An invalid file changes nothing.
 * - A mutation that would change nothing writes, audits and publishes nothing.
 * - GRADUAL flags move in whole-point steps computed from the clock; one timer fires at the
 *   next step of any flag and publishes the new effective percentage like any other change.
 */
import { readFileSync } from 'node:fs';
import type { AuditRepository } from '../audit/repository.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { Dialect } from '../db/database.js';
import { MetaRepository } from '../db/meta.js';
import type { ClusterEvents } from '../cluster/event-log.js';
import type { UnitOfWork } from '../db/unit-of-work.js';
import { quoteValue, UserError } from '../errors.js';
import type { EventBus } from '../events.js';
import type { Logger } from '../logger.js';
import { validateName } from '../validation.js';
import {
  compileFlag,
  effectivePercentage,
  scheduledPercentage,
  nextGradualChangeAt,
  notFound,
  type CompiledFlag,
  type EvaluationContext,
  type FlagDefinition,
  type FlagEvaluation,
  type GradualSchedule,
  type OutcomeSlot,
  type RolloutStrategy,
  slotEnabled,
} from './engine.js';
import type { FlagChangeEvent } from './events.js';
import { flagNamesInFile, parseFlagsFile } from './file.js';
import { FlagEvaluationCounts } from './evaluation-counts.js';
import { flagJson, FlagRepository, FlagRowExistsError } from './repository.js';
import {
  normalizeAttribute,
  validateDescription,
  validateDuration,
  validatePercentage,
  validateStickiness,
  validateWhitelistValue,
} from './validation.js';

export interface CreateFlagInput {
  name: string;
  description?: string | null;
  strategy?: RolloutStrategy | null;
  percentage?: number | null;
  enabled?: boolean | null;
  stickiness?: string | null;
}

export interface GradualInput {
  startPercentage: number;
  targetPercentage: number;
  startAt?: number | null;
  durationSeconds: number;
}

interface FlagServiceDeps {
  uow: UnitOfWork;
  /** The database's dialect: on PostgreSQL a change locks the flag's row as it reads it (see FlagRepository). */
  dialect?: Dialect;
  audit: AuditRepository;
  bus: EventBus;
  clock: Clock;
  logger: Logger;
  flagsFile: string;
  random?: () => number;
  /** Prometheus metrics on: count evaluations (`evaluationCounts`). */
  metrics?: boolean;
  /** The cluster's event log: every committed change goes to the other nodes, theirs come here. */
  events?: ClusterEvents;
}

/** The cluster event topic of flag changes; its payload is the FlagChangeEvent. */
export const FLAG_EVENT_TOPIC = 'flag';

const SEEDED_KEY = 'flags_seeded_at';
/** Thrown inside `changeInPlace`'s unit to roll it back: the change is for the asynchronous path. */
const NOT_IN_PLACE: unique symbol = Symbol('not in place');
/** setTimeout's ceiling; longer waits are re-armed when they fire. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class FlagService {
  private readonly repo: FlagRepository;
  private readonly meta: MetaRepository;
  private readonly uow: UnitOfWork;
  private compiled = new Map<string, CompiledFlag>();
  /**
   * Write order of changes (taken while the unit holds the flag's row, so per flag it is commit
   * order), and the latest one applied to memory per flag: an after-commit callback may itself
   * change a flag before an earlier change's memory update has run; that older update must not
   * overwrite the newer one in memory.
   */
  private writeSeq = 0;
  private readonly appliedSeq = new Map<string, number>();
  /** Handles given out by `decider()`, kept pointing at each flag's current compiled form. */
  private readonly deciders = new Map<string, FlagDecider>();
  private gradualTimer: TimerHandle | null = null;
  /**
   * Effective percentage last published per running GRADUAL flag (enabled, with a schedule), to
   * publish each step once; only those flags, so a change's timer work does not grow with the
   * number of flags.
   */
  private readonly publishedGradual = new Map<string, number>();
  /** Per flag, the cluster revision of the definition in memory (PostgreSQL). */
  private readonly appliedRevision = new Map<string, number>();
  private readonly domainListeners = new Set<(event: FlagChangeEvent) => void>();
  /** Evaluations by flag, outcome and reason; null with metrics off. */
  readonly evaluationCounts: FlagEvaluationCounts | null;

  constructor(private readonly deps: FlagServiceDeps) {
    this.uow = deps.uow;
    this.repo = new FlagRepository(deps.uow, { dialect: deps.dialect });
    this.meta = new MetaRepository(deps.uow);
    this.evaluationCounts = deps.metrics === true ? new FlagEvaluationCounts() : null;
    deps.events?.on(FLAG_EVENT_TOPIC, (payload, event) => this.applyRemote(payload as FlagChangeEvent, event.id));
  }

  /** Loads flags into memory, importing the flags file on the very first start. */
  async start(): Promise<{ imported: number }> {
    let imported = 0;
    if ((await this.meta.get(SEEDED_KEY)) === null) {
      const now = this.deps.clock.now();
      const defs = await this.readFile();
      // Re-checked inside the unit: another node on the same database may be importing too;
      // a flag it created meanwhile fails our insert, and the retry then finds the import done.
      const done = await retryIfCreatedMeanwhile(() => this.uow.run(async () => {
        let count = 0;
        if ((await this.meta.get(SEEDED_KEY)) !== null) return null;
        for (const def of defs) {
          if (await this.repo.get(def.name)) continue;
          await this.repo.insert(def);
          await this.deps.audit.record({
            at: now, actor: 'system', action: 'importFeatureFlags', targetType: 'FEATURE_FLAG',
            target: def.name, before: null, after: def,
          });
          count++;
        }
        await this.meta.set(SEEDED_KEY, new Date(now).toISOString());
        return count;
      }));
      if (done !== null) {
        imported = done;
        this.deps.logger.info('imported default feature flags', { file: this.deps.flagsFile, imported });
      }
    }
    for (const def of await this.repo.all()) this.compiled.set(def.name, this.compile(def));
    for (const c of this.compiled.values()) this.trackGradual(c.definition);
    this.scheduleGradual();
    return { imported };
  }

  stop(): void {
    this.gradualTimer?.cancel();
    this.gradualTimer = null;
  }

  // ---- reads (from memory) ----

  list(): FlagDefinition[] {
    return [...this.compiled.values()].map((c) => c.definition).sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Every flag, in no particular order: `list()` without its sort (metrics scrapes). */
  *definitions(): IterableIterator<FlagDefinition> {
    for (const c of this.compiled.values()) yield c.definition;
  }

  get(name: string): FlagDefinition | null {
    return this.compiled.get(name)?.definition ?? null;
  }

  count(): number {
    return this.compiled.size;
  }

  /** The percentage of contexts the flag is on for now (0 when disabled; see the engine). */
  effectivePercentage(def: FlagDefinition): number | null {
    return effectivePercentage(def, this.deps.clock.now());
  }

  /** What the flag's rollout says now, enabled or not. */
  scheduledPercentage(def: FlagDefinition): number | null {
    return scheduledPercentage(def, this.deps.clock.now());
  }

  evaluate(name: string, context: EvaluationContext = {}): FlagEvaluation {
    const flag = this.compiled.get(name);
    const evaluation = flag ? flag.evaluate(context, this.deps.clock.now()) : notFound(name);
    this.evaluationCounts?.count(evaluation);
    return evaluation;
  }

  /** Evaluates the named flags (all flags when `names` is omitted), in the order asked. */
  evaluateMany(context: EvaluationContext = {}, names?: readonly string[] | null): FlagEvaluation[] {
    const now = this.deps.clock.now();
    const list = names ?? this.list().map((f) => f.name);
    return list.map((name) => {
      const evaluation = this.compiled.get(name)?.evaluate(context, now) ?? notFound(name);
      this.evaluationCounts?.count(evaluation);
      return evaluation;
    });
  }

  /** The in-process library API: answers from memory. */
  /**
   * A handle that decides `name` for a context as `isEnabled` does, without looking the flag up
   * on every call: it follows every committed change of the flag (and its deletion, after which
   * it answers false). For a caller that asks one flag on a hot path: canary routing.
   */
  decider(name: string): FlagDecider {
    let decider = this.deciders.get(name);
    if (decider === undefined) {
      decider = new FlagDecider(this.deps.clock, this.evaluationCounts, name, this.compiled.get(name));
      this.deciders.set(name, decider);
    }
    return decider;
  }

  isEnabled(name: string, context: EvaluationContext = {}): boolean {
    // The same decision as evaluate(), without building its result (see decideNow).
    const flag = this.compiled.get(name);
    if (flag === undefined) {
      if (this.evaluationCounts) this.evaluationCounts.notFound++;
      return false;
    }
    const slot = decideNow(flag, context, this.deps.clock);
    this.evaluationCounts?.countSlot(name, slot);
    return slotEnabled(slot);
  }

  /** Registers a listener for every flag change (for in-process code and module workers). */
  onChange(listener: (event: FlagChangeEvent) => void): () => void {
    return this.deps.bus.on('featureFlagChanged', listener);
  }

  /**
   * Another domain following flag changes (a rollout follows its split flag): called with every
   * committed change just before it is published, without subscribing to the bus, whose
   * listeners are the live feeds.
   */
  onCommittedChange(listener: (event: FlagChangeEvent) => void): () => void {
    this.domainListeners.add(listener);
    return () => this.domainListeners.delete(listener);
  }

  // ---- mutations ----

  async create(actor: string, input: CreateFlagInput): Promise<FlagDefinition> {
    const name = validateName(input.name, 'name', 'Flag name');
    const description = validateDescription(input.description ?? '');
    const percentage = validatePercentage(input.percentage ?? 0);
    const stickiness = validateStickiness(input.stickiness ?? 'default');
    const strategy = input.strategy ?? (input.percentage != null ? 'PERCENTAGE' : 'ALL_ON');
    if (strategy === 'GRADUAL') {
      throw new UserError('INVALID_STRATEGY', 'Create the flag first, then start a schedule with configureGradualRollout', 'strategy');
    }
    return (await this.change(actor, 'createFeatureFlag', name, (current, now) => {
      if (current) throw new UserError('FLAG_ALREADY_EXISTS', `Feature flag ${quoteValue(name)} already exists`, 'name');
      return {
        name, description, enabled: input.enabled ?? false, strategy, percentage, stickiness,
        whitelist: [], gradual: null, createdAt: now, updatedAt: now,
      };
    }))!;
  }

  /** Enables a flag, optionally switching its strategy; creates the flag when missing (seed workflow). */
  async enable(actor: string, rawName: string, strategy?: RolloutStrategy | null): Promise<FlagDefinition> {
    const name = validateName(rawName, 'name', 'Flag name');
    return (await this.change(actor, 'enableFeatureFlag', name, (current, now) => {
      const next = current ?? this.blank(name, now);
      const chosen = strategy ?? (current ? current.strategy : 'ALL_ON');
      if (chosen === 'GRADUAL' && !next.gradual) {
        throw new UserError('INVALID_STRATEGY', `Flag ${quoteValue(name)} has no gradual schedule: use configureGradualRollout`, 'strategy');
      }
      return { ...next, enabled: true, strategy: chosen };
    }))!;
  }

  /** Rolls a flag out to a share of contexts: strategy PERCENTAGE, enabled; creates it when missing. */
  async setPercentage(actor: string, rawName: string, rawPercentage: number): Promise<FlagDefinition> {
    const name = validateName(rawName, 'name', 'Flag name');
    const percentage = validatePercentage(rawPercentage);
    return (await this.change(actor, 'setFlagPercentage', name, (current, now) => ({
      ...(current ?? this.blank(name, now)),
      enabled: true,
      strategy: 'PERCENTAGE',
      percentage,
    })))!;
  }

  async disable(actor: string, rawName: string): Promise<FlagDefinition> {
    const name = validateName(rawName, 'name', 'Flag name');
    return (await this.change(actor, 'disableFeatureFlag', name, (current) => ({ ...this.existing(name, current), enabled: false })))!;
  }

  async addToWhitelist(actor: string, rawName: string, rawAttribute: string, rawValue: string): Promise<FlagDefinition> {
    const name = validateName(rawName, 'name', 'Flag name');
    const attribute = normalizeAttribute(rawAttribute);
    const value = validateWhitelistValue(rawValue);
    return (await this.change(actor, 'addToWhitelist', name, (current) => {
      const flag = this.existing(name, current);
      const whitelist = flag.whitelist.map((e) => ({ attribute: e.attribute, values: [...e.values] }));
      const entry = whitelist.find((e) => e.attribute === attribute);
      if (entry) {
        if (!entry.values.includes(value)) entry.values.push(value);
      } else {
        whitelist.push({ attribute, values: [value] });
      }
      return { ...flag, whitelist };
    }))!;
  }

  async removeFromWhitelist(actor: string, rawName: string, rawAttribute: string, rawValue: string): Promise<FlagDefinition> {
    const name = validateName(rawName, 'name', 'Flag name');
    const attribute = normalizeAttribute(rawAttribute);
    return (await this.change(actor, 'removeFromWhitelist', name, (current) => {
      const flag = this.existing(name, current);
      const whitelist = flag.whitelist
        .map((e) => (e.attribute === attribute ? { attribute, values: e.values.filter((v) => v !== rawValue) } : e))
        .filter((e) => e.values.length > 0);
      return { ...flag, whitelist };
    }))!;
  }

  /** Starts (or replaces) a time-based rollout: strategy GRADUAL, enabled. */
  async configureGradual(actor: string, rawName: string, input: GradualInput): Promise<FlagDefinition> {
    const name = validateName(rawName, 'name', 'Flag name');
    const startPercentage = validatePercentage(input.startPercentage, 'startPercentage');
    const targetPercentage = validatePercentage(input.targetPercentage, 'targetPercentage');
    const durationSeconds = validateDuration(input.durationSeconds);
    return (await this.change(actor, 'configureGradualRollout', name, (current, now) => {
      const flag = this.existing(name, current);
      const gradual: GradualSchedule = { startPercentage, targetPercentage, startAt: input.startAt ?? now, durationSeconds };
      return { ...flag, enabled: true, strategy: 'GRADUAL', gradual };
    }))!;
  }

  async delete(actor: string, rawName: string): Promise<FlagDefinition> {
    const name = validateName(rawName, 'name', 'Flag name');
    let deleted: FlagDefinition | null = null;
    await this.change(actor, 'deleteFeatureFlag', name, (current) => {
      deleted = this.existing(name, current);
      return null;
    });
    return deleted!;
  }

  /** Applies the flags file again (see the rule at the top of this file); returns the flags it changed. */
  async reload(actor: string): Promise<FlagDefinition[]> {
    const now = this.deps.clock.now();
    const defs = await this.readFile();
    const events = await retryIfCreatedMeanwhile(() => this.uow.run(async () => {
      const events: FlagChangeEvent[] = [];
      for (const def of defs) {
        const current = await this.repo.get(def.name, { lock: true });
        const next: FlagDefinition = current ? { ...def, createdAt: current.createdAt } : def;
        if (current && sameFlag(current, next)) continue;
        if (current) await this.repo.save(next, current);
        else await this.repo.insert(next);
        await this.deps.audit.record({
          at: now, actor, action: 'reloadFeatureFlags', targetType: 'FEATURE_FLAG', target: def.name,
          before: current, after: next,
        });
        events.push({ name: def.name, kind: current ? 'UPDATED' : 'CREATED', action: 'reloadFeatureFlags', actor, at: now, flag: next, previous: current });
      }
      if (events.length > 0) {
        const seqs = events.map(() => ++this.writeSeq);
        const appended = events.map((event) => this.deps.events?.append(FLAG_EVENT_TOPIC, event));
        this.uow.afterCommit(() => {
          events.forEach((event, i) => this.applyCommitted(event, seqs[i]!, appended[i]?.id ?? 0));
          this.scheduleGradual();
        });
      }
      return events;
    }));
    return events.map((e) => e.flag!);
  }

  // ---- internals ----

  private async readFile(): Promise<FlagDefinition[]> {
    let text: string;
    try {
      text = readFileSync(this.deps.flagsFile, 'utf8');
    } catch (error) {
      throw new UserError('INVALID_CONFIG_FILE', `Cannot read the flags file ${this.deps.flagsFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    // The stored flags the file names, read first: parsing asks them synchronously.
    const stored = await this.repo.getMany(flagNamesInFile(text));
    const byName = new Map(stored.map((def) => [def.name, def]));
    return parseFlagsFile(text, this.deps.clock.now(), (name) => byName.get(name) ?? null);
  }

  private blank(name: string, now: number): FlagDefinition {
    return {
      name, description: '', enabled: false, strategy: 'ALL_ON', percentage: 0, stickiness: 'default',
      whitelist: [], gradual: null, createdAt: now, updatedAt: now,
    };
  }

  private existing(name: string, current: FlagDefinition | null): FlagDefinition {
    if (!current) throw new UserError('FLAG_NOT_FOUND', `Feature flag ${quoteValue(name)} does not exist`, 'name');
    return current;
  }

  /**
   * The one write path: reads the current row, lets `apply` compute the next state (or null to
   * delete), writes it with its audit entry in the caller's unit of work (or its own), and
   * updates memory and publishes after the outermost commit. Inside a caller's unit of work the
   * returned flag is the written one; `get` and evaluations see it once the unit commits.
   * On PostgreSQL units run side by side: the read locks the flag's row (see FlagRepository),
   * and a flag read as missing that another unit creates before this one writes it is decided
   * again on the flag that unit created: `create` then fails with FLAG_ALREADY_EXISTS, as it
   * would have had the two run one after the other.
   */
  private change(
    actor: string,
    action: string,
    name: string,
    apply: (current: FlagDefinition | null, now: number) => FlagDefinition | null,
  ): Promise<FlagDefinition | null> {
    const now = this.deps.clock.now();
    if (this.uow.canRunSync) {
      try {
        const changed = this.changeInPlace(actor, action, name, apply, now);
        if (changed !== NOT_IN_PLACE) return Promise.resolve(changed);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.changeInUnit(actor, action, name, apply, now);
  }

  /** `change` in a unit of work that may wait (see `changeInPlace` for the one that does not). */
  private async changeInUnit(
    actor: string,
    action: string,
    name: string,
    apply: (current: FlagDefinition | null, now: number) => FlagDefinition | null,
    now: number,
  ): Promise<FlagDefinition | null> {
    const event = await retryIfCreatedMeanwhile(() => this.uow.run(async (): Promise<FlagChangeEvent | null> => {
      const current = await this.repo.get(name, { lock: true });
      const proposed = apply(current, now);
      const entry = { at: now, actor, action, targetType: 'FEATURE_FLAG', target: name } as const;
      if (proposed === null) {
        if (!current) return null;
        await this.repo.delete(name);
        await this.deps.audit.recordJson(entry, flagJson(current), null);
        return this.committed({ name, kind: 'DELETED', action, actor, at: now, flag: null, previous: current });
      }
      if (current && sameFlag(current, proposed)) return null;
      // The flag as the store will read it back (frozen): written, audited, published and kept.
      const next = this.repo.stored({ ...proposed, updatedAt: now });
      if (current) await this.repo.save(next, current);
      else await this.repo.insert(next);
      await this.deps.audit.recordJson(entry, current && flagJson(current), flagJson(next));
      return this.committed({ name, kind: current ? 'UPDATED' : 'CREATED', action, actor, at: now, flag: next, previous: current });
    }));
    return event ? event.flag : await this.repo.get(name);
  }

  /**
   * `change` in one synchronous unit on SQLite (`uow.runSync`: no asynchronous context, no
   * promise) for the changes that update a stored flag and keep its whitelist: a percentage, a
   * switch, a strategy, a schedule. The others (a flag created or deleted, a whitelist edited)
   * answer NOT_IN_PLACE, the unit rolled back with nothing written, and `change` makes them.
   * The same reads, writes, audit row and after-commit publish as the asynchronous path.
   */
  private changeInPlace(
    actor: string,
    action: string,
    name: string,
    apply: (current: FlagDefinition | null, now: number) => FlagDefinition | null,
    now: number,
  ): FlagDefinition | typeof NOT_IN_PLACE {
    try {
      return this.uow.runSync(() => {
        const current = this.repo.getSync(name);
        if (current === null) throw NOT_IN_PLACE;
        const proposed = apply(current, now);
        if (proposed === null) throw NOT_IN_PLACE;
        if (sameFlag(current, proposed)) return current;
        const next = this.repo.stored({ ...proposed, updatedAt: now });
        if (!this.repo.updateSync(next, current)) throw NOT_IN_PLACE;
        this.deps.audit.recordJsonSync({ at: now, actor, action, targetType: 'FEATURE_FLAG', target: name }, flagJson(current), flagJson(next));
        this.committed({ name, kind: 'UPDATED', action, actor, at: now, flag: next, previous: current });
        return next;
      });
    } catch (error) {
      if (error === NOT_IN_PLACE) return NOT_IN_PLACE;
      throw error;
    }
  }

  /** Queues the event's memory update and publish for after the outermost commit. */
  private committed(event: FlagChangeEvent): FlagChangeEvent {
    const seq = ++this.writeSeq;
    const appended = this.deps.events?.append(FLAG_EVENT_TOPIC, event);
    this.uow.afterCommit(() => {
      this.applyCommitted(event, seq, appended?.id ?? 0);
      this.scheduleGradual();
    });
    return event;
  }

  /**
   * A change committed on another node (from the cluster's event log, in commit order). Memory
   * takes it unless this node already holds a later revision of the flag (its own change,
   * committed after this one, applied at its commit); subscribers are told either way.
   */
  private applyRemote(event: FlagChangeEvent, revision: number): void {
    this.applyCommitted(event, ++this.writeSeq, revision);
    this.scheduleGradual();
  }

  private applyCommitted(event: FlagChangeEvent, seq: number, revision = 0): void {
    // A later write to this flag is already in memory: this event is still told, memory stays.
    // `seq` orders this node's commits; `revision` (the cluster log's id) orders every node's.
    if ((this.appliedSeq.get(event.name) ?? 0) > seq || (revision > 0 && (this.appliedRevision.get(event.name) ?? 0) > revision)) {
      this.publish(event);
      return;
    }
    this.appliedSeq.set(event.name, seq);
    if (revision > 0) this.appliedRevision.set(event.name, revision);
    if (event.flag) {
      const compiled = this.compile(event.flag);
      this.compiled.set(event.name, compiled);
      this.deciders.get(event.name)?.follow(compiled);
      this.trackGradual(event.flag);
    } else {
      this.compiled.delete(event.name);
      this.deciders.get(event.name)?.follow(undefined);
      this.publishedGradual.delete(event.name);
    }
    this.publish(event);
  }

  private compile(def: FlagDefinition): CompiledFlag {
    return compileFlag(def, this.deps.random);
  }

  private gradualPercentage(def: FlagDefinition): number | null {
    return def.strategy === 'GRADUAL' && def.enabled ? effectivePercentage(def, this.deps.clock.now()) : null;
  }

  /** Keeps `publishedGradual` to the running GRADUAL flags, with `def`'s percentage now. */
  private trackGradual(def: FlagDefinition): void {
    const percentage = this.gradualPercentage(def);
    if (percentage === null || !def.gradual) this.publishedGradual.delete(def.name);
    else this.publishedGradual.set(def.name, percentage);
  }

  /** The definitions of the running GRADUAL flags. */
  private *runningGradual(): IterableIterator<FlagDefinition> {
    for (const name of this.publishedGradual.keys()) {
      const def = this.compiled.get(name)?.definition;
      if (def) yield def;
    }
  }

  /** Arms one timer for the next step of any running gradual rollout. */
  private scheduleGradual(): void {
    this.gradualTimer?.cancel();
    this.gradualTimer = null;
    if (this.publishedGradual.size === 0) return;
    const now = this.deps.clock.now();
    let next: number | null = null;
    for (const def of this.runningGradual()) {
      if (!def.gradual) continue; // never: runningGradual yields only flags with a schedule (trackGradual)
      const at = nextGradualChangeAt(def.gradual, now);
      if (at !== null && (next === null || at < next)) next = at;
    }
    if (next === null) return;
    this.gradualTimer = this.deps.clock.setTimer(Math.min(next - now, MAX_TIMER_MS), () => this.publishGradualSteps());
  }

  private publish(event: FlagChangeEvent): void {
    for (const listener of [...this.domainListeners]) {
      try {
        listener(event);
      } catch (error) {
        this.deps.logger.error('a flag change listener failed', { flag: event.name, error: error instanceof Error ? error.message : String(error) });
      }
    }
    this.deps.bus.publish('featureFlagChanged', event);
  }

  private publishGradualSteps(): void {
    const now = this.deps.clock.now();
    for (const def of [...this.runningGradual()]) {
      const current = this.gradualPercentage(def);
      if (current === null || current === this.publishedGradual.get(def.name)) continue;
      this.publishedGradual.set(def.name, current);
      this.publish({ name: def.name, kind: 'PERCENTAGE_ADVANCED', action: 'gradualRollout', actor: null, at: now, flag: def, previous: def });
    }
    this.scheduleGradual();
  }
}

/**
 * Runs `unit` (a whole `uow.run`) once more when it failed because a flag it read as missing was
 * created by another unit before it wrote it: the second run reads that flag. Once: a flag
 * created, deleted and created again between two reads is a race too many to chase.
 */
async function retryIfCreatedMeanwhile<T>(unit: () => Promise<T>): Promise<T> {
  try {
    return await unit();
  } catch (error) {
    if (!(error instanceof FlagRowExistsError)) throw error;
    return unit();
  }
}

function sameFlag(a: FlagDefinition, b: FlagDefinition): boolean {
  // A scalar that differs decides at once (a percentage change, say) without serialising both.
  if (a.enabled !== b.enabled || a.strategy !== b.strategy || a.percentage !== b.percentage || a.stickiness !== b.stickiness || a.description !== b.description) return false;
  const strip = ({ updatedAt: _u, createdAt: _c, ...rest }: FlagDefinition) => rest;
  return JSON.stringify(strip(a)) === JSON.stringify(strip(b));
}

/** A flag's decision now; the clock is read only for a flag that depends on time (GRADUAL). */
function decideNow(flag: CompiledFlag, context: EvaluationContext, clock: Clock): OutcomeSlot {
  return flag.decide(context, flag.usesClock ? clock.now() : 0);
}

/** See `FlagService.decider`: one flag's current decision, counted like every evaluation. */
export class FlagDecider {
  private slots: Float64Array | null;

  constructor(
    private readonly clock: Clock,
    private readonly counts: FlagEvaluationCounts | null,
    private readonly name: string,
    private flag: CompiledFlag | undefined,
  ) {
    this.slots = flag && counts ? counts.slotsOf(name) : null;
  }

  /** @internal the flag service moves the handle to the flag's new compiled form. */
  follow(flag: CompiledFlag | undefined): void {
    this.flag = flag;
    this.slots = flag && this.counts ? this.counts.slotsOf(this.name) : null;
  }

  isOn(context: EvaluationContext): boolean {
    const flag = this.flag;
    if (flag === undefined) {
      if (this.counts) this.counts.notFound++;
      return false;
    }
    const slot = decideNow(flag, context, this.clock);
    if (this.slots !== null) this.slots[slot]!++;
    return slotEnabled(slot);
  }
}
