/** The flags side of a rollout (src/flags/split.ts) over a real FlagService on an in-memory database. */
import { describe, expect, it } from 'vitest';
import { AuditRepository } from '../../src/audit/repository.js';
import { ManualClock } from '../../src/clock.js';
import { openDatabase } from '../../src/db/connection.js';
import { migrate, readMigrations } from '../../src/db/migrate.js';
import { unitOfWorkFor } from '../../src/db/unit-of-work.js';
import { EventBus } from '../../src/events.js';
import { FlagService } from '../../src/flags/service.js';
import { rolloutFlagsOf } from '../../src/flags/split.js';
import { createLogger } from '../../src/logger.js';

function setup() {
  const db = openDatabase(':memory:');
  migrate(db, readMigrations('migrations'));
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const audit = new AuditRepository(db);
  const flags = new FlagService({ db, audit, bus: new EventBus(), clock, logger: createLogger('silent'), flagsFile: 'config/feature_flags.json' });
  const split = rolloutFlagsOf(flags);
  const heard: Array<[string, number | null, string | null]> = [];
  split.onPercentageChange((name, percentage, actor) => heard.push([name, percentage, actor]));
  return { db, clock, flags, split, heard, audit };
}

describe('rolloutFlagsOf', () => {
  it('setPercentage creates the flag as an enabled PERCENTAGE flag, audited under the actor', () => {
    const { flags, split, heard, audit } = setup();
    split.setPercentage('pricing', 10, 'rollout');
    expect(flags.get('pricing')).toMatchObject({ enabled: true, strategy: 'PERCENTAGE', percentage: 10 });
    expect(heard).toEqual([['pricing', 10, 'rollout']]);
    const entries = audit.page(10, undefined, 'pricing').entries;
    expect(entries.map((e) => [e.actor, e.action])).toEqual([['rollout', 'setFlagPercentage']]);
  });

  it('reports the effective share after each committed change: ALL_ON 100, disabled 0, WHITELIST 0, deleted null; nothing for a no-op', () => {
    const { flags, split, heard } = setup();
    split.setPercentage('pricing', 10, 'rollout');
    split.setPercentage('pricing', 10, 'rollout');
    flags.enable('alice', 'pricing', 'ALL_ON');
    flags.disable('alice', 'pricing');
    flags.enable('alice', 'pricing', 'WHITELIST');
    flags.delete('alice', 'pricing');
    expect(heard).toEqual([
      ['pricing', 10, 'rollout'],
      ['pricing', 100, 'alice'],
      ['pricing', 0, 'alice'],
      ['pricing', 0, 'alice'],
      ['pricing', null, 'alice'],
    ]);
  });

  it('reports nothing for a change that rolls back', () => {
    const { db, split, heard } = setup();
    const uow = unitOfWorkFor(db);
    expect(() => uow.run(() => {
      split.setPercentage('pricing', 50, 'rollout');
      throw new Error('caller failed');
    })).toThrow('caller failed');
    expect(heard).toEqual([]);
  });
});
