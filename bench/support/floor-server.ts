/**
 * The child-process side shared by the bare floor servers (raw node:http, raw ws, bare Yoga):
 * once `server` listens, it reports where (`urlPath` on its port) and answers `memory`, `stop`
 * (after `beforeStop`, e.g. terminating sockets) and the server's own `extra` calls.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { memorySample } from './memory.js';
import { serveRpc, type Handler } from './rpc.js';
import type { HeliosServerReady } from './servers.js';

export function serveFloorRpc(server: Server, urlPath: string, extra: Record<string, Handler> = {}, beforeStop: () => void = () => {}): void {
  const port = (server.address() as AddressInfo).port;
  const ready: HeliosServerReady = { url: `http://127.0.0.1:${port}${urlPath}`, port, startedInMs: performance.now(), dir: '' };
  serveRpc(ready, {
    memory: () => memorySample(),
    ...extra,
    stop: () =>
      new Promise<null>((resolve) => {
        beforeStop();
        server.close(() => resolve(null));
        server.closeAllConnections();
      }),
  });
}
