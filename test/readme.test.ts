/** Every GraphQL operation the README shows is valid against the schema, as written. */
import { readFileSync } from 'node:fs';
import { parse, validate } from 'graphql';
import { describe, expect, it } from 'vitest';
import { buildSchema } from '../src/graphql/schema.js';

function readmeOperations(): string[] {
  const readme = readFileSync('README.md', 'utf8');
  const blocks = [...readme.matchAll(/```graphql\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const operations: string[] = [];
  for (const block of blocks) {
    // Blocks list several operations, each starting at the left margin.
    let current: string[] = [];
    for (const line of block.split('\n')) {
      if (/^(query|mutation|subscription|\{)/.test(line) && current.length > 0) {
        operations.push(current.join('\n'));
        current = [];
      }
      if (line.trim() !== '') current.push(line);
    }
    if (current.length > 0) operations.push(current.join('\n'));
  }
  // curl examples carry their query as JSON.
  for (const m of readme.matchAll(/-d '(\{"query":.*?\})'/g)) operations.push((JSON.parse(m[1]!) as { query: string }).query);
  return operations;
}

describe('README', () => {
  const operations = readmeOperations();

  it('shows a good number of operations', () => {
    expect(operations.length).toBeGreaterThan(30);
  });

  it.each(operations.map((op) => [op.split('\n')[0]!.slice(0, 80), op]))('%s', (_title, operation) => {
    expect(validate(buildSchema(), parse(operation)).map((e) => e.message)).toEqual([]);
  });
});
