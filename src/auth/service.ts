/**
 * API tokens: who may call Helios and with which role (see roles.ts).
 *
 * Rules worth knowing:
 * - A token is shown once, by `create`; only its SHA-256 is stored (token-secret.ts explains why
 *   that is enough). Neither the token nor its hash ever reaches the audit log or `list`.
 * - Every token is checked against SQLite on each call, so a token created or revoked by the CLI
 *   takes effect in a running server at once. `last_used_at` is written at most once a minute
 *   per token, so reads do not turn into a write per request.
 * - Names are unique among all rows; a revoked token's name may be reused, which replaces the
 *   revoked row (the audit log keeps its history). `bootstrap-admin` and `anonymous` are reserved.
 * - Bootstrap, at server start: `HELIOS_ADMIN_TOKEN`, when set, is an ADMIN token named
 *   `bootstrap-admin` held in memory only (as its hash): removing the variable and restarting
 *   removes it, and there is no database row to forget. Otherwise, when the table has never held
 *   a token, an ADMIN token named `admin` is created, printed once and written to a file only its
 *   owner may read. Once any token has existed (even revoked), nothing is created automatically:
 *   use the CLI (`npm run token -- create`) with access to the host.
 */
import { closeSync, fchmodSync, mkdirSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { AuditRepository } from '../audit/repository.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/connection.js';
import { unitOfWorkFor, type UnitOfWork } from '../db/unit-of-work.js';
import { quoteValue, UserError } from '../errors.js';
import { EventBus } from '../events.js';
import { errorFields, type Logger } from '../logger.js';
import { validateName } from '../validation.js';
import { ANONYMOUS_ACTOR, parseAuthorization, type AuthenticatedToken } from './authorization.js';
import { ApiTokenRepository, type ApiTokenRecord } from './repository.js';
import { isRole, type Role } from './roles.js';
import { generateToken, hashToken, isGeneratedTokenShape, sameHash } from './token-secret.js';

export type { ApiTokenRecord } from './repository.js';

export const BOOTSTRAP_ADMIN_NAME = 'bootstrap-admin';
export const FIRST_ADMIN_NAME = 'admin';
const RESERVED_NAMES = new Set([BOOTSTRAP_ADMIN_NAME, ANONYMOUS_ACTOR]);
/** `last_used_at` resolution: a busy client costs one write a minute, not one per request. */
export const LAST_USED_RESOLUTION_MS = 60_000;
/** Shorter HELIOS_ADMIN_TOKEN values are refused: ADMIN can run code on the host. */
export const MIN_ADMIN_TOKEN_LENGTH = 16;

export interface TokenServiceDeps {
  db: Db;
  audit: AuditRepository;
  clock: Clock;
  logger: Logger;
  /** Where `tokenRevoked` is published (the app's bus); a private one when omitted (the CLI). */
  bus?: EventBus;
}

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

export class TokenService {
  private readonly repo: ApiTokenRepository;
  private envAdminHash: string | null = null;
  private readonly uow: UnitOfWork;
  private readonly bus: EventBus;

  constructor(private readonly deps: TokenServiceDeps) {
    this.repo = new ApiTokenRepository(deps.db);
    this.uow = unitOfWorkFor(deps.db);
    this.bus = deps.bus ?? new EventBus();
  }

  // ---- reads ----

  /** Every token, revoked ones included, by name; never a secret. */
  list(): ApiTokenRecord[] {
    return this.repo.all();
  }

  get(name: string): ApiTokenRecord | null {
    return this.repo.get(name);
  }

  /**
   * The token's identity, or null for null, unknown or revoked tokens. Pass the bare token
   * (what `parseAuthorization` returns), not the header.
   */
  authenticate(token: string | null): AuthenticatedToken | null {
    if (token === null || token === '') return null;
    const tokenHash = hashToken(token);
    if (this.envAdminHash !== null && sameHash(tokenHash, this.envAdminHash)) {
      return { name: BOOTSTRAP_ADMIN_NAME, role: 'ADMIN' };
    }
    if (!isGeneratedTokenShape(token)) return null;
    const found = this.repo.findActiveByHash(tokenHash);
    if (!found) return null;
    const now = this.deps.clock.now();
    if (found.lastUsedAt === null || now - found.lastUsedAt >= LAST_USED_RESOLUTION_MS) {
      try {
        this.repo.touch(found.name, now);
      } catch (error) {
        // Bookkeeping only: a busy database must not turn a valid token away.
        this.deps.logger.warn('could not record token use', { token: found.name, ...errorFields(error) });
      }
    }
    return { name: found.name, role: found.role };
  }

  // ---- changes ----

  /** Creates a token; the returned `token` is the only time the secret exists outside the caller. */
  create(actor: string, rawName: string, role: Role): { token: string; record: ApiTokenRecord } {
    const name = validateName(rawName, 'name', 'Token name');
    if (RESERVED_NAMES.has(name)) throw new UserError('INVALID_NAME', `Token name ${quoteValue(name)} is reserved`, 'name');
    if (!isRole(role)) throw new UserError('INVALID_ARGUMENT', `Unknown role ${quoteValue(role)}`, 'role');
    const token = generateToken();
    const now = this.deps.clock.now();
    const record = this.uow.run(() => {
      const existing = this.repo.get(name);
      if (existing && existing.revokedAt === null) {
        throw new UserError('TOKEN_ALREADY_EXISTS', `A token named ${quoteValue(name)} already exists`, 'name');
      }
      if (existing) this.repo.delete(name);
      this.repo.insert({ name, role, tokenHash: hashToken(token), createdAt: now, createdBy: actor });
      const created = this.repo.get(name)!;
      this.deps.audit.record({
        at: now, actor, action: 'createApiToken', targetType: 'API_TOKEN', target: name, before: existing, after: created,
      });
      return created;
    });
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
  revoke(actor: string, rawName: string): ApiTokenRecord {
    const name = rawName.trim();
    const now = this.deps.clock.now();
    return this.uow.run(() => {
      const before = this.repo.get(name);
      if (!before || !this.repo.revoke(name, now)) {
        throw new UserError('TOKEN_NOT_FOUND', `No active token named ${quoteValue(name)}`, 'name');
      }
      const after = this.repo.get(name)!;
      this.deps.audit.record({
        at: now, actor, action: 'revokeApiToken', targetType: 'API_TOKEN', target: name, before, after,
      });
      this.uow.afterCommit(() => this.bus.publish('tokenRevoked', { name: after.name, actor, at: now }));
      return after;
    });
  }

  // ---- start-up ----

  bootstrap(options: BootstrapOptions): BootstrapResult {
    if (options.adminToken !== null && options.adminToken !== '') {
      this.envAdminHash = hashToken(checkAdminToken(options.adminToken));
      options.logger.info('HELIOS_ADMIN_TOKEN accepted', { token: BOOTSTRAP_ADMIN_NAME, role: 'ADMIN' });
      return { kind: 'env', name: BOOTSTRAP_ADMIN_NAME };
    }
    this.envAdminHash = null;
    const tokens = this.repo.count();
    if (tokens > 0) return { kind: 'existing', tokens };

    const { token } = this.create('system', FIRST_ADMIN_NAME, 'ADMIN');
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
