/**
 * Runs host requests against a created instance, on whichever thread the instance lives.
 * Everything the module does goes through here, so both isolation modes behave alike.
 */
import { performance } from 'node:perf_hooks';
import type { InvocationContext, ModuleContext, ModuleDefinition, ModuleInstance, ModuleTestDefinition } from '../contract.js';
import { describeInstance, lifecycleFunction, normalizeHealth } from './definition.js';
import { clipModuleText } from './errors.js';
import type { InstanceDescription, InstanceRequest } from './protocol.js';
import type { ModuleTestResult } from './version.js';

const NO_INVOCATION_CONTEXT: InvocationContext = Object.freeze({ context: null });

export class CreateFailedError extends Error {
}

function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

export class InstanceDriver {
  readonly description: InstanceDescription;
  private readonly methods: ReadonlySet<string>;

  private constructor(
    private readonly definition: ModuleDefinition,
    private readonly instance: ModuleInstance,
    private readonly ctx: ModuleContext,
  ) {
    this.description = describeInstance(definition, instance);
    this.methods = new Set(this.description.methods);
  }

  /** Calls `definition.create(ctx)`; whatever it throws propagates unchanged. */
  static async create(definition: ModuleDefinition, ctx: ModuleContext): Promise<InstanceDriver> {
    const instance: unknown = await definition.create(ctx);
    if ((typeof instance !== 'object' && typeof instance !== 'function') || instance === null) {
      throw new CreateFailedError(`create() must return an object with the module's methods, got ${instance === null ? 'null' : typeof instance}`);
    }
    return new InstanceDriver(definition, instance, ctx);
  }

  hasMethod(method: string): boolean {
    return this.methods.has(method);
  }

  /** The host checks method names before sending; an unknown one here is a bug, reported as a throw. */
  async invoke(method: string, arg: unknown, invocation?: InvocationContext): Promise<unknown> {
    if (!this.methods.has(method)) throw new Error(`unknown method "${method}"`);
    const fn = (this.instance as Record<string, unknown>)[method] as (arg: unknown, invocation: InvocationContext) => unknown;
    return await fn.call(this.instance, arg, invocation ?? NO_INVOCATION_CONTEXT);
  }

  handle(request: InstanceRequest): Promise<unknown> {
    switch (request.t) {
      case 'call':
        return this.invoke(request.method, request.arg, request.context);
      case 'health':
        return this.healthCheck();
      case 'export':
        return this.lifecycle('exportState');
      case 'import':
        return this.lifecycle('importState', request.state, request.fromVersion).then(() => undefined);
      case 'test':
        return this.runTest(request.name);
      case 'dispose':
        return this.lifecycle('dispose').then(() => undefined);
      default: {
        const unknown: never = request;
        return Promise.reject(new Error(`unknown request ${JSON.stringify(unknown)}`));
      }
    }
  }

  private async lifecycle(name: 'exportState' | 'importState' | 'dispose', ...args: unknown[]): Promise<unknown> {
    const fn = lifecycleFunction(this.instance, name);
    return fn ? await fn.apply(this.instance, args) : undefined;
  }

  private async healthCheck(): Promise<unknown> {
    const fn = lifecycleFunction(this.instance, 'healthCheck');
    if (!fn) return { ok: true };
    try {
      return normalizeHealth(await fn.call(this.instance));
    } catch (error) {
      return { ok: false, detail: { error: clipModuleText(error instanceof Error ? String(error.message) : String(error)) } };
    }
  }

  /** Never rejects for a failing test: a failure is a result. */
  async runTest(name: string): Promise<ModuleTestResult> {
    const test = ((this.definition.tests ?? []) as ModuleTestDefinition[]).find((t) => t.name === name);
    if (!test) throw new Error(`unknown test "${name}"`);
    const started = performance.now();
    try {
      const outcome = await test.run(this.instance, this.ctx);
      const durationMs = round3(performance.now() - started);
      return outcome === false ? { status: 'FAILED', durationMs, error: 'the test returned false' } : { status: 'PASSED', durationMs };
    } catch (error) {
      return {
        status: 'FAILED',
        durationMs: round3(performance.now() - started),
        error: clipModuleText(error instanceof Error ? String(error.message) : String(error)),
      };
    }
  }
}
