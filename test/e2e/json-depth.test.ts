/**
 * JSON inputs have a nesting limit (issue 10, item 11): a module `config` nested 10,000 deep
 * used to overflow the stack in JSON.stringify and answer INTERNAL_SERVER_ERROR. Now any JSON
 * argument deeper than MAX_JSON_DEPTH, as a variable or an inline literal, over HTTP or
 * graphql-ws, gets INVALID_ARGUMENT and the server carries on.
 */
import { print } from 'graphql';
import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH } from '../../src/hardening/json-depth.js';
import { EvaluateFlagDocument, InvokeModuleDocument, LoadModuleDocument, RegisterModuleDocument } from '../gql/graphql.js';
import WebSocket from 'ws';
import { serverPool } from '../support/pool.js';
import { TEST_ADMIN_TOKEN, type TestServer } from '../support/server.js';

const pool = serverPool();

/** `depth` nested arrays or objects around 1, built without recursion. */
function nested(depth: number, container: 'array' | 'object' = 'object'): unknown {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = container === 'array' ? [value] : { a: value };
  return value;
}

interface Answer {
  data?: Record<string, unknown> | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/**
 * Variables as JSON text: this process's own JSON.stringify overflows its stack on 10,000
 * levels (which is the point), so deep values are written out by hand.
 */
type Variables = Record<string, unknown> | string;
const variablesJson = (variables: Variables) => (typeof variables === 'string' ? variables : JSON.stringify(variables));
const deepJson = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

async function overHttp(h: TestServer, query: string, variables: Variables = {}): Promise<Answer> {
  const res = await fetch(h.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json', authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
    body: `{"query":${JSON.stringify(query)},"variables":${variablesJson(variables)}}`,
  });
  return (await res.json()) as Answer;
}

/** One operation over a raw graphql-transport-ws socket: the last `next` payload, or the `error` payload. */
function overWs(h: TestServer, query: string, variables: Variables = {}): Promise<Answer> {
  const socket = new WebSocket(h.wsUrl, 'graphql-transport-ws');
  return new Promise<Answer>((resolve, reject) => {
    let answer: Answer = {};
    socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } })));
    socket.on('message', (data) => {
      const message = JSON.parse(String(data)) as { type: string; payload?: unknown };
      if (message.type === 'connection_ack') {
        socket.send(`{"id":"1","type":"subscribe","payload":{"query":${JSON.stringify(query)},"variables":${variablesJson(variables)}}}`);
      } else if (message.type === 'next') {
        answer = message.payload as Answer;
      } else if (message.type === 'error') {
        resolve({ errors: message.payload as Answer['errors'] });
      } else if (message.type === 'complete') {
        resolve(answer);
      }
    });
    socket.on('close', (code) => reject(new Error(`socket closed with ${code} before an answer`)));
    socket.on('error', reject);
  }).finally(() => socket.close());
}

const transports = { HTTP: overHttp, WebSocket: overWs } as const;

async function server(): Promise<TestServer> {
  const h = await pool.start({ env: { HELIOS_MODULES_DIR: pool.modulesDir() } });
  await h.query(RegisterModuleDocument, { name: 'counter', modulePath: 'counter.js', version: '1', isolation: 'INLINE' });
  await h.query(LoadModuleDocument, { name: 'counter' });
  return h;
}

function expectInvalidArgument(answer: Answer) {
  expect(answer.errors?.map((e) => e.extensions?.code), JSON.stringify(answer).slice(0, 500)).toEqual(['INVALID_ARGUMENT']);
  expect(answer.errors![0]!.message).toContain(`deeper than ${MAX_JSON_DEPTH} levels`);
}

describe(`JSON inputs are limited to ${MAX_JSON_DEPTH} levels`, () => {
  for (const [transport, send] of Object.entries(transports)) {
    it(`${transport}: a module config nested 10,000 deep is INVALID_ARGUMENT, nothing is registered, the server carries on`, async () => {
      const h = await server();
      const answer = await send(h, print(RegisterModuleDocument), `{"name":"deep","modulePath":"counter.js","version":"1","config":${deepJson(10_000)}}`);
      expectInvalidArgument(answer);
      expect(h.server.app.services.modules.get('deep')).toBeNull();
      const health = await fetch(new URL('/health', h.url));
      expect(health.status).toBe(200);
      // The same operation with a shallow config still works.
      const ok = await send(h, print(RegisterModuleDocument), { name: 'shallow', modulePath: 'counter.js', version: '1', config: nested(3) });
      expect(ok.errors).toBeUndefined();
      expect(h.server.app.services.modules.get('shallow')?.config).toEqual(nested(3));
    });

    it(`${transport}: invoke args, evaluation attributes and inline literals one level too deep are refused; at the limit they pass`, async () => {
      const h = await server();
      const invoke = print(InvokeModuleDocument);
      const atLimit = await send(h, invoke, { name: 'counter', method: 'echo', args: nested(MAX_JSON_DEPTH, 'array') });
      expect(atLimit.errors).toBeUndefined();
      expect((atLimit.data!.invokeModule as { result: unknown }).result).toEqual(nested(MAX_JSON_DEPTH, 'array'));

      expectInvalidArgument(await send(h, invoke, { name: 'counter', method: 'echo', args: nested(MAX_JSON_DEPTH + 1, 'array') }));
      expectInvalidArgument(await send(h, print(EvaluateFlagDocument), { name: 'f', context: { userId: 'u', attributes: nested(MAX_JSON_DEPTH + 1) } }));

      const literal = (depth: number) =>
        `mutation { invokeModule(name: "counter", method: "echo", args: ${'['.repeat(depth)}1${']'.repeat(depth)}) { result errors { code } } }`;
      const literalAtLimit = await send(h, literal(MAX_JSON_DEPTH));
      expect(literalAtLimit.errors).toBeUndefined();
      expectInvalidArgument(await send(h, literal(MAX_JSON_DEPTH + 1)));
    });
  }
});
