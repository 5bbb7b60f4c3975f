/**
 * Runs a script in a child process of its own (through tsx, from the repository root), for
 * checks that need a process that has not loaded what the test process has (ws, pg, ...).
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** A file of the repository as an import specifier for such a script (`src/server.ts`, ...). */
export function repoUrl(file: string): string {
  return JSON.stringify(pathToFileURL(path.join(REPO, file)).href);
}

/** Writes `source` to `<dir>/check.mts`, runs it, and answers its stderr and the JSON its last stdout line holds. */
export function runTsxScript(dir: string, source: string): { stderr: string; result: unknown } {
  const script = path.join(dir, 'check.mts');
  writeFileSync(script, source);
  const run = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
  return { stderr: run.stderr, result: JSON.parse(run.stdout.trim().split('\n').at(-1)!) as unknown };
}
