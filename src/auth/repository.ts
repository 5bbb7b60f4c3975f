/** The api_tokens store. Rows hold the token's SHA-256, never the token. */
import type { Selectable } from 'kysely';
import type { ApiTokensTable } from '../db/schema.js';
import type { UnitOfWork } from '../db/unit-of-work.js';
import type { Role } from './roles.js';

export interface ApiTokenRecord {
  name: string;
  role: Role;
  createdAt: number;
  createdBy: string;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

/** A row with its hash: for the service's in-memory index only, never for `list` or the audit log. */
export interface StoredToken {
  record: ApiTokenRecord;
  tokenHash: string;
}

/** A row as the store reads it: the table's columns (src/db/schema.ts). */
type TokenRow = Selectable<ApiTokensTable>;

const toRecord = (row: TokenRow): ApiTokenRecord => ({
  name: row.name,
  role: row.role as Role,
  createdAt: row.created_at,
  createdBy: row.created_by,
  lastUsedAt: row.last_used_at,
  revokedAt: row.revoked_at,
});

const toStored = (row: TokenRow): StoredToken => ({ record: toRecord(row), tokenHash: row.token_hash });


export class ApiTokenRepository {
  constructor(private readonly uow: UnitOfWork) {}

  async all(): Promise<ApiTokenRecord[]> {
    return (await this.allStored()).map((s) => s.record);
  }

  /** Every row with its hash, by name. */
  async allStored(): Promise<StoredToken[]> {
    const rows = await this.uow.db.selectFrom('api_tokens').selectAll().orderBy('name').execute();
    return rows.map(toStored);
  }

  async get(name: string): Promise<ApiTokenRecord | null> {
    return (await this.getStored(name))?.record ?? null;
  }

  async getStored(name: string): Promise<StoredToken | null> {
    const row = await this.uow.db.selectFrom('api_tokens').selectAll().where('name', '=', name).executeTakeFirst();
    return row ? toStored(row) : null;
  }

  /** The row holding `tokenHash`, in any state (revoked included). */
  async findByHash(tokenHash: string): Promise<StoredToken | null> {
    const row = await this.uow.db.selectFrom('api_tokens').selectAll().where('token_hash', '=', tokenHash).executeTakeFirst();
    return row ? toStored(row) : null;
  }

  /** Rows in any state, revoked included. */
  async count(): Promise<number> {
    const row = await this.uow.db
      .selectFrom('api_tokens')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  async insert(row: { name: string; role: Role; tokenHash: string; createdAt: number; createdBy: string }): Promise<void> {
    await this.uow.db
      .insertInto('api_tokens')
      .values({
        name: row.name,
        role: row.role,
        token_hash: row.tokenHash,
        created_at: row.createdAt,
        created_by: row.createdBy,
        last_used_at: null,
        revoked_at: null,
      })
      .execute();
  }

  async delete(name: string): Promise<void> {
    await this.uow.db.deleteFrom('api_tokens').where('name', '=', name).execute();
  }

  /** Returns whether an active token was revoked. */
  async revoke(name: string, at: number): Promise<boolean> {
    const result = await this.uow.db
      .updateTable('api_tokens')
      .set({ revoked_at: at })
      .where('name', '=', name)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  /** Records a use of the token `tokenHash` (named `name`: a reused name's new row is left alone). */
  async touch(name: string, tokenHash: string, at: number): Promise<void> {
    await this.uow.db
      .updateTable('api_tokens')
      .set({ last_used_at: at })
      .where('name', '=', name)
      .where('token_hash', '=', tokenHash)
      .execute();
  }
}
