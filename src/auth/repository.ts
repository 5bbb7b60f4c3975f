/** SQL for API tokens. Rows hold the token's SHA-256, never the token. */
import type { Db } from '../db/connection.js';
import type { Role } from './roles.js';

export interface ApiTokenRecord {
  name: string;
  role: Role;
  createdAt: number;
  createdBy: string;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

interface TokenRow {
  name: string;
  role: Role;
  token_hash: string;
  created_at: number;
  created_by: string;
  last_used_at: number | null;
  revoked_at: number | null;
}

export interface ActiveToken {
  name: string;
  role: Role;
  lastUsedAt: number | null;
}

const toRecord = (row: TokenRow): ApiTokenRecord => ({
  name: row.name,
  role: row.role,
  createdAt: row.created_at,
  createdBy: row.created_by,
  lastUsedAt: row.last_used_at,
  revokedAt: row.revoked_at,
});

export class ApiTokenRepository {
  private readonly selectAll;
  private readonly selectOne;
  private readonly selectActiveByHash;
  private readonly countAll;
  private readonly insertRow;
  private readonly deleteRow;
  private readonly revokeRow;
  private readonly touchRow;

  constructor(private readonly db: Db) {
    this.selectAll = db.prepare<[], TokenRow>('SELECT * FROM api_tokens ORDER BY name');
    this.selectOne = db.prepare<[string], TokenRow>('SELECT * FROM api_tokens WHERE name = ?');
    this.selectActiveByHash = db.prepare<[string], Pick<TokenRow, 'name' | 'role' | 'last_used_at'>>(
      'SELECT name, role, last_used_at FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL',
    );
    this.countAll = db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM api_tokens');
    this.insertRow = db.prepare(
      `INSERT INTO api_tokens (name, role, token_hash, created_at, created_by, last_used_at, revoked_at)
       VALUES (@name, @role, @tokenHash, @createdAt, @createdBy, NULL, NULL)`,
    );
    this.deleteRow = db.prepare('DELETE FROM api_tokens WHERE name = ?');
    this.revokeRow = db.prepare('UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL');
    this.touchRow = db.prepare('UPDATE api_tokens SET last_used_at = ? WHERE name = ?');
  }


  all(): ApiTokenRecord[] {
    return this.selectAll.all().map(toRecord);
  }

  get(name: string): ApiTokenRecord | null {
    const row = this.selectOne.get(name);
    return row ? toRecord(row) : null;
  }

  findActiveByHash(tokenHash: string): ActiveToken | null {
    const row = this.selectActiveByHash.get(tokenHash);
    return row ? { name: row.name, role: row.role, lastUsedAt: row.last_used_at } : null;
  }

  /** Rows in any state, revoked included. */
  count(): number {
    return this.countAll.get()?.n ?? 0;
  }

  insert(row: { name: string; role: Role; tokenHash: string; createdAt: number; createdBy: string }): void {
    this.insertRow.run(row);
  }

  delete(name: string): void {
    this.deleteRow.run(name);
  }

  /** Returns whether an active token was revoked. */
  revoke(name: string, at: number): boolean {
    return this.revokeRow.run(at, name).changes > 0;
  }

  touch(name: string, at: number): void {
    this.touchRow.run(at, name);
  }
}
