/**
 * The two graphql-scalars scalars Helios uses (DateTime as `DateTimeISO`, JSON), loaded from
 * their own files in the installed package instead of through its index. The index imports
 * every one of its 70-odd scalars, their type definitions and mocks (84 modules): about 70 ms of
 * every start for two of them (issue 15). The package's `exports` map names only its index, so
 * the files are found from where the package resolves; they are the very objects the index
 * exports (same module URLs: test/unit/scalars.test.ts), so nothing about the scalars changes.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DateTimeISOResolver as DateTimeISO, JSONResolver as JSONScalar } from 'graphql-scalars';

/** `esm/` of the installed graphql-scalars (its require entry is `cjs/index.js`, beside it). */
const esm = path.join(path.dirname(createRequire(import.meta.url).resolve('graphql-scalars')), '..', 'esm');
const shipped = (file: string) => pathToFileURL(path.join(esm, 'scalars', file)).href;

const [dateTime, json] = await Promise.all([
  import(shipped('iso-date/DateTimeISO.js')) as Promise<{ GraphQLDateTimeISO: typeof DateTimeISO }>,
  import(shipped('json/JSON.js')) as Promise<{ GraphQLJSON: typeof JSONScalar }>,
]);

export const DateTimeISOResolver = dateTime.GraphQLDateTimeISO;
export const JSONResolver = json.GraphQLJSON;
