/**
 * What the page shows, kept up to date from one read of the state (on every connection) and
 * the subscriptions:
 * - breakers: breakerSnapshots (every second: state and counters of every breaker, and the
 *   failure-rate history the sparkline draws) and breakerStateChanged (each transition at once);
 * - modules: moduleStateChanged, and each module's current (or last) rollout: rolloutProgress;
 * - flags: featureFlagChanged (gradual steps included);
 * - test runs: testRunStarted for new runs, testProgress(runId) for each running one;
 * - audit: re-read after any of those events (every audited change causes one), coalesced.
 */
import type { Connection } from './connection.js';
import {
  DashboardAuditDocument,
  DashboardBreakerSnapshotsDocument,
  DashboardBreakerStateChangedDocument,
  DashboardFeatureFlagChangedDocument,
  DashboardMeDocument,
  DashboardModuleStateChangedDocument,
  DashboardAbortRolloutDocument,
  DashboardOpenBreakerDocument,
  DashboardPauseRolloutDocument,
  DashboardPromoteRolloutDocument,
  DashboardResetBreakerDocument,
  DashboardResumeRolloutDocument,
  DashboardRolloutProgressDocument,
  DashboardStateDocument,
  DashboardTestProgressDocument,
  DashboardTestRunStartedDocument,
  type DashboardAuditEntryFragment,
  type DashboardBreakerFragment,
  type DashboardFlagFragment,
  type DashboardModuleFragment,
  type DashboardRolloutFragment,
  type DashboardTestRunFragment,
  type DashboardTransitionFragment,
  type Role,
} from './gql/graphql.js';

export const SPARKLINE_SAMPLES = 60;
const AUDIT_ENTRIES = 12;
/** Read at each (re)connection to find who last changed each flag; the panel shows AUDIT_ENTRIES. */
const AUDIT_READ = 200;
const RECENT_RUNS = 8;
const TRANSITIONS_KEPT = 5;
const ROLLOUTS_READ = 50;

export type RolloutCommand = 'pause' | 'resume' | 'promote' | 'abort';

export interface BreakerView extends DashboardBreakerFragment {
  transitions: DashboardTransitionFragment[];
  /** Failure rate per snapshot, oldest first (null below minimumCalls). */
  rates: Array<number | null>;
}

export interface FlagChangeView {
  at: string;
  actor: string | null;
  action: string;
}

export interface Me {
  name: string;
  role: Role;
  anonymous: boolean;
}

export class DashboardStore {
  me: Me | null = null;
  breakers = new Map<string, BreakerView>();
  modules = new Map<string, DashboardModuleFragment>();
  /** By module: its unfinished rollout, or its last one. */
  rollouts = new Map<string, DashboardRolloutFragment>();
  flags = new Map<string, DashboardFlagFragment>();
  flagChanges = new Map<string, FlagChangeView>();
  runs = new Map<string, DashboardTestRunFragment>();
  audit: DashboardAuditEntryFragment[] = [];
  /** The last error worth telling the user (a refused request, a failed action). */
  problem = '';
  loaded = false;

