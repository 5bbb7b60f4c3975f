/** unregisterModule: a module registered by mistake can be removed, never while loaded or depended on. */
import { describe, expect, it } from 'vitest';
import {
  AuditLogDocument,
  CreateApiTokenDocument,
  LoadModuleDocument,
  ModuleDocument,
  ModuleStateChangedDocument,
  RegisterModuleDocument,
  UnloadModuleDocument,
  UnregisterModuleDocument,
} from '../gql/graphql.js';
import { serverPool } from '../support/pool.js';
import { subscribe, untilListening } from '../support/server.js';

const pool = serverPool();

describe('unregisterModule', () => {
  it('is refused while loaded or depended on, removes the module otherwise, audited and published, for good', async () => {
    const modulesDir = pool.modulesDir();
    const env = { HELIOS_MODULES_DIR: modulesDir, HELIOS_MODULE_MAX_HEAP_MB: '32' };
    const h = await pool.start({ env });
    const register = async (name: string, modulePath: string, dependencies: string[] = []) =>
      expect((await h.query(RegisterModuleDocument, { name, modulePath, version: '1.0.0', dependencies })).registerModule.errors).toEqual([]);
    await register('market_simulator', 'market_simulator.js');
    await register('paper_trading', 'trading/paper_trading.js', ['market_simulator']);

    const depended = await h.query(UnregisterModuleDocument, { name: 'market_simulator' });
    expect(depended.unregisterModule).toMatchObject({ module: null, errors: [{ code: 'MODULE_HAS_DEPENDENTS', field: 'name' }] });
    expect(depended.unregisterModule.errors[0]!.message).toMatch(/paper_trading/);

    expect((await h.query(LoadModuleDocument, { name: 'paper_trading' })).loadModule.errors).toEqual([]);
    const loaded = await h.query(UnregisterModuleDocument, { name: 'paper_trading' });
    expect(loaded.unregisterModule.errors).toMatchObject([{ code: 'INVALID_MODULE_STATE', field: 'name' }]);
    expect((await h.query(ModuleDocument, { name: 'paper_trading' })).module!.state).toBe('ACTIVE');

    const operator = (await h.query(CreateApiTokenDocument, { name: 'ops', role: 'OPERATOR' })).createApiToken.token!;
    const forbidden = await h.request(UnregisterModuleDocument, { name: 'paper_trading' }, { authorization: `Bearer ${operator}` });
    expect(forbidden.data!.unregisterModule.errors).toMatchObject([{ code: 'FORBIDDEN' }]);
    const unknown = await h.query(UnregisterModuleDocument, { name: 'no_such_module' });
    expect(unknown.unregisterModule.errors).toMatchObject([{ code: 'MODULE_NOT_FOUND' }]);

    await h.query(UnloadModuleDocument, { name: 'market_simulator', cascade: true });
    const feed = subscribe(h.wsClient(), ModuleStateChangedDocument, { name: 'paper_trading' });
    await untilListening(h, 'moduleStateChanged');
    const removed = await h.query(UnregisterModuleDocument, { name: 'paper_trading' });
    expect(removed.unregisterModule).toEqual({ module: { name: 'paper_trading', state: 'UNLOADED' }, errors: [] });
    expect(await feed.next()).toMatchObject({ moduleStateChanged: { name: 'paper_trading', action: 'unregisterModule', from: 'UNLOADED', to: 'UNLOADED', error: null } });
    expect((await h.query(ModuleDocument, { name: 'paper_trading' })).module).toBeNull();
    const audit = await h.query(AuditLogDocument, { first: 1, target: 'paper_trading' });
    expect(audit.auditLog.edges[0]!.node).toMatchObject({ action: 'unregisterModule', actor: 'bootstrap-admin', targetType: 'MODULE', after: null, before: { modulePath: 'trading/paper_trading.js' } });

    // Nothing depends on market_simulator now; the name is free again.
    expect((await h.query(UnregisterModuleDocument, { name: 'market_simulator' })).unregisterModule.errors).toEqual([]);
    await register('market_simulator', 'market_simulator.js');

    // Gone for good: a restart does not bring paper_trading back.
    await pool.stop(h);
    const again = await pool.start({ dir: h.dir, env });
    expect((await again.query(ModuleDocument, { name: 'paper_trading' })).module).toBeNull();
    expect((await again.query(ModuleDocument, { name: 'market_simulator' })).module!.state).toBe('UNLOADED');
  });
});
