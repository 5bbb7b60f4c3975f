/**
 * Caps the length of GraphQL error messages that graphql-js writes itself. Its validation and
 * variable coercion messages quote the offending value whole (`Variable "$p" got invalid value
 * "SELECT SELECT ..."` or `Expected value of type "Int!", found "..."`), so one 200 KB argument
 * of the wrong type would come back as a 200 KB message. Helios's own messages quote values
 * through `quoteValue` (errors.ts) and are short already; this is the fence for the rest.
 *
 * An envelop plugin on `onValidate`, `onExecute` and `onSubscribe`, which run for HTTP and for
 * graphql-ws (src/server.ts calls the enveloped functions), so both transports answer alike.
 */
import { GraphQLError, type ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { clipText } from '../text.js';

/** Characters kept of one GraphQL error message. */
export const MAX_GRAPHQL_ERROR_MESSAGE_CHARS = 1_000;

function capError<E>(error: E, max: number): E {
  if (!(error instanceof GraphQLError)) return error;
  // Masking hands the client a GraphQLError's GraphQLError `originalError` instead: cap that too.
  const original = error.originalError instanceof GraphQLError ? capError(error.originalError, max) : error.originalError;
  if (error.message.length <= max && original === error.originalError) return error;
  return new GraphQLError(clipText(error.message, max), {
    nodes: error.nodes ?? null,
    source: error.source ?? null,
    positions: error.positions ?? null,
    path: error.path ?? null,
    originalError: original ?? null,
    extensions: error.extensions,
  }) as E;
}

/** The result with its errors' messages capped, or null when none needed it (or it is a stream). */
export function capResult(result: unknown, max: number = MAX_GRAPHQL_ERROR_MESSAGE_CHARS): ExecutionResult | null {
  if (result === null || typeof result !== 'object' || Symbol.asyncIterator in result) return null;
  const { errors } = result as ExecutionResult;
  if (!errors) return null;
  const capped = errors.map((e) => capError(e, max));
  return capped.some((e, i) => e !== errors[i]) ? { ...(result as ExecutionResult), errors: capped } : null;
}

export function useMessageLimits(max: number = MAX_GRAPHQL_ERROR_MESSAGE_CHARS): Plugin {
  return {
    onValidate() {
      return ({ result, setResult }) => {
        const capped = result.map((e: unknown) => capError(e, max));
        if (capped.some((e, i) => e !== result[i])) setResult(capped);
      };
    },
    onExecute() {
      return {
        onExecuteDone({ result, setResult }) {
          const capped = capResult(result, max);
          if (capped) setResult(capped);
        },
      };
    },
    onSubscribe() {
      return {
        onSubscribeResult({ result, setResult }) {
          const capped = capResult(result, max);
          if (capped) setResult(capped);
        },
      };
    },
  };
}
