/**
 * How big a module's result is, measured where it is produced and before anything copies it:
 * in the worker before `postMessage` (so a 50 MB result never crosses to the server's thread),
 * on the server's thread for INLINE modules.
 *
 * The measure follows V8's structured-clone format closely enough for a limit (a few bytes
 * per value either way) and stops as soon as it passes the limit, so refusing a 50 MB result
 * costs about as much as measuring a 1 MB one. Where it deliberately differs:
 * - a typed array or Buffer counts its whole ArrayBuffer, as the clone copies it whole (a
 *   small Buffer from Node's pool counts its 8 KiB pool); a SharedArrayBuffer is shared, not
 *   copied, and counts nothing;
 * - a sparse array counts by its length;
 * - functions and symbols count one byte: the clone refuses them (NOT_CLONEABLE) anyway.
 */

const NON_LATIN1 = /[^\u0000-\u00ff]/;
/** Tag and a short length (or count) prefix. */
const HEADER = 2;

/** A tag and a varint. */
function varintSize(n: number): number {
  return n < 128 ? 2 : n < 16_384 ? 3 : n < 2_097_152 ? 4 : 6;
}

function stringSize(text: string): number {
  // V8 writes Latin-1 strings one byte per character, others two.
  const length = text.length;
  if (length < 64) return varintSize(length) + length;
  return varintSize(length) + (NON_LATIN1.test(text) ? 2 * length : length);
}

function numberSize(n: number): number {
  // Small integers are zigzag varints, anything else a double.
  return Number.isInteger(n) && Math.abs(n) < 1_073_741_824 ? varintSize(2 * Math.abs(n)) : 9;
}

/** Objects already counted: a short list first (most results hold a few objects), a Set past that. */
class Seen {
  private few: object[] = [];
  private many: Set<object> | null = null;

  /** Adds `item`; false when it was there already. */
  add(item: object): boolean {
    if (this.many) {
      if (this.many.has(item)) return false;
      this.many.add(item);
      return true;
    }
    if (this.few.includes(item)) return false;
    this.few.push(item);
    if (this.few.length > 16) {
      this.many = new Set(this.few);
      this.few = [];
    }
    return true;
  }
}

/**
 * The structured-clone size of `value` in bytes, or, as soon as it is known to be larger than
 * `limit`, some number larger than `limit`.
 */
export function cloneSizeUpTo(value: unknown, limit: number): number {
  // The common small answers, without allocating.
  switch (typeof value) {
    case 'string':
      return stringSize(value);
    case 'number':
      return numberSize(value);
    case 'bigint':
      return 9;
    case 'object':
      if (value === null) return 1;
      break;
    default:
      return 1;
  }
  let size = 0;
  const seen = new Seen();
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const item = stack.pop();
    switch (typeof item) {
      case 'string':
        size += stringSize(item);
        break;
      case 'number':
        size += numberSize(item);
        break;
      case 'bigint':
        size += HEADER + Math.ceil(item.toString(16).length / 2);
        break;
      case 'object':
        if (item === null) {
          size += 1;
        } else if (!seen.add(item)) {
          size += HEADER; // a back-reference
        } else {
          size += objectSize(item, stack, seen, limit - size);
        }
        break;
      default:
        size += 1;
    }
    if (size > limit) return size;
  }
  return size;
}

/** The object's own bytes; its members are pushed on `stack`. */
function objectSize(item: object, stack: unknown[], seen: Seen, room: number): number {
  if (Array.isArray(item)) {
    const length = item.length;
    // Every element costs at least a byte: past `room` elements the answer is known.
    const count = Math.min(length, room + 1);
    for (let i = 0; i < count; i++) stack.push(item[i]);
    return HEADER + (length - count);
  }
  const proto: unknown = Object.getPrototypeOf(item);
  if (proto === Object.prototype || proto === null) return plainObjectSize(item, stack, room);
  if (ArrayBuffer.isView(item)) {
    const buffer = item.buffer;
    if (typeof SharedArrayBuffer !== 'undefined' && buffer instanceof SharedArrayBuffer) return HEADER * 4;
    if (!seen.add(buffer)) return HEADER * 4;
    return HEADER * 4 + buffer.byteLength;
  }
  if (item instanceof ArrayBuffer) return HEADER + item.byteLength;
  if (typeof SharedArrayBuffer !== 'undefined' && item instanceof SharedArrayBuffer) return HEADER;
  if (item instanceof Map) {
    for (const [key, member] of item) {
      stack.push(key, member);
      if (stack.length > room) break;
    }
    return HEADER;
  }
  if (item instanceof Set) {
    for (const member of item) {
      stack.push(member);
      if (stack.length > room) break;
    }
    return HEADER;
  }
  if (item instanceof Date) return 9;
  if (item instanceof RegExp) return HEADER + stringSize(item.source);
  if (item instanceof Error) return HEADER + stringSize(String(item.message)) + (typeof item.stack === 'string' ? stringSize(item.stack) : 0);
  // A class instance is cloned as a plain object of its own enumerable properties.
  return plainObjectSize(item, stack, room);
}

function plainObjectSize(item: object, stack: unknown[], room: number): number {
  let size = HEADER;
  const keys = Object.keys(item);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    size += stringSize(key);
    stack.push((item as Record<string, unknown>)[key]);
    if (size > room) break;
  }
  return size;
}
