/**
 * writeTextFrame (src/transport/ws-text-frame.ts) against ws itself, over real sockets: the bytes
 * it writes are the bytes `ws.send` writes for the same text, for every length encoding; the
 * peer reads one text message; and whenever ws holds a frame of its own or an extension was
 * negotiated, ws sends it, in order.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { writeTextFrame } from '../../src/transport/ws-text-frame.js';

interface Pair {
  server: WebSocket;
  client: WebSocket;
  received: Array<{ text: string; binary: boolean }>;
}

const servers: Array<{ http: Server; wss: WebSocketServer }> = [];

async function connect(perMessageDeflate = false): Promise<Pair> {
  const http = createServer();
  const wss = new WebSocketServer({ server: http, perMessageDeflate });
  servers.push({ http, wss });
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  const accepted = once(wss, 'connection') as Promise<[WebSocket]>;
  const client = new WebSocket(`ws://127.0.0.1:${(http.address() as AddressInfo).port}`, { perMessageDeflate });
  const received: Pair['received'] = [];
  client.on('message', (data: Buffer, binary: boolean) => received.push({ text: data.toString('utf8'), binary }));
  await once(client, 'open');
  const [server] = await accepted;
  return { server, client, received };
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 2));
  expect(check()).toBe(true);
}

const rawSocket = (ws: WebSocket) => (ws as unknown as { _socket: Socket })._socket;

/** Everything written to the server's socket while `fn` runs, as one buffer. */
function bytesWritten(ws: WebSocket, fn: () => void): Buffer {
  const socket = rawSocket(ws);
  const chunks: Buffer[] = [];
  const spy = vi.spyOn(socket, 'write').mockImplementation(((chunk: Buffer | string, ...rest: unknown[]) => {
    chunks.push(Buffer.from(chunk));
    const callback = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
    callback?.();
    return true;
  }) as typeof socket.write);
  try {
    fn();
  } finally {
    spy.mockRestore();
  }
  return Buffer.concat(chunks);
}

afterEach(async () => {
  for (const { http, wss } of servers.splice(0)) {
    for (const client of wss.clients) client.terminate();
    wss.close();
    http.close();
  }
});

