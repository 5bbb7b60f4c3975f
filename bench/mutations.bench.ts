/**
 * Persisted mutations: `setFlagPercentage` through the flag service, in process, on a real
 * database with the settings Helios ships (WAL, synchronous=NORMAL, foreign keys; see
 * src/db/connection.ts): each call is its own transaction (BEGIN IMMEDIATE; on SQLite one
 * synchronous unit, `uow.runSync`) that reads the flag (from the store's map of known rows after
 * `PRAGMA data_version`), updates the columns that changed, writes an audit row with the whole
 * state before and after, recompiles the flag and publishes the change after the commit. Every
 * call sets a different percentage, so none is a no-op.
 *
 * Baselines in the same run, same pragmas, a separate file in the same folder:
 * - the same number of raw better-sqlite3 upserts into a table shaped like feature_flags, one
 *   autocommit statement each (the floor any persisted flag store pays);
 * - the same upsert plus an audit insert in one explicit transaction (the minimum SQL the
 *   audited design needs), to separate SQL cost from the service's own. Goal (issue 15):
 *   Helios >= 0.7x of this floor;
 * - a contrast without a goal: that transaction with audit JSON of the same bytes as Helios's
 *   (the whole flag before and after, as Helios audits it; the floor's own JSON holds only the
 *   percentage), built by concatenation so it adds no serialising, only the bytes written.
 * Cases interleave round by round; the figure is the median round.
 *
 * Then the same mutation over HTTP (Helios in a child process, autocannon, 32 connections,
 * admin Bearer token), counted only when the payload says `errors: []`: once as clients send it
 * (one document, the percentage in variables) and once with the value written into the
 * document, which makes every request a new document for Yoga's parse and validation caches.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type autocannon from 'autocannon';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { openDatabase } from '../src/db/connection.js';
import type { BenchReport, BenchRow } from './report.js';
import { HTTP_CONNECTIONS, HTTP_DURATION_S, runLoad } from './support/load.js';
import { authHeaders, BENCH_ADMIN_TOKEN, startHelios } from './support/servers.js';
import { median, ratio, round } from './support/stats.js';

const PER_ROUND = 4_000;
const ROUNDS = 7;
const FLAG = 'neural_network_v2';

/** A percentage that differs from the previous call's, with the 0.01 resolution Helios keeps. */
const percentageFor = (i: number): number => ((i % 9_000) + 1) / 100;

function rawStore(file: string) {
  const db = openDatabase(file);
  db.exec(`
    CREATE TABLE flags_raw (
      name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '', enabled INTEGER NOT NULL,
      strategy TEXT NOT NULL, percentage REAL NOT NULL DEFAULT 0, stickiness TEXT NOT NULL DEFAULT 'default',
      gradual_start_percentage REAL, gradual_target_percentage REAL, gradual_start_at INTEGER,
      gradual_duration_seconds INTEGER, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE audit_raw (
      id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
      target_type TEXT NOT NULL, target TEXT NOT NULL, before_json TEXT, after_json TEXT
    ) STRICT;
    CREATE INDEX audit_raw_target ON audit_raw (target, id);`);
  const upsert = db.prepare(`
    INSERT INTO flags_raw (name, description, enabled, strategy, percentage, stickiness, created_at, updated_at)
    VALUES (?, 'New neural network architecture', 1, 'PERCENTAGE', ?, 'default', ?, ?)
    ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled, strategy = excluded.strategy,
      percentage = excluded.percentage, updated_at = excluded.updated_at`);
  const audit = db.prepare(`
    INSERT INTO audit_raw (at, actor, action, target_type, target, before_json, after_json)
    VALUES (?, 'bench', 'setFlagPercentage', 'FEATURE_FLAG', ?, ?, ?)`);
  const upsertAndAudit = db.transaction((name: string, p: number, now: number) => {
    upsert.run(name, p, now, now);
    audit.run(now, name, `{"percentage":${p - 0.01}}`, `{"percentage":${p}}`);
  });
  const upsertAndAuditJson = db.transaction((name: string, p: number, now: number, before: string, after: string) => {
    upsert.run(name, p, now, now);
    audit.run(now, name, before, after);
  });
  return { db, upsert, upsertAndAudit, upsertAndAuditJson };
}

