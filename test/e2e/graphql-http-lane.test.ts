/**
 * The HTTP GraphQL lane (src/transport/graphql-http.ts) against Yoga's own pipeline: two servers
 * with the same configuration, one with the lane and one without, get the same requests in the
 * same order (each has its own database, so mutations leave both in the same state). Every
 * answer must be the same bytes: status line, headers (all but Date) and body. Each case also
 * says whether the lane must take it, so the common requests provably go through the lane and
 * the unusual ones provably fall back to Yoga.
 */
import type { IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, TEST_ADMIN_TOKEN, type TestServer } from '../support/server.js';

interface Pair {
  lane: TestServer;
  yoga: TestServer;
  /** Per server: whether the lane took each request Yoga would have answered, in order. */
  decisions: boolean[];
  /** Queries the lane compiled with graphql-jit (operation name, or null), and whether each compiled. */
  compiles: Array<{ operationName: string | null; compiled: boolean }>;
  /** Secrets of the tokens created on each server, by name. */
  tokens: { lane: Record<string, string>; yoga: Record<string, string> };
}

/** One HTTP/1.1 exchange on its own connection; the whole answer as received. */
function exchange(port: number, head: string, body: string | Buffer = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(head);
      socket.end(body);
    });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

/** The answer without its Date header (the only part that may differ). */
const comparable = (answer: string) => answer.replace(/^Date: .*\r\n/im, '');

interface Case {
  name: string;
  /** Whether the lane must answer it (else Yoga does). */
  lane: boolean;
  method?: string;
  path?: string;
  /** Header lines besides Host, Connection and Content-Length; a function gets the server's tokens. */
  headers?: Record<string, string> | ((tokens: Record<string, string>) => Record<string, string>);
  body?: string | Buffer;
}

const gql = (query: string, extra: Record<string, unknown> = {}) => JSON.stringify({ query, ...extra });
const JSON_TYPE = { 'Content-Type': 'application/json' };
const admin = { ...JSON_TYPE, Authorization: `Bearer ${TEST_ADMIN_TOKEN}` };
const as = (name: string) => (tokens: Record<string, string>) => ({ ...JSON_TYPE, Authorization: `Bearer ${tokens[name]}` });
const EVALUATE = '{ evaluateFlag(name: "neural_network_v2", context: {sessionId: "abc"}) { flag enabled reason bucket } }';
const deepJson = (depth: number) => `${'['.repeat(depth)}1${']'.repeat(depth)}`;

async function send(server: TestServer, c: Case, tokens: Record<string, string>): Promise<string> {
  const body = c.body ?? '';
  const headers = typeof c.headers === 'function' ? c.headers(tokens) : c.headers ?? JSON_TYPE;
  const lines = [`${c.method ?? 'POST'} ${c.path ?? '/graphql'} HTTP/1.1`, `Host: 127.0.0.1:${server.server.port}`, 'Connection: close'];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  if (c.method !== 'GET') lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return exchange(server.server.port, `${lines.join('\r\n')}\r\n\r\n`, body);
}

async function startPair(env: Record<string, string> = {}): Promise<Pair> {
  const decisions: boolean[] = [];
  const compiles: Pair['compiles'] = [];
  const onDecision = (_req: IncomingMessage, taken: boolean) => decisions.push(taken);
  const onCompile = (operationName: string | null, compiled: boolean) => compiles.push({ operationName, compiled });
  const [lane, yoga] = await Promise.all([
    startTestServer({ env, graphqlHttpLane: { onDecision, onCompile } }),
    startTestServer({ env, graphqlHttpLane: false }),
  ]);
  return { lane, yoga, decisions, compiles, tokens: { lane: {}, yoga: {} } };
}

