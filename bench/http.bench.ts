/**
 * HTTP throughput against the framework floor and the physical floor, each server in its own
 * child process (the load generator never shares their event loop), hit by autocannon with the
 * same settings (32 connections, no pipelining, a warm-up, then 6 rounds of 2 s per case in
 * turns, 12 s each, median round).
 * Helios runs with LOG_LEVEL=silent on a temporary database with the eight seed flags.
 *
 * Rows:
 * - `{ hello }` on a bare graphql-yoga server with Yoga's defaults (the framework floor) and
 *   Helios `evaluateFlag` / `evaluateFlags` of all eight flags against it (goal: ratio >= 1.0);
 * - the physical floor: a bare `node:http` server (support/raw-http-server.ts) that reads the
 *   request and answers a canned body, byte for byte the answer Helios gave to `evaluateFlag`
 *   (same size, same content type), and on another path the answer Helios gave to the OFREP
 *   single-flag evaluation. Goals: GraphQL `evaluateFlag` >= 0.4x of its floor, OFREP
 *   `POST /ofrep/v1/evaluate/flags/{key}` (same flag, same session id) >= 0.6x of its floor;
 * - Helios `{ __typename }`, which runs no resolver of ours and so shows what Helios's server
 *   set-up alone costs, and the bare Yoga server without its request body limiter, the one
 *   default Helios turns off in favour of its own cap (see the notes).
 */
import type { BenchReport, BenchRow } from './report.js';
import { HTTP_CONNECTIONS, HTTP_WARMUP_S, describeFailures, isClean, runLoad, type LoadResult } from './support/load.js';
import { startBareYoga, startHelios, startRawHttp, type ServerChild } from './support/servers.js';
import { median, ratio, round } from './support/stats.js';

const HELLO = '{ hello }';
const FLAG = 'neural_network_v2';
const EVALUATE_FLAG = `{ evaluateFlag(name: "${FLAG}", context: {sessionId: "abc"}) { enabled reason bucket } }`;
const EVALUATE_FLAGS = '{ evaluateFlags(context: {sessionId: "abc"}) { flag enabled reason bucket } }';
const TYPENAME = '{ __typename }';
const OFREP_PATH = `/ofrep/v1/evaluate/flags/${FLAG}`;
const OFREP_BODY = JSON.stringify({ context: { targetingKey: 'abc' } });
/**
 * Measured time per case is ROUNDS x ROUND_S, in short turns with the other cases, so drift and
 * other work on the machine hit all cases alike; the figure is the median round.
 */
const ROUNDS = 6;
const ROUND_S = 2;

interface Case {
  name: string;
  url: string;
  body: string;
  check: (answer: unknown) => boolean;
  expectBody?: string;
  contentType?: string;
  rounds: LoadResult[];
}

async function probe(c: Case): Promise<void> {
  const res = await fetch(c.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: c.body });
  const text = await res.text();
  const parsed = JSON.parse(text) as { data?: unknown; errors?: unknown };
  if (res.status !== 200 || parsed.errors || !c.check(parsed)) {
    throw new Error(`unexpected answer to ${c.name} (${c.body}): ${res.status} ${text.slice(0, 300)}`);
  }
  c.expectBody = text;
  c.contentType = res.headers.get('content-type') ?? '';
}

const load = (c: Case, durationS: number) => runLoad({ url: c.url, body: c.body, expectBody: c.expectBody!, durationS });

/** Median over the rounds of a case of its requests per second. */
const rateOf = (c: Case) => median(c.rounds.map((r) => r.total / r.durationS));

const gql = (query: string) => JSON.stringify({ query });
const data = (answer: unknown) => (answer as { data?: Record<string, unknown> }).data ?? {};

