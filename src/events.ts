/**
 * Typed pub/sub shared by all domains. Services publish from their unit of work's after-commit
 * callbacks (src/db/unit-of-work.ts), so a subscriber never sees a change that was rolled back.
 * Every live feed goes through here; payload types come from leaf files that import no service,
 * so this file never takes part in an import cycle (`npm run lint:cycles`).
 *
 * Delivery policy: each subscriber owns a bounded queue. Event feeds (state changes) keep every
 * event up to `maxQueue`; a subscriber that falls further behind is ended with a
 * SLOW_CONSUMER error (it can resubscribe and re-read state) instead of growing memory without
 * bound or slowing the publisher. No other subscriber is affected.
 */
import { GraphQLError } from 'graphql';
import type { TokenRevokedEvent } from './auth/events.js';
import type { BreakerTransition } from './breakers/states.js';
import type { FlagChangeEvent } from './flags/events.js';
import type { ModuleStateEvent } from './modules/states.js';
import type { RolloutProgressEvent } from './rollouts/events.js';
import type { TestProgressEvent } from './testing/events.js';

export interface EventMap {
  featureFlagChanged: FlagChangeEvent;
  breakerStateChanged: BreakerTransition;
  moduleStateChanged: ModuleStateEvent;
  testProgress: TestProgressEvent;
  tokenRevoked: TokenRevokedEvent;
  rolloutProgress: RolloutProgressEvent;
}

export type Topic = keyof EventMap;
type Listener<T> = (event: T) => void;

/** A GraphQLError, so clients see its message and code instead of a masked internal error. */
export class SlowConsumerError extends GraphQLError {
  override name = 'SlowConsumerError';
  readonly code = 'SLOW_CONSUMER';
  constructor(message: string) {
    super(message, { extensions: { code: 'SLOW_CONSUMER' } });
  }
}

export const DEFAULT_SUBSCRIBER_QUEUE = 1024;

/** Process-wide feed counters, read by Prometheus scrapes (src/metrics/). */
export const feedCounters = { slowConsumerDisconnects: 0 };

export class EventBus<M extends object = EventMap> {
  private listeners = new Map<keyof M, Set<Listener<never>>>();

  publish<K extends keyof M>(topic: K, event: M[K]): void {
    const set = this.listeners.get(topic);
    if (!set) return;
    for (const listener of [...set]) (listener as Listener<M[K]>)(event);
  }

  on<K extends keyof M>(topic: K, listener: Listener<M[K]>): () => void {
    let set = this.listeners.get(topic);
    if (!set) {
      set = new Set();
      this.listeners.set(topic, set);
    }
    set.add(listener as Listener<never>);
    return () => {
      set.delete(listener as Listener<never>);
    };
  }

  listenerCount<K extends keyof M>(topic: K): number {
    return this.listeners.get(topic)?.size ?? 0;
  }

  /**
   * An async iterator over a topic, for GraphQL subscriptions. `filter` drops events the
   * subscriber did not ask for before they are queued.
   */
  subscribe<K extends keyof M>(
    topic: K,
    filter: (event: M[K]) => boolean = () => true,
    maxQueue = DEFAULT_SUBSCRIBER_QUEUE,
  ): AsyncIterableIterator<M[K]> {
    return feed<M[K]>((push) => this.on(topic, (event) => {
      if (filter(event)) push(event);
    }), maxQueue);
  }
}

/**
 * A bounded push-to-pull adapter: `attach` receives a push function and returns its own
 * detach. Ending the iterator (client unsubscribes, server shuts down) detaches at once.
 */
export function feed<T>(attach: (push: (value: T) => void) => () => void, maxQueue = DEFAULT_SUBSCRIBER_QUEUE): AsyncIterableIterator<T> {
  const queue: T[] = [];
  // Only ever set while the queue is empty: a value arriving then goes straight to the reader.
  let waiting: ((result: IteratorResult<T>) => void) | null = null;
  let done = false;
  let failure: Error | null = null;

  const finish = () => {
    if (done) return;
    done = true;
    detach();
    queue.length = 0;
    const resolve = waiting;
    waiting = null;
    resolve?.({ value: undefined, done: true });
  };

  const push = (value: T) => {
    if (done) return;
    if (waiting) {
      const resolve = waiting;
      waiting = null;
      resolve({ value, done: false });
    } else if (queue.length >= maxQueue) {
      // The reader is not waiting, so the failure is raised on its next read.
      failure = new SlowConsumerError(`Subscriber fell more than ${maxQueue} events behind and was disconnected`);
      feedCounters.slowConsumerDisconnects++;
      finish();
    } else {
      queue.push(value);
    }
  };

  const detach = attach(push);

  const iterator: AsyncIterableIterator<T> = {
    next() {
      if (queue.length > 0) return Promise.resolve({ value: queue.shift() as T, done: false });
      if (failure) {
        const error = failure;
        failure = null;
        return Promise.reject(error);
      }
      if (done) return Promise.resolve({ value: undefined, done: true });
      return new Promise<IteratorResult<T>>((resolve) => {
        waiting = resolve;
      });
    },
    return() {
      finish();
      return Promise.resolve({ value: undefined, done: true });
    },
    throw(error?: unknown) {
      finish();
      return Promise.reject(error);
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
