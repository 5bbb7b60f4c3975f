/** Small key/value facts about the database itself (for example: default flags imported). */
import type { Db } from './connection.js';

export class MetaRepository {
  private readonly select;
  private readonly upsert;

  constructor(db: Db) {
    this.select = db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?');
    this.upsert = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
  }

  get(key: string): string | null {
    return this.select.get(key)?.value ?? null;
  }

  set(key: string, value: string): void {
    this.upsert.run(key, value);
  }
}
