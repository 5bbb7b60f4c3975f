/**
 * The cluster's event log: how one node's change reaches every other node.
 *
 * - `append(topic, payload)` inside a unit of work adds a row to `cluster_events` in that
 *   unit's transaction (a before-commit step), so the event exists exactly when the change
 *   does. The appender first takes a transaction-scoped advisory lock, so ids are handed out in
 *   commit order: once a reader has seen id N committed, no id below N can still appear. The
 *   same transaction sends `NOTIFY helios_events`, which PostgreSQL delivers at commit.
 * - Every node keeps one listening connection. A notification (or the periodic poll, or a
 *   reconnect) makes it read the rows after the last id it applied, in id order, and hand
 *   each to the handlers of its topic; its own events are skipped (they were applied after its
 *   own commit). A dropped listening connection is reopened with backoff and the node catches
 *   up from its last id: nothing is lost, nothing applied twice, each topic in commit order.
 * - A handler that throws is logged and the log moves on: one bad event must not stop a node
 *   from following every later change.
 *
 * On SQLite there is one node and no other to tell: `append` does nothing and `revision` stays
 * at 0.
 */
import type pg from 'pg';
import { pgDriver } from '../db/pg.js';
import { sql } from '../db/kysely.js';
import type { Database } from '../db/database.js';
import type { UnitOfWork } from '../db/unit-of-work.js';
import { errorFields, type Logger } from '../logger.js';
import type { Clock } from '../clock.js';

/** Advisory lock key serializing appends (commit order = id order). */
export const EVENTS_LOCK_KEY = 0x4845_4c02;
export const EVENTS_CHANNEL = 'helios_events';
const BATCH = 500;

export interface ClusterEvent {
  id: number;
  topic: string;
  node: string;
  at: number;
  payload: unknown;
}

/** An appended event's id, known once its unit is about to commit (0 on SQLite). */
export interface AppendedEvent {
  id: number;
}

/** What a service needs of the log: append in its unit, and follow other nodes' events. */
export interface ClusterEvents {
  append(topic: string, payload: unknown): AppendedEvent;
  on(topic: string, handler: EventHandler): void;
}

export type EventHandler = (payload: unknown, event: ClusterEvent) => void | Promise<void>;

export interface EventLogOptions {
  database: Database;
  uow: UnitOfWork;
  nodeId: string;
  clock: Clock;
  logger: Logger;
  /** The PostgreSQL URL for the listening connection (null on SQLite). */
  url: string | null;
  /** Safety poll when no notification arrives (ms). */
  pollMs?: number;
}

export class EventLog implements ClusterEvents {
  private readonly handlers = new Map<string, EventHandler[]>();
  private lastId = 0;
  private client: pg.Client | null = null;
  private reading: Promise<void> | null = null;
  private readAgain = false;
  private stopped = false;
  private started = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private backoffMs = 100;
  private readonly revisionListeners = new Set<(revision: number) => void>();

  constructor(private readonly options: EventLogOptions) {}

  get enabled(): boolean {
    return this.options.database.dialect === 'postgres';
  }

  get nodeId(): string {
    return this.options.nodeId;
  }

  /** The id of the last event this node has applied (its own included): the cluster revision it has seen. */
  get revision(): number {
    return this.lastId;
  }

  /** Handlers for events of `topic` made on other nodes. */
  on(topic: string, handler: EventHandler): void {
    const list = this.handlers.get(topic) ?? [];
    list.push(handler);
    this.handlers.set(topic, list);
  }

  /** Called with the revision after each batch applied (tests and clusterStatus watch it). */
  onRevision(listener: (revision: number) => void): () => void {
    this.revisionListeners.add(listener);
    return () => this.revisionListeners.delete(listener);
  }