/** Sends `c` to both servers; expects the same answer and the lane's decision; returns the answer. */
async function same(pair: Pair, c: Case): Promise<string> {
  const before = pair.decisions.length;
  const laneAnswer = await send(pair.lane, c, pair.tokens.lane);
  const yogaAnswer = await send(pair.yoga, c, pair.tokens.yoga);
  expect(comparable(laneAnswer), c.name).toBe(comparable(yogaAnswer));
  const decided = pair.decisions.slice(before);
  // A request refused before Yoga (body cap, origin) reaches neither.
  if (decided.length > 0) expect(decided, `${c.name}: taken by the lane`).toEqual([c.lane]);
  else expect(c.lane, `${c.name} never reached the lane`).toBe(false);
  return laneAnswer;
}

async function createToken(pair: Pair, name: string, role: string): Promise<void> {
  for (const side of ['lane', 'yoga'] as const) {
    const res = await fetch(pair[side].url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
      body: gql('mutation($n: String!, $r: Role!) { createApiToken(name: $n, role: $r) { token } }', { variables: { n: name, r: role } }),
    });
    const body = (await res.json()) as { data: { createApiToken: { token: string } } };
    pair.tokens[side][name] = body.data.createApiToken.token;
  }
}

describe('HTTP GraphQL lane: the same answers as Yoga', () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await startPair();
    await createToken(pair, 'viewer', 'VIEWER');
    await createToken(pair, 'gone', 'OPERATOR');
    await same(pair, { name: 'revoke', lane: true, headers: admin, body: gql('mutation { revokeApiToken(name: "gone") { apiToken { name } errors { code } } }') });
  });
  afterAll(async () => {
    await Promise.all([pair.lane.stop(), pair.yoga.stop()]);
  });

  const cases: Case[] = [
    // Ordinary requests: the lane answers them.
    { name: 'the bench query', lane: true, body: gql(EVALUATE) },
    { name: 'typename', lane: true, body: gql('{ __typename }') },
    { name: 'variables', lane: true, body: gql('query Q($n: String!) { evaluateFlag(name: $n, context: {userId: "u1"}) { enabled reason bucket } }', { variables: { n: 'neural_network_v2' } }) },
    { name: 'operationName among several', lane: true, body: gql('query A { __typename } query B { featureFlags { name } }', { operationName: 'B' }) },
    { name: 'null variables, operationName and extensions', lane: true, body: gql('{ __typename }', { variables: null, operationName: null, extensions: null }) },
    { name: 'extensions object', lane: true, body: gql('{ __typename }', { extensions: { trace: true } }) },
    { name: 'a long query text (not cached)', lane: true, body: gql(`{ __typename } # ${'x'.repeat(20 * 1024)}`) },
    { name: 'the same long text again', lane: true, body: gql(`{ __typename } # ${'x'.repeat(20 * 1024)}`) },
    { name: 'charset in the content type', lane: true, headers: { 'Content-Type': 'application/json; charset=utf-8' }, body: gql('{ __typename }') },
    { name: 'mutation as admin', lane: true, headers: admin, body: gql('mutation { setFlagPercentage(name: "neural_network_v2", percentage: 30) { flag { name percentage strategy } errors { code message field } } }') },
    { name: 'business error as data', lane: true, headers: admin, body: gql('mutation { setFlagPercentage(name: "neural_network_v2", percentage: 300) { flag { name } errors { code message field } } }') },
    { name: 'evaluation after the mutation', lane: true, body: gql(EVALUATE) },
    { name: 'resolver error with a code', lane: true, body: gql('{ evaluateFlag(name: "x", context: {attributes: 5}) { enabled } }') },
    { name: 'variable that does not coerce', lane: true, body: gql('query($n: String!) { featureFlag(name: $n) { name } }', { variables: { n: 5 } }) },
    { name: 'variable coercion, graphql-response+json', lane: true, headers: { ...JSON_TYPE, Accept: 'application/graphql-response+json' }, body: gql('query($n: String!) { featureFlag(name: $n) { name } }', { variables: { n: ['x'] } }) },
    { name: 'missing required variable', lane: true, body: gql('query($n: String!) { featureFlag(name: $n) { name } }') },
    { name: 'deep JSON variable', lane: true, body: `{"query":"query($a: JSON) { evaluateFlag(name: \\"x\\", context: {attributes: $a}) { enabled } }","variables":{"a":{"k":${deepJson(200)}}}}` },
    { name: 'viewer token', lane: true, headers: as('viewer'), body: gql('{ me { name role } }') },
    { name: 'forbidden role', lane: true, headers: as('viewer'), body: gql('mutation { setFlagPercentage(name: "neural_network_v2", percentage: 40) { flag { name } errors { code message } } }') },
    { name: 'anonymous mutation', lane: true, body: gql('mutation { deleteFeatureFlag(name: "neural_network_v2") { flag { name } errors { code message } } }') },
    { name: 'invalid token', lane: true, headers: { ...JSON_TYPE, Authorization: 'Bearer not-a-token' }, body: gql('{ __typename }') },
    { name: 'revoked token', lane: true, headers: as('gone'), body: gql('{ __typename }') },
    { name: 'malformed authorization', lane: true, headers: { ...JSON_TYPE, Authorization: 'Basic abc' }, body: gql('{ __typename }') },
    { name: 'revoked token, graphql-response+json', lane: true, headers: (t) => ({ ...as('gone')(t), Accept: 'application/graphql-response+json' }), body: gql('{ __typename }') },
    { name: 'same-origin browser request', lane: true, headers: { ...JSON_TYPE, 'Sec-Fetch-Site': 'same-origin' }, body: gql('{ __typename }') },
    // Accept negotiation, as Yoga does it.
    ...[
      'application/json', 'application/graphql-response+json', 'application/graphql-response+json, application/json',
      'application/json, application/graphql-response+json', '*/*', 'application/*', '', 'application/json;charset=utf-8',
      'text/html, application/json;q=0.9', 'application/graphql-response+json; charset=utf-8, */*;q=0.1', 'APPLICATION/JSON',
    ].map((accept): Case => ({ name: `Accept: ${accept}`, lane: true, headers: { ...JSON_TYPE, Accept: accept }, body: gql(EVALUATE) })),
    ...['text/event-stream', 'multipart/mixed', 'text/html', 'application/json; charset=latin1', 'application/xml'].map(
      (accept): Case => ({ name: `Accept: ${accept}`, lane: false, headers: { ...JSON_TYPE, Accept: accept }, body: gql(EVALUATE) }),
    ),
    // Left to Yoga.
    { name: 'validation error', lane: false, body: gql('{ nope }') },
    { name: 'validation error, graphql-response+json', lane: false, headers: { ...JSON_TYPE, Accept: 'application/graphql-response+json' }, body: gql('{ nope }') },
    { name: 'syntax error', lane: false, body: gql('{ evaluateFlag(') },
    { name: 'too many aliases', lane: false, body: gql(`{ ${Array.from({ length: 31 }, (_, i) => `a${i}: __typename`).join(' ')} }`) },
    { name: 'unknown operationName', lane: false, body: gql('query A { __typename }', { operationName: 'B' }) },
    { name: 'two anonymous operations', lane: false, body: gql('{ __typename } { __typename }') },
    { name: 'subscription over POST', lane: false, body: gql('subscription { featureFlagChanged { name } }'), headers: { ...JSON_TYPE, Accept: 'application/json' } },
    { name: 'batch', lane: false, body: JSON.stringify([{ query: '{ __typename }' }, { query: '{ __typename }' }]) },
    { name: 'bad JSON', lane: false, body: '{"query": ' },
    { name: 'empty body', lane: false, body: '' },
    { name: 'JSON string', lane: false, body: '"{ __typename }"' },
    { name: 'JSON null', lane: false, body: 'null' },
    { name: 'query not a string', lane: false, body: JSON.stringify({ query: 5 }) },
    { name: 'missing query', lane: false, body: JSON.stringify({ variables: {} }) },
    { name: 'variables an array', lane: false, body: JSON.stringify({ query: '{ __typename }', variables: [1] }) },
    { name: 'variables a string', lane: false, body: JSON.stringify({ query: '{ __typename }', variables: '{}' }) },
    { name: 'extensions a string', lane: false, body: JSON.stringify({ query: '{ __typename }', extensions: 'x' }) },
    { name: 'operationName a number', lane: false, body: JSON.stringify({ query: '{ __typename }', operationName: 5 }) },
    { name: 'unexpected parameter', lane: false, body: JSON.stringify({ query: '{ __typename }', id: 'abc' }) },
    { name: 'byte order mark', lane: false, body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(gql('{ __typename }'))]) },
    { name: 'text/plain', lane: false, headers: { 'Content-Type': 'text/plain' }, body: gql('{ __typename }') },
    { name: 'application/graphql', lane: false, headers: { 'Content-Type': 'application/graphql' }, body: '{ __typename }' },
    { name: 'application/graphql+json', lane: false, headers: { 'Content-Type': 'application/graphql+json' }, body: gql('{ __typename }') },
    { name: 'form', lane: false, headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'query=%7B__typename%7D' },
    { name: 'no content type', lane: false, headers: {}, body: gql('{ __typename }') },
    { name: 'application/jsonx', lane: false, headers: { 'Content-Type': 'application/jsonx' }, body: gql('{ __typename }') },
    // Yoga reads the first entry of a list.
    { name: 'content type list', lane: true, headers: { 'Content-Type': 'application/json, text/plain' }, body: gql('{ __typename }') },
    { name: 'GET', lane: false, method: 'GET', path: '/graphql?query=%7B__typename%7D', headers: {} },
    { name: 'PUT', lane: false, method: 'PUT', body: gql('{ __typename }') },
    { name: 'query string on the path', lane: false, path: '/graphql?x=1', body: gql('{ __typename }') },
    { name: 'trailing slash', lane: false, path: '/graphql/', body: gql('{ __typename }') },
    // Refused before Yoga (and the lane): the same guard answers both.
    { name: 'oversize body', lane: false, body: gql(`{ __typename } # ${'x'.repeat(300 * 1024)}`) },
    { name: 'foreign origin', lane: false, headers: { ...JSON_TYPE, Origin: 'https://evil.example' }, body: gql('{ __typename }') },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      await same(pair, c);
    });
  }

  it('answers a repeated query from the same document, the token checked each time', async () => {
    const first = await same(pair, { name: 'viewer me', lane: true, headers: as('viewer'), body: gql('{ me { name role } }') });
    expect(first).toContain('"name":"viewer"');
    // A revocation between two identical requests is seen by the second one.
    await same(pair, { name: 'revoke viewer', lane: true, headers: admin, body: gql('mutation { revokeApiToken(name: "viewer") { apiToken { name } } }') });
    const second = await same(pair, { name: 'viewer me again', lane: true, headers: as('viewer'), body: gql('{ me { name role } }') });
    expect(second).toMatch(/^HTTP\/1\.1 401 /);
  });

  it('keeps counting operations for /metrics as Yoga does', async () => {
    const metric = async (server: TestServer) => {
      const text = await (await fetch(server.url.replace('/graphql', '/metrics'), { headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } })).text();
      return text.split('\n').filter((line) => line.startsWith('helios_graphql_operation_duration_seconds_count')).join('\n');
    };
    const [lane, yoga] = await Promise.all([metric(pair.lane), metric(pair.yoga)]);
    // Durations differ; the counts by type, name and outcome must not.
    expect(lane).toMatch(/name="anonymous",outcome="success"\} [1-9]/);
    expect(lane).toBe(yoga);
  });

  // After the metrics comparison: these requests reach the lane's server only.
  it('survives clients that hang up before their answer', async () => {
    const port = pair.lane.server.port;
    const body = gql(EVALUATE);
    const head = `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    await Promise.all(Array.from({ length: 20 }, () => new Promise<void>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => socket.end(head + body, () => {
        socket.destroy();
        resolve();
      }));
      socket.on('error', () => resolve());
    })));
    const answer = await send(pair.lane, { name: 'after', lane: true, body }, {});
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
  });
});

describe('HTTP GraphQL lane: queries compiled with graphql-jit once they are hot', () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await startPair();
    await createToken(pair, 'viewer', 'VIEWER');
    // Audit entries to read back (same on both servers: same mutations in the same order).
    await same(pair, { name: 'change', lane: true, headers: admin, body: gql('mutation { setFlagPercentage(name: "neural_network_v2", percentage: 35) { flag { name } } }') });
  });
  afterAll(async () => {
    await Promise.all([pair.lane.stop(), pair.yoga.stop()]);
  });

  /** More runs than the lane's threshold (3): the later ones go through the compiled query. */
  const RUNS = 5;
  /**
   * Sends `c` until the lane has compiled one more query than before (graphql-jit is imported the
   * first time a query is hot, so the first compilation waits for that), then RUNS more times;
   * every answer compared with Yoga's.
   */
  const runHot = async (c: Case, operationName: string | null = null) => {
    const before = pair.compiles.length;
    for (let run = 1; pair.compiles.length === before; run++) {
      expect(run, `${c.name}: compiled within 200 runs`).toBeLessThanOrEqual(200);
      await same(pair, { ...c, name: `${c.name}, run ${run}` });
    }
    expect(pair.compiles.slice(before)).toEqual([{ operationName, compiled: true }]);
    for (let run = 1; run <= RUNS; run++) await same(pair, { ...c, name: `${c.name}, compiled run ${run}` });
  };
  const hot: Array<Case & { operation: string }> = [
    { name: 'the bench query', operation: 'Bench', lane: true, body: gql(EVALUATE.replace('{ evaluateFlag', 'query Bench { evaluateFlag')) },
    {
      name: 'variables, a list and a fragment',
      operation: 'Many',
      lane: true,
      body: gql('query Many($names: [String!], $ctx: EvaluationContextInput) { evaluateFlags(names: $names, context: $ctx) { ...E } } fragment E on FlagEvaluation { flag enabled reason bucket percentage strategy }', {
        variables: { names: ['neural_network_v2', 'dark_mode'], ctx: { userId: 'u9', attributes: { plan: 'pro' } } },
      }),
    },
    {
      name: '@include, aliases and a null field',
      operation: 'F',
      lane: true,
      body: gql('query F($n: String!, $full: Boolean!) { featureFlag(name: $n) { name strategy percentage stickiness whitelist { attribute values } description @include(if: $full) g: gradual { __typename } } missing: featureFlag(name: "nope") { name } }', {
        variables: { n: 'neural_network_v2', full: false },
      }),
    },
    { name: 'every flag', operation: 'All', lane: true, body: gql('query All { featureFlags { name enabled strategy percentage effectivePercentage } }') },
    { name: 'the audit log (admin)', operation: 'Audit', lane: true, headers: admin, body: gql('query Audit { auditLog(first: 3) { nodes { action actor target targetType } pageInfo { hasNextPage } } }') },
    { name: 'breakers and modules', operation: 'Parts', lane: true, headers: admin, body: gql('query Parts { circuitBreakers { name state openAttempts } modules { name version state isolation methods dependencies config } }') },
    { name: 'a resolver error with a code', operation: 'Bad', lane: true, body: gql('query Bad { evaluateFlag(name: "x", context: {attributes: 5}) { enabled } }') },
    { name: 'the caller', operation: 'Me', lane: true, headers: as('viewer'), body: gql('query Me { me { name role anonymous } }') },
    { name: '@skip on a literal', operation: 'Skip', lane: true, body: gql('query Skip { a: evaluateFlag(name: "neural_network_v2", context: {sessionId: "abc"}) { enabled @skip(if: true) reason } }') },
    { name: 'a variable left to its default', operation: 'Defaults', lane: true, headers: admin, body: gql('query Defaults($first: Int = 2, $target: String) { auditLog(first: $first, target: $target) { nodes { action target } pageInfo { hasNextPage } } }') },
    { name: 'introspection', operation: 'Intro', lane: true, body: gql('query Intro { __type(name: "FeatureFlag") { name kind fields { name } } }') },
  ];

  for (const c of hot) {
    it(`${c.name}: the same answer on every run`, async () => {
      await runHot(c);
    });
  }

  it('compiled the hot queries (introspection included)', () => {
    // Operation names are not sent (the document names its one operation): each compile is
    // recorded under null, one per hot query text.
    expect(pair.compiles.filter((c) => c.compiled)).toHaveLength(hot.length);
    expect(pair.compiles.every((c) => c.compiled)).toBe(true);
  });

  it('compiles a big query only after one run per 100 characters of its text', async () => {
    // graphql-jit is loaded by now (the hot queries above were compiled).
    const text = `query Big { featureFlags { name } } # ${'x'.repeat(1000)}`;
    const runs = Math.ceil(text.length / 100);
    const before = pair.compiles.length;
    for (let run = 1; run < runs; run++) await same(pair, { name: `big ${run}`, lane: true, body: gql(text) });
    expect(pair.compiles.length, 'not compiled before its runs').toBe(before);
    await same(pair, { name: `big ${runs}`, lane: true, body: gql(text) });
    expect(pair.compiles.slice(before)).toEqual([{ operationName: null, compiled: true }]);
  });

  type FlagList = TestServer['server']['app']['services']['flags']['list'];
  /**
   * Compiles `c`'s query, then sends it once more with `flags.list` replaced on both servers
   * (`patch` gets each server's own list) and returns that answer; the lists are restored after.
   */
  const hotWithFlagList = async (c: Case, patch: (original: FlagList) => FlagList): Promise<string> => {
    await runHot(c);
    const sides = [pair.lane, pair.yoga].map((server) => server.server.app.services.flags);
    const originals = sides.map((flags) => flags.list);
    sides.forEach((flags, i) => {
      flags.list = patch(originals[i]!.bind(flags));
    });
    try {
      return await same(pair, { ...c, name: `${c.name}, patched` });
    } finally {
      sides.forEach((flags, i) => {
        flags.list = originals[i]!;
      });
    }
  };

  it('masks an unexpected resolver error in a compiled query as Yoga does', async () => {
    const answer = await hotWithFlagList({ name: 'flags', lane: true, body: gql('query Flags { featureFlags { name } }') }, () => () => {
      throw new Error('SQLITE_ERROR: no such column: secret at /work/main/src/flags/repository.ts:42');
    });
    expect(answer).toContain('"message":"Unexpected error."');
    expect(answer).toContain('INTERNAL_SERVER_ERROR');
    expect(answer).not.toContain('SQLITE_ERROR');
  });

  it('a null for a non-null field in a compiled query: the same masked error and null propagation as Yoga', async () => {
    const answer = await hotWithFlagList(
      { name: 'names', lane: true, body: gql('query Names {\n  featureFlags {\n    name\n    enabled\n  }\n}') },
      (list) => () => list().map((flag, n) => (n === 1 ? { ...flag, name: null as unknown as string } : flag)),
    );
    // graphql-js's non-null error has an original (a plain Error), so Yoga masks it.
    expect(answer).toContain('{"message":"Unexpected error.","locations":[{"line":3,"column":5}],"path":["featureFlags",1,"name"]');
    expect(answer).toContain('"data":null');
  });

  it('a value its scalar cannot serialize, in a compiled query: the same error as Yoga', async () => {
    const answer = await hotWithFlagList(
      { name: 'percentages', lane: true, body: gql('query Percentages { featureFlags { name percentage } }') },
      (list) => () => list().map((flag, n) => (n === 0 ? { ...flag, percentage: 'lots' as unknown as number } : flag)),
    );
    expect(answer).toContain('"path":["featureFlags",0,"percentage"]');
    expect(answer).toContain('"message":"Unexpected error."');
  });

  it('a compiled query given a variable that does not coerce is answered by Yoga, as before', async () => {
    const query = 'query One($n: String!) { featureFlag(name: $n) { name percentage } }';
    await runHot({ name: 'good', lane: true, body: gql(query, { variables: { n: 'neural_network_v2' } }) });
    const wrong = await same(pair, { name: 'wrong type', lane: true, body: gql(query, { variables: { n: 5 } }) });
    expect(wrong).toContain('BAD_USER_INPUT');
    const missing = await same(pair, { name: 'missing', lane: true, headers: { ...JSON_TYPE, Accept: 'application/graphql-response+json' }, body: gql(query) });
    expect(missing).toMatch(/^HTTP\/1\.1 400 /);
  });

  it('a compiled query with a named operation among several', async () => {
    const text = 'query A { __typename } query B { featureFlags { name } }';
    await runHot({ name: 'op A', lane: true, body: gql(text, { operationName: 'A' }) }, 'A');
    await runHot({ name: 'op B', lane: true, body: gql(text, { operationName: 'B' }) }, 'B');
    // Each operation has its own compiled query: A still answers as A.
    await same(pair, { name: 'op A again', lane: true, body: gql(text, { operationName: 'A' }) });
  });

  it('a token revoked after its query was compiled is refused on the next request', async () => {
    await runHot({ name: 'me', lane: true, headers: as('viewer'), body: gql('{ me { name } }') });
    await same(pair, { name: 'revoke', lane: true, headers: admin, body: gql('mutation { revokeApiToken(name: "viewer") { apiToken { name } } }') });
    const refused = await same(pair, { name: 'me after revoke', lane: true, headers: as('viewer'), body: gql('{ me { name } }') });
    expect(refused).toMatch(/^HTTP\/1\.1 401 /);
  });

  it('counts compiled operations for /metrics as Yoga does', async () => {
    const metric = async (server: TestServer) => {
      const text = await (await fetch(server.url.replace('/graphql', '/metrics'), { headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } })).text();
      return text.split('\n').filter((line) => line.startsWith('helios_graphql_operation_duration_seconds_count')).join('\n');
    };
    const [lane, yoga] = await Promise.all([metric(pair.lane), metric(pair.yoga)]);
    expect(lane).toMatch(/name="Bench",outcome="success"\} \d+/);
    expect(lane).toMatch(/name="Bad",outcome="error"\} \d+/);
    expect(lane).toBe(yoga);
  });
});

describe('HTTP GraphQL lane with CORS on, anonymous access off and introspection off', () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await startPair({ HELIOS_ALLOWED_ORIGINS: 'https://ops.example.com', HELIOS_ANONYMOUS: 'none', HELIOS_INTROSPECTION: 'false' });
  });
  afterAll(async () => {
    await Promise.all([pair.lane.stop(), pair.yoga.stop()]);
  });

  const cases: Case[] = [
    { name: 'no token', lane: true, body: gql(EVALUATE) },
    { name: 'no token, graphql-response+json', lane: true, headers: { ...JSON_TYPE, Accept: 'application/graphql-response+json' }, body: gql(EVALUATE) },
    { name: 'admin', lane: true, headers: admin, body: gql(EVALUATE) },
    { name: 'allowed origin (CORS headers)', lane: false, headers: { ...admin, Origin: 'https://ops.example.com' }, body: gql(EVALUATE) },
    { name: 'introspection refused', lane: false, headers: admin, body: gql('{ __schema { queryType { name } } }') },
    { name: 'typename still allowed', lane: true, headers: admin, body: gql('{ __typename }') },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      await same(pair, c);
    });
  }
});
