/**
 * Subscription fan-out without re-executing: when many sockets hold the same subscription (same
 * document, operation, variables and caller role), each published event is executed once and
 * the one result goes to every one of them. graphql-ws would otherwise run the whole execution
 * (resolvers, scalar serialisation, error masking) once per subscriber per event, which at
 * thousands of subscribers is most of the time between a transition and the last socket
 * hearing of it.
 *
 * Sharing is sound because what a subscriber receives depends only on the event and on what the
 * key holds: resolvers of event payloads read the event, the services and at most the caller's
 * role. Each subscriber keeps its own source stream (its own bounded queue, SLOW_CONSUMER, replay
 * of test runs); only the execution of an event object is shared, through a WeakMap that lets
 * results go with their event.
 *
 * An event is executed as graphql-js's own `subscribe` does it (`execute` with the event as root
 * value) and its errors are masked like every other result, as is an error the stream itself
 * throws. A stream that fails to start goes through the standard path, which formats and masks
 * its errors.
 *
 * Delivery (`options.delivery`). Serialising the shared result is shared too: the delivery's
 * `payloadOf` turns a result into a `next` message's serialised payload once per key and event
 * (the WebSocket transport: the UTF-8 bytes of its JSON and the message's closing brace), and
 * each subscriber only writes that after its own frame's start (`write`). The iterator
 * handed to the protocol server (src/transport/graphql-transport-ws.ts) then yields nothing:
 * it settles when the subscription ends (done) or fails (the masked error), so the server still
 * sends `complete` or `error` itself, after every `next` this subscriber wrote. Per subscriber
 * that is one promise hop per event, against about ten through graphql-ws's emit (an awaited
 * hook, a result spread, message validation, JSON.stringify and a promise per send).
 * Backpressure is unchanged: the next event is taken from the source only once the previous
 * frame's write has completed, exactly when graphql-ws would have taken it, so a subscriber
 * whose socket does not drain still fills its own feed's queue and is ended with SLOW_CONSUMER.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createSourceEventStream, execute, GraphQLError, type DocumentNode, type ExecutionArgs, type ExecutionResult } from 'graphql';
import { Feed, type FeedReader } from '../events.js';

/** How a directly delivered subscriber's `next` frames are made and written (see the module comment). */
export interface SubscriptionDelivery<P = string> {
  /**
   * A `next` message's payload for `result`, serialised (its JSON, or the bytes a transport
   * writes). Called once per key, event and `payloadOf` function, so it must depend on the
   * result alone: every subscriber of the key whose delivery has the same `payloadOf` (the same
   * class) shares what it returns.
   */
  payloadOf(result: ExecutionResult): P;
  /** Writes this subscriber's frame around `payload`; `written` runs once it has been handed on, or failed. */
  write(payload: P, written: (error?: Error | null) => void): void;
}

export interface SharedSubscriptionOptions<P = string> {
  /** The standard path (envelop's subscribe), for streams that fail to start. */
  subscribe: (args: ExecutionArgs) => unknown;
  /** The server's error masking, applied to each shared result's errors. */
  maskError: (error: GraphQLError) => GraphQLError;
  /** What besides the operation decides a result, e.g. the caller's role. */
  sharingKey: string;
  /** Where this subscriber's `next` frames are made and written (one `payloadOf` per key, shared by all). */
  delivery: SubscriptionDelivery<P>;
}

type Shared<T> = T | Promise<T>;

/** One key's share of one event: its result and, once a subscriber asked, its payload and who made it. */
interface SharedEvent {
  result: Shared<ExecutionResult>;
  payload?: Shared<unknown>;
  payloadOf?: (result: ExecutionResult) => unknown;
}

const documentIds = new WeakMap<DocumentNode, number>();
let nextDocumentId = 0;
const sharedByEvent = new WeakMap<object, Map<string, SharedEvent>>();

function documentId(document: DocumentNode): number {
  let id = documentIds.get(document);
  if (id === undefined) {
    id = ++nextDocumentId;
    documentIds.set(document, id);
  }
  return id;
}

