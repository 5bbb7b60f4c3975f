/**
 * WebSocket quotas: open sockets per client address, and operations at once per socket.
 *
 * Sockets are counted from the moment the upgrade completes (the 'connection' event), not from
 * `connection_init`: a client that opens sockets and never says hello still holds them for
 * graphql-ws's init timeout. The address is the TCP peer's; `X-Forwarded-For` is not trusted,
 * since any client can write it (behind a proxy every client shares the proxy's quota).
 *
 * A socket over quota is closed with 1013 "Try Again Later" (RFC 6455): graphql-ws has no code
 * of its own for it, and 4403 would wrongly tell the client its credentials were refused.
 */
import type { IncomingMessage } from 'node:http';
import { GraphQLError } from 'graphql';
import type { WebSocket, WebSocketServer } from 'ws';
import { DEFAULT_HARDENING_LIMITS } from './limits.js';

export const WS_CLOSE_TRY_AGAIN_LATER = 1013;

/** Counts holders per key with a ceiling; keys at zero are forgotten, so memory follows load. */
export class ClientQuota {
  private readonly counts = new Map<string, number>();

  constructor(readonly max: number) {}

  /** Takes one slot for `key`; false (and nothing taken) when it already holds `max`. */
  tryAcquire(key: string): boolean {
    const current = this.counts.get(key) ?? 0;
    if (current >= this.max) return false;
    this.counts.set(key, current + 1);
    return true;
  }

  /** Gives one slot back; releasing more than was acquired is ignored. */
  release(key: string): void {
    const current = this.counts.get(key) ?? 0;
    if (current <= 1) this.counts.delete(key);
    else this.counts.set(key, current - 1);
  }

  count(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  /** Keys holding at least one slot. */
  get keys(): number {
    return this.counts.size;
  }
}

/** The TCP peer's address, IPv4-mapped IPv6 folded to IPv4, so one client has one key. */
export function clientAddress(req: Pick<IncomingMessage, 'socket'>): string {
  const address = req.socket.remoteAddress ?? 'unknown';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/**
 * Closes each new socket beyond `quota.max` per client address with 1013, and releases the
 * slot when a socket closes. Returns a function that detaches the listener.
 */
export function limitWebSocketConnections(
  wsServer: WebSocketServer,
  quota: ClientQuota,
  keyOf: (req: IncomingMessage) => string = clientAddress,
): () => void {
  const onConnection = (socket: WebSocket, req: IncomingMessage) => {
    const key = keyOf(req);
    if (!quota.tryAcquire(key)) {
      socket.close(WS_CLOSE_TRY_AGAIN_LATER, 'Too many connections');
      return;
    }
    // `on`, not `once`: 'close' comes once, and `once` adds a wrapper and its state per socket.
    socket.on('close', () => quota.release(key));
  };
  wsServer.on('connection', onConnection);
  return () => wsServer.off('connection', onConnection);
}

/**
 * For graphql-ws `onSubscribe(ctx, ...)`: graphql-ws reserves the new operation's id in
 * `ctx.subscriptions` before calling it, so the count includes the operation being started.
 * Returns the errors to answer it with (empty when it may run).
 */
export function operationQuotaErrors(
  ctx: { readonly subscriptions: Readonly<Record<string, unknown>> },
  max: number = DEFAULT_HARDENING_LIMITS.maxOperationsPerConnection,
): GraphQLError[] {
  const active = Object.keys(ctx.subscriptions).length;
  if (active <= max) return [];
  return [new GraphQLError(`At most ${max} operations may run at once on one connection`, {
    extensions: { code: 'TOO_MANY_SUBSCRIPTIONS' },
  })];
}
