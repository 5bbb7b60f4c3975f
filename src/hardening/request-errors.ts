/**
 * Request errors carry the same codes on both transports, as an envelop plugin (it runs for
 * Yoga's HTTP pipeline and for graphql-ws through `getEnveloped()`):
 * - a document that does not parse: `GRAPHQL_PARSE_FAILED` (Yoga codes it only for HTTP);
 * - a document that does not validate: `GRAPHQL_VALIDATION_FAILED` (Yoga's own
 *   `useHTTPValidationError`, an onValidate hook, already runs on both);
 * - variables that do not coerce (`$p: Float!` given `"50"`, or `1e309`, which JSON reads as
 *   Infinity) or a required variable left out: `BAD_USER_INPUT`.
 *
 * graphql-js reports variable coercion as a result with `errors` and no `data` (a request
 * error). Yoga answered that 200 without a code, and its error masking replaced the message by
 * the inner scalar error, dropping which variable was wrong. Here such errors are re-created
 * with the code and `http: { status: 400, spec: true }`: GraphQL over HTTP wants 400 for
 * `application/graphql-response+json` and 200 for legacy `application/json`, and `spec: true`
 * is how Yoga tells the two apart (graphql-http audits 86EE and 7B9B).
 */
import { GraphQLError, Kind, type ExecutionResult } from 'graphql';
import { isAsyncIterable, type Plugin } from 'graphql-yoga';

export const PARSE_FAILED = 'GRAPHQL_PARSE_FAILED';
export const BAD_USER_INPUT = 'BAD_USER_INPUT';
/** Yoga's code for a document whose operation cannot be chosen (HTTP); used on graphql-ws too. */
export const OPERATION_RESOLUTION_FAILURE = 'OPERATION_RESOLUTION_FAILURE';

const REQUEST_ERROR_HTTP = { status: 400, spec: true } as const;

function isVariableError(error: GraphQLError): boolean {
  const node = error.nodes?.[0];
  return node?.kind === Kind.VARIABLE_DEFINITION || error.message.startsWith('Variable "$');
}

function codedRequestError(error: GraphQLError): GraphQLError {
  const existing = error.extensions?.code;
  // A scalar that refused a variable with its own typed error (the JSON depth limit's
  // INVALID_ARGUMENT) keeps that code: it says more than BAD_USER_INPUT.
  const inner = error.originalError;
  const innerCode = inner instanceof GraphQLError ? inner.extensions?.code : (inner as { code?: unknown } | undefined)?.code;
  const code = isVariableError(error)
    ? typeof innerCode === 'string' ? innerCode : BAD_USER_INPUT
    : typeof existing === 'string' ? existing : OPERATION_RESOLUTION_FAILURE;
  // A fresh error without `originalError`: the masking keeps it (message and locations) as is.
  return new GraphQLError(error.message, {
    nodes: error.nodes ?? null,
    source: error.source ?? null,
    positions: error.positions ?? null,
    path: error.path ?? null,
    extensions: { ...error.extensions, code, http: REQUEST_ERROR_HTTP },
  });
}

/**
 * A result with errors, no `data` at all and no error at a `path` is a request error: nothing
 * was executed. (A subscription whose resolver throws also has no `data`, but its error is at
 * the field's path: a field error, left as it is.)
 */
function withRequestErrorCodes(result: ExecutionResult): ExecutionResult | null {
  if ('data' in result || !result.errors?.length || result.errors.some((e) => e.path !== undefined)) return null;
  return { ...result, errors: result.errors.map(codedRequestError) };
}

export function useRequestErrorCodes(): Plugin {
  return {
    onParse() {
      return ({ result }) => {
        if (result instanceof GraphQLError) {
          const extensions = result.extensions as Record<string, unknown>;
          extensions.code ??= PARSE_FAILED;
        }
      };
    },
    onExecute() {
      return {
        onExecuteDone({ result, setResult }) {
          if (isAsyncIterable(result)) return;
          const coded = withRequestErrorCodes(result);
          if (coded) setResult(coded);
        },
      };
    },
    onSubscribe() {
      return {
        onSubscribeResult({ result, setResult }) {
          if (isAsyncIterable(result)) return;
          const coded = withRequestErrorCodes(result);
          if (coded) setResult(coded);
        },
      };
    },
  };
}
