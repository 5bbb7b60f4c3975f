/**
 * What the flags domain publishes: plain data about a committed change. A leaf file (it imports
 * only the engine's model types), so the bus (`src/events.ts`) and the flag service never import
 * each other.
 */
import type { FlagDefinition } from './engine.js';

export const FLAG_CHANGE_KINDS = ['CREATED', 'UPDATED', 'DELETED', 'PERCENTAGE_ADVANCED'] as const;
export type FlagChangeKind = (typeof FLAG_CHANGE_KINDS)[number];

export interface FlagChangeEvent {
  name: string;
  kind: FlagChangeKind;
  /** The mutation that caused it, or `gradualRollout` for a step of a schedule. */
  action: string;
  actor: string | null;
  at: number;
  /** The flag after the change; null when deleted. */
  flag: FlagDefinition | null;
  previous: FlagDefinition | null;
}
