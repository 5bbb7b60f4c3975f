/**
 * `npm run example:deploy`: the seeds' deployment workflow (their example_modular_deployment.py)
 * run against a live Helios by a typed client generated from schema/schema.graphql, narrated:
 * register, load, test with live progress, 10%, check breakers, 50%, 100%, a hot swap gated by
 * its tests, invocations showing which version serves, then two automatic rollouts watched live
 * over `rolloutProgress` (v3 is promoted; v4, whose every prediction throws, is aborted and the
 * stable version serves every call again), and a rollback.
 *
 * HELIOS_URL (default http://localhost:8000/graphql) and HELIOS_TOKEN (default: the contents of
 * data/admin-token, which the first start writes). The modules are the examples in
 * examples/modules (the server's default HELIOS_MODULES_DIR). Exit code 0 when every step
 * succeeded, 1 with the failing step's error otherwise.
 *
 * The rollouts are kept short (steps [50, 100], one second each, gates judged on 5 canary calls)
 * so the demo runs in seconds; the demo drives the traffic itself (calls from varied users, so
 * the split sends some to the canary) and waits on the subscription's PROMOTED / ABORTED, never
 * on a fixed sleep.
 */
import { readFileSync } from 'node:fs';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type FormattedExecutionResult } from 'graphql';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import {
  DeployBreakersDocument,
  DeployFullRolloutDocument,
  DeployInvokeDocument,
  DeployLoadDocument,
  DeployPercentageDocument,
  DeployRegisterDocument,
  DeployRollbackDocument,
  DeployRolloutDocument,
  DeployRolloutProgressDocument,
  DeployStartRolloutDocument,
  DeploySwapDocument,
  DeployTestDocument,
  DeployTestProgressDocument,
  type DeployRolloutProgressSubscription,
  type ModuleType,
} from './gql/graphql.js';

const url = process.env.HELIOS_URL ?? 'http://localhost:8000/graphql';
const token = process.env.HELIOS_TOKEN ?? readToken();
const FLAG = 'neural_network_v2';
const MODULE = 'neural_predictor';

function readToken(): string {
  try {
    return readFileSync('data/admin-token', 'utf8').trim();
  } catch {
    throw new Error('No token: set HELIOS_TOKEN, or run from the Helios folder whose data/admin-token the first start wrote');
  }
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const step = (n: number, title: string) => say(`\n${n}. ${title}`);

async function request<R, V>(doc: TypedDocumentNode<R, V>, variables: V): Promise<R> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: print(doc), variables }),
  });
  const body = (await res.json()) as FormattedExecutionResult<R>;
  if (body.errors?.length) throw new Error(`GraphQL: ${body.errors.map((e) => e.message).join('; ')}`);
  return body.data!;
}

/** A payload's `errors` as one exception (an empty list means success). */
function check(errors: ReadonlyArray<{ code: string; message: string }>, allow: string[] = []): string | null {
  const [first] = errors;
  if (!first) return null;
  if (allow.includes(first.code)) return first.code;
  throw new Error(`${first.code}: ${first.message}`);
}

const ws = createClient({ url: url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { authorization: `Bearer ${token}` } });

/** A typed subscription over graphql-ws: the document's result type flows to `data`. */
function subscribe<R, V extends Record<string, unknown>>(doc: TypedDocumentNode<R, V>, variables: V) {
  return ws.iterate<R>({ query: print(doc), variables });
}