  /**
   * Appends an event to the open unit of work (refused outside one: an event without the change
   * it describes, or a change without its event, is what this log exists to prevent).
   */
  append(topic: string, payload: unknown): AppendedEvent {
    const appended: AppendedEvent = { id: 0 };
    if (!this.enabled) return appended;
    const { uow, nodeId, clock } = this.options;
    const text = JSON.stringify(payload);
    uow.beforeCommit(async () => {
      await sql`SELECT pg_advisory_xact_lock(${EVENTS_LOCK_KEY})`.execute(uow.db);
      const row = await uow.db
        .insertInto('cluster_events')
        .values({ topic, node: nodeId, at: clock.now(), payload: text })
        .returning('id')
        .executeTakeFirstOrThrow();
      await sql`SELECT pg_notify(${EVENTS_CHANNEL}, ${String(row.id)})`.execute(uow.db);
      appended.id = row.id;
    });
    return appended;
  }

  /**
   * The revision to follow from: read before the services load their state, so an event
   * committed while they load is applied afterwards (handlers are idempotent for that reason).
   */
  async begin(): Promise<void> {
    if (!this.enabled) return;
    const row = await this.options.database.kysely
      .selectFrom('cluster_events')
      .select((eb) => eb.fn.max('id').as('max'))
      .executeTakeFirst();
    this.lastId = Number(row?.max ?? 0);
  }

  /** Opens the listening connection and catches up. */
  async start(): Promise<void> {
    if (!this.enabled || this.started) return;
    this.started = true;
    await this.connect();
    const pollMs = this.options.pollMs ?? 5_000;
    this.pollTimer = setInterval(() => this.poke(), pollMs);
    this.pollTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = null;
    if (client) await client.end().catch(() => undefined);
    await this.reading?.catch(() => undefined);
  }

  /** Reads and applies everything after the last applied id; resolves when caught up. */
  async catchUp(): Promise<void> {
    this.poke();
    while (this.reading) await this.reading;
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = new (pgDriver().Client)({ connectionString: this.options.url!, application_name: `helios-listen:${this.options.nodeId}` });
    let dropped = false;
    const drop = (error?: Error) => {
      if (dropped) return;
      dropped = true;
      if (this.client === client) this.client = null;
      if (this.stopped) return;
      this.options.logger.warn('the cluster event connection dropped; reconnecting and catching up', error ? errorFields(error) : {});
      client.end().catch(() => undefined);
      this.scheduleReconnect();
    };
    client.on('error', drop);
    client.on('end', () => drop());
    client.on('notification', () => this.poke());
    try {
      await client.connect();
      await client.query(`LISTEN ${EVENTS_CHANNEL}`);
    } catch (error) {
      drop(error as Error);
      return;
    }
    if (this.stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.backoffMs = 100;
    // Whatever was committed while this node was not listening.
    this.poke();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, 5_000);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }

  private poke(): void {
    if (!this.enabled || this.stopped) return;
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    this.reading = this.drain()
      .catch((error: unknown) => {
        // The pool reconnects by itself; the next notification or poll reads again.
        this.options.logger.warn('could not read the cluster event log', errorFields(error));
      })
      .finally(() => {
        this.reading = null;
        if (this.readAgain) {
          this.readAgain = false;
          this.poke();
        }
      });
  }

  private async drain(): Promise<void> {
    for (;;) {
      this.readAgain = false;
      const rows = await this.options.database.kysely
        .selectFrom('cluster_events')
        .selectAll()
        .where('id', '>', this.lastId)
        .orderBy('id')
        .limit(BATCH)
        .execute();
      for (const row of rows) {
        if (this.stopped) return;
        if (row.node !== this.options.nodeId) await this.apply({ ...row, payload: JSON.parse(row.payload) as unknown });
        this.lastId = row.id;
      }
      if (rows.length > 0) for (const listener of this.revisionListeners) listener(this.lastId);
      if (rows.length < BATCH && !this.readAgain) return;
    }
  }

  private async apply(event: ClusterEvent): Promise<void> {
    for (const handler of this.handlers.get(event.topic) ?? []) {
      try {
        await handler(event.payload, event);
      } catch (error) {
        this.options.logger.error('a cluster event could not be applied on this node', {
          topic: event.topic, id: event.id, from: event.node, ...errorFields(error),
        });
      }
    }
  }
}
