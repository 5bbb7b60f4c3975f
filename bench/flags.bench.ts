/**
 * Flag evaluation cost: compiled Helios flags per strategy against unleash-client's
 * `isEnabled` on an equivalent 25% flexibleRollout (stickiness default, groupId = flag name).
 *
 * Unleash runs fully offline: bootstrapped from memory, refreshInterval 0 (its poller returns
 * before fetching), metrics disabled, in-memory storage, and its URL is a closed loopback port
 * so even an unexpected request could not leave the machine. Any error event it emits is
 * reported in the notes. Every timed loop folds its results into a sink that is reported, so
 * the JIT cannot drop the work.
 */
import { once } from 'node:events';
import { InMemStorageProvider, Unleash } from 'unleash-client';
import { compileFlag, type CompiledFlag, type EvaluationContext, type FlagDefinition } from '../src/flags/engine.js';
import type { BenchReport, BenchRow } from './report.js';
import { prng } from '../test/support/prng.js';

const CONTEXTS = 100_000;
const ROUNDS = 9;
const GOAL_RATIO = 0.2;
const NOW = Date.UTC(2026, 0, 1, 12);
const ROLLOUT_FLAG = 'websocket_v2';

let sink = 0;


function uuidLike(rand: () => number): string {
  let hex = '';
  for (let i = 0; i < 4; i++) hex += Math.floor(rand() * 0x100000000).toString(16).padStart(8, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

const SYMBOLS = ['BTCZAR', 'ETHZAR', 'XRPZAR', 'SOLZAR', 'USDTZAR', 'LTCZAR', 'ADAZAR', 'DOTZAR'];

function buildContexts(): EvaluationContext[] {
  const rand = prng(20260101);
  const contexts: EvaluationContext[] = [];
  for (let i = 0; i < CONTEXTS; i++) {
    contexts.push({
      sessionId: uuidLike(rand),
      userId: `user-${Math.floor(rand() * 50_000)}`,
      symbol: SYMBOLS[i % SYMBOLS.length]!,
    });
  }
  return contexts;
}

function definition(overrides: Partial<FlagDefinition>): FlagDefinition {
  return {
    name: ROLLOUT_FLAG,
    description: 'benchmark flag',
    enabled: true,
    strategy: 'PERCENTAGE',
    percentage: 25,
    stickiness: 'default',
    whitelist: [],
    gradual: null,
    createdAt: NOW,
    updatedAt: NOW,
    ...overrides,
  };
}

/** Median ns per call over ROUNDS timed passes, after two warm-up passes. */
function measure(contexts: readonly EvaluationContext[], pass: (contexts: readonly EvaluationContext[]) => number): number {
  sink += pass(contexts) + pass(contexts);
  const samples: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint();
    sink += pass(contexts);
    samples.push(Number(process.hrtime.bigint() - start) / contexts.length);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

function heliosPass(flag: CompiledFlag): (contexts: readonly EvaluationContext[]) => number {
  return (contexts) => {
    let on = 0;
    for (let i = 0; i < contexts.length; i++) {
      const r = flag.evaluate(contexts[i]!, NOW);
      if (r.enabled) on++;
      on += r.bucket === 1 ? 1 : 0;
    }
    return on;
  };
}

async function startOfflineUnleash(): Promise<{ unleash: Unleash; errors: unknown[] }> {
  const errors: unknown[] = [];
  const unleash = new Unleash({
    appName: 'helios-flags-bench',
    url: 'http://127.0.0.1:9/',
    refreshInterval: 0,
    disableMetrics: true,
    skipInstanceCountWarning: true,
    storageProvider: new InMemStorageProvider(),
    bootstrap: {
      data: [
        {
          name: ROLLOUT_FLAG,
          enabled: true,
          project: 'default',
          strategies: [
            {
              name: 'flexibleRollout',
              constraints: [],
              parameters: { rollout: '25', stickiness: 'default', groupId: ROLLOUT_FLAG },
            },
          ],
        },
      ],
    },
  });
  unleash.on('error', (err: unknown) => errors.push(err));
  if (!unleash.isSynchronized()) {
    // Bootstrap data makes it ready; 'synchronized' would need a server and never comes.
    await Promise.race([
      once(unleash, 'ready'),
      new Promise((_, reject) => setTimeout(() => reject(new Error('unleash bootstrap not ready')), 5000).unref()),
    ]);
  }
  return { unleash, errors };
}

export default async function run(): Promise<BenchReport> {
  const contexts = buildContexts();
  const { unleash, errors } = await startOfflineUnleash();
  try {
    const unleashPass = (cs: readonly EvaluationContext[]): number => {
      let on = 0;
      for (let i = 0; i < cs.length; i++) if (unleash.isEnabled(ROLLOUT_FLAG, cs[i] as Record<string, string>)) on++;
      return on;
    };
    const unleashOn = unleashPass(contexts);
    const unleashNs = measure(contexts, unleashPass);

    const gradual = { startPercentage: 10, targetPercentage: 50, startAt: NOW - 150_000, durationSeconds: 400 };
    const cases: Array<[string, FlagDefinition]> = [
      ['ALL_ON', definition({ strategy: 'ALL_ON' })],
      ['ALL_OFF', definition({ strategy: 'ALL_OFF' })],
      ['DISABLED (PERCENTAGE 25%)', definition({ enabled: false })],
      ['PERCENTAGE 25% (stickiness default)', definition({})],
      ['PERCENTAGE 25% (stickiness userId)', definition({ stickiness: 'userId' })],
      [
        'WHITELIST (3 attributes, 1 in 4 contexts match)',
        definition({
          strategy: 'WHITELIST',
          whitelist: [
            { attribute: 'userId', values: ['user-1', 'user-2', 'user-3'] },
            { attribute: 'system', values: ['risk'] },
            { attribute: 'symbol', values: ['BTCZAR', 'ETHZAR'] },
          ],
        }),
      ],
      ['GRADUAL 10->50% over 400 s (at 25%)', definition({ strategy: 'GRADUAL', gradual })],
    ];

    const rows: BenchRow[] = [
      {
        case: 'unleash-client isEnabled, flexibleRollout 25% (baseline)',
        value: round(unleashNs),
        unit: 'ns/eval',
        baseline: 'unleash-client isEnabled',
        ratio: 1,
      },
    ];
    let heliosOn = 0;
    for (const [name, def] of cases) {
      const flag = compileFlag(def);
      const pass = heliosPass(flag);
      if (name.startsWith('PERCENTAGE 25% (stickiness default)')) {
        heliosOn = contexts.reduce((n, ctx) => n + (flag.evaluate(ctx, NOW).enabled ? 1 : 0), 0);
      }
      const ns = measure(contexts, pass);
      const ratio = ns / unleashNs;
      rows.push({
        case: `helios ${name}`,
        value: round(ns),
        unit: 'ns/eval',
        baseline: 'unleash-client isEnabled, flexibleRollout 25%',
        ratio: round(ratio, 4),
        goal: `<= ${GOAL_RATIO}x Unleash`,
        met: ratio <= GOAL_RATIO,
      });
    }

    const heliosShare = (heliosOn / contexts.length) * 100;
    const unleashShare = (unleashOn / contexts.length) * 100;
    const sharesAgree = Math.abs(heliosShare - 25) <= 1 && Math.abs(unleashShare - 25) <= 1;
    rows.push({
      case: 'share enabled at 25%: helios vs unleash (percentage points)',
      value: round(heliosShare, 3),
      unit: '% of contexts',
      baseline: `unleash-client ${round(unleashShare, 3)}%`,
      ratio: round(heliosShare / unleashShare, 4),
      goal: 'both within 1 point of 25%',
      met: sharesAgree,
    });

    return {
      name: 'flags',
      rows,
      notes: [
        `${CONTEXTS.toLocaleString('en-US')} distinct contexts (UUID sessionId, userId, symbol), built before timing; median of ${ROUNDS} passes after 2 warm-up passes.`,
        'Unleash: offline bootstrap, refreshInterval 0, metrics disabled, in-memory storage, URL on a closed loopback port; ' +
          `error events: ${errors.length}.`,
        'Unleash buckets hash % 100 and Helios hash % 10000 of the same "<flag>:<sticky>" key, so individual contexts differ; only the shares are compared.',
        `sink ${sink}`,
      ],
    };
  } finally {
    unleash.destroy();
  }
}

function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
