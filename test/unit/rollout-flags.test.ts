/** The flags side of a rollout (src/flags/split.ts) over a real FlagService on an in-memory database. */
import { afterEach, describe, expect, it } from 'vitest';
import { AuditRepository } from '../../src/audit/repository.js';
import { ManualClock } from '../../src/clock.js';
import { EventBus } from '../../src/events.js';
import { FlagService } from '../../src/flags/service.js';
import { rolloutFlagsOf } from '../../src/flags/split.js';
import { createLogger } from '../../src/logger.js';
import { openTestDatabase, type TestDatabase } from '../support/database.js';

let opened: TestDatabase | null = null;

afterEach(async () => {
  await opened?.close();
  opened = null;
});

async function setup() {
  opened = await openTestDatabase();
  const { uow } = opened;
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const audit = new AuditRepository(uow);
  const flags = new FlagService({ uow, audit, bus: new EventBus(), clock, logger: createLogger('silent'), flagsFile: 'config/feature_flags.json' });
  const split = rolloutFlagsOf(flags);
  const heard: Array<[string, number | null, string | null]> = [];
  split.onPercentageChange((name, percentage, actor) => heard.push([name, percentage, actor]));
  return { uow, clock, flags, split, heard, audit };
}

describe('rolloutFlagsOf', () => {
  it('setPercentage creates the flag as an enabled PERCENTAGE flag, audited under the actor', async () => {
    const { flags, split, heard, audit } = await setup();
    await split.setPercentage('pricing', 10, 'rollout');
    expect(flags.get('pricing')).toMatchObject({ enabled: true, strategy: 'PERCENTAGE', percentage: 10 });
    expect(heard).toEqual([['pricing', 10, 'rollout']]);
    const entries = (await audit.page(10, undefined, 'pricing')).entries;
    expect(entries.map((e) => [e.actor, e.action])).toEqual([['rollout', 'setFlagPercentage']]);
  });

  it('reports the effective share after each committed change: ALL_ON 100, disabled 0, WHITELIST 0, deleted null; nothing for a no-op', async () => {
    const { flags, split, heard } = await setup();
    await split.setPercentage('pricing', 10, 'rollout');
    await split.setPercentage('pricing', 10, 'rollout');
    await flags.enable('alice', 'pricing', 'ALL_ON');
    await flags.disable('alice', 'pricing');
    await flags.enable('alice', 'pricing', 'WHITELIST');
    await flags.delete('alice', 'pricing');
    expect(heard).toEqual([
      ['pricing', 10, 'rollout'],
      ['pricing', 100, 'alice'],
      ['pricing', 0, 'alice'],
      ['pricing', 0, 'alice'],
      ['pricing', null, 'alice'],
    ]);
  });

  it('reports nothing for a change that rolls back', async () => {
    const { uow, split, heard, flags } = await setup();
    await expect(uow.run(async () => {
      await split.setPercentage('pricing', 50, 'rollout');
      throw new Error('caller failed');
    })).rejects.toThrow('caller failed');
    expect(heard).toEqual([]);
    expect(flags.get('pricing')).toBeNull();
  });
});
