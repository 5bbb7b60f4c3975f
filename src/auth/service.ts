/**
 * API tokens: who may call Helios and with which role (see roles.ts).
 *
 * Rules worth knowing:
 * - A token is shown once, by `create`; only its SHA-256 is stored (token-secret.ts explains why
 *   that is enough). Neither the token nor its hash ever reaches the audit log or `list`.
 * - `authenticate` is on every request's path and answers from memory: every token's hash ->
 *   name, role, revokedAt, lastUsedAt, loaded by `start()` (or `bootstrap()`) and updated after
 *   the commit of each `create` and `revoke` made through this service. `refresh(name)` re-reads
 *   one token's row (what the cluster's event log will call for changes made on other nodes).
 * - Changes made by another process (the token CLI writing the same SQLite file while the server
 *   runs) still take effect at once: on SQLite, each `authenticate` asks the connection for
 *   `PRAGMA data_version`, a counter that moves only when ANOTHER connection commits to the file
 *   (a few microseconds: no I/O beyond the WAL index, no await). When it moved, the table is
 *   re-read and that one call answers with a promise, after the reload; every other call answers
 *   synchronously. This was chosen over answering a cache miss with a lookup because a miss can
 *   only reveal a new token, never a revoked one, and over polling because "revoked means refused
 *   at once" is what the CLI promises. On PostgreSQL there is no such counter: a token unknown
 *   to memory is looked up by its hash (so one created by the CLI works at once), and revocations
 *   made elsewhere arrive through `refresh` (the cluster's event log).
 * - `last_used_at` is written at most once a minute per token, so reads do not turn into a write
 *   per request; the write is fire-and-forget (logged when it fails), never awaited by a request.
 * - Names are unique among all rows; a revoked token's name may be reused, which replaces the
 *   revoked row (the audit log keeps its history). `bootstrap-admin` and `anonymous` are reserved.
 * - Bootstrap, at server start: `HELIOS_ADMIN_TOKEN`, when set, is an ADMIN token named
 *   `bootstrap-admin` held in memory only (as its hash): removing the variable and restarting
 *   removes it, and there is no database row to forget. Otherwise, when the table has never held
 *   a token, an ADMIN token named `admin` is created, printed once and written to a file only its
 *   owner may read. Once any token has existed (even revoked), nothing is created automatically:
 *   use the CLI (`npm run token -- create`) with access to the host.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { closeSync, fchmodSync, mkdirSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { AuditRepository } from '../audit/repository.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/connection.js';
import type { ClusterEvents } from '../cluster/event-log.js';
import type { UnitOfWork } from '../db/unit-of-work.js';
import { quoteValue, UserError } from '../errors.js';
import { EventBus } from '../events.js';
import { errorFields, type Logger } from '../logger.js';
import { validateName } from '../validation.js';
import { ANONYMOUS_ACTOR, parseAuthorization, type Authentication, type AuthenticatedToken } from './authorization.js';
import { ApiTokenRepository, type ApiTokenRecord, type StoredToken } from './repository.js';
import { isRole, type Role } from './roles.js';
import { generateToken, hashToken, isGeneratedTokenShape, sameHash } from './token-secret.js';
import { isUniqueViolation } from '../db/errors.js';

export type { ApiTokenRecord } from './repository.js';

export const BOOTSTRAP_ADMIN_NAME = 'bootstrap-admin';
export const FIRST_ADMIN_NAME = 'admin';
const RESERVED_NAMES = new Set([BOOTSTRAP_ADMIN_NAME, ANONYMOUS_ACTOR]);
/** `last_used_at` resolution: a busy client costs one write a minute, not one per request. */
export const LAST_USED_RESOLUTION_MS = 60_000;
/** Shorter HELIOS_ADMIN_TOKEN values are refused: ADMIN can run code on the host. */
export const MIN_ADMIN_TOKEN_LENGTH = 16;