async function testWithProgress(name: string, moduleType: ModuleType): Promise<void> {
  const started = await request(DeployTestDocument, { name, moduleType });
  check(started.testModule.errors);
  const run = started.testModule.testRun!;
  say(`   run ${run.id}: ${run.total} tests`);
  // A late subscriber first receives what already happened, so nothing is missed.
  for await (const { data, errors } of subscribe(DeployTestProgressDocument, { runId: run.id })) {
    if (errors?.length) throw new Error(errors.map((e) => e.message).join('; '));
    const event = data!.testProgress;
    if (event.type === 'TEST_FINISHED') say(`   ${event.result!.status === 'PASSED' ? 'ok  ' : 'FAIL'} ${event.name} (${event.result!.durationMs.toFixed(0)} ms)${event.result!.error ? `: ${event.result!.error}` : ''}`);
    if (event.type === 'RUN_FINISHED') {
      say(`   ${event.status}: ${event.run?.passed ?? 0} passed, ${event.run?.failed ?? 0} failed`);
      if (event.status !== 'PASSED') throw new Error(`tests of ${name} did not pass (${event.status}): not deploying`);
      return;
    }
  }
}

async function invoke(label: string): Promise<string> {
  const r = await request(DeployInvokeDocument, { name: MODULE, method: 'predict', args: { prices: [1, 2, 3, 5] }, context: { sessionId: 'demo-session' } });
  check(r.invokeModule.errors);
  say(`   ${label}: served by ${r.invokeModule.servedBy}: ${JSON.stringify(r.invokeModule.result)}`);
  return r.invokeModule.servedBy!;
}

type RolloutEvent = DeployRolloutProgressSubscription['rolloutProgress'];

/** One call of a user (the split flag buckets on userId); its result is not narrated. */
async function invokeAs(userId: string): Promise<{ servedBy: string | null; failed: string | null }> {
  const r = await request(DeployInvokeDocument, { name: MODULE, method: 'predict', args: { prices: [1, 2, 3, 5] }, context: { userId } });
  const [error] = r.invokeModule.errors;
  return { servedBy: r.invokeModule.servedBy ?? null, failed: error ? `${error.code}: ${error.message}` : null };
}

/**
 * Starts an automatic rollout of `path` as `version` (steps 50% then 100%, one second each,
 * gates on 5 canary calls), narrates its `rolloutProgress` events as they come while calling the
 * module as users u0, u1, ... (so the split sends some calls to the canary), and returns how it
 * ended. No fixed sleep: it returns on the PROMOTED or ABORTED event.
 */
