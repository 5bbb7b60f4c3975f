/**
 * The document limits as an envelop plugin for Yoga. It uses only envelop's `onParse` and
 * `onValidate` hooks, which run for every operation that goes through `yoga.getEnveloped()`:
 * Yoga's HTTP pipeline *and* a graphql-ws `onSubscribe` that calls `enveloped.parse` and
 * `enveloped.validate` (as src/server.ts does). Yoga's HTTP-only hooks (`onRequest`,
 * `onParams`) are deliberately not used, since graphql-ws never runs them.
 *
 * A document over a limit gets the limit errors as its validation result, so graphql-js's own
 * (more expensive) rules never run on it; an acceptable document is validated as usual.
 */
import { GraphQLError, type DocumentNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { checkDocument, parseWithLimits } from './document.js';
import { DEFAULT_HARDENING_LIMITS, type DocumentLimits } from './limits.js';

export function useDocumentLimits(limits: DocumentLimits = DEFAULT_HARDENING_LIMITS): Plugin {
  // Yoga's parser cache hands out the same DocumentNode for the same query text, so each
  // distinct document is measured once, not on every request.
  const checked = new WeakMap<DocumentNode, GraphQLError[]>();
  return {
    onParse({ setParseFn }) {
      // Throws a coded GraphQLError past maxTokens; Yoga answers it like any syntax error.
      setParseFn((source, options) => parseWithLimits(source, limits, options));
    },
    onValidate({ params, setResult }) {
      let errors = checked.get(params.documentAST);
      if (!errors) {
        try {
          errors = checkDocument(params.documentAST, limits, params.schema);
        } catch {
          errors = [new GraphQLError('The query could not be checked', { extensions: { code: 'QUERY_TOO_COMPLEX' } })];
        }
        checked.set(params.documentAST, errors);
      }
      // Only a non-empty result may be set: envelop skips validation for any result it is given.
      if (errors.length > 0) setResult(errors);
    },
  };
}
