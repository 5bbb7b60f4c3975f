/** The seeds' feature-flag endpoints over the flags service: list, check one, enable, percentage, disable. */
import { UserError } from '../errors.js';
import { ROLLOUT_STRATEGIES } from '../flags/engine.js';
import type { RestRoute } from './route.js';
import { ref } from './schema.js';
import { contextFromQuery, enumValue } from './input.js';
import { evaluationView, flagView } from './views.js';

const BASE = '/api/modularity/feature-flags';
const flagResponse = ref('FeatureFlag');

export const flagRoutes: RestRoute[] = [
  {
    method: 'GET',
    path: BASE,
    operationId: 'listFeatureFlags',
    summary: 'Every feature flag, sorted by name.',
    tag: 'feature-flags',
    role: 'VIEWER',
    status: 200,
    response: { type: 'object', properties: { flags: { type: 'array', items: flagResponse } }, required: ['flags'] },
    errors: [],
    handle: ({ services }) => ({ flags: services.flags.list().map((f) => flagView(f, services)) }),
  },
  {
    method: 'GET',
    path: `${BASE}/{flag_name}`,
    operationId: 'checkFeatureFlag',
    summary: 'Whether the flag is on for a context (the seed\'s is_enabled), with the reason, bucket and the flag\'s configuration.',
    tag: 'feature-flags',
    role: 'VIEWER',
    query: [
      {
        name: 'context',
        schema: { type: 'string', example: '{"session_id":"abc123"}' },
        description: 'A JSON object: session_id, user_id, symbol, system, and any other attribute.',
      },
    ],
    status: 200,
    response: ref('FlagEvaluation'),
    errors: [400, 404],
    handle: ({ params, query, services }) => {
      const name = params.flag_name!;
      const context = contextFromQuery(query.context as string | undefined);
      const flag = services.flags.get(name);
      if (!flag) throw new UserError('FLAG_NOT_FOUND', `Feature flag "${name}" does not exist`, 'flag_name');
      return evaluationView(services.flags.evaluate(name, context), flag, services);
    },
  },
  {
    method: 'POST',
    path: `${BASE}/enable`,
    operationId: 'enableFeatureFlag',
    summary: 'Enables the flag, with a strategy if given (created when it does not exist). "enabled": false disables it instead.',
    tag: 'feature-flags',
    role: 'OPERATOR',
    body: {
      type: 'object',
      properties: {
        name: { type: 'string', example: 'neural_network_v2' },
        enabled: { type: 'boolean', default: true },
        strategy: { type: 'string', enum: ROLLOUT_STRATEGIES.map((s) => s.toLowerCase()), example: 'all_on' },
      },
      required: ['name'],
    },
    status: 200,
    response: flagResponse,
    errors: [400, 404],
    handle: async ({ body, caller, services }) => {
      const name = body.name as string;
      if (body.enabled === false) {
        if (body.strategy !== undefined) throw new UserError('INVALID_ARGUMENT', '"strategy" cannot be given with "enabled": false', 'strategy');
        return flagView(await services.flags.disable(caller.name, name), services);
      }
      const strategy = body.strategy === undefined ? null : enumValue(body.strategy, ROLLOUT_STRATEGIES, 'INVALID_STRATEGY', 'strategy');
      return flagView(await services.flags.enable(caller.name, name, strategy), services);
    },
  },
  {
    method: 'POST',
    path: `${BASE}/percentage`,
    operationId: 'setFlagPercentage',
    summary: 'Puts the flag on the percentage strategy at this percentage and enables it (created when it does not exist).',
    tag: 'feature-flags',
    role: 'OPERATOR',
    body: {
      type: 'object',
      properties: { name: { type: 'string', example: 'neural_network_v2' }, percentage: { type: 'number', example: 25.0, description: '0 to 100.' } },
      required: ['name', 'percentage'],
    },
    status: 200,
    response: flagResponse,
    errors: [400],
    handle: async ({ body, caller, services }) =>
      flagView(await services.flags.setPercentage(caller.name, body.name as string, body.percentage as number), services),
  },
  {
    method: 'POST',
    path: `${BASE}/disable`,
    operationId: 'disableFeatureFlag',
    summary: 'Disables the flag (?name=..., as the seeds send it; a JSON body {"name": ...} works too).',
    tag: 'feature-flags',
    role: 'OPERATOR',
    query: [{ name: 'name', schema: { type: 'string', example: 'neural_network_v2' }, description: 'The flag.' }],
    body: { type: 'object', properties: { name: { type: 'string' } } },
    status: 200,
    response: flagResponse,
    errors: [400, 404],
    handle: async ({ query, body, caller, services }) => {
      const fromQuery = query.name as string | undefined;
      const fromBody = body.name as string | undefined;
      if (fromQuery !== undefined && fromBody !== undefined && fromQuery !== fromBody) {
        throw new UserError('INVALID_ARGUMENT', 'The flag name is given twice (query and body) with different values', 'name');
      }
      const name = fromQuery ?? fromBody;
      if (name === undefined) throw new UserError('INVALID_ARGUMENT', '"name" is required (?name=<flag>)', 'name');
      return flagView(await services.flags.disable(caller.name, name), services);
    },
  },
];
