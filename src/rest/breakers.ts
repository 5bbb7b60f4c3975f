/** The seeds' circuit-breaker endpoints over the breakers service: list, reset one, reset all. */
import type { RestRoute } from './route.js';
import { ref } from './schema.js';
import { breakerView } from './views.js';

const BASE = '/api/modularity/circuit-breakers';
const breakerList = { type: 'object' as const, properties: { breakers: { type: 'array' as const, items: ref('CircuitBreaker') } }, required: ['breakers'] };

export const breakerRoutes: RestRoute[] = [
  {
    method: 'GET',
    path: BASE,
    operationId: 'listCircuitBreakers',
    summary: 'Every circuit breaker with its state, config and counters, sorted by name.',
    tag: 'circuit-breakers',
    role: 'VIEWER',
    status: 200,
    response: breakerList,
    errors: [],
    handle: ({ services }) => ({ breakers: services.breakers.list().map(breakerView) }),
  },
  {
    method: 'POST',
    path: `${BASE}/{breaker_name}/reset`,
    operationId: 'resetCircuitBreaker',
    summary: 'Closes the breaker and clears its streaks (lifetime counters are kept).',
    tag: 'circuit-breakers',
    role: 'OPERATOR',
    status: 200,
    response: ref('CircuitBreaker'),
    errors: [404],
    handle: async ({ params, caller, services }) => breakerView(await services.breakers.reset(caller.name, params.breaker_name!)),
  },
  {
    method: 'POST',
    path: `${BASE}/reset-all`,
    operationId: 'resetAllCircuitBreakers',
    summary: 'Closes every breaker except disabled ones.',
    tag: 'circuit-breakers',
    role: 'OPERATOR',
    status: 200,
    response: breakerList,
    errors: [],
    handle: async ({ caller, services }) => ({ breakers: (await services.breakers.resetAll(caller.name)).map(breakerView) }),
  },
];
