/**
 * Roles are ordered, each including the ones before it (ADMIN ⊃ OPERATOR ⊃ VIEWER):
 * - VIEWER: queries, subscriptions, flag evaluation.
 * - OPERATOR: changes the live system (flags, breakers, load/unload/swap/rollback, tests, invoke).
 * - ADMIN: chooses the code that runs (registers modules) and manages tokens. Registering a
 *   module runs arbitrary code on the host, so ADMIN is as powerful as a shell account.
 */
export const ROLES = ['VIEWER', 'OPERATOR', 'ADMIN'] as const;
export type Role = (typeof ROLES)[number];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/** Case-insensitive, for command lines and environment variables; null when not a role. */
export function parseRole(value: string): Role | null {
  const upper = value.trim().toUpperCase();
  return isRole(upper) ? upper : null;
}

/** Whether a caller holding `have` may do what needs `need`; no role (null) allows nothing. */
export function roleAllows(have: Role | null, need: Role): boolean {
  return have !== null && ROLES.indexOf(have) >= ROLES.indexOf(need);
}
