/**
 * Static assets Helios serves itself (GraphiQL's, the dashboard's): held in memory, compressed
 * once and answered cheaply.
 * - Each asset is compressed once (brotli and gzip with node:zlib, off the event loop), lazily
 *   on the first request that can use it, and answered by `Accept-Encoding` from those shared
 *   buffers, so a visit allocates nothing big.
 * - A strong ETag per encoding and 304 on a matching `If-None-Match`.
 * - `immutable` assets live at content-hashed URLs (`Cache-Control: public, max-age=31536000,
 *   immutable`: a new build is a new URL); the others (an HTML entry page whose URL never
 *   changes) are `no-cache`, i.e. revalidated with their ETag on every visit.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { brotliCompress, constants as zlib, gzip } from 'node:zlib';

const IMMUTABLE = 'public, max-age=31536000, immutable';
const REVALIDATE = 'no-cache';
const brotli = promisify(brotliCompress);
const gzipAsync = promisify(gzip);

export type Encoding = 'br' | 'gzip' | 'identity';

export interface StaticAsset {
  /** The URL path it is served at. */
  path: string;
  contentType: string;
  identity: Buffer;
  /** 16 hex digits of the content's SHA-256 (the ETag, and the hash in immutable URLs). */
  hash: string;
  immutable: boolean;
  /** Compressed once, on the first request that can use it. */
  compressed: Promise<Record<'br' | 'gzip', Buffer>> | null;
}

export function contentHash(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex').slice(0, 16);
}

/** An asset at `path`; `path` may use the `{hash}` placeholder, replaced by the content hash. */
export function staticAsset(path: string, contentType: string, content: Buffer, immutable = true): StaticAsset {
  const hash = contentHash(content);
  return { path: path.replace('{hash}', hash), contentType, identity: content, hash, immutable, compressed: null };
}

const CONTENT_TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  ico: 'image/x-icon',
  png: 'image/png',
  json: 'application/json; charset=utf-8',
  map: 'application/json; charset=utf-8',
};

/** The Content-Type for a file name, by its extension. */
export function contentTypeOf(fileName: string): string {
  return CONTENT_TYPES[fileName.slice(fileName.lastIndexOf('.') + 1).toLowerCase()] ?? 'application/octet-stream';
}

function compressedOf(asset: StaticAsset): Promise<Record<'br' | 'gzip', Buffer>> {
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

/** GET and HEAD only: answers 405 and returns false for any other method. */
export function allowReadOnly(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return true;
  res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
  res.end('Method Not Allowed\n');
  return false;
}

export function sendNotFound(res: ServerResponse): void {
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  res.end('Not Found\n');
}

/** Answers with `asset` in the best encoding the request accepts, or 304 when its ETag matches. */
export async function sendStaticAsset(req: IncomingMessage, res: ServerResponse, asset: StaticAsset): Promise<void> {
  const encoding = preferredEncoding(req.headers['accept-encoding']);
  const body = encoding === 'identity' ? asset.identity : (await compressedOf(asset))[encoding];
  const etag = `"${asset.hash}${encoding === 'identity' ? '' : `-${encoding}`}"`;
  const headers: Record<string, string | number> = {
    'cache-control': asset.immutable ? IMMUTABLE : REVALIDATE,
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

/**
 * Runs an asset answer, turning a failure to prepare it into a 500 that names `what`; for
 * route handlers, which must not reject.
 */
export function answerOrFail(res: ServerResponse, what: string, answer: Promise<void>): void {
  void answer.catch((error: unknown) => {
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(`Could not prepare ${what}: ${error instanceof Error ? error.message : String(error)}\n`);
  });
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
