/** Database errors the stores tell apart, as better-sqlite3 and pg report them. */

/** A primary-key or unique violation, on SQLite or PostgreSQL (e.g. two nodes creating one name). */
export function isUniqueViolation(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}
