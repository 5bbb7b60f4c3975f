/**
 * Child-process entry: many WebSocket subscribers speaking graphql-transport-ws with raw `ws`
 * (no graphql-ws client per socket), so the client side costs as little as possible and runs
 * beside, not inside, the server's event loop.
 *
 * Each socket binds its own loopback source address, at most PER_ADDRESS sockets per address
 * (127.0.1.1, 127.0.1.2, ...): Helios limits WebSockets per client address, and the benchmark
 * is about fan-out, not about that quota.
 *
 * Sockets come in groups, one per target server (the fanout benchmark runs one such process per
 * server, so each holds one group and at most the open-file limit of sockets). Rounds: `arm` picks a group and clears its receipt times, the parent triggers an event, `collect` waits until
 * every socket got a `next` and returns the receipt times (epoch ms, sub-ms resolution).
 * The message handler only stamps the time and keeps the raw frame; frames are parsed and
 * checked afterwards, off the clock.
 */
import WebSocket from 'ws';
import { serveRpc } from './rpc.js';
import { epochMs, sleep } from './stats.js';

const PER_ADDRESS = 16;
const CONNECT_BATCH = 200;

interface ConnectRequest {
  /** Which set of sockets (one per target server); rounds arm and collect one group. */
  group: string;
  url: string;
  count: number;
  query: string;
  authorization?: string;
}

interface Subscriber {
  socket: WebSocket;
  received: number;
  /** Receipt of the first `next` since the last arm; 0 while none. */
  at: number;
  frame: Buffer | null;
}

const groups = new Map<string, Subscriber[]>();
/** Sockets opened so far over all groups: each socket's index picks its source address. */
let opened = 0;
/** The group armed for the current round. */
let subscribers: Subscriber[] = [];
let armed = 0;
let got = 0;
let onAllReceived: (() => void) | null = null;
let errors = 0;
let closedEarly = 0;
/** The first frame that was not a `next` (an `error` for the subscription, say), for the report. */
let firstOddFrame: string | null = null;
let oddFrames = 0;

function sourceAddress(index: number): string {
  const slot = Math.floor(index / PER_ADDRESS);
  return `127.0.${1 + Math.floor(slot / 250)}.${1 + (slot % 250)}`;
}

function open(group: Subscriber[], url: string, index: number, query: string, authorization?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url.replace(/^http/, 'ws'), 'graphql-transport-ws', {
      localAddress: sourceAddress(index),
      perMessageDeflate: false,
    });
    const sub: Subscriber = { socket, received: 0, at: 0, frame: null };
    let acked = false;
    socket.on('open', () => {
      socket.send(JSON.stringify({ type: 'connection_init', payload: authorization ? { authorization } : {} }));
    });
    socket.on('message', (data: Buffer) => {
      if (acked) {
        const t = epochMs();
        if (data.length < 200 && !data.includes('"next"')) {
          // `error`, `complete` or `ping`: not a delivery (ping is answered, as the protocol asks).
          const text = data.toString();
          if (text.includes('"ping"')) socket.send('{"type":"pong"}');
          else {
            oddFrames++;
            firstOddFrame ??= text;
          }
          return;
        }
        sub.received++;
        if (sub.at === 0) {
          sub.at = t;
          sub.frame = data;
          if (++got === armed && onAllReceived) onAllReceived();
        }
        return;
      }
      const text = data.toString();
      if (text.includes('"connection_ack"')) {
        acked = true;
        socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query } }));
        group.push(sub);
        resolve();
      } else if (text.includes('"ping"')) {
        socket.send('{"type":"pong"}');
      }
    });
    socket.on('error', (error) => {
      errors++;
      if (!acked) reject(error);
    });
    socket.on('close', (code) => {
      if (!acked) reject(new Error(`closed before ack: ${code}`));
      else closedEarly++;
    });
  });
}

async function connect(request: ConnectRequest): Promise<{ connected: number; ms: number }> {
  const started = performance.now();
  const group = groups.get(request.group) ?? [];
  groups.set(request.group, group);
  for (let i = 0; i < request.count; i += CONNECT_BATCH) {
    const batch: Promise<void>[] = [];
    for (let k = i; k < Math.min(request.count, i + CONNECT_BATCH); k++) {
      batch.push(open(group, request.url, opened++, request.query, request.authorization));
    }
    await Promise.all(batch);
  }
  return { connected: group.length, ms: performance.now() - started };
}

function arm(group: unknown): null {
  subscribers = groups.get(String(group)) ?? [];
  for (const sub of subscribers) {
    sub.at = 0;
    sub.frame = null;
  }
  armed = subscribers.length;
  got = 0;
  return null;
}

/** Waits for every subscriber's `next` (or the timeout); returns receipt times and a sample payload. */
async function collect(timeoutMs: unknown): Promise<{ times: number[]; missing: number; bad: number; sample: unknown; frame: string | null }> {
  if (got < armed) {
    await Promise.race([
      new Promise<void>((resolve) => {
        onAllReceived = resolve;
      }),
      sleep(typeof timeoutMs === 'number' ? timeoutMs : 10_000),
    ]);
    onAllReceived = null;
  }
  const times: number[] = [];
  let bad = 0;
  let sample: unknown = null;
  let frame: string | null = null;
  for (const sub of subscribers) {
    if (sub.at === 0 || !sub.frame) continue;
    times.push(sub.at);
    const message = JSON.parse(sub.frame.toString()) as { type?: string; payload?: { data?: unknown; errors?: unknown } };
    if (message.type !== 'next' || !message.payload?.data || message.payload.errors) bad++;
    sample ??= message.payload;
    frame ??= sub.frame.toString();
  }
  return { times, missing: armed - times.length, bad, sample, frame };
}

async function closeAll(): Promise<null> {
  for (const group of groups.values()) for (const sub of group.splice(0)) sub.socket.terminate();
  return null;
}

serveRpc({ pid: process.pid }, {
  connect: (payload) => connect(payload as ConnectRequest),
  arm: (group) => arm(group),
  collect: (timeoutMs) => collect(timeoutMs),
  stats: () => {
    const all = [...groups.values()].flat();
    return { subscribers: all.length, errors, closedEarly, oddFrames, firstOddFrame, delivered: all.reduce((n, s) => n + s.received, 0) };
  },
  stop: () => closeAll(),
});
