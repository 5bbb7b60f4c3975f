/** npm start builds only what changed: the build step's staleness check (scripts/build.ts). */
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BUILD_INFO, DASHBOARD_BUILT, staleDashboardInputs, staleInputs } from '../../scripts/build.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function project(): string {
  const root = mkdtempSync(path.join(tmpdir(), 'helios-build-'));
  dirs.push(root);
  mkdirSync(path.join(root, 'src/flags'), { recursive: true });
  for (const file of ['src/main.ts', 'src/flags/engine.ts', 'tsconfig.json', 'tsconfig.build.json', 'package.json']) writeFileSync(path.join(root, file), '');
  return root;
}

const at = (root: string, file: string, seconds: number) => utimesSync(path.join(root, file), seconds, seconds);

describe('the build step of npm start', () => {
  it('compiles everything without a previous build, nothing when up to date, and again after any change', () => {
    const root = project();
    expect(staleInputs(root)).toHaveLength(5);
    for (const file of ['src/main.ts', 'src/flags/engine.ts', 'tsconfig.json', 'tsconfig.build.json', 'package.json']) at(root, file, 1000);
    mkdirSync(path.join(root, 'dist'));
    writeFileSync(path.join(root, BUILD_INFO), '{}');
    at(root, BUILD_INFO, 2000);
    expect(staleInputs(root)).toEqual([]);
    at(root, 'src/flags/engine.ts', 3000);
    expect(staleInputs(root)).toEqual([path.join(root, 'src/flags/engine.ts')]);
    at(root, 'src/flags/engine.ts', 1000);
    at(root, 'tsconfig.build.json', 3000);
    expect(staleInputs(root)).toEqual([path.join(root, 'tsconfig.build.json')]);
    writeFileSync(path.join(root, 'src/new.ts'), '');
    expect(staleInputs(root)).toContain(path.join(root, 'src/new.ts'));
  });

  it('builds the dashboard on a fresh clone and when its sources or the schema changed, never for its generated code', () => {
    const root = project();
    mkdirSync(path.join(root, 'dashboard/src/gql'), { recursive: true });
    mkdirSync(path.join(root, 'schema'));
    for (const file of ['dashboard/index.html', 'dashboard/src/app.ts', 'dashboard/src/gql/graphql.ts', 'schema/schema.graphql', 'codegen.ts']) writeFileSync(path.join(root, file), '');
    expect(staleDashboardInputs(root)).toContain(path.join(root, 'dashboard/src/app.ts'));
    for (const file of ['dashboard/index.html', 'dashboard/src/app.ts', 'schema/schema.graphql', 'codegen.ts', 'package.json']) at(root, file, 1000);
    at(root, 'dashboard/src/gql/graphql.ts', 5000);
    mkdirSync(path.join(root, 'dist/dashboard'), { recursive: true });
    writeFileSync(path.join(root, DASHBOARD_BUILT), '');
    at(root, DASHBOARD_BUILT, 2000);
    expect(staleDashboardInputs(root)).toEqual([]);
    at(root, 'schema/schema.graphql', 3000);
    expect(staleDashboardInputs(root)).toEqual([path.join(root, 'schema/schema.graphql')]);
  });
});
