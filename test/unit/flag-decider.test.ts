/**
 * FlagService.decider: the handle canary routing asks on every call. It decides as isEnabled
 * and evaluate do, follows every committed change of its flag (and its deletion), and is counted
 * in the evaluation totals like any evaluation.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';

let app: App;
let dir: string;

beforeEach(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'helios-decider-'));
  const config = loadConfig({
    HELIOS_DB_PATH: path.join(dir, 'helios.db'),
    HELIOS_ADMIN_TOKEN: 'decider-admin-token-0123456789abcdef',
    LOG_LEVEL: 'silent',
  });
  app = await createApp(config, { logger: createLogger('silent'), print: () => {} });
});

afterEach(async () => {
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

const users = Array.from({ length: 500 }, (_, i) => ({ userId: `user-${i}` }));

describe('FlagService.decider', () => {
  it('decides as evaluate does, and follows every committed change of its flag, then its deletion', async () => {
    const { flags } = app.services;
    const decider = flags.decider('split_me');
    // No such flag yet: off, like isEnabled.
    expect(users.some((u) => decider.isOn(u))).toBe(false);
    for (const percentage of [10, 50, 90]) {
      await flags.setPercentage('test', 'split_me', percentage);
      for (const u of users) expect(decider.isOn(u)).toBe(flags.evaluate('split_me', u).enabled);
      const on = users.filter((u) => decider.isOn(u)).length;
      expect(Math.abs(on / users.length - percentage / 100)).toBeLessThan(0.08);
    }
    await flags.enable('test', 'split_me', 'ALL_ON');
    expect(users.every((u) => decider.isOn(u))).toBe(true);
    await flags.delete('test', 'split_me');
    expect(users.some((u) => decider.isOn(u))).toBe(false);
  });

  it('is counted in the evaluation totals like evaluate', async () => {
    const { flags } = app.services;
    await flags.setPercentage('test', 'counted', 50);
    const decider = flags.decider('counted');
    let on = 0;
    for (const u of users) if (decider.isOn(u)) on++;
    const tallies = flags.evaluationCounts!.tallies().filter((t) => t.flag === 'counted');
    expect(tallies.find((t) => t.enabled && t.reason === 'SPLIT')?.count).toBe(on);
    expect(tallies.find((t) => !t.enabled && t.reason === 'SPLIT')?.count).toBe(users.length - on);
  });
});