function isAsyncIterator(value: unknown): value is AsyncIterator<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as AsyncIterator<unknown>).next === 'function';
}

function isPromise<T>(value: Shared<T>): value is Promise<T> {
  return typeof (value as Promise<T> | null)?.then === 'function';
}

function masked(result: ExecutionResult, maskError: (error: GraphQLError) => GraphQLError): ExecutionResult {
  return result.errors?.length ? { ...result, errors: result.errors.map(maskError) } : result;
}

/**
 * Runs a function in no asynchronous context: an event read from a feed is delivered inside the
 * publisher's `publish` (Feed.read), and its execution must not run inside the publisher's unit
 * of work (src/db/unit-of-work.ts), as it did not when it ran in a promise job of the subscriber's.
 */
const outsideAnyContext = AsyncLocalStorage.snapshot();

/** As graphql-js's subscribe executes an event; synchronous when every resolver is (no promise to wait for). */
function executeEvent(args: ExecutionArgs, event: unknown, maskError: (error: GraphQLError) => GraphQLError): Shared<ExecutionResult> {
  const result = outsideAnyContext(() => execute({ ...args, rootValue: event }));
  return isPromise(result) ? result.then((r) => masked(r, maskError)) : masked(result, maskError);
}

/** A stream error (SLOW_CONSUMER from a feed), masked as on the standard path. */
function streamError(error: unknown, maskError: (error: GraphQLError) => GraphQLError): GraphQLError {
  const original = error instanceof Error ? error : new Error(String(error));
  return maskError(error instanceof GraphQLError ? error : new GraphQLError(original.message, { originalError: original }));
}

/** What every subscriber of one `subscribeShared` call needs to share the execution of an event. */
class SharedOperation<P> {
  private readonly args: ExecutionArgs;

  constructor(
    args: ExecutionArgs,
    private readonly key: string,
    readonly options: SharedSubscriptionOptions<P>,
  ) {
    // Without the root value (each event is one), which holds the operation's envelop functions.
    const { rootValue: _rootValue, ...executable } = args;
    this.args = executable;
  }

  private shareOf(event: unknown): SharedEvent {
    if (typeof event !== 'object' || event === null) return { result: executeEvent(this.args, event, this.options.maskError) };
    let shares = sharedByEvent.get(event);
    if (!shares) {
      shares = new Map();
      sharedByEvent.set(event, shares);
    }
    let share = shares.get(this.key);
    if (!share) {
      share = { result: executeEvent(this.args, event, this.options.maskError) };
      shares.set(this.key, share);
    }
    return share;
  }

  /**
   * The event's payload for `delivery`: made by the first subscriber of the key to ask, and
   * shared with those whose delivery has the same `payloadOf` (a delivery of another kind makes
   * its own).
   */
  payload(event: unknown, delivery: SubscriptionDelivery<P>): Shared<P> {
    const share = this.shareOf(event);
    if (share.payloadOf === delivery.payloadOf) return share.payload as Shared<P>;
    const { result } = share;
    const payload = isPromise(result) ? result.then((r) => delivery.payloadOf(r)) : delivery.payloadOf(result);
    if (share.payloadOf === undefined) {
      share.payload = payload;
      share.payloadOf = delivery.payloadOf;
    }
    return payload;
  }
}

/** graphql-ws's `subscribe`: the event stream of `args`, each event executed once per key and shared. */
export async function subscribeShared<P>(args: ExecutionArgs, options: SharedSubscriptionOptions<P>): Promise<unknown> {
  const source = await createSourceEventStream(args);
  if (!isAsyncIterator(source)) return options.subscribe(args);
  const key = `${documentId(args.document)}\u0000${args.operationName ?? ''}\u0000${JSON.stringify(args.variableValues ?? null)}\u0000${options.sharingKey}`;
  const operation = new SharedOperation(args, key, options);
  return new DeliveredStream(source, operation, options.delivery);
}

