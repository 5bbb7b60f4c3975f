/**
 * The rollout GraphQL types, as schema.ts registers them (through `ctx.services.rollouts` and
 * the bus), executed against a real RolloutService over the fakes.
 */
import { graphql, parse, subscribe, type ExecutionResult, type GraphQLSchema } from 'graphql';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditRepository } from '../../src/audit/repository.js';
import type { Caller } from '../../src/auth/authorization.js';
import { ManualClock } from '../../src/clock.js';
import { EventBus } from '../../src/events.js';
import { builder } from '../../src/graphql/builder.js';
import type { GraphQLContext } from '../../src/graphql/context.js';
import '../../src/graphql/schema.js';
import { createLogger } from '../../src/logger.js';
import type { RolloutProgressEvent } from '../../src/rollouts/events.js';
import { RolloutService } from '../../src/rollouts/service.js';
import { openTestDatabase, type TestDatabase } from '../support/database.js';
import { FakeFlags, FakeModules, flush } from '../support/rollouts.js';

const T0 = Date.UTC(2026, 0, 1);

/** The one service the accessors hand out; each test sets its own. */
let current: { service: RolloutService; bus: EventBus<{ rolloutProgress: RolloutProgressEvent }>; database: TestDatabase } | null = null;
let schema: GraphQLSchema;

beforeAll(() => {
  schema = builder.toSchema();
});

afterEach(async () => {
  await current?.service.stop();
  await current?.database.close();
  current = null;
});

async function setup() {
  const clock = new ManualClock(T0);
  const database = await openTestDatabase();
  const log: string[] = [];
  const modules = new FakeModules(log);
  const flags = new FakeFlags(log);
  const bus = new EventBus<{ rolloutProgress: RolloutProgressEvent }>();
  const service = new RolloutService({
    uow: database.uow, audit: new AuditRepository(database.uow), modules, flags, clock, logger: createLogger('silent'),
    publish: (e) => bus.publish('rolloutProgress', e),
  });
  await service.start();
  current = { service, bus, database };
  return { clock, modules, flags, service };
}

function context(role: Caller['role'] = 'OPERATOR'): GraphQLContext {
  // Rollout resolvers reach only the rollout service and the bus.
  const services = { rollouts: current!.service, bus: current!.bus } as unknown as GraphQLContext['services'];
  return { actor: 'alice', caller: { name: 'alice', role, anonymous: false }, services };
}

async function run(source: string, variables: Record<string, unknown> = {}, role: Caller['role'] = 'OPERATOR'): Promise<ExecutionResult> {
  const result = await graphql({ schema, source, variableValues: variables, contextValue: context(role) });
  expect(result.errors).toBeUndefined();
  return result;
}

const START = `mutation Start($module: String!, $path: String!, $steps: [Float!], $interval: Int, $gates: RolloutGatesInput) {
  startRollout(module: $module, newVersionPath: $path, newVersion: "2.0.0", steps: $steps, stepIntervalSeconds: $interval, gates: $gates) {
    rollout { id module fromVersion toVersion flag status percentage stepIndex steps stepIntervalSeconds nextStepAt gates { maxFailureRate minCalls maxP99LatencyMs maxLatencyRatio } }
    errors { code message field }
  }
}`;

