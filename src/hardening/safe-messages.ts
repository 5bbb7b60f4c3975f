/**
 * Messages that reach clients never carry stack traces, file paths or SQL.
 *
 * Unexpected errors are already replaced wholesale by Yoga's `maskedErrors` (and logged with
 * their stack on the server). This is for the messages Helios passes through on purpose but
 * does not write itself: a module's load or call failure, a worker's crash reason, a test
 * runner's output, a `lastError` column. The policy is deliberately blunt:
 * - lines that look like stack frames (`    at ...`) are dropped;
 * - absolute paths (POSIX, Windows, `file://` URLs) become `<path>`; relative paths, which are
 *   what callers themselves send (module paths under the modules root), are kept;
 * - a message that looks like SQL or a SQLite error is replaced entirely, since it would
 *   describe the schema.
 */

export const SQL_MESSAGE_REPLACEMENT = 'Internal database error';

const STACK_FRAME = /^\s*at\s.+$/;
const SQL_HINTS = [
  /\bSQLITE_[A-Z_]+\b/,
  /\bno such (table|column|index)\b/i,
  /\b(UNIQUE|FOREIGN KEY|NOT NULL|CHECK|PRIMARY KEY) constraint failed\b/,
  /\bSELECT\b[\s\S]*\bFROM\b/,
  /\bINSERT\s+(OR\s+\w+\s+)?INTO\b/,
  /\bUPDATE\s+\w+\s+SET\b/,
  /\bDELETE\s+FROM\b/,
  /\b(CREATE|DROP|ALTER)\s+(TABLE|INDEX|VIEW|TRIGGER)\b/,
];
// Not preceded by a word character, ':' or '/', so URLs (http://host/a/b) are left alone.
const POSIX_PATH = /(?<![\w.:/~-])\/(?:[\w.@+~-]+\/)+[\w.@+~-]*(?::\d+){0,2}/g;
const FILE_URL = /\bfile:\/\/\/?[^\s'"`)]+/g;
const WINDOWS_PATH = /\b[A-Za-z]:\\(?:[^\\\s'"`]+\\)*[^\\\s'"`]*/g;

export function sanitizeMessage(message: string): string {
  if (SQL_HINTS.some((pattern) => pattern.test(message))) return SQL_MESSAGE_REPLACEMENT;
  const lines = message.split(/\r?\n/).filter((line) => !STACK_FRAME.test(line));
  return lines
    .join('\n')
    .replace(FILE_URL, '<path>')
    .replace(WINDOWS_PATH, '<path>')
    .replace(POSIX_PATH, '<path>')
    .trim();
}