describe('writeTextFrame', () => {
  // Message lengths on both sides of each header form: 7-bit, 16-bit (126) and 64-bit (127).
  const head = Buffer.from('{"id":"ü✓","type":"next","payload":');
  const lengths = [head.length, 125, 126, 65_535, 65_536, 70_000];

  it.each(lengths)('writes the bytes ws.send writes for a %i-byte message, and the peer reads that text', async (length) => {
    const { server, received } = await connect();
    // The tail: some two-byte characters, then ASCII up to `length` bytes in all.
    const accents = Buffer.from('é'.repeat((length - head.length) >> 2));
    const tail = Buffer.concat([accents, Buffer.alloc(length - head.length - accents.length, 'x')]);
    const text = Buffer.concat([head, tail]).toString('utf8');
    expect(Buffer.byteLength(text)).toBe(length);
    const ours = bytesWritten(server, () => writeTextFrame(server, head, tail, () => {}));
    const theirs = bytesWritten(server, () => server.send(text));
    expect(ours.length).toBeGreaterThan(length);
    expect(ours.equals(theirs)).toBe(true);

    let written: unknown = 'not yet';
    writeTextFrame(server, head, tail, (error) => (written = error));
    await until(() => received.length === 1);
    expect(received[0]).toEqual({ text, binary: false });
    expect(written ?? null).toBeNull();
  });

  it('writes through the socket itself on the installed ws (its _socket and an idle _sender)', async () => {
    const { server, received } = await connect();
    const internals = server as unknown as { _socket: unknown; _sender: { _state: unknown; _queue: unknown } };
    expect(internals._socket).toBe(rawSocket(server));
    expect(internals._sender._state).toBe(0);
    expect(internals._sender._queue).toEqual([]);
    const send = vi.spyOn(server, 'send');
    writeTextFrame(server, Buffer.from('{"a":'), Buffer.from('1}'), () => {});
    expect(send).not.toHaveBeenCalled();
    await until(() => received.length === 1);
    expect(received[0]!.text).toBe('{"a":1}');
  });

  it('leaves a message to ws while ws holds one of its own (a Blob being read), so the order is kept', async () => {
    const { server, received } = await connect();
    server.send(new Blob(['first']));
    const send = vi.spyOn(server, 'send');
    writeTextFrame(server, Buffer.from('sec'), Buffer.from('ond'), () => {});
    expect(send).toHaveBeenCalledTimes(1);
    await until(() => received.length === 2);
    expect(received).toEqual([{ text: 'first', binary: true }, { text: 'second', binary: false }]);
  });

  it('leaves a message to ws when an extension (permessage-deflate) was negotiated', async () => {
    const { server, received } = await connect(true);
    expect(server.extensions).toContain('permessage-deflate');
    const send = vi.spyOn(server, 'send');
    writeTextFrame(server, Buffer.from('{"compressed":'), Buffer.from('true}'), () => {});
    expect(send).toHaveBeenCalledTimes(1);
    await until(() => received.length === 1);
    expect(received[0]).toEqual({ text: '{"compressed":true}', binary: false });
  });

  it('runs the callback only after it returned, once the frame is out', async () => {
    const { server, received } = await connect();
    const calls: Array<Error | null | undefined> = [];
    for (let i = 0; i < 3; i++) writeTextFrame(server, Buffer.from(`{"n":`), Buffer.from(`${i}}`), (error) => calls.push(error));
    expect(calls).toEqual([]);
    await until(() => calls.length === 3 && received.length === 3);
    expect(calls.every((error) => error == null)).toBe(true);
    expect(received.map((r) => r.text)).toEqual(['{"n":0}', '{"n":1}', '{"n":2}']);
  });

  /** Frames of 64 KiB to a peer that does not read, until the server's socket holds some back; the last one's callback state. */
  async function fillUntilHeldBack(server: WebSocket): Promise<{ frames: number; last: { done: boolean; error: Error | null | undefined } }> {
    const tail = Buffer.alloc(65_536, 'x');
    let frames = 0;
    let last = { done: false, error: undefined as Error | null | undefined };
    while (rawSocket(server).writableLength === 0 && frames < 2_000) {
      const state = { done: false, error: undefined as Error | null | undefined };
      writeTextFrame(server, Buffer.from('{"big":"'), tail, (error) => Object.assign(state, { done: true, error }));
      last = state;
      frames++;
    }
    expect(rawSocket(server).writableLength).toBeGreaterThan(0);
    // Several turns of the loop: a frame the kernel has not taken keeps its callback waiting.
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(last.done).toBe(false);
    return { frames, last };
  }

  it('holds the callback of a frame the peer has not taken until it drains (backpressure)', async () => {
    const { server, client, received } = await connect();
    rawSocket(client).pause();
    const { frames, last } = await fillUntilHeldBack(server);
    rawSocket(client).resume();
    await until(() => last.done);
    expect(last.error ?? null).toBeNull();
    await until(() => received.length === frames);
  });

  it('gives a held-back frame the error when its socket fails', async () => {
    const { server, client } = await connect();
    rawSocket(client).pause();
    const { last } = await fillUntilHeldBack(server);
    rawSocket(server).destroy();
    await until(() => last.done);
    expect(last.error).toBeInstanceOf(Error);
  });

  it("reports the socket's write error to the callback, as ws.send does", async () => {
    const { server } = await connect();
    rawSocket(server).destroy();
    const error = await new Promise<Error | null | undefined>((resolve) => writeTextFrame(server, Buffer.from('a'), Buffer.from('b'), resolve));
    expect(error).toBeInstanceOf(Error);
  });
});
