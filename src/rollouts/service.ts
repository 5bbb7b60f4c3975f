/**
 * Rollouts: the service runs the engine's decisions. It asks the modules domain to stage, drop
 * or promote a canary and the flags domain to move the split flag, both through the narrow
 * interfaces below (it imports neither service), writes each decision with its history events
 * and audit entry in one unit of work and, once that has committed (`uow.afterCommit`), updates
 * memory, carries out the decision's effects and publishes `rolloutProgress`.
 *
 * Rules worth knowing:
 * - Bad input (unknown module, no active version, a path outside the modules root, a bad plan,
 *   a flag split by another rollout, a rollout already running) is refused before anything is
 *   written or loaded. From then on the rollout is recorded: it is TESTING while the new version
 *   loads (and its tests run), and a version that fails to load or test ends it ABORTED with
 *   the reason, without a call ever reaching it.
 * - The split flag goes to 0 before the canary is staged (a flag that already existed at some
 *   share sends nothing to an untested version), to steps[0] when it is ready, and back to 0
 *   first thing on abort, before the canary is drained and unloaded.
 * - Automatic actions (steps, holds, aborts, promotion, recovery) are audited under the actor
 *   `rollout`; manual ones under the operator's. Flag moves are audited by the flags domain
 *   under the same actor.
 * - One clock timer is armed for the earliest due judgement of any rollout. With manual steps
 *   the gates are judged every `manualCheckIntervalMs` (they abort, never advance).
 * - The canary's breaker opening aborts its rollout at once (the modules domain reports it).
 * - Operations on one module's rollout run one at a time, in order (a promise chain per
 *   rollout): a timer's judgement, a command, a breaker or flag reaction never overlap, and
 *   each one's write, effects and events are done before the next one starts.
 * - Reactions to another domain's change (the canary's breaker opened, the split flag moved)
 *   wait for that domain's unit of work to commit and are dropped if it rolls back.
 * - Restart: `start()` loads every unfinished rollout, stages its new version again (a TESTING
 *   one is tested again), sets the split back and keeps `nextStepAt`, so the step resumes with
 *   the time that was left; the step's statistics (kept in memory) start empty. A rollout whose
 *   new version is already the module's active version (a crash during promotion) is recorded
 *   PROMOTED; one whose module no longer runs its `fromVersion` is aborted.
 * - At promotion the flag is left where it is (100%, or where the operator had it): without a
 *   canary the modules domain routes every call to the active version whatever the flag says.
 * - Memory answers `inProgress`, `stats`, `replay` and `assertNoRolloutInProgress` (synchronous,
 *   no database); `current`, `get`, `page` and `events` read the database.
 *
 * In a cluster (PostgreSQL, `deps.cluster`):
 * - One scheduler: only the leader (the node holding the leader lock) arms the timer and judges
 *   steps. Every other node loads the unfinished rollouts at start (memory answers as above),
 *   loads their canaries beside its stable versions and waits. A node that becomes the leader
 *   resumes every unfinished rollout from the database at its step with the time left; one that
 *   stops leading disarms its timer.
 * - Commands run on the node that receives them. Each transition's unit locks the rollout's
 *   row (`FOR UPDATE`) and checks that nobody changed it since memory read it; if someone did,
 *   memory takes the stored rollout and the decision is made again (a command may then be
 *   refused). The unit appends `rollout.changed` (the rollout, its new events, their running
 *   total): every other node takes the rollout into memory, starts the step's statistics over
 *   on a new step, publishes the new events to its own subscribers, and the leader re-arms.
 * - Gates judge the whole cluster's step: each node writes its figures (histograms, not just
 *   percentiles) to rollout_node_stats every heartbeat when they changed; before judging, the
 *   leader asks every live node for its figures now (`rollout.stats`), waits for their rows (two
 *   heartbeats at most) and adds them to its own.
 */
import { randomUUID } from 'node:crypto';
import type { NewAuditEntry } from '../audit/repository.js';
import type { BreakerState } from '../breakers/states.js';
import type { ClusterEvent, ClusterEvents } from '../cluster/event-log.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { UnitOfWork } from '../db/unit-of-work.js';
import { UserError } from '../errors.js';
import { errorFields, type Logger } from '../logger.js';
import { validateName, validateText } from '../validation.js';
import {
  abort,
  advance,
  breakerOpened,
  canaryFailed,
  canaryReady,
  createRollout,
  flagMoved,
  judge,
  pause,
  promote,
  recoveryEffects,
  resume,
  ROLLOUT_COMMAND_SOURCES,
  type RolloutDecision,
  type RolloutEffect,
} from './engine.js';
import { isActiveRolloutStatus, type Rollout, type RolloutHistoryEvent, type RolloutProgressEvent, type RolloutStatsSnapshot } from './events.js';
import { rolloutConflictOf, RolloutRepository } from './repository.js';
import { RolloutStats, type RolloutStatsData } from './stats.js';
import { validateRolloutPlan, type RolloutGatesInput } from './validation.js';

/** The actor of every automatic action. */
export const ROLLOUT_ACTOR = 'rollout';
export const DEFAULT_MANUAL_CHECK_INTERVAL_MS = 60_000;
export const MAX_ABORT_REASON_LENGTH = 500;
/** setTimeout's ceiling; longer waits re-arm when they fire. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** The events a live rollout keeps in memory for `replay` (the newest; a long HOLDING rollout has many). */
export const MAX_REPLAY_EVENTS = 1000;
/** Inserts tried when another node took the next `seq` first (PostgreSQL, several nodes). */
const MAX_SEQ_ATTEMPTS = 3;
/** Decisions tried when another node transitioned the rollout first (PostgreSQL, several nodes). */
const MAX_STALE_ATTEMPTS = 4;
/** A committed transition (the rollout after it, its new history events), for the other nodes. */
export const ROLLOUT_EVENT_TOPIC = 'rollout.changed';
/** The leader asks every node to write its figures of a step now (it is about to judge it). */
export const ROLLOUT_STATS_TOPIC = 'rollout.stats';
/** The longest the leader waits for the other nodes' figures before judging with what it has. */
const MAX_STATS_WAIT_MS = 5_000;

/** Payload of ROLLOUT_EVENT_TOPIC. */
export interface RolloutChangedEvent {
  rollout: Rollout;
  /** The history events this transition added (oldest first). */
  events: RolloutHistoryEvent[];
  /** The rollout's number of history events after it (orders transitions; a re-applied one is recognised). */
  total: number;
  /** A new step began: every node starts its statistics of the step over. */
  reset: boolean;
}

/** Payload of ROLLOUT_STATS_TOPIC. */
interface RolloutStatsAsk {
  rolloutId: string;
  stepIndex: number;
  ask: string;
}

/** A node's row in rollout_node_stats: its figures of one step. */
interface NodeStatsRow extends RolloutStatsData {
  /** The step's `stepStartedAt` the figures are of (a step can be entered twice with manual moves). */
  window: number | null;
  /** The last ask it answered. */
  ask: string | null;
}

/**
 * The cluster as the rollout service sees it (src/cluster): which node leads (runs the
 * scheduler), the event log, and the live nodes. Absent: a cluster of one, which always leads.
 */
