/** `clusterStatus`: the nodes sharing this database, the leader, and the revision this node has applied. */
import type { ClusterNode } from '../cluster/membership.js';
import type { ClusterStatus } from '../cluster/cluster.js';
import { builder } from './builder.js';
import { requireRoleOrThrow, toDate } from './common.js';

const ClusterNodeRef = builder.objectRef<ClusterNode>('ClusterNode').implement({
  description: 'A Helios node heartbeating into the shared database.',
  fields: (t) => ({
    id: t.exposeString('id', { description: 'HELIOS_NODE_ID, or host:port.' }),
    address: t.exposeString('address', { description: 'Where the node listens (its GraphQL URL).' }),
    version: t.exposeString('version', { description: 'The Helios version the node runs.' }),
    startedAt: t.field({ type: 'DateTime', resolve: (n) => toDate(n.startedAt) }),
    lastSeenAt: t.field({ type: 'DateTime', description: 'Its last heartbeat; nodes silent for HELIOS_NODE_TIMEOUT_MS are dropped.', resolve: (n) => toDate(n.lastSeenAt) }),
    appliedRevision: t.int({ description: 'The last event of the cluster log the node had applied at its last heartbeat.', resolve: (n) => n.appliedRevision }),
  }),
});

const ClusterStatusRef = builder.objectRef<ClusterStatus & { self: string }>('ClusterStatus').implement({
  description: 'On SQLite, a cluster of one: this node, leading, at revision 0.',
  fields: (t) => ({
    nodes: t.field({ type: [ClusterNodeRef], resolve: (s) => s.nodes }),
    leader: t.string({ nullable: true, description: 'The node holding the leader lock (it schedules rollouts); null while nobody holds it.', resolve: (s) => s.leader }),
    revision: t.int({ description: 'The id of the last cluster event this node has applied.', resolve: (s) => s.revision }),
    node: t.string({ description: 'The node answering this query.', resolve: (s) => s.self }),
  }),
});

builder.queryField('clusterStatus', (t) =>
  t.field({
    type: ClusterStatusRef,
    description: 'The nodes sharing this database (PostgreSQL), the rollout leader and this node\'s revision.',
    resolve: async (_root, _args, ctx) => {
      requireRoleOrThrow(ctx, 'VIEWER');
      const cluster = ctx.services.cluster;
      return { ...(await cluster.status()), self: cluster.nodeId };
    },
  }),
);
