/** Every route of the seeds' REST API, in the order the OpenAPI document lists them. */
import { breakerRoutes } from './breakers.js';
import { flagRoutes } from './flags.js';
import { moduleRoutes } from './modules.js';
import type { RestRoute } from './route.js';
import { ref } from './schema.js';
import { statusView } from './views.js';

const statusRoute: RestRoute = {
  method: 'GET',
  path: '/api/modularity/status',
  operationId: 'getModularityStatus',
  summary: 'One glance at the control plane: modules, flags and breakers by state; uptime; version (GraphQL: modularityStatus).',
  tag: 'status',
  role: 'VIEWER',
  status: 200,
  response: ref('ModularityStatus'),
  errors: [],
  handle: ({ services }) => statusView(services),
};

export const REST_ROUTES: readonly RestRoute[] = [...moduleRoutes, ...flagRoutes, ...breakerRoutes, statusRoute];
