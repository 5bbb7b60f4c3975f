/** Feature flags end to end: real server, real SQLite file, HTTP and graphql-ws. */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { bucketOf } from '../../src/flags/engine.js';
import {
  AddToWhitelistDocument,
  AuditLogDocument,
  ConfigureGradualRolloutDocument,
  CreateFeatureFlagDocument,
  DeleteFeatureFlagDocument,
  DisableFeatureFlagDocument,
  EnableFeatureFlagDocument,
  EvaluateFlagDocument,
  EvaluateFlagsDocument,
  FeatureFlagChangedDocument,
  FeatureFlagDocument,
  FeatureFlagsDocument,
  ModularityStatusDocument,
  ReloadFeatureFlagsDocument,
  RemoveFromWhitelistDocument,
  SetFlagPercentageDocument,
} from '../gql/graphql.js';
import { serverPool } from '../support/pool.js';
import { subscribe, untilListening } from '../support/server.js';

const SEED_FLAGS = [
  'advanced_risk_engine',
  'hot_reload_modules',
  'llm_enhanced_decisions',
  'multi_timeframe_analysis',
  'neural_network_v2',
  'paper_trading_v2',
  'portfolio_optimizer_v2',
  'websocket_v2',
];

const pool = serverPool();
const start = pool.start;