export default async function run(): Promise<BenchReport> {
  const dir = mkdtempSync(path.join(tmpdir(), 'helios-bench-mut-'));
  const notes: string[] = [];
  const config = loadConfig({
    HELIOS_DB_PATH: path.join(dir, 'helios.db'),
    LOG_LEVEL: 'silent',
    HELIOS_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
  });
  const app = await createApp(config);
  const raw = rawStore(path.join(dir, 'raw.db'));
  const samples: Record<'helios' | 'raw' | 'rawAudit' | 'rawAuditJson', number[]> = { helios: [], raw: [], rawAudit: [], rawAuditJson: [] };
  // Helios's audit JSON for this flag at percentage p: the stored flag's JSON around the value.
  const PLACEHOLDER = -123.45;
  const seeded = app.services.flags.get(FLAG);
  if (!seeded) throw new Error(`seed flag ${FLAG} missing`);
  const template = JSON.stringify({ ...seeded, enabled: true, strategy: 'PERCENTAGE', percentage: PLACEHOLDER }).split(String(PLACEHOLDER));
  if (template.length !== 2) throw new Error('the audit JSON template must hold the percentage once');
  const [head, tail] = template as [string, string];
  let auditBytes = 0;
  let i = 0;
  let published = 0;
  const off = app.services.flags.onChange(() => published++);
  try {
    const { flags } = app.services;
    const cases: Record<keyof typeof samples, () => void | Promise<unknown>> = {
      helios: () => flags.setPercentage('bench', FLAG, percentageFor(i++)),
      raw: () => {
        raw.upsert.run(FLAG, percentageFor(i++), Date.now(), Date.now());
      },
      rawAudit: () => {
        raw.upsertAndAudit(FLAG, percentageFor(i++), Date.now());
      },
      rawAuditJson: () => {
        const p = percentageFor(i++);
        const after = head + p + tail;
        auditBytes = after.length;
        raw.upsertAndAuditJson(FLAG, p, Date.now(), head + (p - 0.01) + tail, after);
      },
    };
    const names = Object.keys(cases) as Array<keyof typeof samples>;
    for (const name of names) for (let k = 0; k < 500; k++) await cases[name]();
    const auditBefore = (app.db!.prepare('SELECT count(*) AS n FROM audit_log').get() as { n: number }).n;
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < names.length; k++) {
        const name = names[(k + r) % names.length]!;
        const op = cases[name];
        const start = process.hrtime.bigint();
        for (let n = 0; n < PER_ROUND; n++) await op();
        const seconds = Number(process.hrtime.bigint() - start) / 1e9;
        samples[name].push(PER_ROUND / seconds);
      }
    }
    const audited = (app.db!.prepare('SELECT count(*) AS n FROM audit_log').get() as { n: number }).n - auditBefore;
    const heliosAfter = (app.db!.prepare('SELECT length(after_json) AS n FROM audit_log ORDER BY id DESC LIMIT 1').get() as { n: number }).n;
    notes.push(`Audit JSON per column: Helios's last row ${heliosAfter} bytes (the whole flag); the same-bytes contrast ${auditBytes}; the floor's about ${'{"percentage":12.34}'.length}.`);
    const pragmas = `journal_mode=${String(app.db!.pragma('journal_mode', { simple: true }))}, synchronous=${String(app.db!.pragma('synchronous', { simple: true }))} (1 = NORMAL)`;
    notes.push(
      `${ROUNDS} rounds x ${PER_ROUND} calls per case, interleaved, median round; after 500 warm-up calls each. Helios wrote ${audited} audit rows for ${ROUNDS * PER_ROUND} timed calls and published ${published} events in all (sanity).`,
      `Helios database: ${pragmas}; the raw store opened with the same openDatabase().`,
    );
  } finally {
    off();
    raw.db.close();
    await app.close();
  }

  // ---- over HTTP ----
  const server = await startHelios();
  const http: Record<'variables' | 'literal', number> = { variables: Number.NaN, literal: Number.NaN };
  try {
    let n = 0;
    const bodies = {
      // What a client library sends: one document, the value in variables (Yoga's parse and validation caches hit).
      variables: () => JSON.stringify({
        query: `mutation SetPercentage($p: Float!) { setFlagPercentage(name: "${FLAG}", percentage: $p) { flag { percentage } errors { code } } }`,
        variables: { p: percentageFor(n++) },
      }),
      // The value written into the document: every request is a new document, parsed and validated anew.
      literal: () => JSON.stringify({
        query: `mutation { setFlagPercentage(name: "${FLAG}", percentage: ${percentageFor(n++)}) { flag { percentage } errors { code } } }`,
      }),
    };
    for (const kind of ['variables', 'literal'] as const) {
      let good = 0;
      let bad = 0;
      let firstBad: string | null = null;
      const onResponse = (status: number, text: string) => {
        if (status === 200 && text.includes('"errors":[]')) good++;
        else {
          bad++;
          firstBad ??= `${status} ${text.slice(0, 200)}`;
        }
      };
      const requests: autocannon.Request[] = [{ method: 'POST', setupRequest: (req: autocannon.Request) => ({ ...req, body: bodies[kind]() }), onResponse }];
      await runLoad({ url: server.ready.url, headers: authHeaders, durationS: 2, requests });
      good = 0;
      bad = 0;
      const result = await runLoad({ url: server.ready.url, headers: authHeaders, durationS: HTTP_DURATION_S, requests });
      http[kind] = good / result.durationS;
      notes.push(
        `HTTP (${kind === 'variables' ? 'percentage in variables' : 'percentage written into the document'}): autocannon ${HTTP_CONNECTIONS} connections, ${HTTP_DURATION_S} s after a 2 s warm-up, each request a different percentage; ${good} succeeded, ${bad} did not${firstBad ? ` (first: ${firstBad})` : ''}; latency p50 ${result.latencyP50Ms} ms, p99 ${result.latencyP99Ms} ms.`,
      );
    }
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const helios = median(samples.helios);
  const rawUpserts = median(samples.raw);
  const rawAudit = median(samples.rawAudit);
  const rawAuditJson = median(samples.rawAuditJson);
  const rows: BenchRow[] = [
    { case: 'raw better-sqlite3 upsert, autocommit (baseline)', value: round(rawUpserts, 0), unit: 'ops/s', baseline: 'raw upsert', ratio: 1 },
    { case: 'raw upsert + audit insert, one transaction', value: round(rawAudit, 0), unit: 'ops/s', baseline: 'raw upsert', ratio: ratio(rawAudit, rawUpserts) },
    { case: 'helios flags.setPercentage (in process)', value: round(helios, 0), unit: 'ops/s', baseline: 'raw upsert', ratio: ratio(helios, rawUpserts) },
    { case: 'helios flags.setPercentage vs raw upsert + audit', value: round(helios, 0), unit: 'ops/s', baseline: 'raw upsert + audit insert', ratio: ratio(helios, rawAudit), goal: 'ratio >= 0.7', met: ratio(helios, rawAudit) >= 0.7 },
    { case: "raw upsert + audit insert with Helios's audit JSON (same bytes)", value: round(rawAuditJson, 0), unit: 'ops/s', baseline: 'raw upsert + audit insert', ratio: ratio(rawAuditJson, rawAudit) },
    { case: 'helios flags.setPercentage vs that (same audit bytes)', value: round(helios, 0), unit: 'ops/s', baseline: "raw upsert + audit, Helios's JSON", ratio: ratio(helios, rawAuditJson) },
    { case: 'helios setFlagPercentage over HTTP ($p variable)', value: round(http.variables, 0), unit: 'req/s', baseline: 'helios in process', ratio: ratio(http.variables, helios) },
    { case: 'helios setFlagPercentage over HTTP (literal in document)', value: round(http.literal, 0), unit: 'req/s', baseline: 'over HTTP with a variable', ratio: ratio(http.literal, http.variables) },
  ];
  notes.push(`Per call: raw upsert ${round(1e6 / rawUpserts, 1)} us, raw upsert + audit ${round(1e6 / rawAudit, 1)} us, with Helios's audit JSON ${round(1e6 / rawAuditJson, 1)} us, Helios ${round(1e6 / helios, 1)} us.`);
  return { name: 'mutations', rows, notes };
}