export interface TokenServiceDeps {
  uow: UnitOfWork;
  /**
   * The better-sqlite3 connection under the store (`database.sqlite`), null on PostgreSQL. Only
   * its `PRAGMA data_version` is read, to notice tokens changed by another process (the CLI).
   */
  sqlite: Db | null;
  audit: AuditRepository;
  clock: Clock;
  logger: Logger;
  /** Where `tokenRevoked` is published (the app's bus); a private one when omitted (the CLI). */
  bus?: EventBus;
  /**
   * The cluster's event log: a create or revoke is appended in its unit; another node's
   * refreshes that token here, and a revocation closes its sockets and streams on this node too.
   */
  events?: ClusterEvents;
}

/** The cluster event topic of token changes; payload `{ name, revoked }`. */
export const TOKEN_EVENT_TOPIC = 'token';

export interface BootstrapOptions {
  /** HELIOS_ADMIN_TOKEN (config.adminToken). */
  adminToken: string | null;
  /** Where a first-start admin token is written (mode 0600); null prints it only. */
  tokenFile: string | null;
  logger: Logger;
  /** Shows the first-start token to the operator, once (stdout in main.ts). */
  print: (text: string) => void;
}

export type BootstrapResult =
  | { kind: 'env'; name: string }
  | { kind: 'created'; name: string; token: string; file: string | null }
  | { kind: 'existing'; tokens: number };

export class TokenBootstrapError extends Error {
  override name = 'TokenBootstrapError';
}

/** What `authenticate` knows of a token, without a database read. */
interface CachedToken {
  name: string;
  role: Role;
  tokenHash: string;
  revokedAt: number | null;
  lastUsedAt: number | null;
}

const toCached = ({ record, tokenHash }: StoredToken): CachedToken => ({
  name: record.name, role: record.role, tokenHash, revokedAt: record.revokedAt, lastUsedAt: record.lastUsedAt,
});

const later = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.max(a, b));

export class TokenService {
  private readonly repo: ApiTokenRepository;
  private envAdminHash: string | null = null;
  private readonly uow: UnitOfWork;
  private readonly bus: EventBus;

  // ---- the in-memory index authenticate answers from ----
  private byHash = new Map<string, CachedToken>();
  private byName = new Map<string, CachedToken>();
  /** Bumped by every change to the index: a read of the store that saw it move reads again. */
  private generation = 0;
  /** Whether the index must be (re)loaded before it answers: at first, after a failed load or a rolled-back one. */
  private stale = true;
  /** `PRAGMA data_version` when the index was last loaded (SQLite). */
  private seenVersion: number | null = null;
  private reloading: Promise<void> | null = null;
  private readonly dataVersion: BetterSqlite3.Statement<[], number> | null;
  /** last_used_at writes under way (see `flush`). */
  private readonly pendingWrites = new Set<Promise<void>>();

  constructor(private readonly deps: TokenServiceDeps) {
    this.uow = deps.uow;
    this.repo = new ApiTokenRepository(deps.uow);
    this.bus = deps.bus ?? new EventBus();
    this.dataVersion = deps.sqlite ? (deps.sqlite.prepare('PRAGMA data_version').pluck() as BetterSqlite3.Statement<[], number>) : null;
    deps.events?.on(TOKEN_EVENT_TOPIC, async (payload, event) => {
      const { name, revoked } = payload as { name: string; revoked: boolean };
      await this.refresh(name);
      if (revoked) this.bus.publish('tokenRevoked', { name, actor: `node:${event.node}`, at: event.at });
    });
  }

  // ---- start-up, shut-down and the index ----

  /** Loads every token into memory. `bootstrap` calls it; `authenticate` before it loads first. */
  async start(): Promise<void> {
    this.stale = true;
    await this.pendingLoad();
  }

  /** Waits for the last_used_at writes under way (call before closing the database). */
  async stop(): Promise<void> {
    await this.flush();
  }

  /** Resolves once every last_used_at write started so far has finished (or failed and been logged). */
  async flush(): Promise<void> {
    while (this.pendingWrites.size > 0) await Promise.all([...this.pendingWrites]);
  }

  /**
   * Re-reads the token `name` from the store into memory (a missing row removes it). For changes
   * this service did not make itself: the cluster's event log applies other nodes' changes here.
   */
  async refresh(name: string): Promise<void> {
    for (;;) {
      const generation = this.generation;
      const stored = await this.repo.getStored(name);
      // Something changed the index while we read (a commit of ours, another refresh): read again.
      if (generation !== this.generation) continue;
      if (stored) this.put(toCached(stored));
      else this.remove(name);
      this.reloadIfRolledBack();
      return;
    }
  }

