/**
 * Child-process entry: a real Helios server (startServer) on port 0 with a temporary SQLite
 * file and LOG_LEVEL=silent, controlled over IPC by a benchmark. Extra environment settings
 * arrive as a JSON object in argv[2]. Besides `memory` and `stop` it answers the few
 * in-process operations benchmarks time from the server's side (breaker transitions).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { loadConfig } from '../../src/config.js';
import { startServer } from '../../src/server.js';
import type { EventMap } from '../../src/events.js';
import { memorySample } from './memory.js';
import { serveRpc } from './rpc.js';
import type { HeliosServerReady } from './servers.js';
import { epochMs } from './stats.js';

async function main(): Promise<void> {
  const extra = JSON.parse(process.argv[2] ?? '{}') as Record<string, string>;
  const dir = mkdtempSync(path.join(tmpdir(), 'helios-bench-'));
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    HELIOS_DB_PATH: path.join(dir, 'helios.db'),
    LOG_LEVEL: 'silent',
    HELIOS_SHUTDOWN_TIMEOUT_MS: '5000',
    ...extra,
  });
  const server = await startServer(config);
  const startedInMs = performance.now();
  const { services } = server.app;

  const ready: HeliosServerReady = { url: server.url, port: server.port, startedInMs, dir };
  serveRpc(ready, {
    memory: () => memorySample(),
    /** Writes a V8 heap snapshot to the given file (BENCH_HEAP_SNAPSHOT in the fanout bench). */
    heapSnapshot: (file) => writeHeapSnapshot(String(file)),
    listenerCount: (topic) => services.bus.listenerCount(topic as keyof EventMap),
    configureBreaker: async (name) => {
      await services.breakers.configure('bench', String(name), { failureThreshold: 5 });
      return null;
    },
    /** Forces the breaker open (or resets it) and returns the epoch ms taken just before. */
    toggleBreaker: async (name) => {
      const breaker = services.breakers.get(String(name));
      const at = epochMs();
      if (breaker?.state === 'FORCED_OPEN') await services.breakers.reset('bench', String(name));
      else await services.breakers.open('bench', String(name));
      return at;
    },
    stop: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
      return null;
    },
  });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
