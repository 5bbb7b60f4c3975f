/**
 * GraphiQL, served by Helios itself (no CDN: it works offline) without costing a page of
 * megabytes per visit.
 *
 * `@graphql-yoga/render-graphiql` ships GraphiQL as strings (the bundle, its CSS, three Monaco
 * workers and a favicon data URL, 9 MB in all) and its renderer inlines every one of them into
 * each page. Here the page is a few hundred bytes that links to those assets instead, each at a
 * content-hashed URL under `/graphiql/`:
 * - read from the package once per process, on the first visit (a server that never serves
 *   GraphiQL never loads the 9 MB);
 * - compressed once, immutable, with ETags and 304s, as every static asset (static-assets.ts);
 *   a new GraphiQL version is a new URL.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GraphiQLOptions } from 'graphql-yoga';
import { allowReadOnly, answerOrFail, sendNotFound, sendStaticAsset, staticAsset, type StaticAsset } from './static-assets.js';

/**
 * What GraphiQL's editor shows on a first visit (Yoga's `defaultQuery`): what Helios is, how to
 * get and send a token, and a first operation to run. `anonymous` says whether reads need one.
 */
export function graphiqlWelcome(anonymous: 'none' | 'viewer'): string {
  const access =
    anonymous === 'viewer'
      ? ['# Reading needs no token here. To change anything, put a token in the Headers tab below:']
      : ['# Every operation needs a token here: put one in the Headers tab below:'];
  return [
    '# Welcome to Helios, the runtime control plane of this Node.js service: feature flags,',
    '# circuit breakers and hot-swappable modules, changed live and watched live over GraphQL.',
    '#',
    ...access,
    '#   {"Authorization": "Bearer hel_..."}',
    '# The first start printed an admin token and wrote it to data/admin-token',
    '# (HELIOS_ADMIN_TOKEN_FILE); make more with `npm run token -- create --name me --role OPERATOR`.',
    '#',
    '# Run an operation with the play button (Ctrl-Enter); the book icon opens the schema docs.',
    '# GraphiQL runs one operation at a time: watch a subscription (featureFlagChanged,',
    '# breakerStateChanged) in a second browser tab while you change things in this one.',
    '',
    'query ModularityStatus {',
    '  modularityStatus {',
    '    version',
    '    uptimeSeconds',
    '    modules { total active failed }',
    '    flags { total enabled }',
    '    breakers { total open forcedOpen }',
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Every GraphiQL asset is served below this path; the page itself stays on /graphql. */
export const GRAPHIQL_ASSETS_PATH = '/graphiql/';

interface Catalog {
  byPath: Map<string, StaticAsset>;
  js: StaticAsset;
  css: StaticAsset;
  favicon: StaticAsset;
  workers: Record<'editorWorkerService' | 'json' | 'graphql', StaticAsset>;
}

let catalog: Promise<Catalog> | null = null;

/** The assets of the installed GraphiQL, loaded and hashed once per process. */
function loadCatalog(): Promise<Catalog> {
  catalog ??= import('@graphql-yoga/render-graphiql/graphiql').then((shipped) => {
    const byPath = new Map<string, StaticAsset>();
    const asset = (name: string, ext: string, contentType: string, content: Buffer): StaticAsset => {
      const made = staticAsset(`${GRAPHIQL_ASSETS_PATH}${name}.{hash}.${ext}`, contentType, content);
      byPath.set(made.path, made);
      return made;
    };
    const javascript = 'text/javascript; charset=utf-8';
    return {
      byPath,
      js: asset('graphiql', 'js', javascript, Buffer.from(shipped.js)),
      css: asset('graphiql', 'css', 'text/css; charset=utf-8', Buffer.from(shipped.css)),
      favicon: asset('favicon', 'ico', 'image/x-icon', faviconBytes(shipped.favicon)),
      workers: {
        editorWorkerService: asset('editor.worker', 'js', javascript, Buffer.from(shipped.editorWorkerService)),
        json: asset('json.worker', 'js', javascript, Buffer.from(shipped.jsonWorker)),
        graphql: asset('graphql.worker', 'js', javascript, Buffer.from(shipped.graphqlWorker)),
      },
    };
  });
  return catalog;
}

/** The shipped favicon is a base64 data URL; served as the bytes it encodes. */
function faviconBytes(dataUrl: string): Buffer {
  const comma = dataUrl.indexOf(',');
  return Buffer.from(dataUrl.slice(comma + 1), dataUrl.slice(0, comma).endsWith(';base64') ? 'base64' : 'utf8');
}

/**
 * Yoga's `renderGraphiQL`: the small page that loads the assets. `options` are Yoga's
 * `graphiql` options, handed to GraphiQL in the browser as they are.
 */
export async function renderGraphiQLPage(options?: GraphiQLOptions): Promise<string> {
  const { js, css, favicon, workers } = await loadCatalog();
  const title = escapeHtml(options?.title || 'GraphiQL');
  const workerUrls = Object.fromEntries(Object.entries(workers).map(([label, worker]) => [label, worker.path]));
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>${title}</title>
    <link rel="icon" href="${escapeHtml(options?.favicon || favicon.path)}" />
    <link rel="stylesheet" href="${css.path}" />
  </head>
  <body id="body" class="no-focus-outline">
    <noscript>You need to enable JavaScript to run this app.</noscript>
    <div id="root"></div>
    <script>
      const workers = ${scriptJson(workerUrls)};
      self.MonacoEnvironment = { globalAPI: false, getWorkerUrl: (moduleId, label) => workers[label] };
    </script>
    <script src="${js.path}"></script>
    <script>
      YogaGraphiQL.renderYogaGraphiQL(document.querySelector('#root'), ${scriptJson(options ?? {})});
    </script>
  </body>
</html>
`;
}

/**
 * Answers a request for a GraphiQL asset and returns true, or returns false (and touches
 * nothing) when the URL is not below `GRAPHIQL_ASSETS_PATH`.
 */
export function serveGraphiQLAsset(req: IncomingMessage, res: ServerResponse): boolean {
  const url = req.url ?? '/';
  if (!url.startsWith(GRAPHIQL_ASSETS_PATH)) return false;
  if (!allowReadOnly(req, res)) return true;
  answerOrFail(res, 'the GraphiQL asset', answer(req, res, url.split('?')[0]!));
  return true;
}

async function answer(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const asset = (await loadCatalog()).byPath.get(path);
  // Hashed URLs never change content: an unknown one (an older GraphiQL's) is simply gone.
  if (!asset) sendNotFound(res);
  else await sendStaticAsset(req, res, asset);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON that is safe inside a <script> element (no `</script>`, no `<!--`). */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}
