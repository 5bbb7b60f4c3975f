import { describe, it, expect } from 'vitest';
import { GraphQLError, GraphQLInt, GraphQLObjectType, GraphQLSchema, parse, type ExecutionArgs, type ExecutionResult } from 'graphql';
import { EventBus } from '../../src/events.js';
import { subscribeShared, type SubscriptionDelivery } from '../../src/graphql/shared-subscriptions.js';

interface Tick { n: number }

/**
 * A subscriber's delivery as the graphql-ws transport has one per socket and id: it records the
 * payloads written, and its writes complete at once unless `hold` keeps them pending (a socket
 * that does not drain).
 */
class RecordingDelivery implements SubscriptionDelivery {
  readonly payloads: string[] = [];
  readonly pending: Array<(error?: Error | null) => void> = [];
  hold = false;

  constructor(private readonly counts: { payloadOf: number }) {}

  payloadOf(result: ExecutionResult): string {
    this.counts.payloadOf++;
    return JSON.stringify(result);
  }

  write(payload: string, written: (error?: Error | null) => void): void {
    this.payloads.push(payload);
    if (this.hold) this.pending.push(written);
    else written();
  }

  release(): void {
    this.hold = false;
    for (const written of this.pending.splice(0)) written();
  }
}

/** Another kind of delivery: its payloads are made by another function, so they are its own. */
class TaggedDelivery extends RecordingDelivery {
  override payloadOf(result: ExecutionResult): string {
    return `tagged:${super.payloadOf(result)}`;
  }
}

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
  const counts = { payloadOf: 0 };
  const subscriber = async (operation: ExecutionArgs, sharingKey: string, delivery = new RecordingDelivery(counts)) => {
    const stream = (await subscribeShared(operation, {
      subscribe: () => { throw new Error('standard path not expected'); },
      maskError: (error: GraphQLError) => {
        masked.push(error.message);
        return new GraphQLError('Unexpected error.', { path: error.path ?? null });
      },
      sharingKey,
      delivery,
    })) as AsyncIterableIterator<ExecutionResult>;
    // The protocol server's one pending next(): it starts the delivery and settles at the end.
    const over = stream.next();
    over.catch(() => {});
    return { delivery, stream, over };
  };
  return { bus, args, subscriber, masked, counts, executions: () => executions, tagged: () => new TaggedDelivery(counts) };
}

describe('subscribeShared', () => {
  it('executes and serialises an event once for every subscriber with the same operation and key, and apart for another key', async () => {
    const { bus, args, subscriber, counts, executions } = setup();
    const doc = args('subscription { tick { n } }');
    const a = await subscriber(doc, 'VIEWER');
    const b = await subscriber(doc, 'VIEWER');
    const c = await subscriber(doc, 'ADMIN');
    bus.publish('tick', { n: 7 });
    expect(a.delivery.payloads).toEqual(['{"data":{"tick":{"n":7}}}']);
    expect(b.delivery.payloads).toEqual(a.delivery.payloads);
    expect(c.delivery.payloads).toEqual(a.delivery.payloads);
    expect(executions()).toBe(2);
    expect(counts.payloadOf).toBe(2);
    bus.publish('tick', { n: 8 });
    expect(b.delivery.payloads).toEqual(['{"data":{"tick":{"n":7}}}', '{"data":{"tick":{"n":8}}}']);
    expect(executions()).toBe(4);
  });

  it('shares a payload only between deliveries of the same kind, and the execution between all of them', async () => {
    const { bus, args, subscriber, counts, executions, tagged } = setup();
    const doc = args('subscription { tick { n } }');
    const plain = [await subscriber(doc, 'VIEWER'), await subscriber(doc, 'VIEWER')];
    const other = [await subscriber(doc, 'VIEWER', tagged()), await subscriber(doc, 'VIEWER', tagged())];
    bus.publish('tick', { n: 3 });
    for (const s of plain) expect(s.delivery.payloads).toEqual(['{"data":{"tick":{"n":3}}}']);
    for (const s of other) expect(s.delivery.payloads).toEqual(['tagged:{"data":{"tick":{"n":3}}}']);
    // One execution; the first kind's payload is shared, the other kind makes its own per subscriber.
    expect(executions()).toBe(1);
    expect(counts.payloadOf).toBe(3);
  });

  it('detaches from the source at once when a subscriber leaves, and settles its pending next() as done', async () => {
    const { bus, args, subscriber } = setup();
    const s = await subscriber(args('subscription { tick { n } }'), 'VIEWER');
    expect(bus.listenerCount('tick')).toBe(1);
    await s.stream.return!();
    expect(bus.listenerCount('tick')).toBe(0);
    await expect(s.over).resolves.toEqual({ value: undefined, done: true });
    bus.publish('tick', { n: 1 });
    expect(s.delivery.payloads).toEqual([]);
  });

  it('takes the next event only once the previous write completed, and masks the SLOW_CONSUMER end after the last frame', async () => {
    const { bus, args, subscriber, masked } = setup();
    const s = await subscriber(args('subscription { tick { n } }'), 'VIEWER');
    s.delivery.hold = true;
    // A subscriber more than 1,024 events behind is ended by its feed with a SlowConsumerError.
    for (let i = 0; i < 1_100; i++) bus.publish('tick', { n: i });
    expect(s.delivery.payloads).toEqual(['{"data":{"tick":{"n":0}}}']);
    let settled = false;
    void s.over.then(() => (settled = true), () => (settled = true));
    await Promise.resolve();
    // The end waits for the frame still being written.
    expect(settled).toBe(false);
    s.delivery.release();
    await expect(s.over).rejects.toThrow('Unexpected error.');
    expect(masked).toEqual(['Subscriber fell more than 1024 events behind and was disconnected']);
    expect(bus.listenerCount('tick')).toBe(0);
  });

  it('ends the subscription with the write error when a frame cannot be written', async () => {
    const { bus, args, subscriber } = setup();
    const s = await subscriber(args('subscription { tick { n } }'), 'VIEWER');
    s.delivery.hold = true;
    bus.publish('tick', { n: 1 });
    s.delivery.pending.shift()!(new Error('socket gone'));
    await expect(s.over).rejects.toThrow('socket gone');
    expect(bus.listenerCount('tick')).toBe(0);
  });

  it('masks resolver errors in shared payloads', async () => {
    const { bus, args, subscriber, masked } = setup();
    const s = await subscriber(args('subscription { tick { n broken } }'), 'VIEWER');
    bus.publish('tick', { n: 1 });
    const result = JSON.parse(s.delivery.payloads[0]!) as ExecutionResult;
    expect(result.data).toEqual({ tick: { n: 1, broken: null } });
    expect(result.errors?.map((e) => e.message)).toEqual(['Unexpected error.']);
    expect(masked).toEqual(['secret detail']);
  });
});
