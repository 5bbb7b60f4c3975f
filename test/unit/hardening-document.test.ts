/** Document limits: each accepts a normal operation and refuses a hostile one with its code. */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { buildSchema as buildSdlSchema, getIntrospectionQuery, GraphQLError, Kind, parse, validate, type DocumentNode } from 'graphql';
import { describe, expect, it } from 'vitest';
import { buildSchema as buildHeliosSchema } from '../../src/graphql/schema.js';
import {
  checkDocument,
  INTROSPECTION_COST,
  measureDocument,
  parseAndCheck,
  parseWithLimits,
} from '../../src/hardening/document.js';
import { DEFAULT_HARDENING_LIMITS, type DocumentLimits } from '../../src/hardening/limits.js';

const schema = buildSdlSchema(`
  type Query { node: Node, nodes: [Node!]!, hello: String }
  type Mutation { touch: Node }
  type Node { name: String, child: Node, children: [Node!]!, tags: [String!]! }
`);

const limits: DocumentLimits = DEFAULT_HARDENING_LIMITS;
const codes = (source: string, l: DocumentLimits = limits) => checkDocument(parse(source), l, schema).map((e) => e.extensions.code);
const nested = (levels: number, field = 'child') => `{ node { ${`${field} { `.repeat(levels - 2)}name${' }'.repeat(levels - 2)} } }`;

describe('measureDocument', () => {
  it('measures depth, aliases, directives and cost', () => {
    const doc = parse(`query Q($on: Boolean!) {
      a: node { name }
      nodes @include(if: $on) { b: name tags children { name } }
    }`);
    // a: 1 + 1; nodes: 1 + 10 * (name 1 + tags 1 + children (1 + 10 * 1)) = 131.
    expect(measureDocument(doc, { schema })).toEqual({ depth: 3, aliases: 2, directives: 1, cost: 2 + 131 });
  });

  it('expands fragments where they are spread, and reports the worst operation', () => {
    const doc = parse(`
      query A { node { ...F } }
      query B { nodes { ...F ...F } }
      fragment F on Node { x: child { name } }
    `);
    const m = measureDocument(doc, { schema });
    expect(m.depth).toBe(3);
    expect(m.aliases).toBe(2);
    // B: nodes 1 + 10 * (2 × (child 1 + 1)) = 41.
    expect(m.cost).toBe(41);
  });

  it('measures a fragment bomb in linear time and finds its exponential cost', () => {
    const levels = 40;
    const fragments = Array.from({ length: levels }, (_, i) =>
      i === levels - 1 ? `fragment F${i} on Node { name }` : `fragment F${i} on Node { ...F${i + 1} ...F${i + 1} }`,
    ).join('\n');
    const doc = parse(`{ node { ...F0 } } ${fragments}`);
    const started = performance.now();
    const m = measureDocument(doc, { schema });
    expect(performance.now() - started).toBeLessThan(200);
    expect(m.cost).toBe(1 + 2 ** (levels - 1));
    expect(checkDocument(doc, limits, schema).map((e) => e.extensions.code)).toEqual(['QUERY_TOO_COMPLEX']);
  });

  it('survives fragment cycles (graphql-js rejects them afterwards)', () => {
    const doc = parse('{ node { ...A } } fragment A on Node { child { ...B } } fragment B on Node { child { ...A } }');
    expect(() => measureDocument(doc, { schema })).not.toThrow();
    expect(checkDocument(doc, limits, schema)).toEqual([]);
    expect(validate(schema, doc).map((e) => e.message).join()).toMatch(/cannot spread fragment/i);
  });
});

describe('checkDocument', () => {
  it('accepts every operation Helios ships and GraphiQL introspection', () => {
    const helios = buildHeliosSchema();
    const dir = path.join(process.cwd(), 'test', 'operations');
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.graphql'))) {
      const doc = parseWithLimits(readFileSync(path.join(dir, file), 'utf8'));
      expect(checkDocument(doc, limits, helios), file).toEqual([]);
    }
    const introspection = parseWithLimits(getIntrospectionQuery({
      descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true,
    }));
    expect(checkDocument(introspection, limits, helios)).toEqual([]);
    expect(measureDocument(introspection, { schema: helios }).cost).toBe(INTROSPECTION_COST);
  });

  it('depth: accepts 12 levels, refuses 13 (also when hidden in fragments)', () => {
    expect(codes(nested(12))).toEqual([]);
    expect(codes(nested(13))).toEqual(['QUERY_TOO_DEEP']);
    const viaFragments = `{ node { ...A } } fragment A on Node { child { child { child { child { ...B } } } } }
      fragment B on Node { child { child { child { child { child { child { child { name } } } } } } } }`;
    expect(codes(viaFragments)).toEqual(['QUERY_TOO_DEEP']);
    const error = checkDocument(parse(nested(13)), limits, schema)[0]!;
    expect(error).toBeInstanceOf(GraphQLError);
    expect(error.message).toBe('Query depth 13 exceeds the maximum of 12');
  });

  it('aliases: accepts 30, refuses 31', () => {
    const aliased = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: hello`).join(' ')} }`;
    expect(codes(aliased(30))).toEqual([]);
    expect(codes(aliased(31))).toEqual(['TOO_MANY_ALIASES']);
  });

  it('directives: accepts 20, refuses 21 (operation and variable directives count)', () => {
    const directed = (n: number) => `{ ${Array.from({ length: n }, () => 'hello @include(if: true)').join(' ')} }`;
    expect(codes(directed(20))).toEqual([]);
    expect(codes(directed(21))).toEqual(['TOO_MANY_DIRECTIVES']);
    expect(codes(`query Q @a @b { ${Array.from({ length: 19 }, () => 'hello @skip(if: false)').join(' ')} }`))
      .toEqual(['TOO_MANY_DIRECTIVES']);
  });

  it('cost: accepts nested lists up to the budget, refuses beyond it', () => {
    // 1 + 10 × (1 + 10 × (1 + 10 × 1)) = 1111
    expect(codes('{ nodes { children { children { name } } } }')).toEqual([]);
    // 1 + 10 × (1 + 10 × (1 + 10 × (1 + 10 × 1))) = 11111
    expect(codes('{ nodes { children { children { children { name } } } } }')).toEqual(['QUERY_TOO_COMPLEX']);
    expect(codes('{ nodes { children { children { children { name } } } } }', { ...limits, maxCost: 20_000 })).toEqual([]);
  });

  it('reports every broken limit at once and never throws', () => {
    const hostile = `{ ${Array.from({ length: 31 }, (_, i) => `a${i}: nodes { children { children { children { name } } } }`).join(' ')} }`;
    expect(codes(hostile).sort()).toEqual(['QUERY_TOO_COMPLEX', 'TOO_MANY_ALIASES']);
    const broken = { kind: Kind.DOCUMENT, definitions: [{ kind: Kind.OPERATION_DEFINITION }] } as unknown as DocumentNode;
    expect(checkDocument(broken, limits, schema).map((e) => e.extensions.code)).toEqual(['QUERY_TOO_COMPLEX']);
  });

  it('without a schema, still limits depth, aliases and directives', () => {
    expect(checkDocument(parse(nested(13)), limits).map((e) => e.extensions.code)).toEqual(['QUERY_TOO_DEEP']);
  });
});

