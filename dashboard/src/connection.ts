/**
 * How the page talks to Helios, as any client does: queries and mutations over HTTP POST
 * /graphql with `Authorization: Bearer <token>`, subscriptions over graphql-ws with the same
 * value in `connection_init`. The token is the one typed into the page, kept in
 * sessionStorage (gone when the tab closes). The socket retries for ever with a capped
 * backoff, so the page comes back by itself after a restart; `status` says where it stands.
 */
import { createClient, type Client } from 'graphql-ws/client';
import type { TypedDocumentString } from './gql/graphql.js';

const TOKEN_KEY = 'helios.dashboard.token';
const GRAPHQL_PATH = '/graphql';

export type ConnectionStatus = 'connecting' | 'live' | 'reconnecting' | 'refused';

export interface GraphQLErrorShape {
  message: string;
  extensions?: { code?: string };
}

export class RequestError extends Error {
  constructor(
    message: string,
    readonly code: string | null,
  ) {
    super(message);
  }
}

export function storedToken(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

export function storeToken(token: string): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export interface Sink<R> {
  next(data: R): void;
  /** The operation failed for good (refused, or the server ended it with errors). */
  error?(error: RequestError): void;
  complete?(): void;
}

export class Connection {
  private client: Client;
  private statusListeners = new Set<(status: ConnectionStatus, detail: string) => void>();
  private connectedListeners = new Set<() => void>();
  status: ConnectionStatus = 'connecting';
  detail = '';

  constructor(readonly token: string) {
    const url = new URL(GRAPHQL_PATH, location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.client = createClient({
      url: url.toString(),
      lazy: false,
      connectionParams: () => (token ? { authorization: `Bearer ${token}` } : {}),
      retryAttempts: Number.POSITIVE_INFINITY,
      // Down is down whatever the close code; only a refused token (4403) is final.
      shouldRetry: (event) => !(isCloseEvent(event) && event.code === 4403),
      // 0.25 s, 0.5 s, 1 s, then every 1 s (plus jitter): a restart is noticed within a second or so.
      retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** retries, 1000) + Math.random() * 200)),
      keepAlive: 5_000,
      on: {
        connected: () => {
          this.setStatus('live', '');
          for (const listener of this.connectedListeners) listener();
        },
        closed: (event) => {
          if (isCloseEvent(event) && event.code === 4403) this.setStatus('refused', 'The server refused this token.');
          else if (this.status !== 'refused') this.setStatus('reconnecting', 'Cannot reach Helios; retrying.');
        },
        error: () => {
          if (this.status === 'live') this.setStatus('reconnecting', 'Cannot reach Helios; retrying.');
        },
      },
    });
  }

  onStatus(listener: (status: ConnectionStatus, detail: string) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Called on every (re)connection: the moment to read the state again. */
  onConnected(listener: () => void): () => void {
    this.connectedListeners.add(listener);
    return () => this.connectedListeners.delete(listener);
  }

  private setStatus(status: ConnectionStatus, detail: string): void {
    this.status = status;
    this.detail = detail;
    for (const listener of this.statusListeners) listener(status, detail);
  }

  /** One query or mutation over HTTP; GraphQL errors become a RequestError. */
  async request<R, V>(document: TypedDocumentString<R, V>, variables: V): Promise<R> {
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/graphql-response+json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const response = await fetch(GRAPHQL_PATH, { method: 'POST', headers, body: JSON.stringify({ query: document.toString(), variables }) });
    const body = (await response.json()) as { data?: R | null; errors?: GraphQLErrorShape[] };
    if (body.errors?.length) throw toRequestError(body.errors);
    if (!body.data) throw new RequestError(`HTTP ${response.status}`, null);
    return body.data;
  }

  /** A subscription; it is resumed by itself after a reconnection. Returns its disposer. */
  subscribe<R, V>(document: TypedDocumentString<R, V>, variables: V, sink: Sink<R>): () => void {
    return this.client.subscribe<R>(
      { query: document.toString(), variables: variables as Record<string, unknown> },
      {
        next: (result) => {
          if (result.errors?.length) sink.error?.(toRequestError(result.errors as GraphQLErrorShape[]));
          else if (result.data) sink.next(result.data);
        },
        error: (error) => {
          if (Array.isArray(error)) sink.error?.(toRequestError(error as GraphQLErrorShape[]));
          else if (isCloseEvent(error)) sink.error?.(new RequestError(error.reason || `socket closed (${error.code})`, null));
          else sink.error?.(new RequestError(error instanceof Error ? error.message : String(error), null));
        },
        complete: () => sink.complete?.(),
      },
    );
  }

  dispose(): void {
    this.statusListeners.clear();
    this.connectedListeners.clear();
    void this.client.dispose();
  }
}

function toRequestError(errors: GraphQLErrorShape[]): RequestError {
  const first = errors[0];
  return new RequestError(first?.message ?? 'Unknown error', first?.extensions?.code ?? null);
}

function isCloseEvent(value: unknown): value is CloseEvent {
  return typeof value === 'object' && value !== null && 'code' in value && typeof (value as CloseEvent).code === 'number';
}
