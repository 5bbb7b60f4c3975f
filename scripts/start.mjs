// @ts-check
/**
 * `npm start`: builds what is stale (build.mjs: nothing when nothing changed), then runs the
 * bundled server (dist/bundle/main.js: the compiled dist/src/main.js and its packages, bundled
 * by build.mjs) in this same process. One Node process instead of a
 * `prestart` process for the check and a second one for the server: on an unchanged build the
 * check costs a few milliseconds, where a process of its own cost Node's start-up and npm's
 * lifecycle step for it (issue 15). Run from the project folder, as npm runs it.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildStale } from './build.mjs';

const root = process.cwd();
// The bundle, or the unbundled build when esbuild is not installed (build.mjs says so).
const entry = await buildStale(root);
await import(pathToFileURL(path.join(root, entry)).href);
