import { describe, it, expect } from 'vitest';
import { GraphQLError, GraphQLInt, GraphQLObjectType, GraphQLSchema, parse, type ExecutionArgs, type ExecutionResult } from 'graphql';
import { EventBus } from '../../src/events.js';
import { subscribeShared } from '../../src/graphql/shared-subscriptions.js';

interface Tick { n: number }

function setup() {
  const bus = new EventBus<{ tick: Tick }>();
  let executions = 0;
  const TickType = new GraphQLObjectType<Tick>({
    name: 'Tick',
    fields: {
      n: { type: GraphQLInt, resolve: (t) => { executions++; return t.n; } },
      broken: { type: GraphQLInt, resolve: () => { throw new Error('secret detail'); } },
    },
  });
  const schema = new GraphQLSchema({
    query: new GraphQLObjectType({ name: 'Query', fields: { x: { type: GraphQLInt } } }),
    subscription: new GraphQLObjectType({
      name: 'Subscription',
      fields: { tick: { type: TickType, subscribe: () => bus.subscribe('tick'), resolve: (t: Tick) => t } },
    }),
  });
  const args = (query: string): ExecutionArgs => ({ schema, document: parse(query) });
  const masked: string[] = [];
  const options = (sharingKey: string) => ({
    subscribe: () => { throw new Error('standard path not expected'); },
    maskError: (error: GraphQLError) => {
      masked.push(error.message);
      return new GraphQLError('Unexpected error.', { path: error.path ?? null });
    },
    sharingKey,
  });
  return { bus, args, options, masked, executions: () => executions };
}

const open = async (p: Promise<unknown>) => (await p) as AsyncIterableIterator<ExecutionResult>;

async function drain(iterator: AsyncIterableIterator<ExecutionResult>): Promise<number> {
  let n = 0;
  while (!(await iterator.next()).done) n++;
  return n;
}

describe('subscribeShared', () => {
  it('executes an event once for every subscriber with the same operation and key, and apart for another key', async () => {
    const { bus, args, options, executions } = setup();
    const doc = args('subscription { tick { n } }');
    const a = await open(subscribeShared(doc, options('VIEWER')));
    const b = await open(subscribeShared(doc, options('VIEWER')));
    const c = await open(subscribeShared(doc, options('ADMIN')));
    const pending = [a.next(), b.next(), c.next()];
    bus.publish('tick', { n: 7 });
    const [ra, rb, rc] = await Promise.all(pending);
    expect(ra!.value).toEqual({ data: { tick: { n: 7 } } });
    expect(rb!.value).toBe(ra!.value);
    expect(rc!.value).toEqual(ra!.value);
    expect(executions()).toBe(2);
  });

  it('detaches from the source at once when a subscriber leaves, without waiting for an event', async () => {
    const { bus, args, options } = setup();
    const it1 = await open(subscribeShared(args('subscription { tick { n } }'), options('VIEWER')));
    void it1.next();
    expect(bus.listenerCount('tick')).toBe(1);
    await it1.return!();
    expect(bus.listenerCount('tick')).toBe(0);
  });

  it('masks an error thrown by the source stream, as the standard path does', async () => {
    const { bus, args, options, masked } = setup();
    const it1 = await open(subscribeShared(args('subscription { tick { n } }'), options('VIEWER')));
    const first = it1.next();
    // A subscriber more than 1,024 events behind is ended by its feed with a SlowConsumerError.
    for (let i = 0; i < 1_100; i++) bus.publish('tick', { n: i });
    await first;
    await expect(drain(it1)).rejects.toThrow('Unexpected error.');
    expect(masked).toEqual(['Subscriber fell more than 1024 events behind and was disconnected']);
  });

  it('masks resolver errors in shared results', async () => {
    const { bus, args, options, masked } = setup();
    const it1 = await open(subscribeShared(args('subscription { tick { n broken } }'), options('VIEWER')));
    const next = it1.next();
    bus.publish('tick', { n: 1 });
    const result = (await next).value as ExecutionResult;
    expect(result.data).toEqual({ tick: { n: 1, broken: null } });
    expect(result.errors?.map((e) => e.message)).toEqual(['Unexpected error.']);
    expect(masked).toEqual(['secret detail']);
  });
});
