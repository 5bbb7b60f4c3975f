/**
 * Benchmarks run servers and load generators in child processes, so a server never shares an
 * event loop (or a core, as far as the OS allows) with the code measuring it. The two sides
 * talk over Node's IPC channel: the child announces itself once with `ready`, then answers
 * calls by id. Children are forked with the parent's execArgv, so tsx's loader (and
 * --expose-gc when the runner passed it) carries over.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export type Handler = (payload: unknown) => unknown;

interface CallMessage {
  type: 'call';
  id: number;
  cmd: string;
  payload: unknown;
}

interface ReadyMessage {
  type: 'ready';
  data: unknown;
}

interface ReplyMessage {
  type: 'reply';
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

type ChildMessage = ReadyMessage | ReplyMessage;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** Child side: announce `data` and serve `handlers` until the parent disconnects. */
export function serveRpc(data: unknown, handlers: Record<string, Handler>): void {
  const send = (message: ChildMessage) => {
    if (process.send && process.connected) process.send(message);
  };
  process.on('message', (raw: unknown) => {
    if (!isRecord(raw) || raw.type !== 'call') return;
    const message = raw as unknown as CallMessage;
    const handler = handlers[message.cmd];
    if (!handler) {
      send({ type: 'reply', id: message.id, ok: false, error: `unknown command ${message.cmd}` });
      return;
    }
    Promise.resolve()
      .then(() => handler(message.payload))
      .then(
        (result) => send({ type: 'reply', id: message.id, ok: true, result }),
        (error: unknown) => send({ type: 'reply', id: message.id, ok: false, error: error instanceof Error ? error.stack ?? error.message : String(error) }),
      );
  });
  // The parent going away (crash, Ctrl-C) must not leave servers behind.
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', data });
}

export interface RpcChild<R> {
  child: ChildProcess;
  /** What the child announced with `ready`. */
  ready: R;
  call<T = unknown>(cmd: string, payload?: unknown): Promise<T>;
  /** Asks the child to stop (`stop` command when it has one), then kills it if it lingers. */
  stop(): Promise<void>;
}

export interface ForkOptions {
  args?: string[];
  env?: NodeJS.ProcessEnv;
  execArgv?: string[];
  readyTimeoutMs?: number;
}

/** Resolves a script next to `importMetaUrl` (pass `import.meta.url`). */
export function scriptPath(importMetaUrl: string, relative: string): string {
  return fileURLToPath(new URL(relative, importMetaUrl));
}

export function forkRpc<R>(script: string, options: ForkOptions = {}): Promise<RpcChild<R>> {
  const child = fork(script, options.args ?? [], {
    execArgv: options.execArgv ?? process.execArgv,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let seq = 0;
  let exited = false;
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true;
      for (const p of pending.values()) p.reject(new Error(`child ${script} exited (${code ?? signal})`));
      pending.clear();
      resolve();
    });
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child ${script} not ready within ${options.readyTimeoutMs ?? 60_000} ms`));
    }, options.readyTimeoutMs ?? 60_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`child ${script} exited before ready (${code ?? signal})`));
    });
    child.on('message', (raw: unknown) => {
      if (!isRecord(raw)) return;
      const message = raw as unknown as ChildMessage;
      if (message.type === 'ready') {
        clearTimeout(timer);
        const handle: RpcChild<R> = {
          child,
          ready: message.data as R,
          call<T>(cmd: string, payload?: unknown): Promise<T> {
            if (exited) return Promise.reject(new Error(`child ${script} has exited`));
            const id = ++seq;
            return new Promise<T>((res, rej) => {
              pending.set(id, { resolve: res as (v: unknown) => void, reject: rej });
              child.send({ type: 'call', id, cmd, payload } satisfies CallMessage);
            });
          },
          async stop() {
            if (exited) return;
            const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
            try {
              await handle.call('stop').catch(() => undefined);
              child.disconnect();
            } catch {
              child.kill('SIGTERM');
            }
            await exitPromise;
            clearTimeout(killer);
          },
        };
        resolve(handle);
      } else if (message.type === 'reply') {
        const p = pending.get(message.id);
        if (!p) return;
        pending.delete(message.id);
        if (message.ok) p.resolve(message.result);
        else p.reject(new Error(message.error ?? 'child call failed'));
      }
    });
  });
}

/**
 * A script beside the caller, with the caller's own extension: `.ts` when run through tsx from
 * the sources, `.js` when run compiled (see build.ts).
 */
export function siblingScript(importMetaUrl: string, relativeWithoutExtension: string): string {
  const ext = importMetaUrl.endsWith('.ts') ? '.ts' : '.js';
  return scriptPath(importMetaUrl, `${relativeWithoutExtension}${ext}`);
}
