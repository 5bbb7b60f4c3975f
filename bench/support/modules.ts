/**
 * A throwaway modules folder for benchmarks: a trivial `echo` module in two versions (the
 * second marks its answers, and both carry a call count across swaps), so module benchmarks
 * measure Helios's machinery, not module code, and a `ballast` module for memory checks.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const echoSource = (version: string) => `// Benchmark module: answers with its argument.
export default {
  type: 'GENERIC',
  async create(ctx) {
    let calls = ctx.previousState?.calls ?? 0;
    return {
      echo(arg) {
        calls++;
        return arg;
      },
      which() {
        return { version: '${version}', calls };
      },
      exportState() {
        return { calls };
      },
      importState(state) {
        calls = state.calls;
      },
    };
  },
};
`;

/**
 * A module holding BALLAST_MB of data at module scope: it lives as long as the module's code
 * does, so it shows whether unloading really frees a module (a terminated worker) or not (an
 * ES module imported into the host, which Node never unloads).
 */
export const BALLAST_MB = 4;
const ballastSource = `// Benchmark module: ${BALLAST_MB} MB held at module scope.
const ballast = new Float64Array(${BALLAST_MB} * 131072).fill(Math.random());
export default {
  type: 'GENERIC',
  async create() {
    return {
      size() {
        return ballast.length;
      },
    };
  },
};
`;

export interface BenchModulesDir {
  dir: string;
  remove(): void;
}

export function makeBenchModulesDir(): BenchModulesDir {
  const dir = mkdtempSync(path.join(tmpdir(), 'helios-bench-modules-'));
  writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  writeFileSync(path.join(dir, 'echo.js'), echoSource('v1'));
  writeFileSync(path.join(dir, 'echo_v2.js'), echoSource('v2'));
  writeFileSync(path.join(dir, 'ballast.js'), ballastSource);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