  /**
   * The load `authenticate` must wait for, or null (the usual case). A load starts when the index
   * is stale or, on SQLite, when another connection committed to the file since the last load.
   */
  private pendingLoad(): Promise<void> | null {
    const version = this.dataVersion ? this.dataVersion.get()! : null;
    if (!this.stale && version === this.seenVersion) return this.reloading;
    this.stale = false;
    // Noted before reading: a commit landing during the read moves it again and loads again.
    this.seenVersion = version;
    const previous = this.reloading ?? Promise.resolve();
    const load: Promise<void> = previous
      .catch(() => undefined)
      .then(() => this.loadAll())
      .then(
        () => {
          if (this.reloading === load) this.reloading = null;
        },
        (error: unknown) => {
          if (this.reloading === load) this.reloading = null;
          this.stale = true; // the next call tries again
          throw error;
        },
      );
    this.reloading = load;
    return load;
  }

  private async loadAll(): Promise<void> {
    for (;;) {
      const generation = this.generation;
      const rows = await this.repo.allStored();
      if (generation !== this.generation) continue; // see refresh
      const byHash = new Map<string, CachedToken>();
      const byName = new Map<string, CachedToken>();
      for (const row of rows) {
        const entry = toCached(row);
        // A use recorded in memory whose write has not landed yet is kept.
        entry.lastUsedAt = later(entry.lastUsedAt, this.byHash.get(entry.tokenHash)?.lastUsedAt ?? null);
        byHash.set(entry.tokenHash, entry);
        byName.set(entry.name, entry);
      }
      this.byHash = byHash;
      this.byName = byName;
      this.generation++;
      this.reloadIfRolledBack();
      return;
    }
  }

  /**
   * A read made inside a unit of work (an embedder authenticating within its own change) saw
   * that unit's uncommitted rows: should it roll back, the index is loaded again before it answers.
   */
  private reloadIfRolledBack(): void {
    if (this.uow.active) this.uow.onRollback(() => (this.stale = true));
  }

  private put(entry: CachedToken): void {
    const old = this.byName.get(entry.name);
    if (old) {
      this.byHash.delete(old.tokenHash);
      if (old.tokenHash === entry.tokenHash) entry.lastUsedAt = later(entry.lastUsedAt, old.lastUsedAt);
    }
    this.byName.set(entry.name, entry);
    this.byHash.set(entry.tokenHash, entry);
    this.generation++;
  }

  private remove(name: string): void {
    const old = this.byName.get(name);
    if (!old) return;
    this.byName.delete(name);
    this.byHash.delete(old.tokenHash);
    this.generation++;
  }

  // ---- reads ----

  /** Every token, revoked ones included, by name; never a secret. */
  async list(): Promise<ApiTokenRecord[]> {
    return (await this.repo.allStored()).map((stored) => this.withRecordedUse(stored));
  }

  async get(name: string): Promise<ApiTokenRecord | null> {
    const stored = await this.repo.getStored(name);
    return stored ? this.withRecordedUse(stored) : null;
  }

  /** The row, with a last use noted in memory whose write has not landed yet. */
  private withRecordedUse({ record, tokenHash }: StoredToken): ApiTokenRecord {
    const lastUsedAt = later(record.lastUsedAt, this.byHash.get(tokenHash)?.lastUsedAt ?? null);
    return lastUsedAt === record.lastUsedAt ? record : { ...record, lastUsedAt };
  }

  /**
   * The token's identity, or null for null, unknown or revoked tokens. Pass the bare token
   * (what `parseAuthorization` returns), not the header.
   *
   * Synchronous from memory, except (then a promise) right after another process changed the
   * SQLite file, while the index reloads, and on PostgreSQL for a token memory does not know.
   */
  authenticate(token: string | null): Authentication {
    if (token === null || token === '') return null;
    const tokenHash = hashToken(token);
    if (this.envAdminHash !== null && sameHash(tokenHash, this.envAdminHash)) {
      return { name: BOOTSTRAP_ADMIN_NAME, role: 'ADMIN' };
    }
    if (!isGeneratedTokenShape(token)) return null;
    const load = this.pendingLoad();
    // Just loaded: memory is the table, a miss is final.
    if (load) return load.then(() => this.fromMemory(tokenHash));
    const entry = this.byHash.get(tokenHash);
    if (entry) return this.fromMemory(tokenHash);
    // On SQLite memory is the table (data_version says nobody else wrote); on PostgreSQL a token
    // created elsewhere may not have reached memory yet: look it up (as every call did before).
    return this.dataVersion ? null : this.lookUp(tokenHash);
  }

