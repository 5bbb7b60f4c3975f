/** Facts about the machine that explain figures (limits the OS puts on a benchmark). */
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
