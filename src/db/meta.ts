/** Small key/value facts about the database itself (for example: default flags imported). */
import type { UnitOfWork } from './unit-of-work.js';

export class MetaRepository {
  constructor(private readonly uow: UnitOfWork) {}

  async get(key: string): Promise<string | null> {
    const row = await this.uow.db.selectFrom('meta').select('value').where('key', '=', key).executeTakeFirst();
    return row?.value ?? null;
  }

  async set(key: string, value: string): Promise<void> {
    await this.uow.db
      .insertInto('meta')
      .values({ key, value })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value }))
      .execute();
  }
}