  private fromMemory(tokenHash: string): AuthenticatedToken | null {
    const entry = this.byHash.get(tokenHash);
    if (!entry || entry.revokedAt !== null) return null;
    this.noteUse(entry);
    return { name: entry.name, role: entry.role };
  }

  private async lookUp(tokenHash: string): Promise<AuthenticatedToken | null> {
    const found = await this.repo.findByHash(tokenHash);
    if (!found) return null;
    await this.refresh(found.record.name);
    return this.fromMemory(tokenHash);
  }

  /** Records the use in memory at once and in the store at most once a minute per token. */
  private noteUse(entry: CachedToken): void {
    const now = this.deps.clock.now();
    if (entry.lastUsedAt !== null && now - entry.lastUsedAt < LAST_USED_RESOLUTION_MS) return;
    entry.lastUsedAt = now;
    const { name, tokenHash } = entry;
    const write = () => {
      // Fire-and-forget, deliberately: authenticate answers from memory and never waits for the
      // database. last_used_at is bookkeeping: a failed write (a busy database) is logged, and
      // neither turns the valid token away nor becomes an unhandled rejection.
      const pending: Promise<void> = this.repo
        .touch(name, tokenHash, now)
        .catch((error: unknown) => {
          this.deps.logger.warn('could not record token use', { token: name, ...errorFields(error) });
        })
        .finally(() => this.pendingWrites.delete(pending));
      this.pendingWrites.add(pending);
    };
    // Inside a unit of work the write would join (and race) that unit: it waits for its commit.
    if (this.uow.active) this.uow.afterCommit(write);
    else write();
  }

  // ---- changes ----

  /** Creates a token; the returned `token` is the only time the secret exists outside the caller. */
  async create(actor: string, rawName: string, role: Role): Promise<{ token: string; record: ApiTokenRecord }> {
    const name = validateName(rawName, 'name', 'Token name');
    if (RESERVED_NAMES.has(name)) throw new UserError('INVALID_NAME', `Token name ${quoteValue(name)} is reserved`, 'name');
    if (!isRole(role)) throw new UserError('INVALID_ARGUMENT', `Unknown role ${quoteValue(role)}`, 'role');
    const token = generateToken();
    const tokenHash = hashToken(token);
    const now = this.deps.clock.now();
    const alreadyExists = () => new UserError('TOKEN_ALREADY_EXISTS', `A token named ${quoteValue(name)} already exists`, 'name');
    let record: ApiTokenRecord;
    try {
      record = await this.uow.run(async () => {
        const existing = await this.repo.get(name);
        if (existing && existing.revokedAt === null) throw alreadyExists();
        if (existing) await this.repo.delete(name);
        await this.repo.insert({ name, role, tokenHash, createdAt: now, createdBy: actor });
        const created = (await this.repo.getStored(name))!;
        await this.deps.audit.record({
          at: now, actor, action: 'createApiToken', targetType: 'API_TOKEN', target: name, before: existing, after: created.record,
        });
        this.deps.events?.append(TOKEN_EVENT_TOPIC, { name, revoked: false });
        this.uow.afterCommit(() => this.put(toCached(created)));
        return created.record;
      });
    } catch (error) {
      // PostgreSQL: another node (or the CLI) created the name between our check and insert.
      if (isUniqueViolation(error)) throw alreadyExists();
      throw error;
    }
    return { token, record };
  }

  /**
   * Called after a revocation made through this service commits (the server closes that
   * token's open sockets): a listener on the bus's `tokenRevoked` topic. A revocation made by
   * the CLI in another process is seen at the token's next request or operation instead.
   */
  onRevoke(listener: (name: string) => void): () => void {
    return this.bus.on('tokenRevoked', (event) => listener(event.name));
  }

