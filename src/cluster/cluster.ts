/**
 * The cluster as the services see it: this node's id, the event log that carries changes to
 * the other nodes, membership and leadership, and the per-node states. One per app; on SQLite
 * the same object describes a cluster of one (nothing is sent, this node always leads).
 */
import os from 'node:os';
import type { Clock } from '../clock.js';
import type { HeliosConfig } from '../config.js';
import type { Database } from '../db/database.js';
import type { UnitOfWork } from '../db/unit-of-work.js';
import type { Logger } from '../logger.js';
import { EventLog } from './event-log.js';
import { Membership, type ClusterNode } from './membership.js';
import { NodeStates } from './node-states.js';

export interface ClusterStatus {
  nodes: ClusterNode[];
  leader: string | null;
  revision: number;
}

export interface ClusterOptions {
  config: HeliosConfig;
  database: Database;
  uow: UnitOfWork;
  clock: Clock;
  logger: Logger;
  version: string;
}

/** HELIOS_NODE_ID, or host:port (host:pid when the port is chosen by the OS). */
export function defaultNodeId(config: HeliosConfig): string {
  if (config.nodeId) return config.nodeId;
  return config.port === 0 ? `${os.hostname()}:pid${process.pid}` : `${os.hostname()}:${config.port}`;
}

export class Cluster {
  readonly nodeId: string;
  readonly events: EventLog;
  readonly membership: Membership;
  readonly nodeStates: NodeStates;
  private address: string;

  get nodeAddress(): string {
    return this.address;
  }

  constructor(private readonly options: ClusterOptions) {
    const { config, database, uow, clock, logger } = options;
    this.nodeId = defaultNodeId(config);
    this.address = `http://${config.host}:${config.port}`;
    const log = logger.child({ domain: 'cluster', node: this.nodeId });
    this.events = new EventLog({ database, uow, nodeId: this.nodeId, clock, logger: log, url: config.databaseUrl });
    this.membership = new Membership({
      database,
      url: config.databaseUrl,
      nodeId: this.nodeId,
      address: this.address,
      version: options.version,
      clock,
      logger: log,
      heartbeatMs: config.cluster.heartbeatMs,
      timeoutMs: config.cluster.nodeTimeoutMs,
      revision: () => this.events.revision,
    });
    this.nodeStates = new NodeStates(database, this.nodeId, clock, log, () => clock.now() - config.cluster.nodeTimeoutMs);
  }

  /** True on PostgreSQL: other nodes may exist. */
  get clustered(): boolean {
    return this.options.database.dialect === 'postgres';
  }

  /** The address other nodes and clusterStatus show (known once the server listens). */
  setAddress(address: string): void {
    this.address = address;
    this.membership.setAddress(address);
  }

  async status(): Promise<ClusterStatus> {
    const [nodes, leader] = [await this.membership.nodes(), await this.membership.leader()];
    return { nodes, leader, revision: this.events.revision };
  }

  /** After the services loaded their state: follow the log and join the cluster. */
  async start(): Promise<void> {
    await this.events.start();
    await this.membership.start();
  }

  async stop(): Promise<void> {
    await this.membership.stop();
    await this.events.stop();
    await this.nodeStates.flushed();
  }
}
