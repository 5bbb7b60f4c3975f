/**
 * GraphQL operations for Prometheus, counted by an envelop plugin that runs for HTTP and, via
 * `getEnveloped()`, for graphql-ws alike: operations by type, name and outcome with their
 * duration, and subscriptions currently active. Operation names are the client's choice, so at
 * most MAX_OPERATION_NAMES distinct names get a series; later newcomers count as `other`.
 * Operations that fail parsing or validation never execute and are not counted here.
 */
import { getOperationAST, type DocumentNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { DurationHistograms } from './histogram.js';

export const MAX_OPERATION_NAMES = 200;
export const OPERATION_OUTCOMES = ['success', 'error'] as const;

export interface OperationSeries {
  type: string;
  name: string;
  /** Per OPERATION_OUTCOMES, durations in ms. */
  readonly durations: DurationHistograms;
}

export class GraphQLOperationCounters {
  readonly operations = new Map<string, OperationSeries>();
  private readonly names = new Set<string>();
  activeSubscriptions = 0;

  record(type: string, rawName: string | null | undefined, failed: boolean, durationMs: number): void {
    let name = rawName || 'anonymous';
    if (!this.names.has(name)) {
      if (this.names.size >= MAX_OPERATION_NAMES) name = 'other';
      else this.names.add(name);
    }
    const key = `${type} ${name}`;
    let series = this.operations.get(key);
    if (series === undefined) {
      series = { type, name, durations: new DurationHistograms(OPERATION_OUTCOMES.length) };
      this.operations.set(key, series);
    }
    series.durations.observe(failed ? 1 : 0, durationMs);
  }
}

function describeOperation(document: DocumentNode, operationName: string | null | undefined): { type: string; name: string | null } {
  const op = getOperationAST(document, operationName);
  return { type: op?.operation ?? 'unknown', name: operationName ?? op?.name?.value ?? null };
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

function hasErrors(result: unknown): boolean {
  const errors = (result as { errors?: readonly unknown[] } | null)?.errors;
  return Array.isArray(errors) && errors.length > 0;
}

export function useOperationMetrics(counters: GraphQLOperationCounters): Plugin {
  return {
    onExecute({ args }) {
      const started = performance.now();
      const { type, name } = describeOperation(args.document, args.operationName);
      return {
        onExecuteDone({ result }) {
          const failed = isAsyncIterable(result) ? false : hasErrors(result);
          counters.record(type, name, failed, performance.now() - started);
        },
      };
    },
    onSubscribe({ args }) {
      const started = performance.now();
      const { type, name } = describeOperation(args.document, args.operationName);
      return {
        onSubscribeResult({ result }) {
          if (!isAsyncIterable(result)) {
            counters.record(type, name, true, performance.now() - started);
            return;
          }
          counters.record(type, name, false, performance.now() - started);
          counters.activeSubscriptions++;
          let ended = false;
          return {
            onEnd() {
              if (ended) return;
              ended = true;
              counters.activeSubscriptions--;
            },
          };
        },
      };
    },
  };
}

/**
 * For graphql-ws subscriptions that bypass envelop's `subscribe` (shared-subscriptions.ts runs
 * a started stream itself): counts the started subscription and keeps it in
 * `activeSubscriptions` until its iterator finishes, is returned or throws. A stream that
 * failed to start went through envelop, where `useOperationMetrics` counted it.
 */
export async function countSharedSubscription(
  counters: GraphQLOperationCounters,
  args: { document: DocumentNode; operationName?: string | null },
  started: Promise<unknown>,
): Promise<unknown> {
  const begun = performance.now();
  const result = await started;
  if (!isAsyncIterable(result)) return result;
  const { type, name } = describeOperation(args.document, args.operationName);
  counters.record(type, name, false, performance.now() - begun);
  counters.activeSubscriptions++;
  // A stream that says when it ends (shared-subscriptions' DeliveredStream) needs no wrapper.
  const observable = result as { whenEnded?: (callback: () => void) => void };
  if (typeof observable.whenEnded === 'function') {
    observable.whenEnded(() => counters.activeSubscriptions--);
    return result;
  }
  return new CountedSubscription(result as AsyncIterableIterator<unknown>, counters);
}

/** An active subscription's iterator, counted in `activeSubscriptions` until it finishes, is returned or throws. */
class CountedSubscription implements AsyncIterableIterator<unknown> {
  private ended = false;

  constructor(
    private readonly inner: AsyncIterableIterator<unknown>,
    private readonly counters: GraphQLOperationCounters,
  ) {}

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.counters.activeSubscriptions--;
  }

  next(): Promise<IteratorResult<unknown>> {
    return this.inner.next().then(
      (step) => {
        if (step.done) this.end();
        return step;
      },
      (error: unknown) => {
        this.end();
        throw error;
      },
    );
  }

  return(value?: unknown): Promise<IteratorResult<unknown>> {
    this.end();
    return this.inner.return ? this.inner.return(value) : Promise.resolve({ value: undefined, done: true });
  }

  throw(error?: unknown): Promise<IteratorResult<unknown>> {
    this.end();
    return this.inner.throw ? this.inner.throw(error) : Promise.reject(error);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<unknown> {
    return this;
  }
}