  /** Revokes in the caller's unit of work (or its own); `tokenRevoked` is published after the outermost commit. */
  async revoke(actor: string, rawName: string): Promise<ApiTokenRecord> {
    const name = rawName.trim();
    const now = this.deps.clock.now();
    return this.uow.run(async () => {
      const before = await this.repo.get(name);
      if (!before || !(await this.repo.revoke(name, now))) {
        throw new UserError('TOKEN_NOT_FOUND', `No active token named ${quoteValue(name)}`, 'name');
      }
      const after = (await this.repo.getStored(name))!;
      await this.deps.audit.record({
        at: now, actor, action: 'revokeApiToken', targetType: 'API_TOKEN', target: name, before, after: after.record,
      });
      this.deps.events?.append(TOKEN_EVENT_TOPIC, { name, revoked: true });
      // Memory first, then the event: a listener's next check already refuses the token.
      this.uow.afterCommit(() => this.put(toCached(after)));
      this.uow.afterCommit(() => this.bus.publish('tokenRevoked', { name: after.record.name, actor, at: now }));
      return after.record;
    });
  }

  // ---- start-up ----

  async bootstrap(options: BootstrapOptions): Promise<BootstrapResult> {
    if (options.adminToken !== null && options.adminToken !== '') {
      this.envAdminHash = hashToken(checkAdminToken(options.adminToken));
      await this.start();
      options.logger.info('HELIOS_ADMIN_TOKEN accepted', { token: BOOTSTRAP_ADMIN_NAME, role: 'ADMIN' });
      return { kind: 'env', name: BOOTSTRAP_ADMIN_NAME };
    }
    this.envAdminHash = null;
    await this.start();
    const tokens = await this.repo.count();
    if (tokens > 0) return { kind: 'existing', tokens };

    const { token } = await this.create('system', FIRST_ADMIN_NAME, 'ADMIN');
    const file = options.tokenFile === null ? null : writeTokenFile(options.tokenFile, token, options.logger);
    options.print(firstStartBanner(token, file));
    options.logger.info('created the first admin token', { token: FIRST_ADMIN_NAME, file });
    return { kind: 'created', name: FIRST_ADMIN_NAME, token, file };
  }
}

function checkAdminToken(value: string): string {
  let parsed: string | null;
  try {
    parsed = parseAuthorization(`Bearer ${value}`);
  } catch {
    parsed = null;
  }
  if (parsed !== value) {
    throw new TokenBootstrapError('HELIOS_ADMIN_TOKEN must be printable ASCII without spaces');
  }
  if (value.length < MIN_ADMIN_TOKEN_LENGTH) {
    throw new TokenBootstrapError(
      `HELIOS_ADMIN_TOKEN must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters (try: openssl rand -base64 32)`,
    );
  }
  return value;
}

/**
 * Creates the file with mode 0600 in one step ('wx' fails if it exists), so the token is never
 * readable by others, not even briefly. An existing file is left alone: it may not be ours.
 */
function writeTokenFile(file: string, token: string, logger: Logger): string | null {
  try {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const fd = openSync(file, 'wx', 0o600);
    try {
      fchmodSync(fd, 0o600);
      writeSync(fd, `${token}\n`);
    } finally {
      closeSync(fd);
    }
    return file;
  } catch (error) {
    const exists = error instanceof Error && 'code' in error && error.code === 'EEXIST';
    logger.warn(
      exists
        ? 'admin token file already exists and was left unchanged; the new token was printed only'
        : 'could not write the admin token file; the new token was printed only',
      { file, ...errorFields(error) },
    );
    return null;
  }
}

function firstStartBanner(token: string, file: string | null): string {
  return [
    '',
    'Helios created an ADMIN token named "admin". It is shown only this once:',
    '',
    `    ${token}`,
    '',
    file ? `It is also saved in ${file} (readable only by its owner).` : 'It was not saved anywhere: store it now.',
    'Send it as "Authorization: Bearer <token>"; create narrower tokens with `npm run token -- create`.',
    '',
  ].join('\n');
}
