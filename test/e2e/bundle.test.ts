/**
 * The server as `npm start` runs it: scripts/build.mjs compiles src/ (tsc) and bundles the
 * result with its packages into dist/bundle/, and scripts/start.mjs imports dist/bundle/main.js
 * (issue 15, start-up). The bundle is a different way of loading the same code, so this starts
 * it in a process of its own and uses every part that bundling could break: the two
 * graphql-scalars scalars (imported by path unbundled), a module in a WORKER (its entry is a file
 * of the bundle's folder), GraphiQL's page and graphql-ws (chunks loaded on first use), the
 * dashboard's files and /metrics; and it checks the process holds one copy of graphql and takes
 * no package but better-sqlite3 from node_modules (Kysely and the scalars are bundled too).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLE_DIR, BUNDLE_ENTRY } from '../../scripts/build.mjs';
import { createTestPostgres, postgresAvailable } from '../support/postgres.js';
import { REPO } from '../support/tsx-script.js';

const TOKEN = 'test-admin-token-0123456789abcdef';

interface Bundled {
  url: string;
  dir: string;
  /** SIGTERM; resolves to the exit code. */
  stop(): Promise<number | null>;
  /** The packages the process took from node_modules, once it has exited (see the preload). */
  packagesLoaded(): string[];
  /** Whether a file of the graphql package came from node_modules. */
  graphqlFromNodeModules(): boolean;
  /** What the process printed on stdout so far (the build step's lines, then the ready line). */
  stdout(): string;
}

/** npm start's server (scripts/start.mjs: the bundle) in a process of its own, until /ready answers. */
async function startBundled(env: Record<string, string>): Promise<Bundled> {
  const dir = mkdtempSync(path.join(tmpdir(), 'helios-bundle-'));
  // Lists, when the process exits, every file it took through Node's CommonJS loader (ES modules
  // from node_modules importing a package land there too: graphql is CommonJS).
  const preload = path.join(dir, 'loaded.mjs');
  writeFileSync(preload, `import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
const require = createRequire(import.meta.url);
process.on('exit', () => writeFileSync(${JSON.stringify(path.join(dir, 'loaded.json'))}, JSON.stringify(Object.keys(require.cache))));
`);
  // Port 0: the server says where it listens on stdout, after the build step's lines.
  const child: ChildProcess = spawn(process.execPath, ['--import', preload, 'scripts/start.mjs'], {
    cwd: REPO,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', HELIOS_DB_PATH: path.join(dir, 'helios.db'), HELIOS_ADMIN_TOKEN: TOKEN, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const loaded = () => JSON.parse(readFileSync(path.join(dir, 'loaded.json'), 'utf8')) as string[];
  const bundled: Bundled = {
    url: '',
    dir,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
    packagesLoaded: () =>
      [...new Set(loaded().flatMap((file) => {
        const match = /[\\/]node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)[\\/]/.exec(file);
        return match ? [match[1]!.replace('\\', '/')] : [];
      }))].sort(),
    graphqlFromNodeModules: () => loaded().some((file) => file.includes(`${path.sep}node_modules${path.sep}graphql${path.sep}`)),
    stdout: () => stdout,
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`npm start's server exited (${child.exitCode}): ${stderr}`);
    const listening = /^Helios is ready: GraphiQL at (http:\/\/\S+)\/graphql$/m.exec(stdout);
    if (listening) {
      bundled.url = listening[1]!;
      expect((await fetch(`${bundled.url}/ready`)).status).toBe(200);
      return bundled;
    }
    if (Date.now() > deadline) {
      await bundled.stop();
      throw new Error(`not ready within 60 s: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

let server: Bundled | null = null;
let url = '';
const dirs: string[] = [];

async function gql<T>(query: string, variables: Record<string, unknown> = {}, at = url): Promise<T> {
  const res = await fetch(`${at}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: T; errors?: unknown };
  if (body.errors) throw new Error(`GraphQL errors: ${JSON.stringify(body.errors)}`);
  return body.data!;
}

beforeAll(async () => {
  // The build step as npm start runs it (tsc only when src/ changed; here, the bundle at least once).
  const build = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: REPO, encoding: 'utf8', timeout: 240_000 });
  expect(build.stderr).toBe('');
  expect(build.status).toBe(0);
  expect(existsSync(path.join(REPO, BUNDLE_ENTRY))).toBe(true);
  server = await startBundled({});
  dirs.push(server.dir);
  url = server.url;
}, 300_000);

