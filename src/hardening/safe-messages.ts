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
 *
 * Every pattern here runs in time linear in the message: no pattern has two unbounded
 * quantifiers that can trade characters, and "SELECT ... FROM" is two searches (the first
 * SELECT, then a FROM after it) instead of `SELECT[\s\S]*FROM`, which backtracks over the
 * rest of the message from every SELECT (a 210 KB string of "SELECT " took ~20 s).
 *
 * Messages that are stored (a module's `lastError`, a test result's error, the audit entries
 * that repeat them) go through `storedErrorMessage` once, when written: sanitized, then cut to
 * `MAX_STORED_ERROR_CHARS`. Reads serve them as stored.
 */

import { clipText } from '../text.js';

export const SQL_MESSAGE_REPLACEMENT = 'Internal database error';

const STACK_FRAME = /^\s*at\s.+$/;
const SQL_HINTS = [
  /\bSQLITE_[A-Z_]+\b/,
  /\bno such (table|column|index)\b/i,
  /\b(UNIQUE|FOREIGN KEY|NOT NULL|CHECK|PRIMARY KEY) constraint failed\b/,
  /\bINSERT\s+(OR\s+\w+\s+)?INTO\b/,
  /\bUPDATE\s+\w+\s+SET\b/,
  /\bDELETE\s+FROM\b/,
  /\b(CREATE|DROP|ALTER)\s+(TABLE|INDEX|VIEW|TRIGGER)\b/,
];
// Not preceded by a word character, ':' or '/', so URLs (http://host/a/b) are left alone.
const POSIX_PATH = /(?<![\w.:/~-])\/(?:[\w.@+~-]+\/)+[\w.@+~-]*(?::\d+){0,2}/g;
const FILE_URL = /\bfile:\/\/\/?[^\s'"`)]+/g;
const WINDOWS_PATH = /\b[A-Za-z]:\\(?:[^\\\s'"`]+\\)*[^\\\s'"`]*/g;

const SELECT_WORD = /\bSELECT\b/g;
const FROM_WORD = /\bFROM\b/g;

/** A SELECT with a FROM somewhere after it: the first SELECT is the one with the most text after it. */
function looksLikeSelect(message: string): boolean {
  SELECT_WORD.lastIndex = 0;
  if (!SELECT_WORD.test(message)) return false;
  FROM_WORD.lastIndex = SELECT_WORD.lastIndex;
  const found = FROM_WORD.test(message);
  SELECT_WORD.lastIndex = 0;
  FROM_WORD.lastIndex = 0;
  return found;
}

/** Characters kept of a stored error message (`lastError`, test results, audit). */
export const MAX_STORED_ERROR_CHARS = 4096;

export function sanitizeMessage(message: string): string {
  if (looksLikeSelect(message) || SQL_HINTS.some((pattern) => pattern.test(message))) return SQL_MESSAGE_REPLACEMENT;
  const lines = message.split(/\r?\n/).filter((line) => !STACK_FRAME.test(line));
  return lines
    .join('\n')
    .replace(FILE_URL, '<path>')
    .replace(WINDOWS_PATH, '<path>')
    .replace(POSIX_PATH, '<path>')
    .trim();
}


/**
 * What a stored error keeps: sanitized (on the whole message, so a SQL statement or a path is
 * recognised before anything is cut), then cut to `MAX_STORED_ERROR_CHARS`. Called once, on the
 * write path; what is stored is what every read serves.
 */
export function storedErrorMessage(message: string): string {
  return clipText(sanitizeMessage(message), MAX_STORED_ERROR_CHARS);
}