describe('Quick Start flag steps', () => {
  it('lists the eight seed flags, rolls one out to 25% and evaluates deterministically', async () => {
    const h = await start();

    // Step 1: check feature flags.
    const { featureFlags } = await h.query(FeatureFlagsDocument);
    expect(featureFlags.map((f) => f.name)).toEqual(SEED_FLAGS);
    const byName = Object.fromEntries(featureFlags.map((f) => [f.name, f]));
    expect(byName.llm_enhanced_decisions).toMatchObject({ enabled: true, strategy: 'ALL_ON' });
    expect(byName.neural_network_v2).toMatchObject({ enabled: false, strategy: 'PERCENTAGE', percentage: 25 });
    expect(byName.advanced_risk_engine!.whitelist).toEqual([{ attribute: 'symbol', values: ['BTCZAR'] }]);
    expect(byName.paper_trading_v2).toMatchObject({ strategy: 'GRADUAL', gradual: { targetPercentage: 10 } });
    expect(byName.portfolio_optimizer_v2).toMatchObject({ enabled: false, strategy: 'ALL_OFF' });

    // Step 2: enable for 25% of traffic.
    const set = await h.query(SetFlagPercentageDocument, { name: 'neural_network_v2', percentage: 25 });
    expect(set.setFlagPercentage.errors).toEqual([]);
    expect(set.setFlagPercentage.flag).toMatchObject({ enabled: true, strategy: 'PERCENTAGE', percentage: 25, effectivePercentage: 25 });

    const session = 'abc123';
    const expectedBucket = bucketOf('neural_network_v2', session);
    const evaluation = await h.query(EvaluateFlagDocument, { name: 'neural_network_v2', context: { sessionId: session } });
    expect(evaluation.evaluateFlag).toEqual({
      flag: 'neural_network_v2',
      enabled: expectedBucket < 2500,
      reason: 'SPLIT',
      strategy: 'PERCENTAGE',
      percentage: 25,
      bucket: expectedBucket,
    });

    // About a quarter of sessions are in.
    let enabled = 0;
    const { evaluateFlags } = await h.query(EvaluateFlagsDocument, { context: { sessionId: 's-0' }, names: ['neural_network_v2', 'nope'] });
    expect(evaluateFlags.map((e) => e.reason)).toEqual(['SPLIT', 'FLAG_NOT_FOUND']);
    for (let i = 0; i < 400; i++) if (bucketOf('neural_network_v2', `s-${i}`) < 2500) enabled++;
    expect(enabled).toBeGreaterThan(60);
    expect(enabled).toBeLessThan(140);

    // Step 3 of the seed (status) reflects the flags.
    const status = await h.query(ModularityStatusDocument);
    expect(status.modularityStatus.flags).toEqual({ total: 8, enabled: 4 });
  });

  it('runs the seed deployment workflow: 10% -> 50% -> ALL_ON on a flag that did not exist', async () => {
    const h = await start();
    const ten = await h.query(SetFlagPercentageDocument, { name: 'my_new_feature', percentage: 10 });
    expect(ten.setFlagPercentage.flag).toMatchObject({ name: 'my_new_feature', enabled: true, percentage: 10 });
    const fifty = await h.query(SetFlagPercentageDocument, { name: 'my_new_feature', percentage: 50 });
    expect(fifty.setFlagPercentage.flag!.percentage).toBe(50);
    const full = await h.query(EnableFeatureFlagDocument, { name: 'my_new_feature', strategy: 'ALL_ON' });
    expect(full.enableFeatureFlag.flag).toMatchObject({ enabled: true, strategy: 'ALL_ON' });
    const e = await h.query(EvaluateFlagDocument, { name: 'my_new_feature', context: { userId: 'u1' } });
    expect(e.evaluateFlag).toMatchObject({ enabled: true, reason: 'STATIC' });

    const disabled = await h.query(DisableFeatureFlagDocument, { name: 'my_new_feature' });
    expect(disabled.disableFeatureFlag.flag!.enabled).toBe(false);
    const off = await h.query(EvaluateFlagDocument, { name: 'my_new_feature', context: { userId: 'u1' } });
    expect(off.evaluateFlag).toMatchObject({ enabled: false, reason: 'DISABLED' });

    const unknown = await h.query(EvaluateFlagDocument, { name: 'never_defined' });
    expect(unknown.evaluateFlag).toMatchObject({ enabled: false, reason: 'FLAG_NOT_FOUND', strategy: null, bucket: null });
  });

  it('targets whitelisted symbols and free attributes, and removes them again', async () => {
    const h = await start();
    await h.query(EnableFeatureFlagDocument, { name: 'advanced_risk_engine' });
    const btc = await h.query(EvaluateFlagDocument, { name: 'advanced_risk_engine', context: { symbol: 'BTCZAR' } });
    expect(btc.evaluateFlag).toMatchObject({ enabled: true, reason: 'TARGETING_MATCH' });
    const eth = await h.query(EvaluateFlagDocument, { name: 'advanced_risk_engine', context: { symbol: 'ETHZAR' } });
    expect(eth.evaluateFlag).toMatchObject({ enabled: false, reason: 'DEFAULT' });

    const added = await h.query(AddToWhitelistDocument, { name: 'advanced_risk_engine', attribute: 'region', value: 'eu' });
    expect(added.addToWhitelist.flag!.whitelist).toEqual([
      { attribute: 'symbol', values: ['BTCZAR'] },
      { attribute: 'region', values: ['eu'] },
    ]);
    const eu = await h.query(EvaluateFlagDocument, { name: 'advanced_risk_engine', context: { attributes: { region: 'eu' } } });
    expect(eu.evaluateFlag.enabled).toBe(true);

    // The seed's plural attribute names are accepted as aliases.
    const users = await h.query(AddToWhitelistDocument, { name: 'advanced_risk_engine', attribute: 'users', value: 'alice' });
    expect(users.addToWhitelist.flag!.whitelist).toContainEqual({ attribute: 'userId', values: ['alice'] });

    const removed = await h.query(RemoveFromWhitelistDocument, { name: 'advanced_risk_engine', attribute: 'symbols', value: 'BTCZAR' });
    expect(removed.removeFromWhitelist.flag!.whitelist.map((w) => w.attribute)).toEqual(['region', 'userId']);
    const after = await h.query(EvaluateFlagDocument, { name: 'advanced_risk_engine', context: { symbol: 'BTCZAR' } });
    expect(after.evaluateFlag.enabled).toBe(false);
  });

  it('creates and deletes flags, refusing duplicates and unknown names', async () => {
    const h = await start();
    const created = await h.query(CreateFeatureFlagDocument, { name: 'beta_ui', description: 'New UI', percentage: 5 });
    expect(created.createFeatureFlag.flag).toMatchObject({ name: 'beta_ui', enabled: false, strategy: 'PERCENTAGE', percentage: 5 });
    const dup = await h.query(CreateFeatureFlagDocument, { name: 'beta_ui' });
    expect(dup.createFeatureFlag).toEqual({ flag: null, errors: [{ code: 'FLAG_ALREADY_EXISTS', message: 'Feature flag "beta_ui" already exists', field: 'name' }] });
    const deleted = await h.query(DeleteFeatureFlagDocument, { name: 'beta_ui' });
    expect(deleted.deleteFeatureFlag).toEqual({ flag: { name: 'beta_ui' }, errors: [] });
    expect((await h.query(FeatureFlagDocument, { name: 'beta_ui' })).featureFlag).toBeNull();
    const again = await h.query(DeleteFeatureFlagDocument, { name: 'beta_ui' });
    expect(again.deleteFeatureFlag.errors[0]!.code).toBe('FLAG_NOT_FOUND');
  });
});

