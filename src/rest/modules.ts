/**
 * The seeds' module endpoints over the modules and testing services: status of all and of one,
 * register, load (`force_reload`), unload, swap, test (`module_type`) and test history.
 */
import { UserError } from '../errors.js';
import { MODULE_TYPES, type ModuleType } from '../modules/contract.js';
import { MODULE_ISOLATIONS } from '../modules/runtime/index.js';
import type { RestRequest, RestRoute } from './route.js';
import { ref } from './schema.js';
import { enumValue } from './input.js';
import { moduleView, testRunView } from './views.js';

const BASE = '/api/modularity/modules';
const MAX_HISTORY = 200;

function existingModule(req: RestRequest) {
  const name = req.params.module_name!;
  const record = req.services.modules.get(name);
  if (!record) throw new UserError('MODULE_NOT_FOUND', `Module "${name}" is not registered`, 'module_name');
  return record;
}

const moduleTypeOf = (raw: unknown, field: string): ModuleType => enumValue(raw, MODULE_TYPES, 'INVALID_ARGUMENT', field);

export const moduleRoutes: RestRoute[] = [
  {
    method: 'GET',
    path: `${BASE}/status`,
    operationId: 'listModuleStatuses',
    summary: 'Status of every registered module, sorted by name.',
    tag: 'modules',
    role: 'VIEWER',
    status: 200,
    response: { type: 'object', properties: { modules: { type: 'array', items: ref('Module') } }, required: ['modules'] },
    errors: [],
    handle: ({ services }) => ({ modules: services.modules.list().map((m) => moduleView(m, services)) }),
  },
  {
    method: 'GET',
    path: `${BASE}/{module_name}/status`,
    operationId: 'getModuleStatus',
    summary: 'Status of one module (state, version, last error, dependencies, breaker).',
    tag: 'modules',
    role: 'VIEWER',
    status: 200,
    response: ref('Module'),
    errors: [404],
    handle: (req) => moduleView(existingModule(req), req.services),
  },
  {
    method: 'POST',
    path: `${BASE}/register`,
    operationId: 'registerModule',
    summary: 'Registers a module (state unloaded). Needs ADMIN: registering chooses the code the server runs.',
    tag: 'modules',
    role: 'ADMIN',
    body: {
      type: 'object',
      properties: {
        name: { type: 'string', example: 'paper_trading_v2' },
        module_path: { type: 'string', description: 'Inside the modules folder: `trading/paper_trading_v2.js` or the dotted `trading.paper_trading_v2`.' },
        version: { type: 'string', example: '2.0.0' },
        dependencies: { type: 'array', items: { type: 'string' }, description: 'Modules loaded (and active) before this one.' },
        hot_reloadable: { type: 'boolean', description: 'Default true; false refuses swaps.' },
        isolation: { type: 'string', enum: MODULE_ISOLATIONS.map((i) => i.toLowerCase()), description: 'Default worker.' },
        module_type: { type: 'string', enum: MODULE_TYPES.map((t) => t.toLowerCase()) },
        config: { type: 'object', description: 'Handed to the module as ctx.config.' },
      },
      required: ['name', 'module_path', 'version'],
    },
    status: 201,
    response: ref('Module'),
    errors: [400, 409],
    handle: async ({ body, caller, services }) => {
      const record = await services.modules.register(caller.name, {
        name: body.name as string,
        modulePath: body.module_path as string,
        version: body.version as string,
        dependencies: (body.dependencies as string[] | undefined) ?? null,
        hotReloadable: (body.hot_reloadable as boolean | undefined) ?? null,
        isolation: body.isolation === undefined ? null : enumValue(body.isolation, MODULE_ISOLATIONS, 'INVALID_ARGUMENT', 'isolation'),
        moduleType: body.module_type === undefined ? null : moduleTypeOf(body.module_type, 'module_type'),
        config: body.config,
      });
      return moduleView(record, services);
    },
  },
  {
    method: 'POST',
    path: `${BASE}/{module_name}/load`,
    operationId: 'loadModule',
    summary: 'Loads the module (dependencies first) and makes it serve. force_reload re-reads its file as a swap to the same version.',
    tag: 'modules',
    role: 'OPERATOR',
    query: [
      { name: 'force_reload', schema: { type: 'boolean', default: false }, description: 'Load the file again even when the module is active.' },
      { name: 'activate', schema: { type: 'boolean', default: true }, description: 'false loads it without serving (state loaded).' },
    ],
    status: 200,
    response: ref('Module'),
    errors: [400, 404, 409],
    handle: async (req) => {
      const record = existingModule(req);
      await req.services.modules.load(req.caller.name, record.name, {
        forceReload: (req.query.force_reload as boolean | undefined) ?? false,
        activate: (req.query.activate as boolean | undefined) ?? true,
      });
      return moduleView(req.services.modules.get(record.name)!, req.services);
    },
  },
  {
    method: 'POST',
    path: `${BASE}/{module_name}/unload`,
    operationId: 'unloadModule',
    summary: 'Unloads the module; refused (409 DEPENDENTS_LOADED) while loaded modules depend on it, unless cascade=true.',
    tag: 'modules',
    role: 'OPERATOR',
    query: [{ name: 'cascade', schema: { type: 'boolean', default: false }, description: 'Also unload loaded dependents (they go first).' }],
    status: 200,
    response: {
      type: 'object',
      properties: { module: ref('Module'), unloaded: { type: 'array', items: { type: 'string' }, description: 'Every module unloaded, dependents first.' } },
      required: ['module', 'unloaded'],
    },
    errors: [404, 409],
    handle: async (req) => {
      const record = existingModule(req);
      const { unloaded } = await req.services.modules.unload(req.caller.name, record.name, (req.query.cascade as boolean | undefined) ?? false);
      return { module: moduleView(req.services.modules.get(record.name)!, req.services), unloaded };
    },
  },
  {
    method: 'POST',
    path: `${BASE}/swap`,
    operationId: 'swapModule',
    summary: 'Hot-swaps an active module to a new file; any failure leaves the old version serving.',
    tag: 'modules',
    role: 'OPERATOR',
    body: {
      type: 'object',
      properties: {
        name: { type: 'string', example: 'paper_trading_v2' },
        new_version_path: { type: 'string', example: 'trading.paper_trading_v2' },
        new_version: { type: 'string', description: 'Defaults to the file name.' },
        test_with: { type: 'string', enum: MODULE_TYPES.map((t) => t.toLowerCase()), description: 'Run this suite on a staged instance first; switch only if it passes.' },
      },
      required: ['name', 'new_version_path'],
    },
    status: 200,
    response: {
      type: 'object',
      properties: { module: ref('Module'), test_run_id: { type: ['string', 'null'], description: 'The run that gated the swap (with test_with).' } },
      required: ['module', 'test_run_id'],
    },
    errors: [400, 404, 409],
    handle: async ({ body, caller, services }) => {
      const { record, testRunId } = await services.modules.swap(caller.name, body.name as string, {
        newVersionPath: body.new_version_path as string,
        newVersion: (body.new_version as string | undefined) ?? null,
        testWith: body.test_with === undefined ? null : moduleTypeOf(body.test_with, 'test_with'),
      });
      return { module: moduleView(record, services), test_run_id: testRunId };
    },
  },
  {
    method: 'POST',
    path: `${BASE}/{module_name}/test`,
    operationId: 'testModule',
    summary: 'Starts a test run of the module on a staged instance and answers at once (status running); see test-history for the outcome.',
    tag: 'modules',
    role: 'OPERATOR',
    query: [
      {
        name: 'module_type',
        schema: { type: 'string', enum: MODULE_TYPES.map((t) => t.toLowerCase()) },
        description: 'The built-in suite to run; defaults to the module\'s registered type, else generic.',
      },
    ],
    status: 201,
    response: ref('TestRun'),
    errors: [400, 404],
    handle: async (req) => {
      const record = existingModule(req);
      const type = req.query.module_type === undefined ? (record.moduleType ?? 'GENERIC') : moduleTypeOf(req.query.module_type, 'module_type');
      return testRunView(await req.services.testing.testModule(req.caller.name, record.name, type));
    },
  },
  {
    method: 'GET',
    path: `${BASE}/{module_name}/test-history`,
    operationId: 'getModuleTestHistory',
    summary: 'The module\'s test runs, newest first.',
    tag: 'modules',
    role: 'VIEWER',
    query: [{ name: 'limit', schema: { type: 'integer', minimum: 1, maximum: MAX_HISTORY, default: 20 }, description: 'How many runs.' }],
    status: 200,
    response: {
      type: 'object',
      properties: { module_name: { type: 'string' }, test_runs: { type: 'array', items: ref('TestRun') } },
      required: ['module_name', 'test_runs'],
    },
    errors: [400, 404],
    handle: async (req) => {
      const record = existingModule(req);
      const { runs } = await req.services.testing.page(record.name, (req.query.limit as number | undefined) ?? 20);
      return { module_name: record.name, test_runs: runs.map(testRunView) };
    },
  },
];
