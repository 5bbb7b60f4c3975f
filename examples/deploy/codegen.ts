/** Types the demo's operations (operations.graphql) from the committed schema into gql/. */
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  schema: 'schema/schema.graphql',
  documents: ['examples/deploy/operations.graphql'],
  emitLegacyCommonJSImports: false,
  generates: {
    'examples/deploy/gql/': {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: { useTypeImports: true, enumsAsTypes: true, scalars: { DateTime: 'string', JSON: 'unknown' }, strictScalars: true },
    },
  },
};

export default config;
