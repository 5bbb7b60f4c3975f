/**
 * README *Typed clients from the schema*, done exactly as written in a fresh folder against a
 * real server: its shell steps run (with `npm install` replaced by a link to Helios's own
 * node_modules, and the server's real URL for localhost:8000), its files are written from the
 * README's blocks, codegen and the type check run, and the client prints a live flag change.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SetFlagPercentageDocument } from './gql/graphql.js';
import { removeDir, startTestServer, TEST_ADMIN_TOKEN, type TestServer } from './support/server.js';

// Never execFileSync: the server under test runs in this process and must keep answering.
const execAsync = promisify(execFile);
const exec = (file: string, args: string[], options: { cwd: string; timeout: number }) =>
  execAsync(file, args, options).catch((error: { message: string; stdout?: string; stderr?: string }) => {
    throw new Error(`${error.message}\n${error.stdout ?? ''}\n${error.stderr ?? ''}`);
  });

interface Block {
  lang: string;
  text: string;
}

function sectionBlocks(): Block[] {
  const readme = readFileSync('README.md', 'utf8');
  const start = readme.indexOf('## Typed clients from the schema');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  return [...section.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1]!, text: m[2]! }));
}

/** `// src/watch-flags.ts: ...` or `# src/operations.graphql` on a block's first line names its file. */
function fileOf(block: Block): string | null {
  const first = block.text.split('\n')[0]!;
  const match = /^(?:\/\/|#)\s*([\w./-]+\.(?:ts|graphql|json))\b/.exec(first);
  return match ? match[1]! : null;
}

let server: TestServer | null = null;
let tmp: string | null = null;
afterEach(async () => {
  await server?.stop();
  if (server) removeDir(server.dir);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  server = null;
  tmp = null;
});

describe('README: Typed clients from the schema', () => {
  it('works as written in a fresh app', { timeout: 180_000 }, async () => {
    server = await startTestServer();
    const base = server.url.replace(/\/graphql$/, '');
    tmp = mkdtempSync(path.join(tmpdir(), 'helios-client-'));
    const blocks = sectionBlocks();
    const shell = blocks.filter((b) => b.lang === 'bash');
    expect(shell).toHaveLength(2);
    const files = blocks.filter((b) => b.lang !== 'bash').map((b) => ({ file: fileOf(b), text: b.text }));
    expect(files.map((f) => f.file)).toEqual(['src/operations.graphql', 'codegen.ts', 'src/watch-flags.ts']);

    // Set-up, as written; `npm install` lines become one link to our node_modules.
    let linked = false;
    const setup = shell[0]!.text
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => {
        if (!line.startsWith('npm install')) return line.replaceAll('http://localhost:8000', base);
        if (linked) return ':';
        linked = true;
        return `ln -s ${JSON.stringify(path.resolve('node_modules'))} node_modules`;
      });
    await exec('bash', ['-euc', setup.join('\n')], { cwd: tmp, timeout: 60_000 });
    const app = path.join(tmp, 'helios-client');
    expect(JSON.parse(readFileSync(path.join(app, 'package.json'), 'utf8'))).toMatchObject({ type: 'module' });
    expect(readFileSync(path.join(app, 'schema.graphql'), 'utf8')).toBe(readFileSync('schema/schema.graphql', 'utf8'));

    for (const { file, text } of files) {
      mkdirSync(path.dirname(path.join(app, file!)), { recursive: true });
      writeFileSync(path.join(app, file!), text);
    }

    // Codegen and the type check, as written.
    const [codegen, typecheck, run] = shell[1]!.text.split('\n').filter((l) => l.trim() !== '').map((l) => l.replace(/\s+#.*$/, ''));
    await exec('bash', ['-euc', codegen!], { cwd: app, timeout: 90_000 });
    expect(readFileSync(path.join(app, 'src/gql/graphql.ts'), 'utf8')).toContain('FlagChangesDocument');
    await exec('bash', ['-euc', typecheck!], { cwd: app, timeout: 90_000 });

    // The client, as written, against the server; then a change shows up on its stdout.
    expect(run).toContain('$(cat ../helios/data/admin-token)');
    const child = spawn('bash', ['-euc', `${run!.replace('$(cat ../helios/data/admin-token)', TEST_ADMIN_TOKEN)}`], {
      cwd: app,
      env: { ...process.env, HELIOS_WS_URL: server.wsUrl },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so the kill below reaches npx and tsx too.
      detached: true,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    try {
      // tsx compiles the client first: allow it more than untilListening's 5 s on a busy machine.
      const bus = server.server.app.services.bus;
      const subscribedBy = Date.now() + 30_000;
      while (bus.listenerCount('featureFlagChanged') === 0) {
        if (Date.now() > subscribedBy || child.exitCode !== null) throw new Error(`the client did not subscribe; stderr: ${err}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const set = await server.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 30 });
      expect(set.setFlagPercentage.errors).toEqual([]);
      const deadline = Date.now() + 10_000;
      while (!out.includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(out).toBe('websocket_v2 UPDATED by bootstrap-admin: now 30%\n');
    } finally {
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGTERM');
    }
  });
});
