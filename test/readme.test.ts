/** Every GraphQL operation the README shows is valid against the schema, as written. */
import { readFileSync } from 'node:fs';
import { Kind, parse, print, validate } from 'graphql';
import { describe, expect, it } from 'vitest';
import { buildSchema } from '../src/graphql/schema.js';

function graphqlBlocks(): string[] {
  return [...readFileSync('README.md', 'utf8').matchAll(/```graphql\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

function readmeOperations(): string[] {
  const readme = readFileSync('README.md', 'utf8');
  const blocks = graphqlBlocks();
  const operations: string[] = [];
  for (const block of blocks) {
    // Blocks list several operations, each starting at the left margin.
    let current: string[] = [];
    for (const line of block.split('\n')) {
      if (/^(query|mutation|subscription|\{)/.test(line) && current.length > 0) {
        operations.push(current.join('\n'));
        current = [];
      }
      // A leading `# file.graphql` comment names the file a block is saved as; it is no operation.
      if (line.trim() !== '' && !(current.length === 0 && line.startsWith('#'))) current.push(line);
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

  // Pasted whole into GraphiQL, a block with several operations must let it pick one by name:
  // unnamed ones show up as "<Unnamed mutation>" and fail with "Cannot infer operation".
  it.each(graphqlBlocks().map((block) => [block.split('\n')[0]!.slice(0, 60), block]))('block pasted whole: %s', (_title, block) => {
    const document = parse(block);
    const operations = document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
    if (operations.length > 1) {
      expect(operations.filter((o) => !o.name).map((o) => print(o).slice(0, 60)), 'unnamed operations in a block with several').toEqual([]);
    }
    expect(validate(buildSchema(), document).map((e) => e.message)).toEqual([]);
  });
});
