/** Servers (and their folders) a test file starts, stopped and removed after each test. */
import { afterEach } from 'vitest';
import { makeModulesDir } from './modules.js';
import { removeDir, startTestServer, type TestServer, type TestServerOptions } from './server.js';

export function serverPool() {
  let servers: TestServer[] = [];
  const dirs = new Set<string>();

  afterEach(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    servers = [];
    dirs.forEach(removeDir);
    dirs.clear();
  });

  return {
    async start(options: TestServerOptions = {}): Promise<TestServer> {
      const server = await startTestServer(options);
      servers.push(server);
      dirs.add(server.dir);
      return server;
    },
    /** Stops one server now (to restart on its folder); the folder is still removed later. */
    async stop(server: TestServer): Promise<void> {
      await server.stop();
      servers = servers.filter((s) => s !== server);
    },
    /** A fresh modules folder (examples + fixtures), removed after the test. */
    modulesDir(): string {
      const dir = makeModulesDir();
      dirs.add(dir);
      return dir;
    },
    /** Removes `dir` after the test. */
    track(dir: string): string {
      dirs.add(dir);
      return dir;
    },
  };
}
