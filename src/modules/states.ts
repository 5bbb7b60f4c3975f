/**
 * The modules' vocabulary: lifecycle states and the event published when one changes. A leaf
 * file (no imports), so the bus (`src/events.ts`) and the module service never import each other.
 */
export const MODULE_STATES = ['UNLOADED', 'LOADING', 'LOADED', 'ACTIVE', 'FAILED', 'UNLOADING'] as const;
export type ModuleState = (typeof MODULE_STATES)[number];
export type DesiredModuleState = 'UNLOADED' | 'LOADED' | 'ACTIVE';

export interface ModuleStateEvent {
  name: string;
  from: ModuleState;
  to: ModuleState;
  version: string;
  /** The operation: registerModule, loadModule, swapModule, rollbackModule, unloadModule, recovery, crash, restart. */
  action: string;
  actor: string | null;
  /** Set when the operation failed (the module may still be serving its old version). */
  error: string | null;
  at: number;
}
