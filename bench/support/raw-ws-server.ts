/**
 * Child-process entry: the physical floor for subscription fan-out. A plain `ws` server on
 * node:http that speaks just enough graphql-transport-ws for the benchmark's clients
 * (connection_init -> connection_ack, subscribe -> remembered, ping -> pong) and, on
 * `broadcast`, sends one pre-serialized frame (set with `setFrame`: the bytes Helios sent for a
 * transition) to every subscribed socket. No GraphQL, no event bus, no database: what Node and
 * `ws` themselves cost to deliver the same bytes to the same number of sockets.
 */
import { createServer } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { serveFloorRpc } from './floor-server.js';
import { epochMs } from './stats.js';

const subscribed = new Set<WebSocket>();
let frame: Buffer = Buffer.alloc(0);

const server = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server, path: '/graphql', perMessageDeflate: false });
wss.on('connection', (socket) => {
  socket.on('message', (data: Buffer) => {
    const text = data.toString();
    if (text.includes('"connection_init"')) socket.send('{"type":"connection_ack"}');
    else if (text.includes('"subscribe"')) subscribed.add(socket);
    else if (text.includes('"ping"')) socket.send('{"type":"pong"}');
  });
  socket.on('close', () => subscribed.delete(socket));
  socket.on('error', () => {});
});

server.listen(0, '127.0.0.1', () => {
  serveFloorRpc(server, '/graphql', {
    subscribed: () => subscribed.size,
    setFrame: (text) => {
      frame = Buffer.from(String(text));
      return frame.length;
    },
    /** Sends the frame to every subscriber; returns the epoch ms taken just before. */
    broadcast: () => {
      const at = epochMs();
      for (const socket of subscribed) socket.send(frame);
      return at;
    },
  }, () => {
    for (const socket of wss.clients) socket.terminate();
    wss.close();
  });
});