export interface RolloutCluster {
  nodeId: string;
  /** PostgreSQL: other nodes may exist. */
  clustered: boolean;
  events: ClusterEvents;
  membership: {
    readonly isLeader: boolean;
    onLeadership(listener: (leading: boolean) => void): () => void;
    nodes(): Promise<Array<{ id: string }>>;
  };
  /** How often each node writes its statistics (rollout_node_stats). */
  heartbeatMs: number;
}

/** The rollout row changed under us (another node transitioned it): decide again from `fresh`. */
class StaleRollout extends Error {
  constructor(readonly fresh: Rollout | null) {
    super('the rollout was changed by another node');
  }
}

type Decide = (rollout: Rollout, now: number) => RolloutDecision | null;

/** A new version checked by the modules domain and ready to stage. */
export interface CanaryPlan {
  module: string;
  /** The module's active (stable) version. */
  fromVersion: string;
  toVersion: string;
  /** The new version's file, relative to the modules root. */
  modulePath: string;
}

export interface StageCanaryOptions {
  actor: string;
  /** The split flag: on for a call's context means the canary serves it. */
  flag: string;
  /** Run this test suite on the new version first; null: none. */
  testWith: string | null;
  /** Where invocation records every routed call's outcome (stable and canary) for the gates. */
  stats: RolloutStats;
}

/**
 * What the rollout needs from the modules domain (implemented there, over invocation). The
 * rollout service awaits every call, the synchronous ones too.
 */
export interface RolloutModules {
  /**
   * Checks before anything is written or loaded (it writes nothing): the module is registered
   * and ACTIVE, the path resolves inside the modules root to an existing file, the version
   * (given, or derived from the path) is valid and differs from the active one. Throws (or
   * rejects with) UserError (MODULE_NOT_FOUND, INVALID_MODULE_STATE, INVALID_MODULE_PATH,
   * MODULE_FILE_NOT_FOUND, NOT_HOT_RELOADABLE, INVALID_ARGUMENT).
   */
  planCanary(module: string, newVersionPath: string, newVersion: string | null): CanaryPlan | Promise<CanaryPlan>;
  /** The module's active version, null when it is not loaded or not registered (memory). */
  activeVersion(module: string): string | null;
  /**
   * Loads the new version beside the stable one (exported state of the stable version
   * imported), checks its health and, with `testWith`, runs its tests. Resolves once the canary
   * is routable by the split flag; rejects (nothing left loaded) otherwise: a UserError with
   * code TESTS_FAILED (and `testRunId`) when the tests failed.
   */
  stageCanary(plan: CanaryPlan, options: StageCanaryOptions): Promise<{ testRunId: string | null }>;
  /**
   * Stops routing to the canary at once (synchronously, before the first await), drains its
   * calls in flight and unloads it. A module without a canary: no-op.
   */
  dropCanary(module: string, actor: string): Promise<void>;
  /** The canary becomes the active version, the old one its previousVersion; rejects (nothing changed) on failure. */
  promoteCanary(module: string, actor: string): Promise<void>;
  /** The canary's breaker (`module:<name>@<version>`), null when the module has no canary (memory). */
  canaryBreakerState(module: string): BreakerState | null;
  /** Called whenever a canary's breaker leaves CLOSED for OPEN (or FORCED_OPEN); returns the unsubscribe. */
  onCanaryBreakerOpen(listener: (module: string, state: BreakerState) => void): () => void;
}

/** What the rollout needs from the flags domain. */
export interface RolloutFlags {
  /**
   * Strategy PERCENTAGE, enabled, at `percentage`; creates the flag when missing; audited under
   * `actor`. Resolves once the change is committed and routing sees the new share.
   */
  setPercentage(name: string, percentage: number, actor: string): Promise<void>;
  /**
   * Called after every committed flag change with the flag's new effective share for routing
   * (PERCENTAGE its percentage, ALL_ON 100, ALL_OFF or disabled 0; null: deleted).
   */
  onPercentageChange(listener: (name: string, percentage: number | null, actor: string | null) => void): () => void;
}

export interface RolloutServiceDeps {
  uow: UnitOfWork;
  audit: { record(entry: NewAuditEntry): Promise<void> };
  modules: RolloutModules;
  flags: RolloutFlags;
  clock: Clock;
  logger: Logger;
  /** The bus: `(event) => bus.publish('rolloutProgress', event)`. */
  publish(event: RolloutProgressEvent): void;
  newId?: () => string;
  manualCheckIntervalMs?: number;
  /** The cluster (PostgreSQL): one scheduler at a time, transitions told to every node. Absent: a cluster of one. */
  cluster?: RolloutCluster;
}

export interface StartRolloutInput {
  module: string;
  newVersionPath: string;
  newVersion?: string | null;
  flag?: string | null;
  steps?: readonly number[] | null;
  /** Omitted: 3600; null: manual steps. */
  stepIntervalSeconds?: number | null;
  gates?: RolloutGatesInput | null;
  testWith?: string | null;
  autoPromote?: boolean | null;
}

interface LiveRollout {
  rollout: Rollout;
  /** Its newest history events (MAX_REPLAY_EVENTS), oldest first: each enters here in the same turn as it is published. */
  events: RolloutHistoryEvent[];
  stats: RolloutStats;
  /** The new version is being staged: a drop waits for the staging to finish. */
  staging: boolean;
  /** Next manual-steps judgement (automatic steps use rollout.nextStepAt). */
  manualCheckAt: number | null;
  /** A judgement is queued: the timer does not fire for this rollout again until it ran. */
  judging: boolean;
  /** The last judgement failed (say, the database was unreachable): not judged again before this. */
  retryAt: number | null;
  queue: Promise<unknown>;
  /** How many history events the rollout has (orders the cluster's transitions). */
  total: number;
  /** The node that started it (known from its event; null when loaded from the database). */
  stager: string | null;
  /** The last ask of the leader for this node's figures (ROLLOUT_STATS_TOPIC). */
  ask: string | null;
  /** What was last written to rollout_node_stats (nothing new: no write). */
  written: string | null;
}

export class RolloutService {
  private readonly repo: RolloutRepository;
  private readonly uow: UnitOfWork;
  private readonly live = new Map<string, LiveRollout>();
  /** Modules whose finished rollout's canary is still being staged or unloaded: no new rollout yet. */
  private readonly settling = new Set<string>();
  private readonly unsubscribe: (() => void)[] = [];
  /** Every queued operation not yet settled (`stop()` waits for them). */
  private readonly pending = new Set<Promise<unknown>>();
  private timer: TimerHandle | null = null;
  private stopped = false;
  /** The highest `seq` this process handed out: two starts awaiting at once never share one. */
  private lastSeq = 0;
  private readonly manualCheckMs: number;
  private readonly newId: () => string;
  private statsTimer: NodeJS.Timeout | null = null;
  private statsWrite: Promise<void> = Promise.resolve();

