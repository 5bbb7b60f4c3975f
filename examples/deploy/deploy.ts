/**
 * `npm run example:deploy`: the seeds' deployment workflow (their example_modular_deployment.py)
 * run against a live Helios by a typed client generated from schema/schema.graphql, narrated:
 * register, load, test with live progress, 10%, check breakers, 50%, 100%, a hot swap gated by
 * its tests, invocations showing which version serves, and a rollback.
 *
 * HELIOS_URL (default http://localhost:8000/graphql) and HELIOS_TOKEN (default: the contents of
 * data/admin-token, which the first start writes). The modules are the examples in
 * examples/modules (the server's default HELIOS_MODULES_DIR). Exit code 0 when every step
 * succeeded, 1 with the failing step's error otherwise.
 *
 * Not here yet: the automatic rollouts (one that promotes, one that aborts on a failing canary);
 * they need the rollouts domain, which is not merged.
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
  DeploySwapDocument,
  DeployTestDocument,
  DeployTestProgressDocument,
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

async function setPercentage(percentage: number): Promise<void> {
  const r = await request(DeployPercentageDocument, { name: FLAG, percentage });
  check(r.setFlagPercentage.errors);
  say(`   ${FLAG}: ${r.setFlagPercentage.flag!.strategy} at ${r.setFlagPercentage.flag!.effectivePercentage}%`);
}

async function breakersHealthy(): Promise<void> {
  const { circuitBreakers } = await request(DeployBreakersDocument, {});
  for (const b of circuitBreakers) say(`   ${b.name}: ${b.state} (${b.metrics.calls} calls, ${b.metrics.failures} failures)`);
  const open = circuitBreakers.filter((b) => b.state !== 'CLOSED' && b.state !== 'DISABLED');
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
  step(9, 'Automatic rollouts (promote; abort on a failing canary)');
  say('   skipped: the rollouts domain is not in this build yet');
  step(10, 'Roll back');
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
