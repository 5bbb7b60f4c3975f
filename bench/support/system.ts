/** Facts about the machine that explain figures (limits the OS puts on a benchmark). */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** "soft/hard" open-file limit of this process, from /proc (Linux); "unknown" elsewhere. */
export function openFileLimit(): string {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const parts = line?.trim().split(/\s+/) ?? [];
    return parts.length >= 5 ? `${parts[3]}/${parts[4]}` : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** This process's soft open-file limit (20,000 when it cannot be read). */
export function openFileSoftLimit(): number {
  const soft = Number(openFileLimit().split('/')[0]);
  return Number.isFinite(soft) && soft > 0 ? soft : 20_000;
}

/**
 * Raises a child's open-file limit (soft and hard) with util-linux `prlimit`, which needs root
 * or CAP_SYS_RESOURCE beyond the hard limit. Returns the limit now in force, or null when it
 * could not be raised (then the caller keeps to what fits).
 */
export function raiseOpenFileLimit(pid: number, limit: number): number | null {
  const result = spawnSync('prlimit', ['--pid', String(pid), `--nofile=${limit}:${limit}`], { encoding: 'utf8' });
  return result.status === 0 ? limit : null;
}