  constructor(private readonly deps: RolloutServiceDeps) {
    this.uow = deps.uow;
    this.repo = new RolloutRepository(deps.uow);
    this.manualCheckMs = deps.manualCheckIntervalMs ?? DEFAULT_MANUAL_CHECK_INTERVAL_MS;
    this.newId = deps.newId ?? randomUUID;
  }

  /**
   * Resumes every unfinished rollout (call after the modules domain has loaded the stable
   * versions). In a cluster only the leader resumes them (and runs the scheduler): another node
   * loads them into memory (guards, queries, replay), loads the canary beside its stable version
   * and waits; it resumes them when it becomes the leader (`onLeadership`).
   */
  async start(): Promise<{ resumed: number; finished: number }> {
    this.unsubscribe.push(
      this.deps.modules.onCanaryBreakerOpen((module, state) => this.canaryBreakerOpened(module, state)),
      this.deps.flags.onPercentageChange((name, percentage, actor) => this.flagChanged(name, percentage, actor)),
    );
    const cluster = this.deps.cluster;
    if (cluster?.clustered) {
      cluster.events.on(ROLLOUT_EVENT_TOPIC, (payload, event) => this.applyRemote(payload as RolloutChangedEvent, event));
      cluster.events.on(ROLLOUT_STATS_TOPIC, (payload) => this.answerAsk(payload as RolloutStatsAsk));
      this.unsubscribe.push(cluster.membership.onLeadership((leading) => {
        if (leading) {
          void this.takeOver().catch((error: unknown) => this.deps.logger.error('rollout: taking over the scheduler failed', errorFields(error)));
        } else {
          this.deps.logger.info('rollout scheduler: this node no longer leads; its timers are disarmed');
          this.reschedule();
        }
      }));
      this.statsTimer = setInterval(() => {
        void this.writeStats();
        if (this.leading) void this.adoptOrphans();
      }, cluster.heartbeatMs);
      this.statsTimer.unref();
    }
    let resumed = 0;
    let finished = 0;
    for (const rollout of await this.repo.active()) {
      const events = await this.repo.events(rollout.id);
      const entry = this.track(rollout, events.slice(-MAX_REPLAY_EVENTS));
      entry.total = events.length;
      if (!this.leading) {
        await this.serialized(entry, () => this.joinCanary(entry));
        resumed++;
        continue;
      }
      const outcome = await this.serialized(entry, () => this.recover(entry));
      if (outcome) resumed++;
      else finished++;
    }
    this.reschedule();
    return { resumed, finished };
  }

  /** No more judgements; resolves once the operations already queued (their writes and effects) are done. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
    if (this.statsTimer) clearInterval(this.statsTimer);
    this.statsTimer = null;
    for (const off of this.unsubscribe.splice(0)) off();
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    await this.statsWrite;
  }

  /** True on the node that runs the scheduler: the cluster's leader (always, without a cluster). */
  get leading(): boolean {
    return this.deps.cluster ? this.deps.cluster.membership.isLeader : true;
  }

  private get clustered(): boolean {
    return this.deps.cluster?.clustered === true;
  }

  // ---- reads ----

  /** The module's current rollout, or its last one. */
  async current(rawModule: string): Promise<Rollout | null> {
    const module = validateName(rawModule, 'module', 'Module name');
    return this.live.get(module)?.rollout ?? (await this.repo.latest(module));
  }

  async get(id: string): Promise<Rollout | null> {
    return this.repo.get(id);
  }

  /** History, newest first; `afterSeq` is the `seq` of the last rollout of the previous page. */
  async page(module: string | null | undefined, first: number, afterSeq?: number): Promise<{ rollouts: Rollout[]; hasMore: boolean }> {
    if (!Number.isInteger(first) || first < 1 || first > 100) throw new UserError('INVALID_ARGUMENT', 'first must be within [1, 100]', 'first');
    const name = module == null ? null : validateName(module, 'module', 'Module name');
    return this.repo.page(name, first, afterSeq);
  }

  async events(rolloutId: string): Promise<RolloutHistoryEvent[]> {
    return this.repo.events(rolloutId);
  }

  /** The unfinished rollout of a module, if any. */
  inProgress(module: string): Rollout | null {
    return this.live.get(module)?.rollout ?? null;
  }

  /** For swapModule, rollbackModule, unloadModule: refused while a rollout owns the module (memory, synchronous). */
  assertNoRolloutInProgress(module: string, operation: string): void {
    const rollout = this.inProgress(module);
    if (rollout) {
      throw new UserError(
        'ROLLOUT_IN_PROGRESS',
        `Cannot ${operation} "${module}": its rollout ${rollout.fromVersion} -> ${rollout.toVersion} is ${rollout.status} at ${rollout.percentage}% (promote or abort it first)`,
        'name',
      );
    }
  }

  /** The current step's figures of a module's unfinished rollout, on this node. */
  stats(module: string): RolloutStatsSnapshot | null {
    return this.live.get(module)?.stats.snapshot() ?? null;
  }

  /**
   * The current step's figures of the whole cluster as last written: this node's memory plus
   * every other live node's latest row (written every heartbeat), without asking for fresher
   * ones as a judgement does. On SQLite, this node's.
   */
  async clusterStatsNow(module: string): Promise<RolloutStatsSnapshot | null> {
    const entry = this.live.get(module);
    if (!entry) return null;
    if (!this.clustered) return entry.stats.snapshot();
    const r = entry.rollout;
    const others = await this.otherLiveNodes();
    if (others.length === 0) return entry.stats.snapshot();
    const rows = (await this.repo.nodeStats(r.id, r.stepIndex, others)).map((x) => x.stats as NodeStatsRow);
    return this.sumWithStep(entry, rows);
  }

  /** The live nodes other than this one. */
  private async otherLiveNodes(): Promise<string[]> {
    const cluster = this.deps.cluster!;
    return (await cluster.membership.nodes()).map((n) => n.id).filter((id) => id !== cluster.nodeId);
  }

  /** This node's figures of the step plus the rows of other nodes for the same step (same start). */
  private sumWithStep(entry: LiveRollout, rows: readonly NodeStatsRow[]): RolloutStatsSnapshot {
    return RolloutStats.sum(entry.stats, rows.filter((x) => x.window === entry.rollout.stepStartedAt)).snapshot();
  }

  /**
   * The events so far (the newest MAX_REPLAY_EVENTS each) of the unfinished rollouts (one module's, or all), for a late subscriber:
   * from memory, where each event enters in the same synchronous turn as it is published, so a
   * subscriber that replays and attaches in one turn misses none and hears none twice.
   */
  replay(module?: string | null): RolloutProgressEvent[] {
    const entries = module ? [this.live.get(module)].filter((e): e is LiveRollout => e !== undefined) : [...this.live.values()];
    return entries.flatMap(({ rollout, events }) => events.map((e) => ({ ...e, module: rollout.module, rollout })));
  }

  // ---- commands ----