describe('bad input', () => {
  it('returns typed errors and changes nothing', async () => {
    const h = await start();
    const before = await h.query(FeatureFlagsDocument);
    const auditBefore = await h.query(AuditLogDocument, { first: 1 });

    const cases = [
      [await h.query(SetFlagPercentageDocument, { name: 'neural_network_v2', percentage: 150 }), 'setFlagPercentage', 'INVALID_PERCENTAGE', 'percentage'],
      [await h.query(SetFlagPercentageDocument, { name: 'neural_network_v2', percentage: -1 }), 'setFlagPercentage', 'INVALID_PERCENTAGE', 'percentage'],
      [await h.query(SetFlagPercentageDocument, { name: '', percentage: 10 }), 'setFlagPercentage', 'INVALID_NAME', 'name'],
      [await h.query(SetFlagPercentageDocument, { name: 'x'.repeat(101), percentage: 10 }), 'setFlagPercentage', 'INVALID_NAME', 'name'],
      [await h.query(SetFlagPercentageDocument, { name: 'bad name!', percentage: 10 }), 'setFlagPercentage', 'INVALID_NAME', 'name'],
      [await h.query(DisableFeatureFlagDocument, { name: 'no_such_flag' }), 'disableFeatureFlag', 'FLAG_NOT_FOUND', 'name'],
      [await h.query(AddToWhitelistDocument, { name: 'no_such_flag', attribute: 'symbol', value: 'X' }), 'addToWhitelist', 'FLAG_NOT_FOUND', 'name'],
      [await h.query(AddToWhitelistDocument, { name: 'websocket_v2', attribute: 'bad attr', value: 'X' }), 'addToWhitelist', 'INVALID_ARGUMENT', 'attribute'],
      [await h.query(ConfigureGradualRolloutDocument, { name: 'websocket_v2', startPercentage: 0, targetPercentage: 101, durationSeconds: 60 }), 'configureGradualRollout', 'INVALID_PERCENTAGE', 'targetPercentage'],
      [await h.query(ConfigureGradualRolloutDocument, { name: 'websocket_v2', startPercentage: 0, targetPercentage: 50, durationSeconds: 0 }), 'configureGradualRollout', 'INVALID_ARGUMENT', 'durationSeconds'],
      [await h.query(EnableFeatureFlagDocument, { name: 'websocket_v2', strategy: 'GRADUAL' }), 'enableFeatureFlag', 'INVALID_STRATEGY', 'strategy'],
    ] as const;
    for (const [data, field, code, argument] of cases) {
      const payload = (data as unknown as Record<string, { errors: { code: string; field: string | null; message: string }[]; flag: unknown }>)[field]!;
      expect(payload.flag, `${field} ${code}`).toBeNull();
      expect(payload.errors).toHaveLength(1);
      expect(payload.errors[0]).toMatchObject({ code, field: argument });
      expect(payload.errors[0]!.message.length).toBeGreaterThan(10);
    }

    // An unknown strategy is refused by GraphQL validation before any resolver runs.
    const res = await fetch(h.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'mutation { enableFeatureFlag(name: "websocket_v2", strategy: SOMETIMES) { errors { code } } }' }),
    });
    const body = (await res.json()) as { errors: { message: string; extensions?: { code?: string } }[] };
    expect(body.errors[0]!.message).toContain('SOMETIMES');
    expect(body.errors[0]!.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');

    expect(await h.query(FeatureFlagsDocument)).toEqual(before);
    expect((await h.query(AuditLogDocument, { first: 1 })).auditLog.edges[0]!.node.id).toBe(auditBefore.auditLog.edges[0]!.node.id);
    expect((await fetch(h.url.replace('/graphql', '/health'))).status).toBe(200);
  });

  it('rejects an invalid flags file on reload without changing anything', async () => {
    const dir = pool.track((await import('node:fs')).mkdtempSync(path.join((await import('node:os')).tmpdir(), 'helios-flags-')));
    const file = path.join(dir, 'flags.json');
    writeFileSync(file, readFileSync('config/feature_flags.json'));
    const h = await start({ env: { HELIOS_FLAGS_FILE: file } });
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 40 });

    writeFileSync(file, JSON.stringify({ websocket_v2: { strategy: 'percentage', percentage: 10 }, broken: { strategy: 'sometimes' } }));
    const bad = await h.query(ReloadFeatureFlagsDocument);
    expect(bad.reloadFeatureFlags.changed).toEqual([]);
    expect(bad.reloadFeatureFlags.errors).toEqual([
      expect.objectContaining({ code: 'INVALID_CONFIG_FILE', field: 'broken', message: expect.stringContaining('Unknown strategy "sometimes"') }),
    ]);
    expect((await h.query(FeatureFlagDocument, { name: 'websocket_v2' })).featureFlag!.percentage).toBe(40);

    writeFileSync(file, '{ not json');
    expect((await h.query(ReloadFeatureFlagsDocument)).reloadFeatureFlags.errors[0]!.code).toBe('INVALID_CONFIG_FILE');
  });
});

