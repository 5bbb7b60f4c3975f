/** Reading what a module file exports and what its instance offers; shared by both isolation modes. */
import {
  DEFAULT_TEST_TIMEOUT_MS,
  isLifecycleMethod,
  isModuleType,
  MODULE_TYPES,
  type ModuleDefinition,
  type ModuleInstance,
  type ModuleTestDefinition,
} from '../contract.js';
import type { InstanceDescription } from './protocol.js';
import type { ModuleHealth } from './version.js';

export class InvalidDefinitionError extends Error {
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null;
}

/**
 * The definition in an imported module namespace: the default export (a `defineModule` result
 * or any object with `create`), else named `create` / `type` / `tests` exports.
 */
export function readModuleDefinition(namespace: unknown): ModuleDefinition {
  if (!isRecord(namespace)) throw new InvalidDefinitionError('the module file has no exports');
  const fallback = { create: namespace.create, type: namespace.type, tests: namespace.tests };
  const candidate: Record<string, unknown> =
    isRecord(namespace.default) && typeof namespace.default.create === 'function' ? namespace.default : fallback;
  if (typeof candidate.create !== 'function') {
    throw new InvalidDefinitionError(
      'the default export must be a module definition with a create(ctx) function (see defineModule)',
    );
  }
  if (candidate.type !== undefined && candidate.type !== null && !isModuleType(candidate.type)) {
    throw new InvalidDefinitionError(`type must be one of ${MODULE_TYPES.join(', ')}, got ${JSON.stringify(candidate.type)}`);
  }
  const tests = candidate.tests ?? [];
  if (!Array.isArray(tests)) throw new InvalidDefinitionError('tests must be an array');
  const seen = new Set<string>();
  for (const [i, test] of tests.entries()) {
    if (!isRecord(test) || typeof test.name !== 'string' || test.name === '' || typeof test.run !== 'function') {
      throw new InvalidDefinitionError(`tests[${i}] must have a non-empty name and a run(instance) function`);
    }
    if (seen.has(test.name)) throw new InvalidDefinitionError(`two tests are named "${test.name}"`);
    seen.add(test.name);
    if (test.required !== undefined && typeof test.required !== 'boolean') {
      throw new InvalidDefinitionError(`tests[${i}].required must be a boolean`);
    }
    if (test.timeoutMs !== undefined && !(typeof test.timeoutMs === 'number' && test.timeoutMs > 0)) {
      throw new InvalidDefinitionError(`tests[${i}].timeoutMs must be a positive number`);
    }
  }
  return candidate as unknown as ModuleDefinition;
}

/**
 * Functions on the instance and its prototype chain (stopping at Object.prototype), read from
 * property descriptors so getters never run. Lifecycle names, `constructor` and `_private`
 * names are not callable from outside.
 */
export function discoverMethods(instance: ModuleInstance): string[] {
  const names = new Set<string>();
  for (
    let o: object | null = instance;
    o !== null && o !== Object.prototype && o !== Function.prototype;
    o = Object.getPrototypeOf(o) as object | null
  ) {
    for (const key of Object.getOwnPropertyNames(o)) {
      if (key === 'constructor' || key.startsWith('_') || isLifecycleMethod(key)) continue;
      const descriptor = Object.getOwnPropertyDescriptor(o, key);
      if (descriptor && typeof descriptor.value === 'function') names.add(key);
    }
  }
  return [...names].sort();
}

export function lifecycleFunction(instance: ModuleInstance, name: string): ((...args: unknown[]) => unknown) | null {
  const fn = (instance as Record<string, unknown>)[name];
  return typeof fn === 'function' ? (fn as (...args: unknown[]) => unknown) : null;
}

export function describeInstance(definition: ModuleDefinition, instance: ModuleInstance): InstanceDescription {
  const tests = (definition.tests ?? []) as ModuleTestDefinition[];
  return {
    type: definition.type ?? null,
    methods: discoverMethods(instance),
    tests: tests.map((t) => ({
      name: t.name,
      required: t.required ?? true,
      timeoutMs: t.timeoutMs ?? DEFAULT_TEST_TIMEOUT_MS,
    })),
    lifecycle: {
      healthCheck: lifecycleFunction(instance, 'healthCheck') !== null,
      exportState: lifecycleFunction(instance, 'exportState') !== null,
      importState: lifecycleFunction(instance, 'importState') !== null,
      dispose: lifecycleFunction(instance, 'dispose') !== null,
    },
  };
}

/**
 * true / undefined / null: healthy; false: unhealthy; an object with a boolean `ok` or
 * `healthy`: that, with `detail` (or the object) as detail; any other value: healthy, as detail.
 */
export function normalizeHealth(value: unknown): ModuleHealth {
  if (value === undefined || value === null || value === true) return { ok: true };
  if (value === false) return { ok: false };
  if (isRecord(value)) {
    if (typeof value.ok === 'boolean') return value.detail === undefined ? { ok: value.ok } : { ok: value.ok, detail: value.detail };
    if (typeof value.healthy === 'boolean') return { ok: value.healthy, detail: value };
  }
  return { ok: true, detail: value };
}
