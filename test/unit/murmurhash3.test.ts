import { describe, it, expect } from 'vitest';
import { murmurhash3, murmurhash3From, murmurStateOf } from '../../src/flags/murmurhash3.js';
import { prng } from '../support/prng.js';

/** Straight transcription of the reference MurmurHash3_x86_32 over a byte array. */
function referenceMurmur(bytes: Uint8Array, seed = 0): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  const nblocks = bytes.length >> 2;
  let h1 = seed | 0;
  for (let i = 0; i < nblocks; i++) {
    const o = i * 4;
    let k1 = bytes[o]! | (bytes[o + 1]! << 8) | (bytes[o + 2]! << 16) | (bytes[o + 3]! << 24);
    k1 = Math.imul(k1, c1);
    k1 = (k1 << 15) | (k1 >>> 17);
    k1 = Math.imul(k1, c2);
    h1 ^= k1;
    h1 = (h1 << 13) | (h1 >>> 19);
    h1 = (Math.imul(h1, 5) + 0xe6546b64) | 0;
  }
  const tail = nblocks * 4;
  const rest = bytes.length & 3;
  if (rest > 0) {
    let k1 = 0;
    if (rest === 3) k1 ^= bytes[tail + 2]! << 16;
    if (rest >= 2) k1 ^= bytes[tail + 1]! << 8;
    k1 ^= bytes[tail]!;
    k1 = Math.imul(k1, c1);
    k1 = (k1 << 15) | (k1 >>> 17);
    k1 = Math.imul(k1, c2);
    h1 ^= k1;
  }
  h1 ^= bytes.length;
  h1 ^= h1 >>> 16;
  h1 = Math.imul(h1, 0x85ebca6b);
  h1 ^= h1 >>> 13;
  h1 = Math.imul(h1, 0xc2b2ae35);
  h1 ^= h1 >>> 16;
  return h1 >>> 0;
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);


/** Mixes ASCII, 2- and 3-byte characters, surrogate pairs (emoji) and lone surrogates. */
function randomString(rand: () => number, maxLength: number): string {
  const n = Math.floor(rand() * (maxLength + 1));
  let s = '';
  for (let i = 0; i < n; i++) {
    const kind = rand();
    if (kind < 0.45) s += String.fromCharCode(Math.floor(rand() * 0x80));
    else if (kind < 0.6) s += String.fromCharCode(0x80 + Math.floor(rand() * (0x800 - 0x80)));
    else if (kind < 0.75) s += String.fromCharCode(0x800 + Math.floor(rand() * (0xd800 - 0x800)));
    else if (kind < 0.8) s += String.fromCharCode(0xe000 + Math.floor(rand() * 0x2000));
    else if (kind < 0.92) s += String.fromCodePoint(0x10000 + Math.floor(rand() * 0x100000));
    else if (kind < 0.96) s += String.fromCharCode(0xd800 + Math.floor(rand() * 0x400)); // lone high
    else s += String.fromCharCode(0xdc00 + Math.floor(rand() * 0x400)); // lone low
  }
  return s;
}