  private disposers: Array<() => void> = [];
  private feeds: Array<() => void> = [];
  private progressFeeds = new Map<string, () => void>();
  private auditTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly connection: Connection,
    private readonly changed: () => void,
  ) {}

  get canOperate(): boolean {
    return this.me?.role === 'OPERATOR' || this.me?.role === 'ADMIN';
  }

  /**
   * Subscribes, and reads the state, on every (re)connection. A server that shuts down
   * completes every subscription before it closes the socket, so the feeds are made anew each
   * time rather than left to the client's retries.
   */
  start(): void {
    this.disposers.push(this.connection.onConnected(() => {
      this.unsubscribe();
      this.subscribe();
      void this.load();
    }));
  }

  private subscribe(): void {
    const c = this.connection;
    const failed = (error: Error) => this.fail(error.message);
    this.feeds.push(
      c.subscribe(DashboardBreakerSnapshotsDocument, {}, { next: (d) => this.applySnapshot(d.breakerSnapshots.breakers), error: failed }),
      c.subscribe(DashboardBreakerStateChangedDocument, {}, { next: (d) => this.applyTransition(d.breakerStateChanged), error: failed }),
      c.subscribe(DashboardModuleStateChangedDocument, {}, {
        next: ({ moduleStateChanged: e }) => {
          if (e.module) this.modules.set(e.name, e.module);
          else this.modules.delete(e.name);
          this.touch(true);
        },
        error: failed,
      }),
      c.subscribe(DashboardFeatureFlagChangedDocument, {}, {
        next: ({ featureFlagChanged: e }) => {
          if (e.flag) this.flags.set(e.name, e.flag);
          else this.flags.delete(e.name);
          this.flagChanges.set(e.name, { at: e.at, actor: e.actor ?? null, action: e.action });
          this.touch(true);
        },
        error: failed,
      }),
      c.subscribe(DashboardRolloutProgressDocument, {}, {
        next: ({ rolloutProgress: e }) => {
          this.rollouts.set(e.rollout.module, e.rollout);
          this.touch(true);
        },
        error: failed,
      }),
      c.subscribe(DashboardTestRunStartedDocument, {}, {
        next: ({ testRunStarted: e }) => {
          if (e.run) this.applyRun(e.run);
          this.touch(true);
        },
        error: failed,
      }),
    );
  }

  private unsubscribe(): void {
    for (const dispose of this.feeds.splice(0)) dispose();
    for (const dispose of this.progressFeeds.values()) dispose();
    this.progressFeeds.clear();
  }

  stop(): void {
    for (const dispose of this.disposers.splice(0)) dispose();
    this.unsubscribe();
    if (this.auditTimer) clearTimeout(this.auditTimer);
  }

  /** The whole state, read again on every (re)connection so nothing missed while down stays missed. */
  async load(): Promise<void> {
    try {
      const [{ me }, state] = await Promise.all([
        this.connection.request(DashboardMeDocument, {}),
        this.connection.request(DashboardStateDocument, { auditFirst: AUDIT_READ, runsFirst: RECENT_RUNS, rolloutsFirst: ROLLOUTS_READ }),
      ]);
      this.me = me;
      const history = this.breakers;
      this.breakers = new Map(state.circuitBreakers.map((b) => [b.name, { ...b, rates: history.get(b.name)?.rates ?? [] }]));
      this.modules = new Map(state.modules.map((m) => [m.name, m]));
      this.rollouts = new Map();
      // Newest first: the first one seen of a module is its current or last rollout.
      for (const r of state.rollouts.nodes) if (!this.rollouts.has(r.module)) this.rollouts.set(r.module, r);
      this.flags = new Map(state.featureFlags.map((f) => [f.name, f]));
      this.runs = new Map();
      for (const run of state.testRuns.nodes) this.applyRun(run);
      this.audit = state.auditLog.nodes.slice(0, AUDIT_ENTRIES);
      // The newest audited change of each flag says who made it (the feed says so from now on).
      for (const entry of [...state.auditLog.nodes].reverse()) {
        if (entry.targetType === 'FEATURE_FLAG') this.flagChanges.set(entry.target, { at: entry.at, actor: entry.actor, action: entry.action });
      }
      this.problem = '';
      this.loaded = true;
    } catch (error) {
      this.fail(error instanceof Error ? error.message : String(error));
    }
    this.changed();
  }

  resetBreaker(name: string): Promise<void> {
    return this.act(async () => {
      const { resetCircuitBreaker: p } = await this.connection.request(DashboardResetBreakerDocument, { name });
      return { errors: p.errors, apply: () => p.breaker && this.applySnapshot([p.breaker], false) };
    });
  }

  openBreaker(name: string): Promise<void> {
    return this.act(async () => {
      const { openCircuitBreaker: p } = await this.connection.request(DashboardOpenBreakerDocument, { name });
      return { errors: p.errors, apply: () => p.breaker && this.applySnapshot([p.breaker], false) };
    });
  }

  /** pauseRollout, resumeRollout, promoteRollout or abortRollout on `module`'s rollout. */
  commandRollout(command: RolloutCommand, module: string): Promise<void> {
    return this.act(async () => {
      const c = this.connection;
      const vars = { module };
      const p =
        command === 'pause' ? (await c.request(DashboardPauseRolloutDocument, vars)).pauseRollout
        : command === 'resume' ? (await c.request(DashboardResumeRolloutDocument, vars)).resumeRollout
        : command === 'promote' ? (await c.request(DashboardPromoteRolloutDocument, vars)).promoteRollout
        : (await c.request(DashboardAbortRolloutDocument, vars)).abortRollout;
      return { errors: p.errors, apply: () => p.rollout && this.rollouts.set(module, p.rollout) };
    });
  }

  private async act(run: () => Promise<{ errors: Array<{ message: string }>; apply: () => unknown }>): Promise<void> {
    try {
      const { errors, apply } = await run();
      if (errors.length) this.fail(errors.map((e) => e.message).join('; '));
      else {
        this.problem = '';
        apply();
      }
    } catch (error) {
      this.fail(error instanceof Error ? error.message : String(error));
    }
    this.changed();
  }

  private applySnapshot(breakers: DashboardBreakerFragment[], sample = true): void {
    for (const b of breakers) {
      const known = this.breakers.get(b.name);
      const rates = known?.rates ?? [];
      if (sample) {
        rates.push(b.metrics.failureRate ?? null);
        if (rates.length > SPARKLINE_SAMPLES) rates.splice(0, rates.length - SPARKLINE_SAMPLES);
      }
      this.breakers.set(b.name, { ...b, transitions: known?.transitions ?? [], rates });
    }
    this.changed();
  }

  private applyTransition(t: DashboardTransitionFragment): void {
    const known = this.breakers.get(t.name);
    if (known) {
      known.state = t.to;
      known.stateChangedAt = t.at;
      known.transitions = [...known.transitions, t].slice(-TRANSITIONS_KEPT);
    }
    // A breaker created by this transition arrives with the next snapshot (within a second).
    this.touch(true);
  }

  private applyRun(run: DashboardTestRunFragment): void {
    this.runs.set(run.id, run);
    const newest = [...this.runs.values()].sort((a, b) => b.startedAt.localeCompare(a.startedAt));
    for (const old of newest.slice(RECENT_RUNS)) {
      if (old.status !== 'RUNNING') this.runs.delete(old.id);
    }
    if (run.status === 'RUNNING' && !this.progressFeeds.has(run.id)) this.follow(run.id);
  }

  /** Streams a running run test by test; testProgress completes after RUN_FINISHED. */
  private follow(runId: string): void {
    const done = () => {
      this.progressFeeds.get(runId)?.();
      this.progressFeeds.delete(runId);
    };
    this.progressFeeds.set(
      runId,
      this.connection.subscribe(DashboardTestProgressDocument, { runId }, {
        next: ({ testProgress: e }) => {
          if (e.run) this.runs.set(e.run.id, e.run);
          this.touch(e.type === 'RUN_FINISHED');
        },
        complete: done,
        error: done,
      }),
    );
  }

  /** Redraws; `audited` also re-reads the audit log shortly (one read per burst of events). */
  private touch(audited: boolean): void {
    this.changed();
    if (!audited || this.auditTimer) return;
    this.auditTimer = setTimeout(() => {
      this.auditTimer = null;
      this.connection
        .request(DashboardAuditDocument, { first: AUDIT_ENTRIES })
        .then(({ auditLog }) => {
          this.audit = auditLog.nodes;
          this.changed();
        })
        .catch(() => {});
    }, 250);
  }

  private fail(message: string): void {
    this.problem = message;
    this.changed();
  }
}
