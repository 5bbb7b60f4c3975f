/** Messages under attack: linear sanitizing, quoted caller values, stored errors, JSON depth. */
import { clipText } from '../../src/text.js';
import { describe, expect, it } from 'vitest';
import { MAX_QUOTED_VALUE_CHARS, quoteValue } from '../../src/errors.js';
import { exceedsJsonDepth, MAX_JSON_DEPTH } from '../../src/hardening/json-depth.js';
import {
  MAX_STORED_ERROR_CHARS,
  sanitizeMessage,
  SQL_MESSAGE_REPLACEMENT,
  storedErrorMessage,
} from '../../src/hardening/safe-messages.js';

const SIZE = 210 * 1024;
const repeatTo = (unit: string, size = SIZE) => unit.repeat(Math.ceil(size / unit.length)).slice(0, size);

/** Best of a few runs, in ms: the least disturbed by the other processes on the machine. */
function bestOf(fn: () => unknown, runs = 3): number {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    fn();
    best = Math.min(best, performance.now() - started);
  }
  return best;
}

describe('sanitizeMessage is linear', () => {
  // Inputs shaped against each pattern: repeated keywords (the old SELECT ... FROM regex took
  // ~20 s on the first one), long path-like runs, long lines of spaces, many lines.
  const hostile: Record<string, string> = {
    'SELECT words': repeatTo('SELECT '),
    'SELECT words, FROM at the end': `${repeatTo('SELECT ')} FROM t`,
    'SELECT without spaces': repeatTo('SELECT'),
    'UPDATE words': repeatTo('UPDATE '),
    'INSERT OR words': repeatTo('INSERT OR '),
    'SQLITE_ prefixes': repeatTo('SQLITE_'),
    'one long POSIX path': repeatTo('/a'),
    'a slash and a long name': `/${repeatTo('a')}`,
    'many short paths': repeatTo('/aaaa '),
    'Windows drive prefixes': repeatTo('C:\\'),
    'file URLs': repeatTo('file://'),
    'stack-frame-like lines': repeatTo('    at x\n'),
    'one line of spaces': repeatTo(' '),
    'many lines': repeatTo('a\n'),
  };

  for (const [what, message] of Object.entries(hostile)) {
    it(`210 KB of ${what}: no slower than 10 copies of the same string`, () => {
      // The linear baseline: copying the string character by character into a new one.
      const baseline = bestOf(() => Array.from(message).join(''));
      const sanitizing = bestOf(() => sanitizeMessage(message));
      expect(sanitizing, `sanitize ${sanitizing.toFixed(1)} ms vs copy ${baseline.toFixed(1)} ms`).toBeLessThan(10 * baseline + 5);
    });
  }

  it('still recognises SELECT ... FROM wherever the two words are', () => {
    expect(sanitizeMessage('SELECT name FROM modules')).toBe(SQL_MESSAGE_REPLACEMENT);
    expect(sanitizeMessage(`error: ${'SELECT '.repeat(1000)}\nmore text FROM x`)).toBe(SQL_MESSAGE_REPLACEMENT);
    expect(sanitizeMessage('near "FROM": syntax error in SELECT a FROM b')).toBe(SQL_MESSAGE_REPLACEMENT);
    // FROM only before SELECT, or glued to it, is not a query.
    expect(sanitizeMessage('Choose FROM the list, then SELECT one')).toBe('Choose FROM the list, then SELECT one');
    expect(sanitizeMessage('SELECTFROM')).toBe('SELECTFROM');
    expect(sanitizeMessage('SELECT FROMAGE')).toBe('SELECT FROMAGE');
    // Repeated calls do not carry state over (the searches use global regexes).
    expect(sanitizeMessage('SELECT x FROM y')).toBe(SQL_MESSAGE_REPLACEMENT);
    expect(sanitizeMessage('FROM y')).toBe('FROM y');
  });
});

describe('storedErrorMessage', () => {
  it('sanitizes the whole message, then cuts it to MAX_STORED_ERROR_CHARS', () => {
    const long = `failed in /srv/helios/x.js: ${'x'.repeat(SIZE)}`;
    const stored = storedErrorMessage(long);
    expect(stored.length).toBeLessThanOrEqual(MAX_STORED_ERROR_CHARS);
    expect(stored).toMatch(/^failed in <path>: x+… \(truncated: \d+ characters in all\)$/);
    // A FROM far past the cut still marks the message as SQL.
    expect(storedErrorMessage(`${'SELECT '.repeat(30000)} FROM secrets`)).toBe(SQL_MESSAGE_REPLACEMENT);
    expect(storedErrorMessage('short')).toBe('short');
  });

  it('never splits a surrogate pair', () => {
    const cut = clipText('😀'.repeat(5000), 1001);
    expect(cut.length).toBeLessThanOrEqual(1001);
    expect(() => encodeURIComponent(cut)).not.toThrow();
  });
});

describe('quoteValue', () => {
  it('quotes short values as they are', () => {
    expect(quoteValue('pricing')).toBe('"pricing"');
    expect(quoteValue(42)).toBe('"42"');
    expect(quoteValue('a\nb"c')).toBe('"a\\nb\\"c"');
  });

  it('cuts long values to about 100 characters and says how long they were', () => {
    const quoted = quoteValue('SELECT '.repeat(30000));
    expect(quoted.length).toBeLessThan(MAX_QUOTED_VALUE_CHARS + 40);
    expect(quoted).toMatch(/^"(SELECT ){14}SE…" \(210000 characters\)$/);
    expect(() => encodeURIComponent(JSON.parse(quoteValue('😀'.repeat(200)).split(' (')[0]!) as string)).not.toThrow();
  });

  it('survives values that cannot be printed', () => {
    expect(quoteValue({ toString: () => { throw new Error('no'); } })).toBe('"(unprintable)"');
  });
});

describe('exceedsJsonDepth', () => {
  const nested = (depth: number, container: 'object' | 'array'): unknown => {
    let value: unknown = 1;
    for (let i = 0; i < depth; i++) value = container === 'object' ? { a: value } : [value];
    return value;
  };

  it('counts containers: scalars are 0, {} is 1', () => {
    expect(exceedsJsonDepth(1, 0)).toBe(false);
    expect(exceedsJsonDepth('x', 0)).toBe(false);
    expect(exceedsJsonDepth(null, 0)).toBe(false);
    expect(exceedsJsonDepth({}, 0)).toBe(true);
    expect(exceedsJsonDepth({}, 1)).toBe(false);
    expect(exceedsJsonDepth({ a: [1, { b: 2 }] }, 2)).toBe(true);
    expect(exceedsJsonDepth({ a: [1, { b: 2 }] }, 3)).toBe(false);
  });

  it(`accepts ${MAX_JSON_DEPTH} levels and refuses ${MAX_JSON_DEPTH + 1}, for objects and arrays`, () => {
    for (const container of ['object', 'array'] as const) {
      expect(exceedsJsonDepth(nested(MAX_JSON_DEPTH, container))).toBe(false);
      expect(exceedsJsonDepth(nested(MAX_JSON_DEPTH + 1, container))).toBe(true);
    }
  });

  it('measures a million levels without overflowing the stack, and terminates on cycles', () => {
    expect(exceedsJsonDepth(nested(1_000_000, 'array'))).toBe(true);
    expect(exceedsJsonDepth(JSON.parse(`${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`))).toBe(true);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    cyclic.again = cyclic;
    expect(exceedsJsonDepth(cyclic)).toBe(true);
  });
});
