/**
 * MurmurHash3 x86 32-bit over the UTF-8 bytes of a string.
 *
 * Flag buckets must be identical on every machine and in every language that re-implements
 * them, so we hash UTF-8 bytes (what the reference C code sees) rather than UTF-16 code units
 * (what several JS ports hash, silently diverging on non-ASCII input). Lone surrogates are
 * hashed as U+FFFD, exactly as `TextEncoder` would encode them.
 *
 * The encoder is inlined: ASCII input is read straight from `charCodeAt` four bytes at a time
 * and nothing is allocated on any path, because flag evaluation hashes on every call.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** Hash state after some bytes: `h1` over whole blocks, `k` holding `kBytes` pending bytes. */
export interface MurmurState {
  readonly h1: number;
  readonly k: number;
  readonly kBytes: number;
  readonly length: number;
}

function mixBlock(h1: number, k1: number): number {
  k1 = Math.imul(k1, C1);
  k1 = (k1 << 15) | (k1 >>> 17);
  k1 = Math.imul(k1, C2);
  h1 ^= k1;
  h1 = (h1 << 13) | (h1 >>> 19);
  return (Math.imul(h1, 5) + 0xe6546b64) | 0;
}

function finish(h1: number, k: number, kBytes: number, length: number): number {
  if (kBytes > 0) {
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h1 ^= k;
  }
  h1 ^= length;
  h1 ^= h1 >>> 16;
  h1 = Math.imul(h1, 0x85ebca6b);
  h1 ^= h1 >>> 13;
  h1 = Math.imul(h1, 0xc2b2ae35);
  h1 ^= h1 >>> 16;
  return h1 >>> 0;
}

/**
 * Feeds the UTF-8 bytes of `s` into a state and finalizes. One routine serves both the plain
 * hash and the prefixed hash so the two can never disagree.
 */
function hashFrom(s: string, h1: number, k: number, kBytes: number, length: number): number {
  const n = s.length;
  let i = 0;
  while (i < n) {
    if (kBytes === 0) {
      // Aligned and (so far) ASCII: whole 4-byte blocks straight from the code units.
      while (i + 4 <= n) {
        const c0 = s.charCodeAt(i);
        const c1 = s.charCodeAt(i + 1);
        const c2 = s.charCodeAt(i + 2);
        const c3 = s.charCodeAt(i + 3);
        if ((c0 | c1 | c2 | c3) >= 0x80) break;
        h1 = mixBlock(h1, c0 | (c1 << 8) | (c2 << 16) | (c3 << 24));
        length += 4;
        i += 4;
      }
      if (i >= n) break;
    }
    let c = s.charCodeAt(i++);
    if (c < 0x80) {
      k |= c << (kBytes << 3);
      length++;
      if (++kBytes === 4) {
        h1 = mixBlock(h1, k);
        k = 0;
        kBytes = 0;
      }
      continue;
    }
    // Up to four UTF-8 bytes packed little-endian into `bytes`, `count` of them.
    let bytes: number;
    let count: number;
    if (c < 0x800) {
      bytes = (0xc0 | (c >> 6)) | ((0x80 | (c & 0x3f)) << 8);
      count = 2;
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = i < n ? s.charCodeAt(i) : 0;
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          i++;
          const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          bytes =
            (0xf0 | (cp >> 18)) |
            ((0x80 | ((cp >> 12) & 0x3f)) << 8) |
            ((0x80 | ((cp >> 6) & 0x3f)) << 16) |
            ((0x80 | (cp & 0x3f)) << 24);
          count = 4;
          for (let b = 0; b < count; b++) {
            k |= ((bytes >>> (b << 3)) & 0xff) << (kBytes << 3);
            length++;
            if (++kBytes === 4) {
              h1 = mixBlock(h1, k);
              k = 0;
              kBytes = 0;
            }
          }
          continue;
        }
        c = 0xfffd;
      }
      bytes = (0xe0 | (c >> 12)) | ((0x80 | ((c >> 6) & 0x3f)) << 8) | ((0x80 | (c & 0x3f)) << 16);
      count = 3;
    }
    for (let b = 0; b < count; b++) {
      k |= ((bytes >>> (b << 3)) & 0xff) << (kBytes << 3);
      length++;
      if (++kBytes === 4) {
        h1 = mixBlock(h1, k);
        k = 0;
        kBytes = 0;
      }
    }
  }
  return finish(h1, k, kBytes, length);
}

/** MurmurHash3 x86 32-bit of the UTF-8 bytes of `input`, as an unsigned 32-bit integer. */
export function murmurhash3(input: string, seed = 0): number {
  return hashFrom(input, seed | 0, 0, 0, 0);
}

const utf8 = new TextEncoder();
/** Text whose UTF-8 bytes are its code units. */
const ASCII = /^[\x00-\x7f]*$/;

/** The state after hashing the UTF-8 bytes of `prefix`, to be continued by `murmurhash3From`. */
export function murmurStateOf(prefix: string, seed = 0): MurmurState {
  // ASCII (every flag name Helios accepts) is read from its code units: TextEncoder's encode
  // took ~0.85 us of a flag's compile, on every change of the flag. Other text is encoded.
  const bytes = ASCII.test(prefix) ? null : utf8.encode(prefix);
  const length = bytes === null ? prefix.length : bytes.length;
  let h1 = seed | 0;
  let k = 0;
  let kBytes = 0;
  for (let i = 0; i < length; i++) {
    k |= (bytes === null ? prefix.charCodeAt(i) : bytes[i]!) << (kBytes << 3);
    if (++kBytes === 4) {
      h1 = mixBlock(h1, k);
      k = 0;
      kBytes = 0;
    }
  }
  return Object.freeze({ h1, k, kBytes, length });
}

/**
 * `murmurhash3(prefix + suffix)` given `murmurStateOf(prefix)`: the prefix is hashed once and
 * the concatenated string is never built. The two parts are encoded separately, so this differs
 * only when a prefix ending in a high surrogate meets a suffix starting with a low one.
 */
export function murmurhash3From(state: MurmurState, suffix: string): number {
  return hashFrom(suffix, state.h1, state.k, state.kBytes, state.length);
}