/**
 * Writes each event's shared payload through `delivery` and yields nothing: its one pending
 * `next()` settles when the subscription is over (see the module comment). The first `next()`
 * starts it, so nothing is written before graphql-ws iterates (it may return it unread when the
 * client completed the id meanwhile).
 */
class DeliveredStream<P> implements AsyncIterableIterator<ExecutionResult>, FeedReader<unknown> {
  private started = false;
  private ended: (() => void) | null = null;
  /** A frame handed to `write` whose `written` has not run yet. */
  private writing = false;
  /** Returned by graphql-ws (client `complete`, socket closed, shutdown) or ended by the source. */
  private over = false;
  private failure: { error: unknown } | null = null;
  private settle: { resolve: (step: IteratorResult<ExecutionResult>) => void; reject: (error: unknown) => void } | null = null;
  private settled: Promise<IteratorResult<ExecutionResult>> | null = null;
  private readonly written = (error?: Error | null) => this.onWritten(error);

  constructor(
    private readonly source: AsyncIterator<unknown>,
    private readonly operation: SharedOperation<P>,
    private readonly delivery: SubscriptionDelivery<P>,
  ) {}

  next(): Promise<IteratorResult<ExecutionResult>> {
    this.settled ??= new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    if (!this.started) {
      this.started = true;
      this.pull();
    }
    this.settleIfIdle();
    return this.settled;
  }

  async return(): Promise<IteratorResult<ExecutionResult>> {
    this.over = true;
    this.endOnce();
    this.settleIfIdle();
    await this.source.return?.();
    return { value: undefined, done: true };
  }

  async throw(error?: unknown): Promise<IteratorResult<ExecutionResult>> {
    await this.return();
    throw error;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ExecutionResult> {
    return this;
  }

  /** Runs `callback` once when the subscription is over (for counting it), before graphql-ws hears of it. */
  whenEnded(callback: () => void): void {
    if (this.over) callback();
    else this.ended = callback;
  }

  private pull(): void {
    if (this.over) return;
    // A bus feed hands its next event over without a promise (and its hooks) per subscriber and event.
    if (this.source instanceof Feed) return this.source.read(this);
    this.source.next().then(
      (step) => this.onStep(step.done === true, step.value),
      (error: unknown) => this.end(streamError(error, this.operation.options.maskError)),
    );
  }

  onValue(value: unknown): void {
    this.onStep(false, value);
  }

  onEnd(error: unknown): void {
    if (error === null) this.onStep(true, undefined);
    else this.end(streamError(error, this.operation.options.maskError));
  }

  private onStep(done: boolean, value: unknown): void {
    if (this.over) return;
    if (done) return this.end(null);
    let payload: Shared<P>;
    try {
      payload = this.operation.payload(value, this.delivery);
    } catch (error) {
      return this.end(error);
    }
    if (isPromise(payload)) payload.then((p) => this.send(p), (error: unknown) => this.end(error));
    else this.send(payload);
  }

  private send(payload: P): void {
    if (this.over) return;
    this.writing = true;
    try {
      this.delivery.write(payload, this.written);
    } catch (error) {
      // Called inside the publisher's `publish` (Feed.read): nothing may escape to it.
      this.writing = false;
      this.end(error);
    }
  }

  private onWritten(error?: Error | null): void {
    this.writing = false;
    if (error) {
      void this.source.return?.();
      this.end(error);
    } else if (this.over) {
      this.settleIfIdle();
    } else {
      this.pull();
    }
  }

  /** The subscription is over: the source ended (null) or failed, or a write failed. */
  private end(error: unknown): void {
    if (this.over) return;
    this.over = true;
    if (error !== null) this.failure = { error };
    this.endOnce();
    this.settleIfIdle();
  }

  private endOnce(): void {
    const ended = this.ended;
    this.ended = null;
    ended?.();
  }

  /** graphql-ws hears of the end only after this subscriber's last frame was written. */
  private settleIfIdle(): void {
    if (!this.over || this.writing || !this.settle) return;
    const { resolve, reject } = this.settle;
    this.settle = null;
    if (this.failure) reject(this.failure.error);
    else resolve({ value: undefined, done: true });
  }
}
