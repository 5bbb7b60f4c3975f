/** The scalars loaded from their own files (src/graphql/scalars.ts) are the package's own. */
import * as packaged from 'graphql-scalars';
import { describe, expect, it } from 'vitest';
import { DateTimeISOResolver, JSONResolver } from '../../src/graphql/scalars.js';

describe('graphql-scalars, file by file', () => {
  it('loads the very scalar objects the package index exports', () => {
    expect(DateTimeISOResolver).toBe(packaged.DateTimeISOResolver);
    expect(JSONResolver).toBe(packaged.JSONResolver);
    expect(DateTimeISOResolver.name).toBe('DateTimeISO');
    expect(JSONResolver.name).toBe('JSON');
  });
});
