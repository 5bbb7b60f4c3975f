/**
 * `npm run codegen`: typed documents (client preset) generated from the committed schema, so a
 * schema change breaks their users at compile time: the operations the end-to-end tests send
 * (test/gql/) and the dashboard's (dashboard/src/gql/, as strings: the browser bundle carries
 * no GraphQL parser). Client apps use the same setup against `schema/schema.graphql` (README).
 */
import type { CodegenConfig } from '@graphql-codegen/cli';

const typedDocuments = {
  useTypeImports: true,
  enumsAsTypes: true,
  scalars: { DateTime: 'string', JSON: 'unknown' },
  strictScalars: true,
};

const config: CodegenConfig = {
  schema: 'schema/schema.graphql',
  ignoreNoDocuments: false,
  emitLegacyCommonJSImports: false,
  generates: {
    'test/gql/': {
      documents: ['test/operations/**/*.graphql'],
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: typedDocuments,
    },
    'dashboard/src/gql/': {
      documents: ['dashboard/src/**/*.graphql'],
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: { ...typedDocuments, documentMode: 'string' },
    },
  },
};

export default config;
