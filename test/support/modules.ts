/** A throwaway modules folder: the example modules plus the misbehaving fixtures. */
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export function makeModulesDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'helios-modules-'));
  cpSync('examples/modules', dir, { recursive: true });
  cpSync('test/fixtures/modules/bad', path.join(dir, 'bad'), { recursive: true });
  cpSync('test/fixtures/modules/good/counter_v1.js', path.join(dir, 'counter.js'));
  cpSync('test/fixtures/modules/testing', path.join(dir, 'testing'), { recursive: true });
  return dir;
}
