/**
 * The `next` frame the WebSocket transport writes for a shared result (nextFrame around
 * nextPayloadJson, made once per subscription and event) against what graphql-ws's own server
 * sends for the same result through the same `onNext` hook: byte for byte, for results with
 * data, with errors (an HTTP-only extension among them), with extensions, and for ids that JSON
 * must escape.
 */
import { GraphQLError, parse, type ExecutionResult } from 'graphql';
import { makeServer } from 'graphql-ws';
import { describe, expect, it } from 'vitest';
import { nextFrame, nextPayload, nextPayloadJson } from '../../src/transport/graphql-ws.js';

/** Sends `result` as the one event of subscription `id` through graphql-ws's makeServer; returns the `next` frame it wrote. */
async function graphqlWsFrame(id: string, result: ExecutionResult): Promise<string> {
  const sent: string[] = [];
  let onMessage: (data: string) => Promise<void> = async () => {};
  const server = makeServer({
    onSubscribe: () => ({ schema: undefined as never, document: parse('subscription { x }'), rootValue: null, contextValue: null }),
    subscribe: async () => (async function* () {
      yield result;
    })(),
    onNext: (_ctx, _id, _payload, _args, value) => nextPayload(value as ExecutionResult) ?? undefined,
  });
  server.opened({ protocol: 'graphql-transport-ws', send: (data) => void sent.push(data), close: () => {}, onMessage: (cb) => { onMessage = cb; } }, {});
  await onMessage(JSON.stringify({ type: 'connection_init' }));
  await onMessage(JSON.stringify({ id, type: 'subscribe', payload: { query: 'subscription { x }' } }));
  return sent.find((s) => s.includes('"type":"next"'))!;
}

const results: Array<[string, ExecutionResult]> = [
  ['data', { data: { breaker: { name: 'a', at: '2026-12-02T05:40:00.000Z', n: 1.5, none: null, text: 'é "q" \u2028 </script>' } } }],
  ['errors with locations, path and an HTTP-only extension', {
    errors: [
      new GraphQLError('Unexpected error.', { path: ['breaker', 'reason'], extensions: { code: 'INTERNAL_SERVER_ERROR', http: { status: 500 } } }),
      new GraphQLError('second', { extensions: { code: 'X' } }),
    ],
    data: null,
  }],
  ['extensions', { data: { x: 1 }, extensions: { cost: 3 } }],
  ['empty errors', { data: { x: 1 }, errors: [] }],
];

describe('next frames: the bytes graphql-ws writes', () => {
  for (const [what, result] of results) {
    it(`for a result with ${what}`, async () => {
      const payload = nextPayloadJson(result);
      for (const id of ['1', 'a"b', 'back\\slash', 'line\u2028sep', '\u0001', '🙂']) {
        expect(nextFrame(id, payload)).toBe(await graphqlWsFrame(id, result));
      }
    });
  }

  it('drops the HTTP-only extension from errors, as the HTTP answer does not carry it on a socket', () => {
    expect(nextPayloadJson(results[1]![1])).not.toContain('"http"');
  });
});