describe('rollout GraphQL types', () => {
  it('prints the issue\'s types and fields', () => {
    const names = Object.keys(schema.getTypeMap());
    for (const name of ['Rollout', 'RolloutStatus', 'RolloutEvent', 'RolloutGates', 'RolloutGatesInput', 'RolloutVersionStats', 'StartRolloutPayload', 'RolloutConnection']) {
      expect(names).toContain(name);
    }
    expect(Object.keys(schema.getMutationType()!.getFields())).toEqual(expect.arrayContaining(['startRollout', 'advanceRollout', 'pauseRollout', 'resumeRollout', 'promoteRollout', 'abortRollout']));
    expect(Object.keys(schema.getSubscriptionType()!.getFields())).toContain('rolloutProgress');
  });

  it('startRollout: defaults, a typed error for a bad plan (nothing written), manual steps with an explicit null interval', async () => {
    const t = await setup();
    const bad = await run(START, { module: 'pricing', path: 'pricing_v2.js', steps: [10, 5] });
    expect(bad.data).toEqual({
      startRollout: {
        rollout: null,
        errors: expect.arrayContaining([expect.objectContaining({ code: 'INVALID_ROLLOUT_CONFIG', field: 'steps' })]),
      },
    });
    expect(await t.service.current('pricing')).toBeNull();

    const ok = await run(START, { module: 'pricing', path: 'pricing_v2.js' });
    expect(ok.data).toMatchObject({
      startRollout: {
        errors: [],
        rollout: {
          module: 'pricing', fromVersion: '1.0.0', toVersion: '2.0.0', flag: 'pricing', status: 'RUNNING', percentage: 1, stepIndex: 0,
          steps: [1, 2, 5, 10, 25, 50, 100], stepIntervalSeconds: 3600, nextStepAt: new Date(T0 + 3_600_000).toISOString(),
          gates: { maxFailureRate: 0.05, minCalls: 20, maxP99LatencyMs: null, maxLatencyRatio: null },
        },
      },
    });

    const manual = await graphql({
      schema, contextValue: context(),
      source: 'mutation { startRollout(module: "risk", newVersionPath: "risk_v4.js", stepIntervalSeconds: null) { rollout { stepIntervalSeconds nextStepAt } errors { code } } }',
    });
    expect(manual.data).toEqual({ startRollout: { rollout: { stepIntervalSeconds: null, nextStepAt: null }, errors: [] } });

    await t.service.abort('alice', 'risk');
    await flush();
    const nullVariable = await run(START, { module: 'risk', path: 'risk_v5.js', interval: null });
    expect(nullVariable.data).toMatchObject({ startRollout: { rollout: { stepIntervalSeconds: null, nextStepAt: null }, errors: [] } });

    const again = await run(START, { module: 'pricing', path: 'pricing_v3.js' });
    expect(again.data).toMatchObject({ startRollout: { rollout: null, errors: [{ code: 'ROLLOUT_IN_PROGRESS' }] } });
  });

  it('a VIEWER cannot steer a rollout', async () => {
    await setup();
    const result = await run(START, { module: 'pricing', path: 'pricing_v2.js' }, 'VIEWER');
    expect(result.data).toMatchObject({ startRollout: { rollout: null, errors: [{ code: 'FORBIDDEN' }] } });
  });

  it('rollout(module) shows the step\'s figures and the history; rollouts pages newest first', async () => {
    const t = await setup();
    await run(START, { module: 'pricing', path: 'pricing_v2.js' });
    t.modules.traffic('pricing', { calls: 10, failures: 1, ms: 8 }, { calls: 30, ms: 4 });
    const read = await run(`{ rollout(module: "pricing") { status canary { calls failures failureRate } stable { calls } events { type percentage rollout { status } } } }`);
    expect(read.data).toEqual({
      rollout: {
        status: 'RUNNING', canary: { calls: 10, failures: 1, failureRate: 0.1 }, stable: { calls: 30 },
        events: [{ type: 'STARTED', percentage: 0, rollout: { status: 'RUNNING' } }, { type: 'STEP', percentage: 1, rollout: { status: 'RUNNING' } }],
      },
    });
    await run('mutation { pauseRollout(module: "pricing") { rollout { status remainingSeconds } errors { code } } }');
    const aborted = await run('mutation { abortRollout(module: "pricing", reason: "bad build") { rollout { status abortReason abort { cause } } errors { code } } }');
    expect(aborted.data).toEqual({ abortRollout: { rollout: { status: 'ABORTED', abortReason: 'aborted by alice: bad build', abort: { cause: 'MANUAL' } }, errors: [] } });
    await flush();
    await run(START, { module: 'pricing', path: 'pricing_v3.js' });
    const page = await run('{ rollouts(module: "pricing", first: 1) { nodes { status } pageInfo { hasNextPage endCursor } } }');
    const connection = (page.data as { rollouts: { nodes: { status: string }[]; pageInfo: { hasNextPage: boolean; endCursor: string } } }).rollouts;
    expect(connection.nodes).toEqual([{ status: 'RUNNING' }]);
    expect(connection.pageInfo.hasNextPage).toBe(true);
    const next = await run('query($after: String) { rollouts(module: "pricing", first: 5, after: $after) { nodes { status } pageInfo { hasNextPage } } }', { after: connection.pageInfo.endCursor });
    expect(next.data).toEqual({ rollouts: { nodes: [{ status: 'ABORTED' }], pageInfo: { hasNextPage: false } } });
    const missing = await run('mutation { advanceRollout(module: "risk") { rollout { id } errors { code } } }');
    expect(missing.data).toEqual({ advanceRollout: { rollout: null, errors: [{ code: 'ROLLOUT_NOT_FOUND' }] } });
  });

  it('rolloutProgress: a late subscriber first gets the events so far, then live ones, for its module only', async () => {
    const t = await setup();
    await run(START, { module: 'pricing', path: 'pricing_v2.js' });
    await run(START, { module: 'risk', path: 'risk_v4.js' });
    const stream = await subscribe({
      schema, contextValue: context('VIEWER'),
      document: parse('subscription { rolloutProgress(module: "pricing") { type percentage detail rollout { module status } } }'),
    });
    const iterator = stream as AsyncIterableIterator<ExecutionResult>;
    const next = async () => (await iterator.next()).value as ExecutionResult;
    expect((await next()).data).toMatchObject({ rolloutProgress: { type: 'STARTED', rollout: { module: 'pricing' } } });
    expect((await next()).data).toMatchObject({ rolloutProgress: { type: 'STEP', percentage: 1 } });
    await t.service.advance('bob', 'risk');
    await t.service.advance('bob', 'pricing');
    expect((await next()).data).toMatchObject({ rolloutProgress: { type: 'STEP', percentage: 2, rollout: { module: 'pricing', status: 'RUNNING' } } });
    await iterator.return?.();
  });
});
