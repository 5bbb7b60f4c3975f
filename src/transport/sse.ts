/**
 * Streams over HTTP: subscriptions Yoga answers with `text/event-stream` (GraphQL over SSE,
 * distinct-connections mode) or `multipart/mixed`. Each open stream is tracked with the token
 * it was opened with, so that
 * - revoking a token ends that token's streams at once (as its graphql-ws sockets are closed);
 * - shutdown ends every stream instead of waiting for clients to hang up.
 *
 * A stream is ended by finishing its result iterator, not by cutting the response: Yoga then
 * writes its regular end of stream (`event: complete`) and closes the response, so a client
 * sees a completed subscription rather than a network error, and the subscription's source
 * (its bus listener) is released.
 *
 * graphql-ws operations go through the same envelop `subscribe` but are not tracked here:
 * they carry no HTTP response in their context, and graphql-ws.ts ends them per socket.
 */
import type { ServerResponse } from 'node:http';
import { isAsyncIterable, type Plugin } from 'graphql-yoga';
import type { Caller } from '../auth/authorization.js';

interface OpenStream {
  token: string | null;
  res: ServerResponse;
  end(): void;
}

/** How long shutdown waits for ended streams to flush `event: complete` before cutting them. */
export const STREAM_FLUSH_GRACE_MS = 500;

export class StreamRegistry {
  private readonly open = new Set<OpenStream>();
  private readonly responses = new WeakSet<ServerResponse>();
  private closed = false;

  /** Open streams, for tests and diagnostics. */
  get size(): number {
    return this.open.size;
  }

  /** Whether `res` carries (or carried) a tracked stream. */
  isStream(res: ServerResponse): boolean {
    return this.responses.has(res);
  }

  /**
   * Wraps a subscription result so it can be ended from outside. The wrapper's `next()` settles
   * with `done` the moment the stream is ended, even while the source waits for its next event.
   */
  track<T>(source: AsyncIterable<T>, caller: Pick<Caller, 'name' | 'anonymous'> | undefined, res: ServerResponse): AsyncIterableIterator<T> {
    const iterator = source[Symbol.asyncIterator]();
    let ended = false;
    // The reader's pending next(), settled with `done` when the stream is ended. (Not a race
    // against one long-lived "ended" promise: each race would leave a reaction on it, one per
    // event, for the stream's whole life.)
    let settlePending: ((result: IteratorResult<T>) => void) | null = null;
    const entry: OpenStream = {
      token: caller && !caller.anonymous ? caller.name : null,
      res,
      end: () => {
        if (ended) return;
        ended = true;
        this.open.delete(entry);
        settlePending?.({ value: undefined, done: true });
        settlePending = null;
        void Promise.resolve(iterator.return?.()).catch(() => {});
      },
    };
    this.responses.add(res);
    if (this.closed) entry.end();
    else this.open.add(entry);
    // A client that hangs up (or a response cut short) releases the entry too.
    res.once('close', () => entry.end());
    const wrapper: AsyncIterableIterator<T> = {
      next: () => {
        if (ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise<IteratorResult<T>>((resolve, reject) => {
          settlePending = resolve;
          iterator.next().then(
            (result) => {
              settlePending = null;
              resolve(ended ? { value: undefined, done: true } : result);
            },
            (error: unknown) => {
              settlePending = null;
              reject(error);
            },
          );
        });
      },
      return: () => {
        entry.end();
        return Promise.resolve({ value: undefined, done: true });
      },
      throw: (error?: unknown) => {
        entry.end();
        return Promise.reject(error);
      },
      [Symbol.asyncIterator]: () => wrapper,
    };
    return wrapper;
  }

  /** Ends every stream opened with the token `name`. */
  endToken(name: string): void {
    for (const stream of [...this.open]) if (stream.token === name) stream.end();
  }

  /**
   * Ends every stream and refuses new ones (they end as soon as they start); resolves once each
   * ended stream's response has finished, or after `graceMs`, whichever comes first.
   */
  async endAll(graceMs = STREAM_FLUSH_GRACE_MS): Promise<void> {
    this.closed = true;
    const streams = [...this.open];
    for (const stream of streams) stream.end();
    const finished = streams.map((s) => (s.res.writableFinished || s.res.destroyed
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
        s.res.once('finish', resolve);
        s.res.once('close', resolve);
      })));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(finished), new Promise<void>((resolve) => { timer = setTimeout(resolve, graceMs); })]);
    clearTimeout(timer);
  }
}

/**
 * Tracks every subscription result Yoga streams over HTTP. The HTTP context carries the
 * node:http response (`res`, from `yoga(req, res)`); graphql-ws contexts do not.
 */
export function useStreamTracking(registry: StreamRegistry): Plugin {
  return {
    onSubscribe({ args }) {
      const context = args.contextValue as { res?: ServerResponse; caller?: Caller };
      const res = context.res;
      if (!res) return;
      return {
        onSubscribeResult({ result, setResult }) {
          if (isAsyncIterable(result)) setResult(registry.track(result, context.caller, res));
        },
      };
    },
  };
}