  /** Starts a rollout; resolves once the new version is serving its first step (RUNNING) or was refused (ABORTED). */
  async startRollout(actor: string, input: StartRolloutInput): Promise<Rollout> {
    const module = validateName(input.module, 'module', 'Module name');
    const flag = validateName(input.flag ?? module, 'flag', 'Flag name');
    const plan = validateRolloutPlan({
      steps: input.steps,
      ...(input.stepIntervalSeconds === undefined ? {} : { stepIntervalSeconds: input.stepIntervalSeconds }),
      gates: input.gates,
      autoPromote: input.autoPromote,
    });
    this.assertFree(module, flag);
    const canary = await this.deps.modules.planCanary(module, input.newVersionPath, input.newVersion ?? null);
    const seq = await this.nextSeq();
    // Another start may have taken the module or the flag while we awaited: check again, and
    // reserve them (track) in the same turn.
    this.assertFree(module, flag);
    const now = this.deps.clock.now();
    const decision = createRollout({
      id: this.newId(), seq, module, fromVersion: canary.fromVersion, toVersion: canary.toVersion,
      toModulePath: canary.modulePath, flag, plan, testWith: input.testWith ?? null, actor,
    }, now);
    const entry = this.track(decision.rollout, []);
    entry.staging = true;
    try {
      await this.serialized(entry, () => this.insert(entry, decision, actor));
    } catch (error) {
      if (this.live.get(module) === entry) this.live.delete(module);
      throw error;
    }
    await this.stage(entry, canary, actor, input.testWith ?? null);
    return entry.rollout;
  }

  advance(actor: string, module: string): Promise<Rollout> {
    return this.command(actor, module, 'advanceRollout', (r, now) => advance(r, now, actor));
  }

  pause(actor: string, module: string): Promise<Rollout> {
    return this.command(actor, module, 'pauseRollout', (r, now) => pause(r, now, actor));
  }

  resume(actor: string, module: string): Promise<Rollout> {
    return this.command(actor, module, 'resumeRollout', (r, now) => resume(r, now, actor));
  }

  promote(actor: string, module: string): Promise<Rollout> {
    return this.command(actor, module, 'promoteRollout', (r, now) => promote(r, now, actor));
  }

  async abort(actor: string, module: string, reason: string | null = null): Promise<Rollout> {
    const why = reason === null ? null : validateText(reason, 'reason', MAX_ABORT_REASON_LENGTH);
    return this.command(actor, module, 'abortRollout', (r, now) => abort(r, now, actor, why));
  }

  // ---- internals ----

  /** No rollout of the module (nor one still unloading its canary), and no rollout split by the flag. */
  private assertFree(module: string, flag: string): void {
    this.assertNoRolloutInProgress(module, 'start a rollout of');
    if (this.settling.has(module)) {
      throw new UserError('ROLLOUT_IN_PROGRESS', `The last rollout of "${module}" is still unloading its canary: try again in a moment`, 'module');
    }
    const owner = [...this.live.values()].find((e) => e.rollout.flag === flag);
    if (owner) throw flagInUse(flag, owner.rollout.module);
  }

  private async nextSeq(): Promise<number> {
    const seq = Math.max(await this.repo.nextSeq(), this.lastSeq + 1);
    this.lastSeq = seq;
    return seq;
  }