async function watchRollout(path: string, version: string, testWith: ModuleType | null): Promise<string> {
  const started = await request(DeployStartRolloutDocument, {
    module: MODULE, newVersionPath: path, newVersion: version, steps: [50, 100], stepIntervalSeconds: 1,
    gates: { minCalls: 5, maxFailureRate: 0.05 }, testWith,
  });
  check(started.startRollout.errors);
  const rollout = started.startRollout.rollout!;
  say(`   rollout ${rollout.id}: ${rollout.fromVersion} -> ${rollout.toVersion} on split flag ${rollout.flag}, steps ${rollout.steps.join('%, ')}%${rollout.testRunId ? `, tests passed (run ${rollout.testRunId})` : ''}`);
  const served = new Map<string, number>();
  const failures: string[] = [];
  let finished = false;
  let lastFailure: string | null = null;
  // A late subscriber first receives the rollout's events so far, so STARTED comes first; the
  // traffic starts once the subscription is listening, and stops when the rollout has ended.
  let listening!: () => void;
  const heard = new Promise<void>((resolve) => (listening = resolve));
  let trafficError: unknown = null;
  const traffic = (async () => {
    await heard;
    for (let i = 0; !finished; i++) {
      const r = await invokeAs(`u${i % 200}`);
      if (r.failed) failures.push((lastFailure = r.failed));
      else served.set(r.servedBy!, (served.get(r.servedBy!) ?? 0) + 1);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })().catch((error: unknown) => {
    trafficError = error;
  });
  const tally = () => {
    const parts = [...served].map(([v, n]) => `${n} by ${v}`);
    if (failures.length) parts.push(`${failures.length} failed`);
    served.clear();
    failures.length = 0;
    return parts.length ? ` (calls since the last event: ${parts.join(', ')})` : '';
  };
  const timeout = setTimeout(() => ws.dispose(), 60_000);
  let end = 'UNFINISHED (no PROMOTED or ABORTED within 60 s)';
  try {
    for await (const { data, errors } of subscribe(DeployRolloutProgressDocument, { module: MODULE })) {
      if (errors?.length) throw new Error(errors.map((e) => e.message).join('; '));
      const event = data!.rolloutProgress;
      if (event.rollout.id !== rollout.id) continue;
      listening();
      const last = event.type === 'PROMOTED' || event.type === 'ABORTED';
      if (last) {
        // The calls in flight finish first, so the tally counts them (the call that opened the
        // canary's breaker answers just after the ABORTED event is out).
        finished = true;
        await traffic;
      }
      say(`   ${describeEvent(event)}${tally()}`);
      if (event.type === 'ABORTED' && lastFailure) say(`     a call the canary failed: ${lastFailure}`);
      if (last) {
        end = event.type;
        break;
      }
    }
  } finally {
    clearTimeout(timeout);
    finished = true;
    listening();
    await traffic;
  }
  if (trafficError) throw trafficError instanceof Error ? trafficError : new Error(String(trafficError));
  const after = await request(DeployRolloutDocument, { module: MODULE });
  say(`   ${MODULE} now ${after.module!.version} (previous ${after.module!.previousVersion}), canary ${after.module!.canary?.version ?? 'none'}`);
  return end;
}

function describeEvent(event: RolloutEvent): string {
  const canary = event.rollout.canary;
  const stats = canary && canary.calls > 0 ? `, canary so far this step: ${canary.calls} calls, ${canary.failures} failed` : '';
  switch (event.type) {
    case 'STARTED': return 'STARTED: canary loaded beside the stable version';
    case 'STEP': return `STEP: canary at ${event.percentage}%${event.detail ? ` (${event.detail})` : ''}`;
    case 'HOLDING': return `HOLDING at ${event.percentage}%: too few canary calls yet${stats}`;
    case 'PROMOTED': return 'PROMOTED: every step passed its gates; the canary is the active version';
    case 'ABORTED': {
      const a = event.rollout.abort;
      const figures = a?.value != null ? ` (${a.value.toFixed(2)} over the limit ${a.limit})` : '';
      return `ABORTED: ${a?.cause ?? 'unknown cause'}${figures}; ${event.rollout.abortReason ?? ''}`.trim();
    }
    default: return `${event.type} at ${event.percentage}%${event.detail ? `: ${event.detail}` : ''}`;
  }
}

/** After an abort: calls from many users, every one served by the stable version. */
async function servedAfterAbort(stable: string): Promise<void> {
  const by = new Map<string, number>();
  for (let i = 0; i < 50; i++) {
    const r = await invokeAs(`u${i}`);
    if (r.failed) throw new Error(`a call failed after the abort: ${r.failed}`);
    by.set(r.servedBy!, (by.get(r.servedBy!) ?? 0) + 1);
  }
  say(`   after the abort, 50 calls from 50 users: ${[...by].map(([v, n]) => `${n} served by ${v}`).join(', ')}`);
  if (by.size !== 1 || !by.has(stable)) throw new Error(`after the abort not every call was served by ${stable}`);
}

async function setPercentage(percentage: number): Promise<void> {
  const r = await request(DeployPercentageDocument, { name: FLAG, percentage });
  check(r.setFlagPercentage.errors);
  say(`   ${FLAG}: ${r.setFlagPercentage.flag!.strategy} at ${r.setFlagPercentage.flag!.effectivePercentage}%`);
}

async function breakersHealthy(): Promise<void> {
  const { circuitBreakers } = await request(DeployBreakersDocument, {});
  for (const b of circuitBreakers) {
    const note = b.name.includes('@') ? ': a past rollout canary\'s, guarding nothing that serves' : '';
    say(`   ${b.name}: ${b.state} (${b.metrics.calls} calls, ${b.metrics.failures} failures)${note}`);
  }
  // `module:<name>@<version>` is a rollout canary's breaker; one left OPEN by an aborted canary
  // (a previous run's v4) guards nothing that serves, so it does not stop this rollout.
  const open = circuitBreakers.filter((b) => b.state !== 'CLOSED' && b.state !== 'DISABLED' && !b.name.includes('@'));
  if (open.length > 0) throw new Error(`breakers not closed: ${open.map((b) => `${b.name} ${b.state}`).join(', ')}: stopping the rollout`);
}

async function main(): Promise<void> {
  say(`Helios deployment demo against ${url}`);
  step(1, 'Register the modules');
  for (const [name, modulePath, dependencies, moduleType] of [
    ['feature_extractor', 'feature_extractor', [], 'DATA_PIPELINE'],
    [MODULE, 'ml.neural_predictor', ['feature_extractor'], 'ML'],
  ] as const) {
    const r = await request(DeployRegisterDocument, { name, modulePath, version: '1.0.0', dependencies: [...dependencies], moduleType });
    say(`   ${name}: ${check(r.registerModule.errors, ['MODULE_ALREADY_EXISTS']) ? 'already registered' : 'registered'}`);
  }
  step(2, 'Load (dependencies first)');
  const loaded = await request(DeployLoadDocument, { name: MODULE });
  check(loaded.loadModule.errors);
  say(`   ${MODULE}: ${loaded.loadModule.module!.state} at ${loaded.loadModule.module!.version}, methods ${loaded.loadModule.module!.methods.join(', ')}`);
  await invoke('before the rollout');
  step(3, 'Test it on a staged instance, live');
  await testWithProgress(MODULE, 'ML');
  step(4, 'Enable for 10% of traffic');
  await setPercentage(10);
  step(5, 'Check the circuit breakers');
  await breakersHealthy();
  step(6, 'Raise to 50%');
  await setPercentage(50);
  await breakersHealthy();
  step(7, 'Full rollout (100%)');
  const full = await request(DeployFullRolloutDocument, { name: FLAG });
  check(full.enableFeatureFlag.errors);
  say(`   ${FLAG}: ${full.enableFeatureFlag.flag!.strategy}`);
  step(8, 'Hot-swap to v2, gated by its ML tests');
  const swap = await request(DeploySwapDocument, { name: MODULE, newVersionPath: 'ml/neural_predictor_v2.js', newVersion: '2.0.0', testWith: 'ML' });
  check(swap.swapModule.errors);
  say(`   now ${swap.swapModule.module!.version} (previous ${swap.swapModule.module!.previousVersion}), gated by test run ${swap.swapModule.testRunId}`);
  await invoke('after the swap');
  step(9, 'Automatic rollout of v3: 50%, then 100%, judged by gates, promoted');
  const promoted = await watchRollout('ml/neural_predictor_v3.js', '3.0.0', 'ML');
  if (promoted !== 'PROMOTED') throw new Error(`the rollout of 3.0.0 ended ${promoted}, not PROMOTED`);
  await invoke('after the promotion');
  step(10, 'Automatic rollout of v4, a failing canary: aborted');
  const aborted = await watchRollout('ml/neural_predictor_v4.js', '4.0.0', null);
  if (aborted !== 'ABORTED') throw new Error(`the rollout of 4.0.0 ended ${aborted}, not ABORTED`);
  await servedAfterAbort('3.0.0');
  step(11, 'Roll back');
  const back = await request(DeployRollbackDocument, { name: MODULE });
  check(back.rollbackModule.errors);
  say(`   now ${back.rollbackModule.module!.version} (previous ${back.rollbackModule.module!.previousVersion})`);
  await invoke('after the rollback');
  say('\nDone.');
}

main()
  .catch((error: unknown) => {
    say(`\nStopped: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  })
  .finally(() => ws.dispose());
