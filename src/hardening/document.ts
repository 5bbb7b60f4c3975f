/**
 * Measures a parsed document and reports the limits it breaks, before graphql-js validates it.
 *
 * The measure, per operation, with every fragment spread expanded where it is spread:
 * - depth: nested field levels (`{ a { b } }` is 2);
 * - aliases and directives: how many appear;
 * - cost: each field costs 1 plus its selection's cost, which is multiplied by `listFactor`
 *   when the field returns a list (so `{ flags { name } }` costs 1 + 10 × 1 = 11). It is an
 *   estimate of the work, not a count of results: it is computed before anything runs.
 *
 * Fragments are measured once each and the result reused, so a "fragment bomb" (each fragment
 * spreading the next one twice) is measured in linear time while its cost grows exponentially,
 * as the work would. A fragment cycle measures as empty here; graphql-js's NoFragmentCycles rule
 * then rejects the document.
 *
 * Introspection (`__schema`, `__type`) costs `INTROSPECTION_COST` in total and its inside is
 * neither counted for depth nor for cost: it is answered from the in-memory schema, GraphiQL's
 * own introspection query would break any depth limit that suits data queries, and the one way
 * to make it expensive, nesting `fields { type { fields ...` deeply, is already refused by
 * graphql-js's MaxIntrospectionDepthRule (part of the standard rules since graphql 16.9).
 * Aliases and directives inside introspection still count. `__typename` is an ordinary field.
 *
 * Without a schema, list fields cannot be recognised and every field multiplies by 1: always
 * pass the schema when there is one.
 */
import {
  GraphQLError,
  Kind,
  getNamedType,
  getNullableType,
  isInterfaceType,
  isListType,
  isObjectType,
  parse,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLNamedType,
  type GraphQLSchema,
  type ParseOptions,
  type SelectionSetNode,
  type Source,
} from 'graphql';
import { checkLiterals } from './literals.js';
import { DEFAULT_HARDENING_LIMITS, type DocumentLimits, type LimitErrorCode } from './limits.js';

/** Introspection answers come from memory: a flat price, paid once per `__schema`/`__type`. */
export const INTROSPECTION_COST = 100;

export interface DocumentMeasure {
  depth: number;
  aliases: number;
  directives: number;
  cost: number;
}

const EMPTY: DocumentMeasure = Object.freeze({ depth: 0, aliases: 0, directives: 0, cost: 0 });

/** The worst value of each measure over the document's operations. */
export function measureDocument(
  document: DocumentNode,
  options: { listFactor?: number; schema?: GraphQLSchema | null } = {},
): DocumentMeasure {
  const listFactor = options.listFactor ?? DEFAULT_HARDENING_LIMITS.listFactor;
  const schema = options.schema ?? null;
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const def of document.definitions) {
    if (def.kind === Kind.FRAGMENT_DEFINITION) fragments.set(def.name.value, def);
  }
  const measured = new Map<string, DocumentMeasure>();
  const measuring = new Set<string>();

  const typeNamed = (name: string): GraphQLNamedType | null => schema?.getType(name) ?? null;

  const fieldOf = (parent: GraphQLNamedType | null, name: string): GraphQLField<unknown, unknown> | null => {
    if (!schema || !parent) return null;
    if (parent === schema.getQueryType()) {
      // The introspection entry points are not in the query type's field map.
      if (name === '__schema' || name === '__type') return null;
    }
    if (isObjectType(parent) || isInterfaceType(parent)) return parent.getFields()[name] ?? null;
    return null;
  };

  const fragment = (name: string): DocumentMeasure => {
    const done = measured.get(name);
    if (done) return done;
    const def = fragments.get(name);
    if (!def || measuring.has(name)) return EMPTY;
    measuring.add(name);
    const inner = selectionSet(def.selectionSet, typeNamed(def.typeCondition.name.value), false);
    const result = { ...inner, directives: inner.directives + (def.directives?.length ?? 0) };
    measuring.delete(name);
    measured.set(name, result);
    return result;
  };

  const selectionSet = (set: SelectionSetNode, parent: GraphQLNamedType | null, introspection: boolean): DocumentMeasure => {
    let depth = 0;
    let aliases = 0;
    let directives = 0;
    let cost = 0;
    for (const selection of set.selections) {
      directives += selection.directives?.length ?? 0;
      if (selection.kind === Kind.FIELD) {
        const name = selection.name.value;
        if (selection.alias) aliases++;
        const entersIntrospection = !introspection && (name === '__schema' || name === '__type');
        const inside = introspection || entersIntrospection;
        const field = fieldOf(parent, name);
        const sub = selection.selectionSet
          ? selectionSet(selection.selectionSet, field ? getNamedType(field.type) : null, inside)
          : EMPTY;
        aliases += sub.aliases;
        directives += sub.directives;
        if (entersIntrospection) {
          depth = Math.max(depth, 1);
          cost += INTROSPECTION_COST;
        } else if (!introspection) {
          depth = Math.max(depth, 1 + sub.depth);
          const factor = field && isListType(getNullableType(field.type)) ? listFactor : 1;
          cost += 1 + factor * sub.cost;
        }
      } else {
        const sub = selection.kind === Kind.INLINE_FRAGMENT
          ? selectionSet(
            selection.selectionSet,
            selection.typeCondition ? typeNamed(selection.typeCondition.name.value) : parent,
            introspection,
          )
          : fragment(selection.name.value);
        depth = Math.max(depth, sub.depth);
        aliases += sub.aliases;
        directives += sub.directives;
        if (!introspection) cost += sub.cost;
      }
    }
    return { depth, aliases, directives, cost };
  };

  let worst: DocumentMeasure = EMPTY;
  for (const def of document.definitions) {
    if (def.kind !== Kind.OPERATION_DEFINITION) continue;
    const root = schema
      ? def.operation === 'query' ? schema.getQueryType()
        : def.operation === 'mutation' ? schema.getMutationType()
        : schema.getSubscriptionType()
      : null;
    const inner = selectionSet(def.selectionSet, root ?? null, false);
    const ownDirectives = (def.directives?.length ?? 0)
      + (def.variableDefinitions ?? []).reduce((n, v) => n + (v.directives?.length ?? 0), 0);
    worst = {
      depth: Math.max(worst.depth, inner.depth),
      aliases: Math.max(worst.aliases, inner.aliases),
      directives: Math.max(worst.directives, inner.directives + ownDirectives),
      cost: Math.max(worst.cost, inner.cost),
    };
  }
  return worst;
}

