/**
 * Child-process entry: the framework floor. A bare graphql-yoga server with Yoga's defaults
 * (parse/validate caches on, GraphiQL on, like Helios) and one field, on node's http server,
 * port 0 (or BENCH_PORT). Helios and this server are forked the same way and loaded the same way.
 */
import { createServer } from 'node:http';
import { createSchema, createYoga } from 'graphql-yoga';
import { serveFloorRpc } from './floor-server.js';

const yoga = createYoga({
  // BENCH_YOGA_BODY_LIMIT=off: without Yoga's request body limiter (on by default, 25 MB).
  ...(process.env.BENCH_YOGA_BODY_LIMIT === 'off' ? { maxRequestBodySize: false as const } : {}),
  schema: createSchema({
    typeDefs: 'type Query { hello: String }',
    resolvers: { Query: { hello: () => 'world' } },
  }),
});
const server = createServer(yoga);
// BENCH_PORT set: a plain process (start-up timing polls it); otherwise port 0 and IPC.
server.listen(Number(process.env.BENCH_PORT ?? 0), '127.0.0.1', () => {
  if (process.send) serveFloorRpc(server, '/graphql');
});