describe('reloadFeatureFlags', () => {
  it('replaces the flags the file names and keeps the others', async () => {
    const h = await start();
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 80 });
    await h.query(SetFlagPercentageDocument, { name: 'api_only_flag', percentage: 5 });
    const reload = await h.query(ReloadFeatureFlagsDocument);
    expect(reload.reloadFeatureFlags.errors).toEqual([]);
    expect(reload.reloadFeatureFlags.changed.map((f) => f.name)).toEqual(['websocket_v2']);
    const ws = (await h.query(FeatureFlagDocument, { name: 'websocket_v2' })).featureFlag!;
    expect(ws).toMatchObject({ enabled: false, percentage: 25 });
    expect((await h.query(FeatureFlagDocument, { name: 'api_only_flag' })).featureFlag!.percentage).toBe(5);
    // Applying an unchanged file again changes nothing.
    expect((await h.query(ReloadFeatureFlagsDocument)).reloadFeatureFlags.changed).toEqual([]);
  });
});

describe('featureFlagChanged', () => {
  it('delivers a mutation\'s change to subscribers of that flag and of all flags, once each', async () => {
    const h = await start();
    const client = h.wsClient();
    const one = subscribe(client, FeatureFlagChangedDocument, { name: 'neural_network_v2' });
    const all = subscribe(client, FeatureFlagChangedDocument, {});
    await untilListening(h, 'featureFlagChanged', 2);

    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 30 });
    await h.query(SetFlagPercentageDocument, { name: 'neural_network_v2', percentage: 25 });
    // A mutation that changes nothing publishes nothing.
    await h.query(SetFlagPercentageDocument, { name: 'neural_network_v2', percentage: 25 });
    await h.query(DisableFeatureFlagDocument, { name: 'neural_network_v2' });

    const first = (await one.next()).featureFlagChanged;
    expect(first).toMatchObject({
      name: 'neural_network_v2',
      kind: 'UPDATED',
      action: 'setFlagPercentage',
      actor: 'bootstrap-admin',
      flag: { enabled: true, percentage: 25 },
      previous: { enabled: false },
    });
    expect((await one.next()).featureFlagChanged).toMatchObject({ action: 'disableFeatureFlag', flag: { enabled: false } });

    const seen: string[] = [];
    for (let i = 0; i < 3; i++) {
      const e = (await all.next()).featureFlagChanged;
      seen.push(`${e.name}:${e.action}`);
    }
    expect(seen).toEqual(['websocket_v2:setFlagPercentage', 'neural_network_v2:setFlagPercentage', 'neural_network_v2:disableFeatureFlag']);
    // Nothing else arrives: the no-op was not published.
    await h.query(CreateFeatureFlagDocument, { name: 'marker' });
    expect((await all.next()).featureFlagChanged.name).toBe('marker');
    expect(one.events).toHaveLength(2);
  });

  it('publishes each step of a gradual rollout as the clock moves', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    const h = await start({ clock });
    const client = h.wsClient();
    const feed = subscribe(client, FeatureFlagChangedDocument, { name: 'websocket_v2' });
    await untilListening(h, 'featureFlagChanged');

    const startAt = new Date(clock.now()).toISOString();
    const configured = await h.query(ConfigureGradualRolloutDocument, {
      name: 'websocket_v2', startPercentage: 10, targetPercentage: 12, startAt, durationSeconds: 200,
    });
    expect(configured.configureGradualRollout.flag).toMatchObject({
      strategy: 'GRADUAL', enabled: true, effectivePercentage: 10,
      gradual: { startPercentage: 10, targetPercentage: 12, durationSeconds: 200, currentPercentage: 10 },
    });
    expect((await feed.next()).featureFlagChanged.action).toBe('configureGradualRollout');

    clock.advance(99_999);
    expect((await h.query(FeatureFlagDocument, { name: 'websocket_v2' })).featureFlag!.effectivePercentage).toBe(10);
    clock.advance(1);
    const step = (await feed.next()).featureFlagChanged;
    expect(step).toMatchObject({ kind: 'PERCENTAGE_ADVANCED', action: 'gradualRollout', actor: null, flag: { effectivePercentage: 11 } });
    clock.advance(100_000);
    expect((await feed.next()).featureFlagChanged.flag!.effectivePercentage).toBe(12);
    clock.advance(1_000_000);
    const evaluation = await h.query(EvaluateFlagDocument, { name: 'websocket_v2', context: { sessionId: 'x' } });
    expect(evaluation.evaluateFlag).toMatchObject({ percentage: 12, reason: 'SPLIT' });
    expect(feed.events).toHaveLength(3);
  });
  it('stops publishing steps once the flag leaves GRADUAL, and steps only the flags that are running', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    const h = await start({ clock });
    const client = h.wsClient();
    const feed = subscribe(client, FeatureFlagChangedDocument, {});
    await untilListening(h, 'featureFlagChanged');
    const startAt = new Date(clock.now()).toISOString();
    for (const name of ['websocket_v2', 'neural_network_v2']) {
      await h.query(ConfigureGradualRolloutDocument, { name, startPercentage: 10, targetPercentage: 12, startAt, durationSeconds: 200 });
    }
    await h.query(SetFlagPercentageDocument, { name: 'neural_network_v2', percentage: 40 });
    clock.advance(100_000);
    clock.advance(100_000);
    await h.query(CreateFeatureFlagDocument, { name: 'marker' });
    const seen: string[] = [];
    for (;;) {
      const event = (await feed.next()).featureFlagChanged;
      seen.push(`${event.name}:${event.action}${event.kind === 'PERCENTAGE_ADVANCED' ? `:${event.flag!.effectivePercentage}` : ''}`);
      if (event.name === 'marker') break;
    }
    expect(seen).toEqual([
      'websocket_v2:configureGradualRollout', 'neural_network_v2:configureGradualRollout', 'neural_network_v2:setFlagPercentage',
      'websocket_v2:gradualRollout:11', 'websocket_v2:gradualRollout:12', 'marker:createFeatureFlag',
    ]);
  });
});

