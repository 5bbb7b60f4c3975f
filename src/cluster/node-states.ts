/**
 * What each node runs: a breaker's state on that node, a module's state and version on that
 * node. Each node reports its own rows (`report`, written in the background, in order, the
 * latest value winning) and reads every live node's (`list`). On SQLite there is one node and
 * the callers answer from memory instead.
 */
import type { Database } from '../db/database.js';
import type { Clock } from '../clock.js';
import { errorFields, type Logger } from '../logger.js';

export type NodeStateKind = 'BREAKER' | 'MODULE';

export interface NodeState {
  node: string;
  state: string;
  version: string | null;
  detail: unknown;
  updatedAt: number;
}

export class NodeStates {
  private chain: Promise<void> = Promise.resolve();
  private readonly pending = new Map<string, { kind: NodeStateKind; name: string; state: string; version: string | null; detail: unknown }>();

  constructor(
    private readonly database: Database,
    private readonly nodeId: string,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly liveSince: () => number,
  ) {}

  get clustered(): boolean {
    return this.database.dialect === 'postgres';
  }

  /** Records this node's state of `name` (coalesced: a burst of reports writes the last one). */
  report(kind: NodeStateKind, name: string, state: string, version: string | null = null, detail: unknown = null): void {
    if (!this.clustered) return;
    const key = `${kind}\u0000${name}`;
    const queued = this.pending.has(key);
    this.pending.set(key, { kind, name, state, version, detail });
    if (queued) return;
    this.chain = this.chain.then(async () => {
      const entry = this.pending.get(key);
      this.pending.delete(key);
      if (!entry) return;
      const values = {
        state: entry.state,
        version: entry.version,
        detail_json: entry.detail === null ? null : JSON.stringify(entry.detail),
        updated_at: this.clock.now(),
      };
      try {
        await this.database.kysely
          .insertInto('node_states')
          .values({ kind: entry.kind, name: entry.name, node: this.nodeId, ...values })
          .onConflict((oc) => oc.columns(['kind', 'name', 'node']).doUpdateSet(values))
          .execute();
      } catch (error) {
        this.logger.warn('could not report this node\'s state', { kind: entry.kind, name: entry.name, ...errorFields(error) });
      }
    });
  }

  /** Forgets `name` on this node (a breaker or module removed). */
  forget(kind: NodeStateKind, name: string): void {
    if (!this.clustered) return;
    this.pending.delete(`${kind}\u0000${name}`);
    this.chain = this.chain.then(async () => {
      try {
        await this.database.kysely.deleteFrom('node_states').where('kind', '=', kind).where('name', '=', name).where('node', '=', this.nodeId).execute();
      } catch (error) {
        this.logger.warn('could not remove this node\'s state', { kind, name, ...errorFields(error) });
      }
    });
  }

  /** Resolves once every report made so far is written. */
  flushed(): Promise<void> {
    return this.chain;
  }

  /** Every live node's state of `name`, by node id. */
  async list(kind: NodeStateKind, name: string): Promise<NodeState[]> {
    const rows = await this.database.kysely
      .selectFrom('node_states')
      .innerJoin('cluster_nodes', 'cluster_nodes.id', 'node_states.node')
      .select(['node_states.node', 'node_states.state', 'node_states.version', 'node_states.detail_json', 'node_states.updated_at'])
      .where('node_states.kind', '=', kind)
      .where('node_states.name', '=', name)
      .where('cluster_nodes.last_seen_at', '>=', this.liveSince())
      .orderBy('node_states.node')
      .execute();
    return rows.map((r) => ({
      node: r.node,
      state: r.state,
      version: r.version,
      detail: r.detail_json === null ? null : (JSON.parse(r.detail_json) as unknown),
      updatedAt: r.updated_at,
    }));
  }
}
