/** The Pothos builder: schema-wide settings only; types live in one file per domain. */
import SchemaBuilder from '@pothos/core';
import type { GraphQLContext } from './context.js';

export interface HeliosSchemaTypes {
  Context: GraphQLContext;
  DefaultFieldNullability: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    JSON: { Input: unknown; Output: unknown };
  };
}

export const builder = new SchemaBuilder<HeliosSchemaTypes>({
  defaultFieldNullability: false,
});