describe('persistence', () => {
  it('keeps every change across a restart on the same database file, without re-importing the file', async () => {
    const first = await start();
    await first.query(SetFlagPercentageDocument, { name: 'neural_network_v2', percentage: 25 });
    await first.query(DeleteFeatureFlagDocument, { name: 'portfolio_optimizer_v2' });
    await first.query(AddToWhitelistDocument, { name: 'advanced_risk_engine', attribute: 'symbol', value: 'ETHZAR' });
    const before = await first.query(FeatureFlagsDocument);
    await pool.stop(first);

    const second = await start({ dir: first.dir });
    const after = await second.query(FeatureFlagsDocument);
    expect(after).toEqual(before);
    expect(after.featureFlags.find((f) => f.name === 'portfolio_optimizer_v2')).toBeUndefined();
    const audit = await second.query(AuditLogDocument, { first: 3 });
    expect(audit.auditLog.edges.map((e) => e.node.action)).toEqual(['addToWhitelist', 'deleteFeatureFlag', 'setFlagPercentage']);
  });
});

describe('auditLog', () => {
  it('records actor, action, before and after, paginated by cursor and filtered by target', async () => {
    const h = await start();
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 30 });
    await h.query(SetFlagPercentageDocument, { name: 'websocket_v2', percentage: 40 });
    await h.query(DisableFeatureFlagDocument, { name: 'websocket_v2' });

    const page1 = await h.query(AuditLogDocument, { first: 2, target: 'websocket_v2' });
    expect(page1.auditLog.edges.map((e) => e.node.action)).toEqual(['disableFeatureFlag', 'setFlagPercentage']);
    expect(page1.auditLog.pageInfo.hasNextPage).toBe(true);
    const latest = page1.auditLog.edges[1]!.node;
    expect(latest).toMatchObject({ actor: 'bootstrap-admin', targetType: 'FEATURE_FLAG', target: 'websocket_v2' });
    expect((latest.before as { percentage: number }).percentage).toBe(30);
    expect((latest.after as { percentage: number }).percentage).toBe(40);
    // Times as the API writes them everywhere else: ISO-8601, not epoch milliseconds.
    const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
    const after = latest.after as { createdAt: unknown; updatedAt: unknown };
    expect(after.createdAt).toMatch(iso);
    expect(after.updatedAt).toMatch(iso);
    expect((latest.before as { updatedAt: unknown }).updatedAt).toMatch(iso);
    const disabled = page1.auditLog.edges[0]!.node.after as { updatedAt: string };
    expect(disabled.updatedAt).toBe((await h.query(FeatureFlagDocument, { name: 'websocket_v2' })).featureFlag!.updatedAt);

    const page2 = await h.query(AuditLogDocument, { first: 2, target: 'websocket_v2', after: page1.auditLog.pageInfo.endCursor });
    expect(page2.auditLog.edges.map((e) => e.node.action)).toEqual(['setFlagPercentage', 'importFeatureFlags']);
    expect(page2.auditLog.pageInfo.hasNextPage).toBe(false);

    const bad = await h.request(AuditLogDocument, { first: 2, after: 'garbage' });
    expect(bad.errors?.[0]?.extensions?.code).toBe('INVALID_CURSOR');
    const tooMany = await h.request(AuditLogDocument, { first: 100_000 });
    expect(tooMany.errors?.[0]?.extensions?.code).toBe('INVALID_ARGUMENT');
  });
});

describe('in-process library API', () => {
  it('answers isEnabled from compiled flags in memory, and follows changes made over GraphQL', async () => {
    const h = await start();
    const { flags } = h.server.app.services;
    expect(flags.isEnabled('llm_enhanced_decisions')).toBe(true);
    expect(flags.isEnabled('portfolio_optimizer_v2', { userId: 'u' })).toBe(false);

    const seen: string[] = [];
    const off = flags.onChange((e) => seen.push(`${e.name}:${e.kind}`));
    await h.query(DisableFeatureFlagDocument, { name: 'llm_enhanced_decisions' });
    expect(flags.isEnabled('llm_enhanced_decisions')).toBe(false);
    expect(seen).toEqual(['llm_enhanced_decisions:UPDATED']);
    off();

    // Evaluations never read the database: a row changed behind the service's back is not seen.
    await h.server.app.database.kysely.updateTable('feature_flags').set({ enabled: 1 }).where('name', '=', 'llm_enhanced_decisions').execute();
    expect(flags.isEnabled('llm_enhanced_decisions')).toBe(false);
  });
});
