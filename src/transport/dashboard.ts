/**
 * The operations dashboard at `/dashboard`: the front end under dashboard/, built by
 * `npm run build` (Vite) into dist/dashboard/, served from memory like GraphiQL's assets
 * (static-assets.ts): compressed once, ETag/304. Vite names every asset by its content, so
 * `/dashboard/assets/*` is immutable; the page itself (`/dashboard`) is revalidated on each
 * visit, so a new build is picked up at once. The page is a GraphQL client like any other
 * (typed documents, graphql-ws subscriptions, the caller's own token); it gets no special door.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { packageRoot } from '../paths.js';
import type { HttpRoute } from './http.js';
import { allowReadOnly, answerOrFail, contentTypeOf, sendNotFound, sendStaticAsset, staticAsset, type StaticAsset } from './static-assets.js';

export const DASHBOARD_PATH = '/dashboard';
const ASSETS_DIR = 'assets';

/**
 * Who may load the page's scripts and open its connections: this origin only (the page works
 * offline and talks to nothing else). Lit's styles are constructed style sheets; the inline
 * `style` attributes (bar widths) need 'unsafe-inline' for styles, never for scripts.
 */
const CONTENT_SECURITY_POLICY = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

interface DashboardBuild {
  page: StaticAsset;
  assets: Map<string, StaticAsset>;
}

/** Where `npm run build` writes the dashboard. */
export function dashboardBuildDir(): string {
  return path.join(packageRoot(), 'dist', 'dashboard');
}

const loaded = new Map<string, DashboardBuild>();

/** The build in `dir`, read once per process; null while it has not been built (it is then read again). */
function loadBuild(dir: string): DashboardBuild | null {
  const known = loaded.get(dir);
  if (known) return known;
  const index = path.join(dir, 'index.html');
  if (!existsSync(index)) return null;
  const assets = new Map<string, StaticAsset>();
  const assetsDir = path.join(dir, ASSETS_DIR);
  for (const name of existsSync(assetsDir) ? readdirSync(assetsDir) : []) {
    const url = `${DASHBOARD_PATH}/${ASSETS_DIR}/${name}`;
    assets.set(url, staticAsset(url, contentTypeOf(name), readFileSync(path.join(assetsDir, name))));
  }
  const build = { page: staticAsset(DASHBOARD_PATH, contentTypeOf(index), readFileSync(index), false), assets };
  loaded.set(dir, build);
  return build;
}

function serve(req: IncomingMessage, res: ServerResponse, dir: string): void {
  if (!allowReadOnly(req, res)) return;
  const url = (req.url ?? '/').split('?')[0]!;
  const build = loadBuild(dir);
  if (!build) {
    res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end('The dashboard is not built: run `npm run build` (or `npm run build:dashboard`).\n');
    return;
  }
  if (url === DASHBOARD_PATH || url === `${DASHBOARD_PATH}/`) {
    res.setHeader('content-security-policy', CONTENT_SECURITY_POLICY);
    res.setHeader('referrer-policy', 'no-referrer');
    answerOrFail(res, 'the dashboard', sendStaticAsset(req, res, build.page));
    return;
  }
  const asset = build.assets.get(url);
  // Hashed names never change content: an unknown one (an older build's) is simply gone.
  if (!asset) sendNotFound(res);
  else answerOrFail(res, 'a dashboard asset', sendStaticAsset(req, res, asset));
}

/** `/dashboard` (the page) and everything below `/dashboard/` (its hashed assets). */
export function dashboardRoutes(dir: string = dashboardBuildDir()): HttpRoute[] {
  const handle = (req: IncomingMessage, res: ServerResponse) => serve(req, res, dir);
  return [
    { path: DASHBOARD_PATH, handle },
    { path: `${DASHBOARD_PATH}/`, handle },
  ];
}
