/** Assembles the schema from the domain files; sorted so the printed SDL is stable. */
import { lexicographicSortSchema, printSchema, type GraphQLSchema } from 'graphql';
import { builder } from './builder.js';
import './common.js';
import './flags.js';
import './breakers.js';
import './modules.js';
import './testing.js';
import './tokens.js';
import './audit.js';
import './status.js';
import './cluster.js';
import { defineRolloutSchema } from './rollouts.js';

defineRolloutSchema({
  service: (ctx) => ctx.services.rollouts,
  onProgress: (ctx, listener) => ctx.services.bus.on('rolloutProgress', listener),
});

let schema: GraphQLSchema | null = null;

export function buildSchema(): GraphQLSchema {
  schema ??= lexicographicSortSchema(builder.toSchema());
  return schema;
}

export function printSortedSchema(): string {
  return printSchema(buildSchema()) + '\n';
}
