/**
 * `npm run token -- <command>`: manage API tokens on the host, against the database the server
 * uses (HELIOS_DB_PATH, or HELIOS_DATABASE_URL for PostgreSQL). Works while the server runs: a
 * server on the same SQLite file notices the file changed (`PRAGMA data_version`) at its next
 * request and reloads its tokens first, so changes take effect at once (see auth/service.ts).
 *
 *   create --name ci --role OPERATOR   prints the new token on stdout, once
 *   list [--json]                      names, roles and dates; never secrets
 *   revoke --name ci
 *
 * Exit codes: 0 done, 1 refused or failed (message on stderr), 2 bad command line.
 */
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { AuditRepository } from '../src/audit/repository.js';
import { TokenService, type ApiTokenRecord } from '../src/auth/service.js';
import { parseRole, ROLES, type Role } from '../src/auth/roles.js';
import { systemClock } from '../src/clock.js';
import { ConfigError, loadConfig } from '../src/config.js';
import type { Database } from '../src/db/database.js';
import { UnitOfWork } from '../src/db/unit-of-work.js';
import { isUserError, userErrorsOf } from '../src/errors.js';
import { createLogger } from '../src/logger.js';
import { packageRoot } from '../src/paths.js';

const USAGE = `Usage: npm run token -- <command> [options]

Commands:
  create --name <name> --role <${ROLES.join('|')}>
                         create a token and print it on stdout (shown only once)
  list [--json]          list tokens (never their secrets)
  revoke --name <name>   revoke a token; it stops working at once, even in a running server

The database is HELIOS_DB_PATH (default ./data/helios.db), or HELIOS_DATABASE_URL when it is set.`;

class UsageError extends Error {
  override name = 'UsageError';
}

interface Parsed {
  command: 'create' | 'list' | 'revoke' | 'help';
  name: string | null;
  role: Role | null;
  json: boolean;
}

function parseCommandLine(argv: string[]): Parsed {
  let values: { name?: string | undefined; role?: string | undefined; json?: boolean | undefined; help?: boolean | undefined };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        name: { type: 'string' },
        role: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help || positionals[0] === 'help') return { command: 'help', name: null, role: null, json: false };
  if (positionals.length === 0) throw new UsageError('Missing command');
  if (positionals.length > 1) throw new UsageError(`Unexpected argument "${positionals[1]}"`);
  const command = positionals[0]!;
  if (command !== 'create' && command !== 'list' && command !== 'revoke') throw new UsageError(`Unknown command "${command}"`);
  if ((command === 'create' || command === 'revoke') && !values.name) throw new UsageError(`${command} needs --name <name>`);
  if (command === 'list' && values.name !== undefined) throw new UsageError('list takes no --name');
  if (command !== 'create' && values.role !== undefined) throw new UsageError('--role is only for create');
  let role: Role | null = null;
  if (command === 'create') {
    if (!values.role) throw new UsageError(`create needs --role <${ROLES.join('|')}>`);
    role = parseRole(values.role);
    if (!role) throw new UsageError(`Unknown role "${values.role}"; use one of ${ROLES.join(', ')}`);
  }
  return { command, name: values.name ?? null, role, json: values.json ?? false };
}

function cliActor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli';
  }
}

const iso = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());

function printTable(tokens: ApiTokenRecord[]): void {
  if (tokens.length === 0) {
    process.stdout.write('No tokens.\n');
    return;
  }
  const rows = [
    ['NAME', 'ROLE', 'STATUS', 'CREATED', 'CREATED BY', 'LAST USED'],
    ...tokens.map((t) => [
      t.name, t.role, t.revokedAt === null ? 'active' : `revoked ${iso(t.revokedAt)}`, iso(t.createdAt), t.createdBy, iso(t.lastUsedAt),
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) process.stdout.write(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
}

async function run(parsed: Parsed, database: Database): Promise<void> {
  const uow = new UnitOfWork(database);
  const tokens = new TokenService({
    uow, sqlite: database.sqlite, audit: new AuditRepository(uow), clock: systemClock, logger: createLogger('warn', { component: 'token-cli' }),
  });
  switch (parsed.command) {
    case 'create': {
      const { token, record } = await tokens.create(cliActor(), parsed.name!, parsed.role!);
      // The token alone on stdout, so `TOKEN=$(npm run -s token -- create ...)` works.
      process.stdout.write(`${token}\n`);
      process.stderr.write(`Created ${record.role} token "${record.name}". It is shown only once: store it now.\n`);
      return;
    }
    case 'list': {
      const list = await tokens.list();
      if (parsed.json) process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      else printTable(list);
      return;
    }
    case 'revoke': {
      const record = await tokens.revoke(cliActor(), parsed.name!);
      process.stdout.write(`Revoked token "${record.name}".\n`);
      return;
    }
    case 'help':
      return;
  }
}

async function main(argv: string[]): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parseCommandLine(argv);
  } catch (error) {
    process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}\n`);
    return 2;
  }
  if (parsed.command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let database: Database | null = null;
  try {
    const config = loadConfig();
    // Loaded only for a valid command: Kysely and pg cost a bad command line half a second.
    const { migrateDatabase, migrationsDir, openPostgresDatabase, openSqliteDatabase, readMigrations } = await import('../src/db/database.js');
    if (!config.databaseUrl && config.dbPath === ':memory:') {
      throw new ConfigError('HELIOS_DB_PATH is ":memory:": there is no database to manage');
    }
    database = config.databaseUrl
      ? openPostgresDatabase(config.databaseUrl, { poolSize: 1, applicationName: 'helios-token-cli' })
      : openSqliteDatabase(config.dbPath);
    await migrateDatabase(database, readMigrations(migrationsDir(packageRoot(), database.dialect)));
    await run(parsed, database);
    return 0;
  } catch (error) {
    if (isUserError(error)) {
      for (const e of userErrorsOf(error)) process.stderr.write(`error: ${e.message} (${e.code})\n`);
      return 1;
    }
    process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    await database?.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