describe('murmurhash3 (x86, 32-bit, UTF-8)', () => {
  it('matches published reference vectors', () => {
    const vectors: Array<[string, number, number]> = [
      ['', 0, 0],
      ['', 1, 0x514e28b7],
      ['', 0xffffffff, 0x81f16f39],
      ['\0\0\0\0', 0, 0x2362f9de],
      ['\0\0\0', 0, 0x85f0b427],
      ['\0\0', 0, 0x30f4c306],
      ['\0', 0, 0x514e28b7],
      ['a', 0x9747b28c, 0x7fa09ea6],
      ['aa', 0x9747b28c, 0x5d211726],
      ['aaaa', 0x9747b28c, 0x5a97808a],
      ['abc', 0x9747b28c, 0xc84a62dd],
      ['abcd', 0x9747b28c, 0xf0478627],
      ['hello', 0, 613153351],
      ['Hello, world!', 0x9747b28c, 0x24884cba],
      ['The quick brown fox jumps over the lazy dog', 0, 0x2e4ff723],
      ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
      // UTF-8 bytes, not UTF-16 code units: the vector that tells the two apart.
      ['ππππππππ', 0x9747b28c, 0xd58063c1],
    ];
    for (const [input, seed, expected] of vectors) {
      expect(murmurhash3(input, seed), `${JSON.stringify(input)} seed ${seed}`).toBe(expected);
    }
  });

  it('returns unsigned 32-bit integers', () => {
    const rand = prng(7);
    for (let i = 0; i < 1000; i++) {
      const h = murmurhash3(randomString(rand, 20));
      expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
    }
  });

  it('hashes the UTF-8 bytes of non-ASCII input (not UTF-16 code units)', () => {
    for (const s of ['é', 'café', '日本語', '😀', 'a😀b', 'flag:ユーザー', '\u0080', '\u07ff', '\u0800', '\uffff']) {
      expect(murmurhash3(s), s).toBe(referenceMurmur(utf8(s)));
    }
    // A UTF-16 code-unit port would hash 'é' as the single byte 0xe9.
    expect(murmurhash3('é')).not.toBe(referenceMurmur(Uint8Array.of(0xe9)));
  });

  it('encodes lone surrogates as U+FFFD, like TextEncoder', () => {
    for (const s of ['\ud800', '\udc00', 'a\ud83d', '\ude00b', '\ud83d\ud83d\ude00', 'xy\udfff\ud800z']) {
      expect(murmurhash3(s), JSON.stringify(s)).toBe(referenceMurmur(utf8(s)));
    }
    expect(murmurhash3('\ud800')).toBe(murmurhash3('\ufffd'));
  });

  it('agrees with the byte-array reference on random strings of every alignment', () => {
    const rand = prng(42);
    for (let i = 0; i < 5000; i++) {
      const s = randomString(rand, 24);
      const seed = i % 3 === 0 ? 0 : Math.floor(rand() * 0x100000000);
      expect(murmurhash3(s, seed), JSON.stringify(s)).toBe(referenceMurmur(utf8(s), seed));
    }
  });

  it('continues an ASCII prefix (read from its code units) exactly as the concatenated bytes', () => {
    const rand = prng(7);
    for (let i = 0; i < 3000; i++) {
      let prefix = '';
      for (let n = Math.floor(rand() * 24); n > 0; n--) prefix += String.fromCharCode(Math.floor(rand() * 0x80));
      const suffix = randomString(rand, 12);
      const seed = i % 2 === 0 ? 0 : 0x9747b28c;
      const state = murmurStateOf(prefix, seed);
      expect(state.length).toBe(prefix.length);
      expect(murmurhash3From(state, suffix)).toBe(referenceMurmur(new Uint8Array([...utf8(prefix), ...utf8(suffix)]), seed));
    }
    expect(murmurhash3From(murmurStateOf('neural_network_v2:'), 'user-42')).toBe(murmurhash3('neural_network_v2:user-42'));
  });

  it('continues a prefix state exactly as hashing the concatenated bytes', () => {
    const rand = prng(99);
    for (let i = 0; i < 3000; i++) {
      const prefix = randomString(rand, 9);
      const suffix = randomString(rand, 12);
      const seed = i % 2 === 0 ? 0 : 0x9747b28c;
      const bytes = new Uint8Array([...utf8(prefix), ...utf8(suffix)]);
      expect(murmurhash3From(murmurStateOf(prefix, seed), suffix)).toBe(referenceMurmur(bytes, seed));
      if (!/[\ud800-\udbff]$/.test(prefix)) {
        expect(murmurhash3From(murmurStateOf(prefix, seed), suffix)).toBe(murmurhash3(prefix + suffix, seed));
      }
    }
  });
});
