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
 */
import { createSourceEventStream, execute, GraphQLError, type DocumentNode, type ExecutionArgs, type ExecutionResult } from 'graphql';

export interface SharedSubscriptionOptions {
  /** The standard path (envelop's subscribe), for streams that fail to start. */
  subscribe: (args: ExecutionArgs) => unknown;
  /** The server's error masking, applied to each shared result's errors. */
  maskError: (error: GraphQLError) => GraphQLError;
  /** What besides the operation decides a result, e.g. the caller's role. */
  sharingKey: string;
}

const documentIds = new WeakMap<DocumentNode, number>();
let nextDocumentId = 0;
const resultsByEvent = new WeakMap<object, Map<string, Promise<ExecutionResult>>>();

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

async function executeEvent(args: ExecutionArgs, event: unknown, maskError: (error: GraphQLError) => GraphQLError): Promise<ExecutionResult> {
  const result = await execute({ ...args, rootValue: event });
  return result.errors?.length ? { ...result, errors: result.errors.map(maskError) } : result;
}

/** graphql-ws's `subscribe`: the event stream of `args`, each event executed once per key and shared. */
export async function subscribeShared(args: ExecutionArgs, options: SharedSubscriptionOptions): Promise<unknown> {
  const source = await createSourceEventStream(args);
  if (!isAsyncIterator(source)) return options.subscribe(args);
  const key = `${documentId(args.document)}\u0000${args.operationName ?? ''}\u0000${JSON.stringify(args.variableValues ?? null)}\u0000${options.sharingKey}`;
  const executeOnce = (event: unknown): Promise<ExecutionResult> => {
    if (typeof event !== 'object' || event === null) return executeEvent(args, event, options.maskError);
    let results = resultsByEvent.get(event);
    if (!results) {
      results = new Map();
      resultsByEvent.set(event, results);
    }
    let result = results.get(key);
    if (!result) {
      result = executeEvent(args, event, options.maskError);
      results.set(key, result);
    }
    return result;
  };
  // A plain iterator, not an async generator: `return()` must reach the source at once (an async
  // generator waits for the next event before it can finish, keeping the listener meanwhile).
  const iterator: AsyncIterableIterator<ExecutionResult> = {
    async next() {
      let step: IteratorResult<unknown>;
      try {
        step = await source.next();
      } catch (error) {
        // A feed that ends its subscriber (SLOW_CONSUMER) throws here; masked as on the standard path.
        const original = error instanceof Error ? error : new Error(String(error));
        throw options.maskError(error instanceof GraphQLError ? error : new GraphQLError(original.message, { originalError: original }));
      }
      if (step.done) return { value: undefined, done: true };
      return { value: await executeOnce(step.value), done: false };
    },
    async return() {
      await source.return?.();
      return { value: undefined, done: true };
    },
    async throw(error?: unknown) {
      await source.return?.();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
