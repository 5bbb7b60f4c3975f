/**
 * HTTP throughput against the framework floor: a bare graphql-yoga hello-world server and
 * Helios, each in its own child process (the load generator never shares their event loop),
 * hit by autocannon with the same settings (32 connections, no pipelining, a warm-up, then
 * 6 rounds of 2 s per case in turns, 12 s each, median round).
 * Helios runs with LOG_LEVEL=silent on a temporary database with the eight seed flags.
 *
 * Rows: `{ hello }` on the bare server with Yoga's defaults (baseline), Helios `evaluateFlag` and
 * `evaluateFlags` of all eight flags (goal: ratio >= 1.0), Helios `{ __typename }`, which runs no
 * resolver of ours and so shows what Helios's server set-up alone costs, and the bare server
 * again without Yoga's request body limiter, the one default Helios turns off in favour of its
 * own cap (see the notes).
 */
import type { BenchReport, BenchRow } from './report.js';
import { HTTP_CONNECTIONS, HTTP_WARMUP_S, describeFailures, isClean, runLoad, type LoadResult } from './support/load.js';
import { postGraphql, startBareYoga, startHelios, type ServerChild } from './support/servers.js';
import { median, ratio, round } from './support/stats.js';

const HELLO = '{ hello }';
const EVALUATE_FLAG = '{ evaluateFlag(name: "neural_network_v2", context: {sessionId: "abc"}) { enabled reason bucket } }';
const EVALUATE_FLAGS = '{ evaluateFlags(context: {sessionId: "abc"}) { flag enabled reason bucket } }';
const TYPENAME = '{ __typename }';
/**
 * Measured time per case is ROUNDS x ROUND_S, in short turns with the other cases, so drift and
 * other work on the machine hit all cases alike; the figure is the median round.
 */
const ROUNDS = 6;
const ROUND_S = 2;

interface Case {
  name: string;
  server: ServerChild;
  query: string;
  check: (data: unknown) => boolean;
  expectBody?: string;
  rounds: LoadResult[];
}

async function probe(c: Case): Promise<void> {
  const answer = await postGraphql(c.server.ready.url, c.query);
  const parsed = JSON.parse(answer.text) as { data?: unknown; errors?: unknown };
  if (answer.status !== 200 || parsed.errors || !c.check(parsed.data)) {
    throw new Error(`unexpected answer to ${c.query}: ${answer.status} ${answer.text.slice(0, 300)}`);
  }
  c.expectBody = answer.text;
}

const load = (c: Case, durationS: number) =>
  runLoad({ url: c.server.ready.url, body: JSON.stringify({ query: c.query }), expectBody: c.expectBody!, durationS });

/** Median over the rounds of a case of its requests per second. */
const rateOf = (c: Case) => median(c.rounds.map((r) => r.total / r.durationS));

export default async function run(): Promise<BenchReport> {
  const yoga = await startBareYoga();
  const yogaNoLimit = await startBareYoga({ bodyLimit: false });
  const helios = await startHelios();
  const hello = (d: unknown) => (d as { hello?: string }).hello === 'world';
  const cases: Case[] = [
    { name: 'bare', server: yoga, query: HELLO, check: hello, rounds: [] },
    { name: 'evaluateFlag', server: helios, query: EVALUATE_FLAG, check: (d) => typeof (d as { evaluateFlag?: { reason?: string } }).evaluateFlag?.reason === 'string', rounds: [] },
    { name: 'evaluateFlags', server: helios, query: EVALUATE_FLAGS, check: (d) => (d as { evaluateFlags?: unknown[] }).evaluateFlags?.length === 8, rounds: [] },
    { name: 'typename', server: helios, query: TYPENAME, check: (d) => (d as { __typename?: string }).__typename === 'Query', rounds: [] },
    { name: 'bareNoLimit', server: yogaNoLimit, query: HELLO, check: hello, rounds: [] },
  ];
  try {
    for (const c of cases) await probe(c);
    for (const c of cases) await load(c, HTTP_WARMUP_S);
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < cases.length; k++) {
        const c = cases[(k + r) % cases.length]!;
        c.rounds.push(await load(c, ROUND_S));
      }
    }
  } finally {
    await Promise.all([yoga.stop(), yogaNoLimit.stop(), helios.stop()]);
  }

  const [bare, one, all, floor, bareNoLimit] = cases as [Case, Case, Case, Case, Case];
  const bareRate = rateOf(bare);
  const clean = (c: Case) => c.rounds.every(isClean);
  const row = (name: string, c: Case, goal: boolean): BenchRow => {
    const rate = rateOf(c);
    const rel = ratio(rate, bareRate);
    return {
      case: name,
      value: round(rate, 0),
      unit: 'req/s',
      baseline: 'bare graphql-yoga { hello }',
      ratio: rel,
      ...(goal ? { goal: 'ratio >= 1.0', met: rel >= 1.0 && clean(c) } : {}),
    };
  };
  const rows: BenchRow[] = [
    { case: 'bare graphql-yoga { hello } (baseline)', value: round(bareRate, 0), unit: 'req/s', baseline: 'bare graphql-yoga { hello }', ratio: 1 },
    row('helios evaluateFlag(neural_network_v2)', one, true),
    row('helios evaluateFlags (all 8 seed flags)', all, true),
    row('helios { __typename } (no resolver of ours)', floor, false),
    row('bare graphql-yoga { hello }, maxRequestBodySize: false', bareNoLimit, false),
  ];
  const detail = (label: string, c: Case) => {
    const failures = c.rounds.map(describeFailures).filter((d) => !d.startsWith('0 errors, 0 timeouts, 0 non-2xx, 0 body')).join('; ');
    return `${label}: rounds ${c.rounds.map((r) => round(r.total / r.durationS, 0)).join(' / ')} req/s; latency p50 ${c.rounds.map((r) => r.latencyP50Ms).join('/')} ms, p99 ${c.rounds.map((r) => r.latencyP99Ms).join('/')} ms${failures ? `; ${failures}` : '; every response as expected'}.`;
  };
  const notes = [
    `autocannon in the benchmark process: ${HTTP_CONNECTIONS} connections, pipelining 1; ${HTTP_WARMUP_S} s warm-up per case, then ${ROUNDS} rounds of ${ROUND_S} s per case taken in turns (${ROUNDS * ROUND_S} s each); each server in its own child process, loopback, all alive throughout.`,
    'Every response is compared byte for byte with the answer checked before the run (autocannon expectBody): errors cannot count as throughput.',
    detail('bare { hello }', bare),
    detail('evaluateFlag', one),
    detail('evaluateFlags', all),
    detail('{ __typename }', floor),
    detail('bare, body limiter off', bareNoLimit),
    'The last row is the same bare server without Yoga\'s request body limiter (on by default): Helios caps bodies itself before Yoga, so this shows the floor without that cost too.',
  ];
  return { name: 'http', rows, notes };
}