afterAll(async () => {
  await server?.stop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('the bundled server (npm start)', () => {
  it('is what start.mjs runs: main.js and the worker entry beside it, chunks for what loads on first use', () => {
    const files = readdirSync(path.join(REPO, BUNDLE_DIR));
    expect(files).toContain('main.js');
    expect(files).toContain('worker-entry.js');
    expect(files).toContain('main.js.map');
    // The build step found the bundle current (beforeAll made it) and did not fall back to the unbundled build.
    expect(server!.stdout()).toMatch(/^build: server up to date\nbuild: bundle up to date\n/);
    expect(server!.stdout()).not.toContain('unbundled');
  });

  it('serves GraphQL with the DateTime and JSON scalars', async () => {
    const data = await gql<{ featureFlags: Array<{ name: string; updatedAt: string }> }>('{ featureFlags { name updatedAt } }');
    expect(data.featureFlags).toHaveLength(8);
    expect(new Date(data.featureFlags[0]!.updatedAt).toISOString()).toBe(data.featureFlags[0]!.updatedAt);
    const set = await gql<{ setFlagPercentage: { errors: unknown[] } }>('mutation { setFlagPercentage(name: "neural_network_v2", percentage: 40) { errors { code } } }');
    expect(set.setFlagPercentage.errors).toEqual([]);
    const audit = await gql<{ auditLog: { nodes: Array<{ action: string; at: string; after: { percentage: number } }> } }>(
      '{ auditLog(target: "neural_network_v2", first: 1) { nodes { action at after } } }',
    );
    expect(audit.auditLog.nodes[0]).toMatchObject({ action: 'setFlagPercentage', at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), after: { percentage: 40 } });
  });

  it('loads a module in a WORKER and serves its calls', async () => {
    for (const [name, modulePath, dependencies] of [['feature_extractor', 'feature_extractor.js', []], ['neural_predictor', 'ml/neural_predictor.js', ['feature_extractor']]] as const) {
      const registered = await gql<{ registerModule: { errors: unknown[] } }>(
        'mutation($name: String!, $modulePath: String!, $dependencies: [String!]) { registerModule(name: $name, modulePath: $modulePath, version: "1.0.0", dependencies: $dependencies) { errors { code message } } }',
        { name, modulePath, dependencies: [...dependencies] },
      );
      expect(registered.registerModule.errors).toEqual([]);
    }
    const loaded = await gql<{ loadModule: { errors: unknown[]; module: { state: string; isolation: string } } }>(
      'mutation { loadModule(name: "neural_predictor") { errors { code message } module { state isolation } } }',
    );
    expect(loaded.loadModule).toEqual({ errors: [], module: { state: 'ACTIVE', isolation: 'WORKER' } });
    const call = await gql<{ invokeModule: { errors: unknown[]; result: unknown } }>(
      'mutation { invokeModule(name: "neural_predictor", method: "predict", args: { prices: [1, 2, 3] }) { errors { code } result } }',
    );
    expect(call.invokeModule).toMatchObject({ errors: [], result: { prediction: 'up', model: 'v1' } });
  });

  it('delivers a subscription over graphql-ws', async () => {
    const client = createClient({ url: url.replace(/^http/, 'ws') + '/graphql', webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { authorization: `Bearer ${TOKEN}` } });
    try {
      const event = new Promise<unknown>((resolve, reject) => {
        client.subscribe(
          { query: 'subscription { featureFlagChanged(name: "neural_network_v2") { name flag { percentage } } }' },
          { next: (value) => resolve(value.data), error: reject, complete: () => undefined },
        );
      });
      // The subscription is live once the server has its listener: change the flag until an event comes.
      let percentage = 41;
      const changer = setInterval(() => void gql(`mutation { setFlagPercentage(name: "neural_network_v2", percentage: ${percentage++}) { errors { code } } }`), 100);
      try {
        expect(await event).toMatchObject({ featureFlagChanged: { name: 'neural_network_v2', flag: { percentage: expect.any(Number) } } });
      } finally {
        clearInterval(changer);
      }
    } finally {
      await client.dispose();
    }
  });

  it("serves GraphiQL's page, the dashboard and /metrics", async () => {
    const graphiql = await fetch(`${url}/graphql`, { headers: { accept: 'text/html' } });
    expect(graphiql.status).toBe(200);
    // Its assets come from the chunk that holds GraphiQL's build, loaded on this first request.
    const assets = [...(await graphiql.text()).matchAll(/\/graphiql\/[\w.-]+\.(?:js|css)/g)].map((m) => m[0]);
    expect(assets.length).toBeGreaterThan(2);
    for (const asset of assets) {
      const res = await fetch(`${url}${asset}`);
      expect(res.status, asset).toBe(200);
      expect((await res.arrayBuffer()).byteLength, asset).toBeGreaterThan(100);
    }
    const dashboard = await fetch(`${url}/dashboard`);
    expect(dashboard.status).toBe(200);
    expect(dashboard.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const script = /\/dashboard\/assets\/[\w.-]+\.js/.exec(await dashboard.text())?.[0];
    expect(script).toBeDefined();
    expect((await fetch(`${url}${script}`)).status).toBe(200);
    const metrics = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('helios_module_invocations_total{');
  });

  it('holds one graphql, the bundled one, and nothing from node_modules but better-sqlite3', async () => {
    expect(await server!.stop()).toBe(0);
    // better-sqlite3 with what it loads its addon with.
    expect(server!.packagesLoaded()).toEqual(['better-sqlite3', 'bindings', 'file-uri-to-path']);
    expect(server!.graphqlFromNodeModules()).toBe(false);
  });
});

describe.skipIf(!postgresAvailable())('the bundled server on PostgreSQL', () => {
  it("runs on the bundled Kysely's PostgreSQL dialect with pg from node_modules", async () => {
    const database = await createTestPostgres('bundle');
    const node = await startBundled({ HELIOS_DATABASE_URL: database.url, HELIOS_NODE_ID: 'bundle-1' });
    dirs.push(node.dir);
    try {
      const set = await gql<{ setFlagPercentage: { errors: unknown[]; flag: { percentage: number } } }>(
        'mutation { setFlagPercentage(name: "neural_network_v2", percentage: 35) { errors { code } flag { percentage } } }',
        {},
        node.url,
      );
      expect(set.setFlagPercentage).toEqual({ errors: [], flag: { percentage: 35 } });
      const flags = await gql<{ featureFlags: Array<{ name: string; updatedAt: string }> }>('{ featureFlags { name updatedAt } }', {}, node.url);
      expect(flags.featureFlags).toHaveLength(8);
      expect(await node.stop()).toBe(0);
      expect(node.packagesLoaded()).toContain('pg');
      expect(node.packagesLoaded()).not.toContain('kysely');
      expect(node.graphqlFromNodeModules()).toBe(false);
    } finally {
      await node.stop();
      await database.drop();
    }
  }, 120_000);
});
