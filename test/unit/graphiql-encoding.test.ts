/** Which stored encoding of a GraphiQL asset answers an `Accept-Encoding` header. */
import { describe, expect, it } from 'vitest';
import { preferredEncoding } from '../../src/transport/static-assets.js';

describe('preferredEncoding', () => {
  it('prefers br, then gzip, honours q=0 refusals and *, and falls back to identity', () => {
    const cases: [string | string[] | undefined, string][] = [
      [undefined, 'identity'],
      ['', 'identity'],
      ['gzip, deflate, br, zstd', 'br'],
      ['gzip', 'gzip'],
      ['GZIP;q=0.5, BR;q=0.1', 'br'],
      ['br;q=0, gzip', 'gzip'],
      ['br;q=0, gzip;q=0', 'identity'],
      ['deflate', 'identity'],
      ['*', 'br'],
      ['*;q=0, gzip', 'gzip'],
      ['br;q=0, *', 'gzip'],
      ['identity', 'identity'],
      [['deflate', 'gzip'], 'gzip'],
    ];
    for (const [header, expected] of cases) expect(preferredEncoding(header), JSON.stringify(header)).toBe(expected);
  });
});
