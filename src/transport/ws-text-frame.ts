/**
 * One text message written to a `ws` socket as `head` followed by `tail`, where `tail` is shared
 * by many sockets (a subscription's `next` payload, serialised once per event) and `head` is
 * this socket's own (its `{"id":…,"type":"next","payload":` prefix).
 *
 * `ws.send` takes one string or buffer, so each socket's frame would be a copy of the shared
 * payload: at 5,000 subscribers that is 5,000 distinct 250-byte strings, each encoded by Node and
 * then copied by the kernel, and the fan-out's send loop ran ~1.2x the time of the same loop
 * sending one shared buffer (bench/RESULTS.md, "fan-out: one shared payload buffer"). Here the
 * frame goes out as two buffers in one corked write, exactly as ws's Sender writes a frame
 * (header, then data): a small buffer with the frame header and `head`, and the shared `tail`.
 * The bytes on the wire are those `ws.send(head + tail)` writes: a final, unmasked text frame
 * (server frames are not masked, RFC 6455 5.1) with the shortest length encoding (5.2).
 *
 * It writes to ws's own socket, so it relies on two of ws's internals: `_socket` (the net.Socket)
 * and `_sender` (whose `_state` and `_queue` say whether ws itself has a frame waiting: only
 * while it compresses or reads a Blob). Whenever either is missing, ws is holding a frame,
 * or an extension such as permessage-deflate was negotiated (Helios turns it off), it falls back
 * to `ws.send` with one buffer, so ordering with ws's own frames is always kept. A test
 * (test/unit/ws-text-frame.test.ts) compares the bytes with ws's for every length encoding and
 * checks that the installed ws still has these fields.
 */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';

/** The parts of ws's WebSocket this writes through (ws 8). */
interface WsInternals {
  _socket?: Socket | null;
  _sender?: { _state?: number; _queue?: unknown[] } | null;
}

/** ws's Sender state when no frame of its own is waiting (lib/sender.js DEFAULT). */
const SENDER_IDLE = 0;
const FIN_TEXT = 0x81;

/** The socket a frame can be written to directly, or null when ws must send it itself. */
function directSocket(ws: WebSocket): Socket | null {
  const internals = ws as unknown as WsInternals;
  const socket = internals._socket;
  const sender = internals._sender;
  if (!socket || !sender || sender._state !== SENDER_IDLE || !Array.isArray(sender._queue) || sender._queue.length > 0) return null;
  return socket;
}

/** The frame header for a text message of `length` bytes, with `head` after it, in one buffer. */
function headerWith(head: Buffer, length: number): Buffer {
  const headerLength = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const out = Buffer.allocUnsafe(headerLength + head.length);
  out[0] = FIN_TEXT;
  if (headerLength === 2) {
    out[1] = length;
  } else if (headerLength === 4) {
    out[1] = 126;
    out.writeUInt16BE(length, 2);
  } else {
    out[1] = 127;
    out.writeUIntBE(0, 2, 2);
    out.writeUIntBE(length, 4, 6);
  }
  head.copy(out, headerLength);
  return out;
}

type Written = (error?: Error | null) => void;

/** Callbacks of frames the kernel took at once, run together in one tick (see writeTextFrame). */
let tookAtOnce: Written[] = [];
const NOTHING = Buffer.alloc(0);

function runTookAtOnce(): void {
  const batch = tookAtOnce;
  tookAtOnce = [];
  let failure: { error: unknown } | null = null;
  for (const written of batch) {
    try {
      written();
    } catch (error) {
      // Every other frame's callback still runs; the first error surfaces as a callback's would.
      failure ??= { error };
    }
  }
  if (failure) throw failure.error;
}

/**
 * Writes the text message `head` + `tail` (UTF-8 bytes) to an open socket; `written` runs as
 * `ws.send`'s callback does: never before this returns, once the data is handed to the kernel,
 * or with the write's error. `withExtensions` is whether the handshake negotiated an extension
 * (`ws.extensions`, fixed from then on, so a caller writing many frames to one socket can read
 * it once).
 *
 * The frame is written without a callback of its own. When the kernel took all of it at once
 * (nothing left in the socket's buffer: the usual case), `written` joins the callbacks run in
 * one `process.nextTick` for all the frames of this turn, instead of one tick per socket, as
 * Node's stream would schedule for a callback per write. Otherwise (a peer that does not read,
 * a write still pending before it, or a socket that failed) an empty write queued behind the
 * frame carries `written`, so it runs when the frame is out, or with the error, exactly when a
 * callback on the frame's own write would have.
 */
export function writeTextFrame(ws: WebSocket, head: Buffer, tail: Buffer, written: Written, withExtensions = ws.extensions !== ''): void {
  const socket = withExtensions ? null : directSocket(ws);
  if (!socket || !socket.writable) {
    ws.send(Buffer.concat([head, tail]), { binary: false }, written);
    return;
  }
  socket.cork();
  socket.write(headerWith(head, head.length + tail.length));
  socket.write(tail);
  socket.uncork();
  if (socket.writableLength === 0 && !socket.destroyed) {
    if (tookAtOnce.length === 0) process.nextTick(runTookAtOnce);
    tookAtOnce.push(written);
  } else {
    socket.write(NOTHING, written);
  }
}
