/**
 * Long names and enum literals, refused before graphql-js validates the document. Its
 * "did you mean" suggestions compare an unknown name or enum value with every candidate by edit
 * distance, which is quadratic in the length of what was sent: a 210 KB string where an enum
 * goes held the event loop ~30 ms per request (more under load). Names in Helios's schema are
 * short, so a name or an enum literal over `MAX_NAME_CHARS` cannot be valid anyway; it gets
 * GRAPHQL_VALIDATION_FAILED without the value echoed. Linear in the document's size.
 */
import {
  GraphQLError,
  TypeInfo,
  getNamedType,
  isEnumType,
  visit,
  visitWithTypeInfo,
  type ASTNode,
  type DocumentNode,
  type GraphQLSchema,
} from 'graphql';

export const MAX_NAME_CHARS = 128;

function tooLong(what: string, length: number, node: ASTNode): GraphQLError {
  return new GraphQLError(`${what} is ${length} characters long; at most ${MAX_NAME_CHARS} are allowed`, {
    nodes: [node],
    extensions: { code: 'GRAPHQL_VALIDATION_FAILED' },
  });
}

export function checkLiterals(document: DocumentNode, schema: GraphQLSchema | null): GraphQLError[] {
  const errors: GraphQLError[] = [];
  let longString = false;
  visit(document, {
    Name(node) {
      if (node.value.length > MAX_NAME_CHARS) errors.push(tooLong('A name', node.value.length, node));
    },
    EnumValue(node) {
      if (node.value.length > MAX_NAME_CHARS) errors.push(tooLong('An enum value', node.value.length, node));
    },
    StringValue(node) {
      if (node.value.length > MAX_NAME_CHARS) longString = true;
    },
  });
  // Only a document with a long string needs the typed pass: is one where an enum goes?
  if (errors.length > 0 || !longString || !schema) return errors;
  const typeInfo = new TypeInfo(schema);
  visit(
    document,
    visitWithTypeInfo(typeInfo, {
      StringValue(node) {
        if (node.value.length <= MAX_NAME_CHARS) return;
        const type = typeInfo.getInputType();
        if (type && isEnumType(getNamedType(type))) errors.push(tooLong('An enum value', node.value.length, node));
      },
    }),
  );
  return errors;
}