export function limitError(code: LimitErrorCode, message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code } });
}

/**
 * The limits `document` breaks, one error per limit; empty when it is acceptable. Never throws:
 * an unexpected failure is reported as an error too, so a malformed AST is refused, not run.
 */
export function checkDocument(
  document: DocumentNode,
  limits: DocumentLimits = DEFAULT_HARDENING_LIMITS,
  schema?: GraphQLSchema | null,
): GraphQLError[] {
  let measure: DocumentMeasure;
  try {
    measure = measureDocument(document, { listFactor: limits.listFactor, schema: schema ?? null });
  } catch {
    return [limitError('QUERY_TOO_COMPLEX', 'The query could not be measured')];
  }
  const errors: GraphQLError[] = checkLiterals(document, schema ?? null);
  if (measure.depth > limits.maxDepth) {
    errors.push(limitError('QUERY_TOO_DEEP', `Query depth ${measure.depth} exceeds the maximum of ${limits.maxDepth}`));
  }
  if (measure.aliases > limits.maxAliases) {
    errors.push(limitError('TOO_MANY_ALIASES', `${measure.aliases} aliases exceed the maximum of ${limits.maxAliases}`));
  }
  if (measure.directives > limits.maxDirectives) {
    errors.push(limitError('TOO_MANY_DIRECTIVES', `${measure.directives} directives exceed the maximum of ${limits.maxDirectives}`));
  }
  if (measure.cost > limits.maxCost) {
    const cost = Number.isFinite(measure.cost) && measure.cost < 1e15 ? String(measure.cost) : 'an estimated cost above 10^15';
    errors.push(limitError('QUERY_TOO_COMPLEX', `Query cost ${cost} exceeds the maximum of ${limits.maxCost}`));
  }
  return errors;
}

// graphql 16 spells it "more that"; later versions may fix the typo.
const TOKEN_LIMIT_MESSAGE = /Document contains more tha[nt] \d+ tokens/;

/**
 * graphql's `parse` with `maxTokens` applied; a document over the limit throws a GraphQLError
 * coded TOO_MANY_TOKENS (other syntax errors are thrown unchanged, as graphql-js makes them).
 */
export function parseWithLimits(
  source: string | Source,
  limits: Pick<DocumentLimits, 'maxTokens'> = DEFAULT_HARDENING_LIMITS,
  options: ParseOptions = {},
): DocumentNode {
  try {
    return parse(source, { ...options, maxTokens: Math.min(options.maxTokens ?? Infinity, limits.maxTokens) });
  } catch (error) {
    if (error instanceof GraphQLError && TOKEN_LIMIT_MESSAGE.test(error.message)) {
      throw limitError('TOO_MANY_TOKENS', `The document has more than ${limits.maxTokens} tokens`);
    }
    throw error;
  }
}

/**
 * Parse and measure in one step for transports that do not go through Yoga's plugins; never
 * throws. Returns the document, or the errors to send back for this operation.
 */
export function parseAndCheck(
  source: string,
  limits: DocumentLimits = DEFAULT_HARDENING_LIMITS,
  schema?: GraphQLSchema | null,
): { document: DocumentNode; errors: [] } | { document: null; errors: GraphQLError[] } {
  let document: DocumentNode;
  try {
    document = parseWithLimits(source, limits);
  } catch (error) {
    if (error instanceof GraphQLError) return { document: null, errors: [error] };
    return { document: null, errors: [new GraphQLError('The document could not be parsed', { extensions: { code: 'GRAPHQL_PARSE_FAILED' } })] };
  }
  const errors = checkDocument(document, limits, schema);
  return errors.length > 0 ? { document: null, errors } : { document, errors: [] };
}