  /**
   * Writes a new rollout. The database's unique indexes are the last word (another node may
   * have started a rollout of the module or on the flag): those violations are the same typed
   * errors the checks in memory give; a `seq` taken meanwhile is drawn again.
   */
  private async insert(entry: LiveRollout, decision: RolloutDecision, actor: string): Promise<void> {
    let chosen = decision;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.commit(entry, chosen, null, actor, 'startRollout', true);
        return;
      } catch (error) {
        const conflict = rolloutConflictOf(error);
        const { module, flag } = chosen.rollout;
        if (conflict === 'seq' && attempt < MAX_SEQ_ATTEMPTS) {
          const rollout = { ...chosen.rollout, seq: await this.nextSeq() };
          chosen = { ...chosen, rollout };
          entry.rollout = rollout;
          continue;
        }
        if (conflict !== 'module' && conflict !== 'flag') throw error;
        // Both may be taken (the database reports one of them): the module first, as the checks in memory do.
        const other = await this.repo.activeForModule(module);
        if (other || conflict === 'module') {
          throw new UserError('ROLLOUT_IN_PROGRESS', other
            ? `Cannot start a rollout of "${module}": its rollout ${other.fromVersion} -> ${other.toVersion} is ${other.status} at ${other.percentage}% (promote or abort it first)`
            : `Cannot start a rollout of "${module}": another rollout of it is in progress`, 'name');
        }
        throw flagInUse(flag, (await this.repo.activeForFlag(flag))?.module ?? null);
      }
    }
  }

  private async command(actor: string, rawModule: string, action: string, decide: (r: Rollout, now: number) => RolloutDecision): Promise<Rollout> {
    const module = validateName(rawModule, 'module', 'Module name');
    const entry = this.live.get(module) ?? (await this.loadActive(module));
    if (!entry) {
      const last = await this.repo.latest(module);
      throw new UserError('ROLLOUT_NOT_FOUND', last
        ? `Module "${module}" has no rollout in progress (its last one is ${last.status})`
        : `Module "${module}" has no rollout`, 'module');
    }
    return this.serialized(entry, async () => {
      await this.apply(entry, decide, actor, action);
      return entry.rollout;
    });
  }

  /**
   * In a cluster, a rollout another node started that this node has not heard of yet (its
   * event is on the way): read from the database.
   */
  private async loadActive(module: string): Promise<LiveRollout | null> {
    if (!this.clustered) return null;
    const rollout = await this.repo.activeForModule(module);
    if (!rollout) return null;
    const known = this.live.get(module);
    if (known) return known;
    const events = await this.repo.events(rollout.id);
    const entry = this.track(rollout, events.slice(-MAX_REPLAY_EVENTS));
    entry.total = events.length;
    this.reschedule();
    return entry;
  }

  private track(rollout: Rollout, events: RolloutHistoryEvent[]): LiveRollout {
    const entry: LiveRollout = {
      rollout, events, stats: new RolloutStats(), staging: false, manualCheckAt: null, judging: false, retryAt: null, queue: Promise.resolve(),
      total: events.length, stager: null, ask: null, written: null,
    };
    this.live.set(rollout.module, entry);
    return entry;
  }

  /** Runs `fn` after every operation queued before on this rollout: one at a time, in order. */
  private serialized<T>(entry: LiveRollout, fn: () => Promise<T>): Promise<T> {
    const run = entry.queue.then(fn);
    const settled = run.then(() => undefined, () => undefined);
    entry.queue = settled;
    this.pending.add(settled);
    void settled.then(() => this.pending.delete(settled));
    return run;
  }

  /** Loads the new version; then RUNNING at the first step, or ABORTED with why it failed. */
  private async stage(entry: LiveRollout, canary: CanaryPlan, actor: string, testWith: string | null): Promise<void> {
    const actionActor = actor;
    let failure: Decide | null = null;
    let testRunId: string | null = null;
    try {
      ({ testRunId } = await this.deps.modules.stageCanary(canary, { actor, flag: entry.rollout.flag, testWith, stats: entry.stats }));
    } catch (error) {
      const failedRunId = runIdOf(error);
      const tests = error instanceof UserError && error.code === 'TESTS_FAILED';
      const message = error instanceof Error ? error.message : String(error);
      if (!(error instanceof UserError)) this.deps.logger.error('rollout: staging the new version failed', { module: canary.module, ...errorFields(error) });
      failure = (r, now) => r.status === 'TESTING'
        ? canaryFailed(r, now, tests ? 'TESTS_FAILED' : 'CANARY_FAILED',
          `${canary.toVersion} ${tests ? 'failed its tests' : 'did not load'}: ${message}; ${canary.fromVersion} keeps serving`, failedRunId)
        : null;
    } finally {
      entry.staging = false;
    }
    await this.serialized(entry, async () => {
      if (failure) {
        if (entry.rollout.status === 'TESTING') await this.apply(entry, failure, ROLLOUT_ACTOR, 'rolloutAbort');
        return;
      }
      // (In a cluster another node may abort it meanwhile: the write finds the row changed and decides again.)
      if (entry.rollout.status === 'TESTING') {
        await this.apply(entry, (r, now) => (r.status === 'TESTING' ? canaryReady(r, now, testRunId) : null), ROLLOUT_ACTOR, 'rolloutStep');
      }
      if (entry.rollout.status !== 'TESTING' && entry.rollout.status !== 'RUNNING') {
        // Aborted while it was being staged: the drop was left to us.
        await this.dropCanary(entry, actionActor);
      }
    });
  }

  /**
   * Decides from the rollout in memory and carries the decision out: promotion first (a failure
   * aborts instead), then the write, the events and the other effects. `decide` returning null:
   * nothing to do. In a cluster the write locks the row and finds whether another node changed
   * it since; then memory takes the stored rollout and `decide` runs again (a command may now be
   * refused: the rollout was paused, or finished, elsewhere).
   */
  private async apply(entry: LiveRollout, decide: Decide, actor: string, action: string | ((decision: RolloutDecision) => string)): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const before = entry.rollout;
      const decision = decide(before, this.deps.clock.now());
      if (decision === null) return;
      const promotes = decision.effects.some((e) => e.kind === 'PROMOTE_CANARY');
      if (promotes && this.clustered && attempt === 1) {
        // Promotion cannot be undone: decide it on the stored rollout, not on what memory last heard.
        const fresh = await this.repo.get(before.id);
        if (fresh && !sameState(fresh, before)) {
          this.adopt(entry, fresh);
          continue;
        }
      }
      let chosen = decision;
      let chosenAction = typeof action === 'string' ? action : action(decision);
      let chosenActor = actor;
      if (promotes) {
        try {
          await this.deps.modules.promoteCanary(before.module, actor);
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          if (!(error instanceof UserError)) this.deps.logger.error('rollout: promotion failed', { module: before.module, ...errorFields(error) });
          chosen = canaryFailed(before, this.deps.clock.now(), 'CANARY_FAILED',
            `promotion of ${before.toVersion} failed: ${message}; ${before.fromVersion} keeps serving`);
          chosenAction = 'rolloutAbort';
          chosenActor = ROLLOUT_ACTOR;
        }
      }
      try {
        await this.commit(entry, chosen, before, chosenActor, chosenAction, false);
        return;
      } catch (error) {
        if (!(error instanceof StaleRollout) || attempt >= MAX_STALE_ATTEMPTS) throw error;
        this.adopt(entry, error.fresh);
      }
    }
  }

  /** Memory takes the stored rollout (another node transitioned it; its events arrive through the log). */
  private adopt(entry: LiveRollout, fresh: Rollout | null): void {
    if (!fresh) throw new UserError('ROLLOUT_NOT_FOUND', `The rollout of "${entry.rollout.module}" no longer exists`, 'module');
    entry.rollout = fresh;
    if (!isActiveRolloutStatus(fresh.status) && this.live.get(fresh.module) === entry) this.live.delete(fresh.module);
    this.reschedule();
  }

  /**
   * Writes the rollout, its events and the audit entry in one unit of work (a failing write
   * rejects and changes nothing, in the database or in memory). Once it has committed: memory,
   * then the effects, then the events; resolves when the effects are done. The flag move and
   * the start of a drop (which stops routing at once) come before the events are published:
   * whoever reacts to an ABORTED event reaches the stable version only. Called inside another
   * unit, all of that waits for the outer commit, and this resolves without waiting for it.
   */
  private async commit(entry: LiveRollout, decision: RolloutDecision, before: Rollout | null, actor: string, action: string, insert: boolean): Promise<void> {
    const next = decision.rollout;
    const now = next.updatedAt;
    const after: { effects: Promise<void> | null } = { effects: null };
    const cluster = this.clustered ? this.deps.cluster! : null;
    let total = (insert ? 0 : entry.total) + decision.events.length;
    await this.uow.run(async () => {
      if (insert) await this.repo.insert(next);
      else {
        if (cluster) {
          // One transition at a time across the cluster: the row stays locked until this unit ends.
          const locked = await this.repo.lockForUpdate(next.id);
          if (!locked || !before || !sameState(locked, before)) throw new StaleRollout(locked);
          total = (await this.repo.eventCount(next.id)) + decision.events.length;
        }
        await this.repo.update(next);
      }
      for (const e of decision.events) await this.repo.appendEvent(next.id, e);
      if (decision.events.length > 0) {
        await this.deps.audit.record({
          at: now, actor, action, targetType: 'ROLLOUT', target: next.module, before: before && auditView(before), after: auditView(next),
        });
      }
      if (cluster) {
        if (!isActiveRolloutStatus(next.status)) await this.repo.deleteNodeStats(next.id);
        const changed: RolloutChangedEvent = { rollout: next, events: decision.events, total, reset: decision.effects.some((e) => e.kind === 'RESET_STATS') };
        cluster.events.append(ROLLOUT_EVENT_TOPIC, changed);
      }
      this.uow.afterCommit(() => {
        entry.total = Math.max(entry.total, total);
        after.effects = this.committed(entry, decision, actor);
      });
    });
    await after.effects;
  }

  /** After the commit: memory, effects, events (see `commit`). */
  private committed(entry: LiveRollout, decision: RolloutDecision, actor: string): Promise<void> {
    const next = decision.rollout;
    entry.rollout = next;
    entry.retryAt = null;
    if (!isActiveRolloutStatus(next.status)) {
      if (this.live.get(next.module) === entry) this.live.delete(next.module);
      if (entry.staging) this.settling.add(next.module);
      // The unit deleted every node's figures; a write of this node's that was under way comes first.
      if (this.deps.cluster) this.dropOwnStats(next.id);
    }
    this.reschedule();
    return this.runEffects(entry, decision.effects, actor, () => {
      for (const e of decision.events) {
        entry.events.push(e);
        if (entry.events.length > MAX_REPLAY_EVENTS) entry.events.splice(0, entry.events.length - MAX_REPLAY_EVENTS);
        try {
          this.deps.publish({ ...e, module: next.module, rollout: next });
        } catch (error) {
          this.deps.logger.error('rollout: a rolloutProgress listener failed', errorFields(error));
        }
      }
    }).catch((error: unknown) => {
      this.deps.logger.error('rollout: carrying out a decision failed', { module: next.module, ...errorFields(error) });
    });
  }

  /**
   * The effects in order; `announce` runs once the flag has moved and a drop has begun (its
   * synchronous part stops routing), then the drop is awaited.
   */
  private async runEffects(entry: LiveRollout, effects: readonly RolloutEffect[], actor: string, announce: () => void = () => undefined): Promise<void> {
    const { module, flag } = entry.rollout;
    let drop: Promise<void> | null = null;
    for (const effect of effects) {
      switch (effect.kind) {
        case 'SET_PERCENTAGE':
          try {
            await this.deps.flags.setPercentage(flag, effect.percentage, actor);
          } catch (error) {
            this.deps.logger.error('rollout: moving the split flag failed', { module, flag, percentage: effect.percentage, ...errorFields(error) });
          }
          break;
        case 'RESET_STATS':
          entry.stats.reset();
          entry.manualCheckAt = null;
          break;
        case 'DROP_CANARY':
          // While the version is still being staged, staging drops it when it finishes.
          if (!entry.staging) drop = this.dropCanary(entry, actor);
          break;
        case 'PROMOTE_CANARY':
          break; // carried out before the write (apply)
      }
    }
    announce();
    if (drop) await drop;
  }

  private async dropCanary(entry: LiveRollout, actor: string): Promise<void> {
    const { module } = entry.rollout;
    this.settling.add(module);
    try {
      await this.deps.modules.dropCanary(module, actor);
    } catch (error) {
      this.deps.logger.error('rollout: unloading the canary failed', { module, ...errorFields(error) });
    } finally {
      this.settling.delete(module);
    }
  }

  /** Restart: see the module comment. Resolves true when the rollout goes on. */
  private async recover(entry: LiveRollout): Promise<boolean> {
    const r = entry.rollout;
    const now = this.deps.clock.now();
    const active = await this.deps.modules.activeVersion(r.module);
    if (active === r.toVersion && active !== r.fromVersion && r.status !== 'TESTING') {
      const decision = promote(r, now, ROLLOUT_ACTOR);
      await this.commit(entry, { ...decision, effects: [] }, r, ROLLOUT_ACTOR, 'rolloutRecovery', false);
      return false;
    }
    if (active !== r.fromVersion) {
      const reason = `after a restart "${r.module}" runs ${active ?? 'no version'}, not ${r.fromVersion}`;
      await this.apply(entry, (x, at) => (ROLLOUT_COMMAND_SOURCES.canaryFailed.includes(x.status) ? canaryFailed(x, at, 'CANARY_FAILED', reason) : null),
        ROLLOUT_ACTOR, 'rolloutRecovery');
      return false;
    }
    const canary: CanaryPlan = { module: r.module, fromVersion: r.fromVersion, toVersion: r.toVersion, modulePath: r.toModulePath };
    if (r.status === 'TESTING') {
      await this.runEffects(entry, recoveryEffects(r), ROLLOUT_ACTOR);
      entry.staging = true;
      // Not awaited inside the queue: staging enqueues its own verdict.
      void this.stage(entry, canary, ROLLOUT_ACTOR, r.testWith).catch((error: unknown) =>
        this.deps.logger.error('rollout: staging after a restart failed', { module: r.module, ...errorFields(error) }));
      return true;
    }
    try {
      entry.staging = true;
      await this.deps.modules.stageCanary(canary, { actor: ROLLOUT_ACTOR, flag: r.flag, testWith: null, stats: entry.stats });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      entry.staging = false;
      const reason = `after a restart ${r.toVersion} did not load again: ${message}; ${r.fromVersion} serves everything`;
      await this.apply(entry, (x, at) => (ROLLOUT_COMMAND_SOURCES.canaryFailed.includes(x.status) ? canaryFailed(x, at, 'CANARY_FAILED', reason) : null),
        ROLLOUT_ACTOR, 'rolloutRecovery');
      return false;
    } finally {
      entry.staging = false;
    }
    await this.runEffects(entry, recoveryEffects(r), ROLLOUT_ACTOR);
    this.deps.logger.info('rollout resumed after a restart', {
      module: r.module, status: r.status, percentage: r.percentage, nextStepAt: r.nextStepAt, remainingMs: r.remainingMs,
    });
    return true;
  }

  /** The modules domain reports it; acted on once the unit that opened the breaker (if any) has committed. */
  private canaryBreakerOpened(module: string, state: BreakerState): void {
    this.uow.afterCommit(() => {
      const entry = this.live.get(module);
      if (!entry) return;
      void this.serialized(entry, async () => {
        if (!ROLLOUT_COMMAND_SOURCES.breakerOpened.includes(entry.rollout.status)) return;
        await this.apply(entry, (r, now) => (ROLLOUT_COMMAND_SOURCES.breakerOpened.includes(r.status)
          ? breakerOpened(r, now, state, entry.stats.snapshot()) : null), ROLLOUT_ACTOR, 'rolloutAbort');
      }).catch((error: unknown) => this.deps.logger.error('rollout: abort on breaker open failed', { module, ...errorFields(error) }));
    });
  }

  /** The flags domain reports committed changes; waits for the unit it was called in, if one is still open. */
  private flagChanged(name: string, percentage: number | null, actor: string | null): void {
    this.uow.afterCommit(() => {
      const entry = [...this.live.values()].find((e) => e.rollout.flag === name);
      if (!entry) return;
      void this.serialized(entry, async () => {
        if (!ROLLOUT_COMMAND_SOURCES.flagMoved.includes(entry.rollout.status)) return;
        await this.apply(entry, (r, now) => (ROLLOUT_COMMAND_SOURCES.flagMoved.includes(r.status) ? flagMoved(r, now, percentage ?? 0, actor) : null),
          actor ?? ROLLOUT_ACTOR, 'setFlagPercentage');
      }).catch((error: unknown) => this.deps.logger.error('rollout: following the flag failed', { module: entry.rollout.module, ...errorFields(error) }));
    });
  }

  // ---- the cluster ----

  /**
   * A transition committed on another node: memory takes the rollout, the step's statistics
   * start over with a new step, and the new history events go to this node's subscribers. The
   * `total` tells a re-applied event (one committed while this node loaded its state) from a new one.
   */
  private async applyRemote(change: RolloutChangedEvent, event: ClusterEvent): Promise<void> {
    const next = change.rollout;
    let entry = this.live.get(next.module);
    if (entry && entry.rollout.id !== next.id) {
      // A newer rollout of the module (the one in memory has finished elsewhere), or an old event.
      if (next.seq < entry.rollout.seq) return;
      this.live.delete(next.module);
      entry = undefined;
    }
    if (!entry) {
      if (!isActiveRolloutStatus(next.status)) return;
      // Not known here yet: only if it is still unfinished (an old event re-applied at start must not bring it back).
      const stored = await this.repo.get(next.id);
      if (!stored || !isActiveRolloutStatus(stored.status)) return;
      if (this.live.get(next.module)) return this.applyRemote(change, event);
      const known = change.total > change.events.length ? (await this.repo.events(next.id)).slice(0, change.total - change.events.length) : [];
      entry = this.track(next, known.slice(-MAX_REPLAY_EVENTS));
      entry.total = change.total - change.events.length;
      entry.stager = event.node;
    }
    if (change.total < entry.total) return;
    const fresh = change.total - entry.total;
    const added = fresh > 0 ? change.events.slice(Math.max(0, change.events.length - fresh)) : [];
    entry.rollout = next;
    entry.total = change.total;
    entry.retryAt = null;
    if (change.reset && fresh > 0) {
      entry.stats.reset();
      entry.manualCheckAt = null;
    }
    if (!isActiveRolloutStatus(next.status)) {
      if (this.live.get(next.module) === entry) this.live.delete(next.module);
      this.dropOwnStats(next.id);
    }
    this.reschedule();
    for (const e of added) {
      entry.events.push(e);
      if (entry.events.length > MAX_REPLAY_EVENTS) entry.events.splice(0, entry.events.length - MAX_REPLAY_EVENTS);
      try {
        this.deps.publish({ ...e, module: next.module, rollout: next });
      } catch (error) {
        this.deps.logger.error('rollout: a rolloutProgress listener failed', errorFields(error));
      }
    }
  }

  /**
   * This node became the leader: every unfinished rollout goes on from the database, at the same
   * step with the time that was left (a deadline that passed while nobody led is judged at once).
   * One whose canary is not loaded here is recovered as after a restart; a TESTING one is left to
   * the node staging it while that node lives.
   */
  private async takeOver(): Promise<void> {
    if (this.stopped || !this.leading) return;
    const cluster = this.deps.cluster!;
    const stored = await this.repo.active();
    const alive = new Set((await cluster.membership.nodes()).map((n) => n.id));
    const ids = new Set(stored.map((r) => r.id));
    for (const [module, entry] of this.live) if (!ids.has(entry.rollout.id)) this.live.delete(module);
    for (const rollout of stored) {
      let entry = this.live.get(rollout.module);
      if (!entry || entry.rollout.id !== rollout.id) {
        const events = await this.repo.events(rollout.id);
        entry = this.track(rollout, events.slice(-MAX_REPLAY_EVENTS));
        entry.total = events.length;
      }
      const e = entry;
      await this.serialized(e, async () => {
        if (!this.leading || this.live.get(rollout.module) !== e) return;
        const fresh = await this.repo.get(rollout.id);
        if (!fresh || !isActiveRolloutStatus(fresh.status)) return;
        e.rollout = fresh;
        if (fresh.status === 'TESTING') {
          if (e.staging || (e.stager !== null && e.stager !== cluster.nodeId && alive.has(e.stager))) return;
          await this.recover(e);
          return;
        }
        const staged = this.deps.modules.canaryBreakerState(fresh.module) !== null;
        if (staged && this.deps.modules.activeVersion(fresh.module) === fresh.fromVersion) {
          // The split at the stored share (the old leader may have died between its write and the flag's move); the step's figures stay.
          await this.runEffects(e, [{ kind: 'SET_PERCENTAGE', percentage: fresh.percentage }], ROLLOUT_ACTOR);
          return;
        }
        await this.recover(e);
      });
    }
    this.deps.logger.info('rollout scheduler: this node leads; unfinished rollouts resumed', { node: cluster.nodeId, rollouts: stored.length });
    this.reschedule();
  }

  /**
   * A node that does not lead, at start: the canary of a routed rollout is loaded beside the
   * stable version here too, so this node's calls are split like every other's (a failure is
   * logged: this node then serves the stable version only; the leader decides the rollout).
   */
  private async joinCanary(entry: LiveRollout): Promise<void> {
    const r = entry.rollout;
    if (r.status === 'TESTING' || this.deps.modules.canaryBreakerState(r.module) !== null) return;
    if (this.deps.modules.activeVersion(r.module) !== r.fromVersion) return;
    entry.staging = true;
    try {
      await this.deps.modules.stageCanary(
        { module: r.module, fromVersion: r.fromVersion, toVersion: r.toVersion, modulePath: r.toModulePath },
        { actor: ROLLOUT_ACTOR, flag: r.flag, testWith: null, stats: entry.stats },
      );
    } catch (error) {
      this.deps.logger.warn('rollout: the canary could not be loaded on this node; it serves the stable version', { module: r.module, ...errorFields(error) });
    } finally {
      entry.staging = false;
    }
  }

  /**
   * The leader, every heartbeat: a TESTING rollout whose staging node has left the cluster
   * (killed while it loaded or tested the new version) is staged again here, as after a restart.
   */
  private async adoptOrphans(): Promise<void> {
    const cluster = this.deps.cluster!;
    const waiting = [...this.live.values()].filter((e) => e.rollout.status === 'TESTING' && !e.staging && e.stager !== null && e.stager !== cluster.nodeId);
    if (waiting.length === 0) return;
    try {
      const alive = new Set((await cluster.membership.nodes()).map((n) => n.id));
      for (const entry of waiting) {
        if (entry.stager === null || alive.has(entry.stager) || !this.leading) continue;
        this.deps.logger.warn('rollout: the node staging a new version left the cluster; staging it here', { module: entry.rollout.module, node: entry.stager });
        entry.stager = cluster.nodeId;
        void this.serialized(entry, async () => {
          if (entry.rollout.status === 'TESTING' && this.live.get(entry.rollout.module) === entry) await this.recover(entry);
        }).catch((error: unknown) => this.deps.logger.error('rollout: staging an orphaned rollout failed', { module: entry.rollout.module, ...errorFields(error) }));
      }
    } catch (error) {
      this.deps.logger.warn('rollout: could not check the staging nodes', errorFields(error));
    }
  }

  /** The stats object of a module's unfinished rollout on this node (where its calls are recorded), if any. */
  canaryStats(module: string): RolloutStats | null {
    return this.live.get(module)?.stats ?? null;
  }

  /** Writes this node's figures of every routed rollout's step that changed since the last write (background, every heartbeat). */
  private writeStats(only?: LiveRollout): Promise<void> {
    const run = async () => {
      const cluster = this.deps.cluster!;
      const entries = only ? [only] : [...this.live.values()];
      for (const entry of entries) {
        const r = entry.rollout;
        if (r.status !== 'RUNNING' && r.status !== 'HOLDING' && r.status !== 'PAUSED') continue;
        const data = entry.stats.toJSON();
        const row: NodeStatsRow = { window: r.stepStartedAt, ask: entry.ask, ...data };
        const signature = `${r.id}|${r.stepIndex}|${r.stepStartedAt}|${entry.ask}|${data.stable.calls}|${data.canary.calls}|${data.stable.failures}|${data.canary.failures}`;
        if (signature === entry.written) continue;
        try {
          await this.repo.writeNodeStats(r.id, r.stepIndex, cluster.nodeId, row, this.deps.clock.now());
          entry.written = signature;
        } catch (error) {
          this.deps.logger.warn('rollout: could not write this node\'s statistics', { module: r.module, ...errorFields(error) });
        }
      }
    };
    // One write at a time, in order.
    this.statsWrite = this.statsWrite.then(run).catch(() => undefined);
    return this.statsWrite;
  }

  /**
   * Deletes this node's figures of a finished rollout, after any write of them already under way
   * (the same chain as writeStats): a heartbeat's write that began before the rollout finished
   * would otherwise land after the delete and leave its row behind.
   */
  private dropOwnStats(rolloutId: string): void {
    const nodeId = this.deps.cluster!.nodeId;
    this.statsWrite = this.statsWrite.then(() => this.repo.deleteNodeStats(rolloutId, nodeId)).catch(() => undefined);
  }

  /** The leader is about to judge a step: this node writes its figures of it now. */
  private async answerAsk(ask: RolloutStatsAsk): Promise<void> {
    const entry = [...this.live.values()].find((e) => e.rollout.id === ask.rolloutId);
    if (!entry) return;
    entry.ask = ask.ask;
    await this.writeStats(entry);
  }

  /**
   * The step's figures of the whole cluster: this node's (memory) plus every other live node's
   * row. The other nodes are asked to write theirs first; the leader waits for their answers at
   * most two heartbeats (MAX_STATS_WAIT_MS at most), then judges with the rows it has.
   */
  private async clusterStats(entry: LiveRollout): Promise<RolloutStatsSnapshot> {
    const cluster = this.deps.cluster!;
    const r = entry.rollout;
    const others = await this.otherLiveNodes();
    if (others.length === 0) return entry.stats.snapshot();
    const ask = randomUUID();
    await this.uow.run(async () => {
      cluster.events.append(ROLLOUT_STATS_TOPIC, { rolloutId: r.id, stepIndex: r.stepIndex, ask } satisfies RolloutStatsAsk);
    });
    const deadline = Date.now() + Math.min(2 * cluster.heartbeatMs, MAX_STATS_WAIT_MS);
    let rows: Array<{ node: string; stats: NodeStatsRow }> = [];
    for (;;) {
      rows = (await this.repo.nodeStats(r.id, r.stepIndex, others)).map((x) => ({ node: x.node, stats: x.stats as NodeStatsRow }));
      const answered = new Set(rows.filter((x) => x.stats.ask === ask).map((x) => x.node));
      if (others.every((id) => answered.has(id)) || Date.now() >= deadline || this.stopped) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.sumWithStep(entry, rows.map((x) => x.stats));
  }

  /**
   * The timer: queues a judgement (an async unit of work) for every rollout that is due, behind
   * whatever that rollout is already doing; a failure is logged, the timer re-armed either way.
   */
  private tick(): void {
    this.timer = null;
    if (this.stopped || !this.leading) return;
    const now = this.deps.clock.now();
    for (const entry of this.live.values()) {
      const due = this.dueAt(entry);
      if (due === null || due > now) continue;
      if (entry.rollout.stepIntervalSeconds === null) entry.manualCheckAt = now + this.manualCheckMs;
      entry.judging = true;
      void this.serialized(entry, () => this.judgeNow(entry)).catch((error: unknown) => {
        this.deps.logger.error('rollout: judging a step failed', { module: entry.rollout.module, ...errorFields(error) });
        // Judged again a manual-check interval later (not at once: a failing database would spin).
        entry.judging = false;
        entry.retryAt = this.deps.clock.now() + this.manualCheckMs;
        this.reschedule();
      });
    }
    this.reschedule();
  }

  private async judgeNow(entry: LiveRollout): Promise<void> {
    entry.judging = false;
    if (!ROLLOUT_COMMAND_SOURCES.judge.includes(entry.rollout.status)) return;
    const { id, stepIndex, stepStartedAt } = entry.rollout;
    // In a cluster the gates judge every node's calls of the step.
    const stats = this.clustered ? await this.clusterStats(entry) : entry.stats.snapshot();
    const canaryBreaker = await this.deps.modules.canaryBreakerState(entry.rollout.module);
    await this.apply(entry, (r, now) => {
      if (!ROLLOUT_COMMAND_SOURCES.judge.includes(r.status)) return null;
      // The step changed while the figures were gathered (another node's command): judged at its own time.
      if (r.id !== id || r.stepIndex !== stepIndex || r.stepStartedAt !== stepStartedAt) return null;
      return judge(r, { stats, canaryBreaker }, now);
    }, ROLLOUT_ACTOR, (decision) => (decision.rollout.status === 'ABORTED' ? 'rolloutAbort'
      : decision.rollout.status === 'PROMOTED' ? 'rolloutPromote'
        : decision.rollout.status === 'HOLDING' ? 'rolloutHold' : 'rolloutStep'));
  }

  private dueAt(entry: LiveRollout): number | null {
    const r = entry.rollout;
    if (entry.staging || entry.judging || (r.status !== 'RUNNING' && r.status !== 'HOLDING')) return null;
    let due: number | null;
    if (r.stepIntervalSeconds !== null) due = r.nextStepAt;
    else due = entry.manualCheckAt ??= this.deps.clock.now() + this.manualCheckMs;
    return due !== null && entry.retryAt !== null ? Math.max(due, entry.retryAt) : due;
  }

  /** Arms the one timer for the earliest due judgement. */
  private reschedule(): void {
    this.timer?.cancel();
    this.timer = null;
    // Only the leader steps rollouts (one scheduler in a cluster).
    if (this.stopped || !this.leading) return;
    let next: number | null = null;
    for (const entry of this.live.values()) {
      const due = this.dueAt(entry);
      if (due !== null && (next === null || due < next)) next = due;
    }
    if (next === null) return;
    const delay = Math.min(Math.max(0, next - this.deps.clock.now()), MAX_TIMER_MS);
    this.timer = this.deps.clock.setTimer(delay, () => this.tick());
  }
}

