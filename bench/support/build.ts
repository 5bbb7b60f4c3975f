/**
 * Benchmarks run compiled JavaScript on plain Node, as `npm start` does, not through tsx: tsx
 * transpiles on load, and every module worker Helios starts would inherit its loader (about 40
 * ms more per worker start, and Node 20 keeps a MessagePort per loader thread of a terminated
 * worker, a leak that production never has). So the runner compiles the project with the
 * project's own tsconfig into dist/bench-build (inside the package, so node_modules and
 * packageRoot() resolve as from dist/) and forks the compiled benchmarks.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export function projectRoot(): string {
  // This file is bench/support/build.(ts|js), compiled or not, two levels below a root that has package.json.
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
}

/** Compiles src/ and bench/ (and the rest tsconfig.json includes); returns the output folder. */
export function buildForBench(root: string): string {
  // Inside the checkout's own dist/ (ignored by git), not under node_modules: node_modules may be
  // a symlink shared by several checkouts, and Node resolves a module's URL through symlinks, so
  // a build under it would find the *other* checkout's package.json and migrations/ as its
  // package root (and one checkout's build would replace another's while its benchmarks run).
  // Packages still resolve from here: node_modules is found by walking up to the checkout.
  const outDir = path.join(root, 'dist', 'bench-build');
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const tsc = createRequire(path.join(root, 'package.json')).resolve('typescript/bin/tsc');
  const result = spawnSync(
    process.execPath,
    [tsc, '-p', path.join(root, 'tsconfig.json'), '--noEmit', 'false', '--outDir', outDir, '--sourceMap', 'false', '--incremental', 'false'],
    { cwd: root, encoding: 'utf8' },
  );
  // Type errors (in files being edited by others, say) still emit JavaScript; only a missing output is fatal.
  if (result.status !== 0 && result.stdout) {
    const lines = result.stdout.trim().split('\n');
    console.warn(`tsc reported ${lines.filter((l) => l.includes('error TS')).length} type error(s); benchmarks run on the emitted JavaScript:\n${lines.slice(0, 10).join('\n')}`);
  }
  // Under node_modules the package scope lookup stops, so say here that .js files are ES modules.
  writeFileSync(path.join(outDir, 'package.json'), '{ "type": "module", "private": true }\n');
  return outDir;
}
