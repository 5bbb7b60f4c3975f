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
 * - compressed once (brotli and gzip with node:zlib, off the event loop), lazily per asset, and
 *   answered by `Accept-Encoding` from those shared buffers, so a visit allocates nothing big;
 * - `Cache-Control: public, max-age=31536000, immutable` (a new GraphiQL version is a new URL),
 *   a strong ETag per encoding and 304 on a matching `If-None-Match`.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { brotliCompress, constants as zlib, gzip } from 'node:zlib';
import type { GraphiQLOptions } from 'graphql-yoga';

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

const IMMUTABLE = 'public, max-age=31536000, immutable';
const brotli = promisify(brotliCompress);
const gzipAsync = promisify(gzip);

type Encoding = 'br' | 'gzip' | 'identity';

interface Asset {
  /** Base name and extension, e.g. `graphiql` and `js`; the URL is `/graphiql/<name>.<hash>.<ext>`. */
  path: string;
  contentType: string;
  identity: Buffer;
  hash: string;
  /** Compressed once, on the first request that can use it. */
  compressed: Promise<Record<'br' | 'gzip', Buffer>> | null;
}

interface Catalog {
  byPath: Map<string, Asset>;
  js: Asset;
  css: Asset;
  favicon: Asset;
  workers: Record<'editorWorkerService' | 'json' | 'graphql', Asset>;
}

let catalog: Promise<Catalog> | null = null;

/** The assets of the installed GraphiQL, loaded and hashed once per process. */
function loadCatalog(): Promise<Catalog> {
  catalog ??= import('@graphql-yoga/render-graphiql/graphiql').then((shipped) => {
    const byPath = new Map<string, Asset>();
    const asset = (name: string, ext: string, contentType: string, content: Buffer): Asset => {
      const hash = createHash('sha256').update(content).digest('hex').slice(0, 16);
      const made: Asset = { path: `${GRAPHIQL_ASSETS_PATH}${name}.${hash}.${ext}`, contentType, identity: content, hash, compressed: null };
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

function compressedOf(asset: Asset): Promise<Record<'br' | 'gzip', Buffer>> {
  // Quality 5 / level 6: within a few percent of the maximum sizes at a third of their CPU.
  asset.compressed ??= Promise.all([
    brotli(asset.identity, {
      params: {
        [zlib.BROTLI_PARAM_QUALITY]: 5,
        [zlib.BROTLI_PARAM_SIZE_HINT]: asset.identity.length,
        [zlib.BROTLI_PARAM_MODE]: asset.contentType.startsWith('image/') ? zlib.BROTLI_MODE_GENERIC : zlib.BROTLI_MODE_TEXT,
      },
    }),
    gzipAsync(asset.identity, { level: 6 }),
  ]).then(([br, gz]) => ({ br, gzip: gz }));
  return asset.compressed;
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
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
    res.end('Method Not Allowed\n');
    return true;
  }
  void answer(req, res, url.split('?')[0]!).catch((error: unknown) => {
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(`Could not prepare the GraphiQL asset: ${error instanceof Error ? error.message : String(error)}\n`);
  });
  return true;
}

async function answer(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const asset = (await loadCatalog()).byPath.get(path);
  if (!asset) {
    // Hashed URLs never change content: an unknown one (an older GraphiQL's) is simply gone.
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end('Not Found\n');
    return;
  }
  const encoding = preferredEncoding(req.headers['accept-encoding']);
  const body = encoding === 'identity' ? asset.identity : (await compressedOf(asset))[encoding];
  const etag = `"${asset.hash}${encoding === 'identity' ? '' : `-${encoding}`}"`;
  const headers: Record<string, string | number> = {
    'cache-control': IMMUTABLE,
    etag,
    vary: 'Accept-Encoding',
    'x-content-type-options': 'nosniff',
  };
  if (matchesEtag(req.headers['if-none-match'], etag)) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  headers['content-type'] = asset.contentType;
  headers['content-length'] = body.length;
  if (encoding !== 'identity') headers['content-encoding'] = encoding;
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** br over gzip over identity, honouring `q=0` refusals; `*` stands for any unnamed coding. */
export function preferredEncoding(header: string | string[] | undefined): Encoding {
  const q = new Map<string, number>();
  for (const part of (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';');
    if (!name) continue;
    const weight = params.map((p) => /^\s*q=([0-9.]+)\s*$/.exec(p)).find(Boolean);
    q.set(name, weight ? Number(weight[1]) : 1);
  }
  const accepts = (name: string) => (q.get(name) ?? q.get('*') ?? 0) > 0;
  if (accepts('br')) return 'br';
  if (accepts('gzip')) return 'gzip';
  return 'identity';
}

function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((candidate) => {
    const value = candidate.trim();
    return value === '*' || value === etag || value === `W/${etag}`;
  });
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON that is safe inside a <script> element (no `</script>`, no `<!--`). */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}
