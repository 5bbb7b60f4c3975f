import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // graphql@16 ships CJS (main) and ESM (module) builds without an exports map. Node loads the
    // CJS build for our dependencies (Pothos, Yoga), so our own code must get the same copy,
    // or the schema's types come from "another realm".
    alias: [{ find: /^graphql$/, replacement: 'graphql/index.js' }],
  },
  test: {
    include: ['test/**/*.test.ts'],
    // Probes PostgreSQL once: its tests run when it answers, are skipped (loudly) when it does
    // not, and CI fails rather than skip them.
    globalSetup: ['test/support/postgres-setup.ts'],
    // Forks keep each test file in its own process: module worker threads and native SQLite
    // handles never share a process with another file's server.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
    fileParallelism: true,
    // CI also writes a JSON summary that .ci/run turns into a closing 'N passed, N failed' line.
    reporters: process.env.CI ? ['default', ['json', { outputFile: '.vitest-results.json' }]] : ['default'],
  },
});