describe('parseWithLimits', () => {
  it('tokens: parses 2000 tokens, refuses more with TOO_MANY_TOKENS', () => {
    // "{" + n × "hello" + "}" is n + 2 tokens.
    const doc = (tokens: number) => `{ ${'hello '.repeat(tokens - 2)}}`;
    expect(() => parseWithLimits(doc(2000))).not.toThrow();
    let thrown: unknown = null;
    try {
      parseWithLimits(doc(2001));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(GraphQLError);
    expect((thrown as GraphQLError).extensions.code).toBe('TOO_MANY_TOKENS');
  });

  it('leaves other syntax errors as graphql-js reports them', () => {
    expect(() => parseWithLimits('{ hello')).toThrow(/Syntax Error/);
  });
});

describe('parseAndCheck', () => {
  it('returns the document or the errors, never throwing', () => {
    expect(parseAndCheck('{ hello }', limits, schema).errors).toEqual([]);
    expect(parseAndCheck('{ hello', limits, schema).errors[0]?.message).toMatch(/Syntax Error/);
    expect(parseAndCheck(nested(13), limits, schema).errors.map((e) => e.extensions.code)).toEqual(['QUERY_TOO_DEEP']);
    expect(parseAndCheck(`{ ${'hello '.repeat(2500)}}`, limits, schema).errors.map((e) => e.extensions.code))
      .toEqual(['TOO_MANY_TOKENS']);
  });

  it('leaves circular introspection to graphql-js MaxIntrospectionDepthRule', () => {
    const circular = '{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }';
    const result = parseAndCheck(circular, limits, schema);
    expect(result.errors).toEqual([]);
    expect(validate(schema, result.document!).map((e) => e.message).join()).toMatch(/Maximum introspection depth exceeded/);
  });
});

describe('long names and enum literals', () => {
  const helios = buildHeliosSchema();
  const long = 'SELECT_'.repeat(30_000);
  const check = (source: string) => checkDocument(parse(source), DEFAULT_HARDENING_LIMITS, helios);

  it('refuses a long string or enum literal where an enum goes, before graphql-js suggests alternatives', () => {
    for (const value of [`"${long}"`, long]) {
      const errors = check(`mutation { enableFeatureFlag(name: "x", strategy: ${value}) { errors { code } } }`);
      expect(errors.map((e) => e.extensions.code)).toEqual(['GRAPHQL_VALIDATION_FAILED']);
      expect(errors[0]!.message).toBe(`An enum value is ${long.length} characters long; at most 128 are allowed`);
    }
  });

  it('refuses a long field, argument or type name without echoing it', () => {
    for (const source of [`{ ${long} }`, `{ flags(${long}: 1) { name } }`, `query($v: ${long}) { flags { name } }`]) {
      const errors = check(source);
      expect(errors.map((e) => e.extensions.code)).toEqual(['GRAPHQL_VALIDATION_FAILED']);
      expect(errors[0]!.message.length).toBeLessThan(200);
    }
  });

  it('leaves long strings where a String or JSON goes, and short enum values, to validation', () => {
    expect(check(`{ featureFlag(name: "${long}") { name } }`)).toEqual([]);
    expect(check(`mutation { enableFeatureFlag(name: "x", strategy: ALL_ON) { errors { code } } }`)).toEqual([]);
  });
});
