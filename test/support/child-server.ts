/**
 * A test server in its own process, so a test can measure the server's memory (RSS) without
 * counting its own clients. Started by `startChildServer()`; prints one JSON line
 * `{ url, pid }` when listening and stops on SIGTERM. Extra environment comes from the parent.
 */
import { startTestServer } from './server.js';

const server = await startTestServer({ env: JSON.parse(process.env.HELIOS_CHILD_ENV ?? '{}') as Record<string, string> });
process.stdout.write(`${JSON.stringify({ url: server.url, pid: process.pid })}\n`);
process.once('SIGTERM', () => {
  void server.stop().finally(() => process.exit(0));
});
