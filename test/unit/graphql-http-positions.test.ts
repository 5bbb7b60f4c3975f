/**
 * `positionOf` (src/transport/graphql-http.ts) turns graphql-jit's error locations back into
 * source positions, so masked errors of compiled queries keep their locations: it must invert
 * graphql-js's own `getLocation` for every position, whatever the line terminators.
 */
import { getLocation, Source } from 'graphql';
import { describe, expect, it } from 'vitest';
import { positionOf } from '../../src/transport/graphql-http.js';

describe('positionOf', () => {
  const bodies = [
    '{ featureFlags { name } }',
    'query Q {\n  featureFlags {\n    name\n  }\n}\n',
    'query Q {\r\n  a: featureFlags { name }\r\n\r\n  b: featureFlags { name }\r\n}',
    '# comment\r{\n\r\n  __typename\r}',
  ];
  for (const body of bodies) {
    it(`inverts getLocation for every position of ${JSON.stringify(body.slice(0, 20))}`, () => {
      const source = new Source(body);
      for (let position = 0; position < body.length; position++) {
        // A position inside a \r\n pair has no location of its own.
        if (body[position] === '\n' && body[position - 1] === '\r') continue;
        const { line, column } = getLocation(source, position);
        expect(positionOf(body, line, column), `position ${position}`).toBe(position);
      }
    });
  }

  it('is -1 for a line or column outside the text', () => {
    expect(positionOf('{ a }', 2, 1)).toBe(-1);
    expect(positionOf('{ a }', 1, 50)).toBe(-1);
    expect(positionOf('{\n a }', 2, 1)).toBe(2);
  });
});
