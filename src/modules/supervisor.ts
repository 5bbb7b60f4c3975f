/**
 * The supervisor, as an OTP supervisor with a restart intensity: a module that was meant to be
 * ACTIVE and crashed is loaded again after 1 s, 2 s, 4 s ... (at most 60 s); after
 * `maxRestarts` restarts within `RESTART_WINDOW_MS` it stays FAILED until an operator acts.
 * It owns the restart timers and the restart history; the lifecycle does the loading.
 */
import type { Clock, TimerHandle } from '../clock.js';
import { errorFields, type Logger } from '../logger.js';
import type { ModuleRecord } from './repository.js';

export const DEFAULT_MAX_RESTARTS = 5;
export const RESTART_WINDOW_MS = 60_000;
const RESTART_BASE_DELAY_MS = 1_000;
const RESTART_MAX_DELAY_MS = 60_000;

export interface SupervisorDeps {
  clock: Clock;
  logger: Logger;
  /** Automatic restarts within RESTART_WINDOW_MS before giving up; 0 disables. */
  maxRestarts: number;
  /** True once the service is stopping: no more restarts. */
  stopping(): boolean;
  /** Marks the module FAILED for good with `message`. */
  giveUp(record: ModuleRecord, message: string): void;
  /** Loads the module again if it still should be; resolves false when that load failed. */
  restart(record: ModuleRecord): Promise<boolean | null>;
}

export class Supervisor {
  /** Automatic restarts per module within the restart window (epoch ms). */
  private readonly restarts = new Map<string, number[]>();
  private readonly timers = new Set<TimerHandle>();

  constructor(private readonly deps: SupervisorDeps) {}

  /** Called when a module's serving version died: schedules its restart, or gives up. */
  scheduleRestart(record: ModuleRecord, cause: string): void {
    const max = this.deps.maxRestarts;
    if (this.deps.stopping() || max === 0 || record.desiredState !== 'ACTIVE') return;
    const now = this.deps.clock.now();
    const recent = (this.restarts.get(record.name) ?? []).filter((at) => now - at < RESTART_WINDOW_MS);
    if (recent.length >= max) {
      this.deps.giveUp(record, `${cause}; gave up after ${recent.length} restarts within ${RESTART_WINDOW_MS / 1000} s: load it again when fixed`);
      return;
    }
    const delay = Math.min(RESTART_BASE_DELAY_MS * 2 ** recent.length, RESTART_MAX_DELAY_MS);
    this.restarts.set(record.name, [...recent, now]);
    const timer = this.deps.clock.setTimer(delay, () => {
      this.timers.delete(timer);
      this.deps.restart(record).then(
        (ok) => {
          if (ok === false) this.scheduleRestart(record, record.lastError ?? cause);
        },
        (error: unknown) => this.deps.logger.error('module restart failed', { module: record.name, ...errorFields(error) }),
      );
    });
    this.timers.add(timer);
  }

  /** Cancels every pending restart. */
  stop(): void {
    for (const timer of this.timers) timer.cancel();
    this.timers.clear();
  }
}
