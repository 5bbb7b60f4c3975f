/**
 * The flags side of a rollout: its split flag is an ordinary feature flag, moved through the
 * same audited mutations as an operator's (so it shows in `featureFlags`, `evaluateFlag` and
 * `featureFlagChanged`), and the rollout follows every committed change an operator makes to it.
 */
import type { RolloutFlags } from '../rollouts/service.js';
import type { FlagDefinition } from './engine.js';
import type { FlagService } from './service.js';

/**
 * The share of calls a flag turns on, as routing sees it: PERCENTAGE its percentage, GRADUAL
 * its current step, ALL_ON 100, ALL_OFF and disabled 0. WHITELIST turns on listed contexts
 * only, which is no share of traffic: 0.
 */
export function splitShareOf(flag: FlagDefinition, flags: Pick<FlagService, 'effectivePercentage'>): number {
  if (!flag.enabled) return 0;
  switch (flag.strategy) {
    case 'ALL_ON':
      return 100;
    case 'ALL_OFF':
    case 'WHITELIST':
      return 0;
    case 'PERCENTAGE':
    case 'GRADUAL':
      return flags.effectivePercentage(flag) ?? 0;
  }
}

export function rolloutFlagsOf(flags: Pick<FlagService, 'setPercentage' | 'onCommittedChange' | 'effectivePercentage'>): RolloutFlags {
  return {
    setPercentage: async (name, percentage, actor) => {
      await flags.setPercentage(actor, name, percentage);
    },
    onPercentageChange: (listener) => flags.onCommittedChange((event) => {
      listener(event.name, event.flag ? splitShareOf(event.flag, flags) : null, event.actor);
    }),
  };
}
