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
    // One listener closure per subscriber (thousands of them on a busy topic): the feed's
    // state lives in the Feed object, not in closures.
    const subscriber = new Feed<M[K]>(maxQueue);
    subscriber.attached(this.on(topic, (event) => {
      if (filter(event)) subscriber.push(event);
    }));
    return subscriber;
  }
}

/**
 * A bounded push-to-pull adapter: `attach` receives a push function and returns its own
 * detach. Ending the iterator (client unsubscribes, server shuts down) detaches at once.
 */
export function feed<T>(attach: (push: (value: T) => void) => () => void, maxQueue = DEFAULT_SUBSCRIBER_QUEUE): AsyncIterableIterator<T> {
  const subscriber = new Feed<T>(maxQueue);
  subscriber.attached(attach((value) => subscriber.push(value)));
  return subscriber;
}

/** Takes a feed's values one at a time without a promise per value (see `Feed.read`). */
export interface FeedReader<T> {
  onValue(value: T): void;
  /** The feed ended: returned (null) or failed (SLOW_CONSUMER). */
  onEnd(error: Error | null): void;
}

/**
 * One subscriber's bounded queue (see the module comment), as `feed` and `EventBus.subscribe`
 * hand it out: an async iterator, or, for a reader that keeps up without promises, `read`.
 */
export class Feed<T> implements AsyncIterableIterator<T> {
  private readonly queue: T[] = [];
  // Only ever set while the queue is empty: a value arriving then goes straight to the reader.
  private waiting: ((result: IteratorResult<T>) => void) | null = null;
  private reader: FeedReader<T> | null = null;
  private done = false;
  private failure: Error | null = null;
  private detach: (() => void) | null = null;

  constructor(private readonly maxQueue: number) {}

  /** Takes the source's detach; a feed that ended while attaching (overflow in a replay) detaches at once. */
  attached(detach: () => void): void {
    if (this.done) detach();
    else this.detach = detach;
  }

  push(value: T): void {
    if (this.done) return;
    if (this.reader) {
      const reader = this.reader;
      this.reader = null;
      reader.onValue(value);
    } else if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve({ value, done: false });
    } else if (this.queue.length >= this.maxQueue) {
      // The reader is not waiting, so the failure is raised on its next read.
      this.failure = new SlowConsumerError(`Subscriber fell more than ${this.maxQueue} events behind and was disconnected`);
      feedCounters.slowConsumerDisconnects++;
      this.finish();
    } else {
      this.queue.push(value);
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.queue.length > 0) return Promise.resolve({ value: this.queue.shift() as T, done: false });
    if (this.failure) {
      const error = this.failure;
      this.failure = null;
      return Promise.reject(error);
    }
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise<IteratorResult<T>>((resolve) => {
      this.waiting = resolve;
    });
  }

  /**
   * `next()` with a callback: the reader gets the next value at once when one is queued, else
   * when it is pushed, synchronously (inside the publisher's `publish`), and nothing is
   * allocated per value. One read at a time, like one pending `next()`.
   */
  read(reader: FeedReader<T>): void {
    if (this.queue.length > 0) return reader.onValue(this.queue.shift() as T);
    if (this.failure) {
      const error = this.failure;
      this.failure = null;
      return reader.onEnd(error);
    }
    if (this.done) return reader.onEnd(null);
    this.reader = reader;
  }

  return(): Promise<IteratorResult<T>> {
    this.finish();
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(error?: unknown): Promise<IteratorResult<T>> {
    this.finish();
    return Promise.reject(error);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.detach?.();
    this.detach = null;
    this.queue.length = 0;
    const resolve = this.waiting;
    this.waiting = null;
    resolve?.({ value: undefined, done: true });
    const reader = this.reader;
    this.reader = null;
    reader?.onEnd(null);
  }
}