/** The mutable columns agree: nobody transitioned the rollout since `b` was read. */
function sameState(a: Rollout, b: Rollout): boolean {
  return a.status === b.status && a.stepIndex === b.stepIndex && a.percentage === b.percentage && a.updatedAt === b.updatedAt
    && a.nextStepAt === b.nextStepAt && a.remainingMs === b.remainingMs && a.awaitingPromotion === b.awaitingPromotion
    && a.stepStartedAt === b.stepStartedAt && a.finishedAt === b.finishedAt && a.testRunId === b.testRunId;
}

function flagInUse(flag: string, owner: string | null): UserError {
  return new UserError('FLAG_IN_USE', owner
    ? `Flag "${flag}" already splits the rollout of "${owner}": choose another flag`
    : `Flag "${flag}" already splits another rollout: choose another flag`, 'flag');
}

function runIdOf(error: unknown): string | null {
  if (typeof error === 'object' && error !== null && 'testRunId' in error) {
    const id = (error as { testRunId: unknown }).testRunId;
    return typeof id === 'string' ? id : null;
  }
  return null;
}

/** What the audit log keeps of a rollout. */
function auditView(r: Rollout): Record<string, unknown> {
  return {
    id: r.id, fromVersion: r.fromVersion, toVersion: r.toVersion, flag: r.flag, status: r.status, percentage: r.percentage,
    stepIndex: r.stepIndex, nextStepAt: r.nextStepAt, remainingMs: r.remainingMs, abortReason: r.abortReason,
  };
}
