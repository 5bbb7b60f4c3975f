/**
 * Vitest global setup: asks PostgreSQL once whether it answers, and tells every test file
 * (`inject('postgres')`). Without it the PostgreSQL tests are skipped, loudly; under CI the run
 * fails here instead, since a CI that skipped them proves nothing about the cluster.
 */
import type { TestProject } from 'vitest/node';
import { ADMIN_URL, probePostgres } from './postgres.js';

export default async function setup(project: TestProject): Promise<void> {
  const problem = await probePostgres();
  project.provide('postgres', problem === null);
  if (problem === null) return;
  const message = `PostgreSQL at ${new URL(ADMIN_URL).host} did not answer (${problem}): the PostgreSQL and cluster tests are SKIPPED.`;
  if (process.env.CI === 'true') {
    throw new Error(`${message} CI needs them: start PostgreSQL (see the README's Cluster section) or set HELIOS_TEST_POSTGRES_URL.`);
  }
  console.warn(`\n*** ${message} ***\n`);
}