export default async function run(): Promise<BenchReport> {
  const servers: ServerChild[] = [];
  const start = async (server: Promise<ServerChild>) => {
    const s = await server;
    servers.push(s);
    return s;
  };
  const cases: Case[] = [];
  try {
    const yoga = await start(startBareYoga());
    const yogaNoLimit = await start(startBareYoga({ bodyLimit: false }));
    const helios = await start(startHelios());
    const heliosBase = helios.ready.url.replace(/\/graphql$/, '');
    const hello = (a: unknown) => data(a).hello === 'world';
    const bare: Case = { name: 'bare', url: yoga.ready.url, body: gql(HELLO), check: hello, rounds: [] };
    const one: Case = { name: 'evaluateFlag', url: helios.ready.url, body: gql(EVALUATE_FLAG), check: (a) => typeof (data(a).evaluateFlag as { reason?: unknown } | undefined)?.reason === 'string', rounds: [] };
    const all: Case = { name: 'evaluateFlags', url: helios.ready.url, body: gql(EVALUATE_FLAGS), check: (a) => (data(a).evaluateFlags as unknown[] | undefined)?.length === 8, rounds: [] };
    const typename: Case = { name: 'typename', url: helios.ready.url, body: gql(TYPENAME), check: (a) => data(a).__typename === 'Query', rounds: [] };
    const bareNoLimit: Case = { name: 'bareNoLimit', url: yogaNoLimit.ready.url, body: gql(HELLO), check: hello, rounds: [] };
    const ofrep: Case = { name: 'ofrep', url: `${heliosBase}${OFREP_PATH}`, body: OFREP_BODY, check: (a) => (a as { key?: unknown }).key === FLAG, rounds: [] };
    for (const c of [bare, one, all, typename, bareNoLimit, ofrep]) await probe(c);
    // The physical floor answers exactly what Helios answered, same bytes and content type.
    const raw = await start(startRawHttp({
      '/graphql': { body: one.expectBody!, contentType: one.contentType! },
      [OFREP_PATH]: { body: ofrep.expectBody!, contentType: ofrep.contentType! },
    }));
    const rawGraphql: Case = { name: 'rawGraphql', url: `${raw.ready.url}/graphql`, body: gql(EVALUATE_FLAG), check: (a) => data(a).evaluateFlag !== undefined, rounds: [] };
    const rawOfrep: Case = { name: 'rawOfrep', url: `${raw.ready.url}${OFREP_PATH}`, body: OFREP_BODY, check: (a) => (a as { key?: unknown }).key === FLAG, rounds: [] };
    for (const c of [rawGraphql, rawOfrep]) {
      await probe(c);
      const stand = c === rawGraphql ? one : ofrep;
      if (c.expectBody !== stand.expectBody || c.contentType !== stand.contentType) throw new Error(`${c.name} does not answer what Helios answered`);
    }
    cases.push(bare, one, all, typename, bareNoLimit, ofrep, rawGraphql, rawOfrep);
    for (const c of cases) await load(c, HTTP_WARMUP_S);
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < cases.length; k++) {
        const c = cases[(k + r) % cases.length]!;
        c.rounds.push(await load(c, ROUND_S));
      }
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }

  const [bare, one, all, typename, bareNoLimit, ofrep, rawGraphql, rawOfrep] = cases as [Case, Case, Case, Case, Case, Case, Case, Case];
  const clean = (c: Case) => c.rounds.every(isClean);
  const row = (name: string, c: Case, base: Case, baseline: string, goal?: number): BenchRow => {
    const rel = ratio(rateOf(c), rateOf(base));
    return {
      case: name,
      value: round(rateOf(c), 0),
      unit: 'req/s',
      baseline,
      ratio: rel,
      ...(goal !== undefined ? { goal: `ratio >= ${goal}`, met: rel >= goal && clean(c) } : {}),
    };
  };
  const yogaLabel = 'bare graphql-yoga { hello }';
  const rawLabel = 'raw node:http, canned evaluateFlag answer';
  const rawOfrepLabel = 'raw node:http, canned OFREP answer';
  const rows: BenchRow[] = [
    { case: 'bare graphql-yoga { hello } (baseline)', value: round(rateOf(bare), 0), unit: 'req/s', baseline: yogaLabel, ratio: 1 },
    row('helios evaluateFlag(neural_network_v2)', one, bare, yogaLabel, 1.0),
    row('helios evaluateFlags (all 8 seed flags)', all, bare, yogaLabel, 1.0),
    row('helios { __typename } (no resolver of ours)', typename, bare, yogaLabel),
    row('bare graphql-yoga { hello }, maxRequestBodySize: false', bareNoLimit, bare, yogaLabel),
    { case: `raw node:http, canned evaluateFlag answer (${Buffer.byteLength(one.expectBody!)} B, physical floor)`, value: round(rateOf(rawGraphql), 0), unit: 'req/s', baseline: rawLabel, ratio: 1 },
    row('helios evaluateFlag vs raw node:http', one, rawGraphql, rawLabel, 0.4),
    { case: `raw node:http, canned OFREP answer (${Buffer.byteLength(ofrep.expectBody!)} B, physical floor)`, value: round(rateOf(rawOfrep), 0), unit: 'req/s', baseline: rawOfrepLabel, ratio: 1 },
    row(`helios OFREP POST ${OFREP_PATH} vs raw node:http`, ofrep, rawOfrep, rawOfrepLabel, 0.6),
  ];
  const detail = (label: string, c: Case) => {
    const failures = c.rounds.map(describeFailures).filter((d) => !d.startsWith('0 errors, 0 timeouts, 0 non-2xx, 0 body')).join('; ');
    return `${label}: rounds ${c.rounds.map((r) => round(r.total / r.durationS, 0)).join(' / ')} req/s; latency p50 ${c.rounds.map((r) => r.latencyP50Ms).join('/')} ms, p99 ${c.rounds.map((r) => r.latencyP99Ms).join('/')} ms${failures ? `; ${failures}` : '; every response as expected'}.`;
  };
  const notes = [
    `autocannon in the benchmark process: ${HTTP_CONNECTIONS} connections, pipelining 1; ${HTTP_WARMUP_S} s warm-up per case, then ${ROUNDS} rounds of ${ROUND_S} s per case taken in turns (${ROUNDS * ROUND_S} s each); each server in its own child process, loopback, all alive throughout.`,
    'Every response is compared byte for byte with the answer checked before the run (autocannon expectBody): errors cannot count as throughput.',
    `The physical floor is a bare node:http server that reads each request body and answers the bytes Helios answered, with its content type (${one.contentType} for GraphQL, ${ofrep.contentType} for OFREP), checked before the run. Its request is the same as Helios's (same body, same flag).`,
    `OFREP: POST ${OFREP_PATH} with ${OFREP_BODY} (targetingKey is the session id), answered ${ofrep.expectBody}.`,
    detail('bare { hello }', bare),
    detail('evaluateFlag', one),
    detail('evaluateFlags', all),
    detail('{ __typename }', typename),
    detail('bare, body limiter off', bareNoLimit),
    detail('OFREP single flag', ofrep),
    detail('raw node:http, evaluateFlag bytes', rawGraphql),
    detail('raw node:http, OFREP bytes', rawOfrep),
    'The bare server without Yoga\'s request body limiter (on by default): Helios caps bodies itself before Yoga, so that row shows the framework floor without that cost too.',
  ];
  return { name: 'http', rows, notes };
}
