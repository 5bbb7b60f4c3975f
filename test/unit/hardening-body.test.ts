/** guardRequestBody in front of Yoga: bodies over the limit get 413 before Yoga reads them. */
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSchema, createYoga } from 'graphql-yoga';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guardRequestBody } from '../../src/hardening/request-body.js';

const LIMIT = 4096;
let server: Server;
let url: string;
let yogaCalls = 0;

beforeAll(async () => {
  const yoga = createYoga<{ req: IncomingMessage }>({
    schema: createSchema({ typeDefs: 'type Query { echo(text: String!): String! }', resolvers: { Query: { echo: (_: unknown, a: { text: string }) => a.text } } }),
    // Off, so these tests see the guard alone.
    maxRequestBodySize: false,
    logging: false,
  });
  server = createServer((req, res) => {
    void guardRequestBody(req, res, LIMIT).then((ok) => {
      if (!ok) return;
      yogaCalls++;
      void yoga(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

interface Reply {
  status: number;
  body: string;
}

/** Sends `body` in chunks, with or without Content-Length, and reads the reply however it ends. */
function send(body: Buffer, { chunked = false, chunkSize = 1024 } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { 'content-type': 'application/json' };
    if (!chunked) headers['content-length'] = body.length;
    const req = request(url, { method: 'POST', headers }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    let offset = 0;
    const pump = () => {
      while (offset < body.length) {
        const chunk = body.subarray(offset, offset + chunkSize);
        offset += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

const query = (text: string) => Buffer.from(JSON.stringify({ query: 'query($t: String!) { echo(text: $t) }', variables: { t: text } }));

describe('guardRequestBody', () => {
  it('hands an accepted body to Yoga (with or without Content-Length)', async () => {
    for (const chunked of [false, true]) {
      const reply = await send(query('hi'), { chunked });
      expect(reply.status).toBe(200);
      expect(JSON.parse(reply.body)).toEqual({ data: { echo: 'hi' } });
    }
  });

  it('accepts a body of exactly the limit', async () => {
    const base = query('x');
    const padded = Buffer.concat([base, Buffer.from(' '.repeat(LIMIT - base.length))]);
    expect(padded.length).toBe(LIMIT);
    expect((await send(padded)).status).toBe(200);
  });

  it('refuses a declared Content-Length over the limit with 413, without calling Yoga', async () => {
    const before = yogaCalls;
    const reply = await send(query('y'.repeat(LIMIT)));
    expect(reply.status).toBe(413);
    expect(JSON.parse(reply.body)).toMatchObject({ errors: [{ extensions: { code: 'REQUEST_ENTITY_TOO_LARGE' } }] });
    expect(yogaCalls).toBe(before);
  });

  it('refuses a chunked body as soon as it passes the limit', async () => {
    const before = yogaCalls;
    const reply = await send(query('z'.repeat(8 * 1024 * 1024)), { chunked: true, chunkSize: 16 * 1024 });
    expect(reply.status).toBe(413);
    expect(yogaCalls).toBe(before);
  });

  it('passes GET requests through and stays healthy after refusals and aborted uploads', async () => {
    const aborted = request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': 1000 } });
    aborted.on('error', () => {});
    await new Promise<void>((resolve) => aborted.write('{"query":', () => resolve()));
    aborted.destroy();

    const res = await fetch(`${url}?query=${encodeURIComponent('{ echo(text: "get") }')}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ data: { echo: 'get' } });
    expect((await send(query('after'))).status).toBe(200);
  });
});
