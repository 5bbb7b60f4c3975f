/**
 * Who is in the cluster, and who leads it.
 *
 * Membership: every node upserts its row in `cluster_nodes` every `heartbeatMs` (with the
 * revision it has applied); `nodes()` lists the rows seen within `timeoutMs` and a node's
 * heartbeat deletes the rows older than that, so a node killed with -9 drops out after the
 * timeout. A clean stop deletes its own row at once.
 *
 * Leadership (the rollout scheduler, see the README's Cluster section): the leader is the node
 * holding the session advisory lock LEADER_LOCK_KEY on a connection of its own. Every other
 * node tries to take it every `heartbeatMs`; when the leader dies, PostgreSQL ends its session
 * and releases the lock, and the next try elsewhere wins: within a heartbeat or two. A leader
 * whose lock connection drops steps down at once (it can no longer prove it holds the lock).
 * `leader()` asks PostgreSQL who holds the lock (the holder's application_name carries its
 * node id), so every node answers the same.
 *
 * On SQLite there is one node: it is always the leader.
 */
import type pg from 'pg';
import { pgDriver } from '../db/pg.js';
import { sql } from '../db/kysely.js';
import type { Database } from '../db/database.js';
import type { Clock } from '../clock.js';
import { errorFields, type Logger } from '../logger.js';

export const LEADER_LOCK_KEY = 0x4845_4c03;
const LEADER_APP_PREFIX = 'helios-leader:';

export interface ClusterNode {
  id: string;
  address: string;
  version: string;
  startedAt: number;
  lastSeenAt: number;
  appliedRevision: number;
}

export interface MembershipOptions {
  database: Database;
  url: string | null;
  nodeId: string;
  address: string;
  version: string;
  clock: Clock;
  logger: Logger;
  heartbeatMs: number;
  timeoutMs: number;
  /** The revision this node has applied (the event log's). */
  revision: () => number;
}

export class Membership {
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private leaderClient: pg.Client | null = null;
  private leading = false;
  private stopped = false;
  private trying = false;
  private readonly startedAt: number;
  private readonly leadershipListeners = new Set<(leading: boolean) => void>();

  private address: string;

  constructor(private readonly options: MembershipOptions) {
    this.startedAt = options.clock.now();
    this.address = options.address;
  }

  /** The address shown for this node (known once the server listens); sent with the next heartbeat. */
  setAddress(address: string): void {
    this.address = address;
  }

  get clustered(): boolean {
    return this.options.database.dialect === 'postgres';
  }

  get nodeId(): string {
    return this.options.nodeId;
  }

  /** True while this node holds the leader lock (always on SQLite). */
  get isLeader(): boolean {
    return this.clustered ? this.leading : true;
  }

  /** Called with true when this node becomes the leader, false when it stops being it. */
  onLeadership(listener: (leading: boolean) => void): () => void {
    this.leadershipListeners.add(listener);
    return () => this.leadershipListeners.delete(listener);
  }

  async start(): Promise<void> {
    await this.beat();
    if (this.clustered) await this.tryLead();
    this.heartbeatTimer = setInterval(() => {
      void this.beat();
      if (this.clustered && !this.leading) void this.tryLead();
    }, this.options.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    const client = this.leaderClient;
    this.leaderClient = null;
    if (this.leading) this.setLeading(false);
    if (client) await client.end().catch(() => undefined);
    try {
      await this.options.database.kysely.deleteFrom('cluster_nodes').where('id', '=', this.options.nodeId).execute();
    } catch (error) {
      this.options.logger.warn('could not remove this node from cluster_nodes', errorFields(error));
    }
  }

  /** The nodes seen within the timeout, by id. */
  async nodes(): Promise<ClusterNode[]> {
    const since = this.options.clock.now() - this.options.timeoutMs;
    const rows = await this.options.database.kysely
      .selectFrom('cluster_nodes')
      .selectAll()
      .where('last_seen_at', '>=', since)
      .orderBy('id')
      .execute();
    return rows.map((r) => ({
      id: r.id,
      address: r.address,
      version: r.version,
      startedAt: r.started_at,
      lastSeenAt: r.last_seen_at,
      appliedRevision: r.applied_revision,
    }));
  }

  /** The node id holding the leader lock, as PostgreSQL sees it; null while nobody holds it. */
  async leader(): Promise<string | null> {
    if (!this.clustered) return this.options.nodeId;
    const result = await sql<{ application_name: string }>`
      SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objid = ${LEADER_LOCK_KEY} AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      LIMIT 1`.execute(this.options.database.kysely);
    const name = result.rows[0]?.application_name;
    return name?.startsWith(LEADER_APP_PREFIX) ? name.slice(LEADER_APP_PREFIX.length) : null;
  }

  private async beat(): Promise<void> {
    if (this.stopped) return;
    const { database, nodeId, version, clock, timeoutMs } = this.options;
    const address = this.address;
    const now = clock.now();
    try {
      await database.kysely
        .insertInto('cluster_nodes')
        .values({ id: nodeId, address, version, started_at: this.startedAt, last_seen_at: now, applied_revision: this.options.revision() })
        .onConflict((oc) =>
          oc.column('id').doUpdateSet({ address, version, started_at: this.startedAt, last_seen_at: now, applied_revision: this.options.revision() }),
        )
        .execute();
      await database.kysely.deleteFrom('cluster_nodes').where('last_seen_at', '<', now - timeoutMs).execute();
    } catch (error) {
      this.options.logger.warn('cluster heartbeat failed', errorFields(error));
    }
  }

  private async tryLead(): Promise<void> {
    if (this.stopped || this.leading || this.trying) return;
    this.trying = true;
    let client = this.leaderClient;
    try {
      if (!client) {
        client = new (pgDriver().Client)({ connectionString: this.options.url!, application_name: `${LEADER_APP_PREFIX}${this.options.nodeId}` });
        client.on('error', () => this.lostLock(client!));
        client.on('end', () => this.lostLock(client!));
        await client.connect();
        this.leaderClient = client;
      }
      const result = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [LEADER_LOCK_KEY]);
      if (result.rows[0]?.locked && !this.stopped) {
        this.options.logger.info('this node is now the cluster leader (rollout scheduler)', { node: this.options.nodeId });
        this.setLeading(true);
      }
    } catch (error) {
      this.options.logger.warn('could not try the leader lock', errorFields(error));
      if (client) this.lostLock(client);
    } finally {
      this.trying = false;
    }
  }

  private lostLock(client: pg.Client): void {
    if (this.leaderClient === client) this.leaderClient = null;
    client.end().catch(() => undefined);
    if (this.leading) {
      this.options.logger.warn('this node lost the leader lock', { node: this.options.nodeId });
      this.setLeading(false);
    }
  }

  private setLeading(leading: boolean): void {
    if (this.leading === leading) return;
    this.leading = leading;
    for (const listener of this.leadershipListeners) {
      try {
        listener(leading);
      } catch (error) {
        this.options.logger.error('a leadership listener failed', errorFields(error));
      }
    }
  }
}
