/** The committed SDL is exactly what the code prints: clients generate from it. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { printSortedSchema } from '../src/graphql/schema.js';

describe('schema/schema.graphql', () => {
  it('matches the schema printed from the code (run `npm run schema:print` after a change)', () => {
    expect(readFileSync('schema/schema.graphql', 'utf8')).toBe(printSortedSchema());
  });
});
