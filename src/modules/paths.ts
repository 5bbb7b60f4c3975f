/**
 * Module paths resolve only inside the modules root (HELIOS_MODULES_DIR).
 *
 * Two spellings are accepted: the file form `ml/predictor_v2.js` (also `.mjs`, `.cjs`; without
 * an extension `.js` then `.mjs` are tried) and the seed's dotted form `ml.predictor_v2`
 * (-> `ml/predictor_v2.js`, then `.mjs`). Everything else is refused before the file system is
 * touched: empty or over-long paths, absolute paths, drive letters and URLs, backslashes, NUL,
 * any `%` (so no encoded traversal, single or double), `.`, `..` and empty segments, and any
 * character outside `[A-Za-z0-9_.@+-]` in a segment. The accepted candidate is then resolved
 * with `realpath` and must still lie inside the root's own `realpath`, which also refuses a
 * symlink (of the file or of a folder on the way) that leads outside.
 */
import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';

export const MODULE_PATH_ERROR_CODES = ['INVALID_MODULE_PATH', 'MODULE_NOT_FOUND'] as const;
export type ModulePathErrorCode = (typeof MODULE_PATH_ERROR_CODES)[number];

export class ModulePathError extends Error {
  override name = 'ModulePathError';
  constructor(
    readonly code: ModulePathErrorCode,
    message: string,
    readonly modulePath: string,
  ) {
    super(message);
  }
}

export interface ResolvedModulePath {
  /** The real path of the file to import (symlinks resolved). */
  absolutePath: string;
  /** The requested file relative to the root, with `/` separators (symlinks not resolved). */
  relativePath: string;
}

export const MAX_MODULE_PATH_LENGTH = 512;
export const MODULE_FILE_EXTENSIONS = ['.js', '.mjs', '.cjs'] as const;
const TRIED_EXTENSIONS = ['.js', '.mjs'] as const;
const SEGMENT = /^[A-Za-z0-9_.@+-]+$/;

function invalid(modulePath: string, why: string): ModulePathError {
  return new ModulePathError('INVALID_MODULE_PATH', `Invalid module path "${printable(modulePath)}": ${why}`, modulePath);
}

/** Control characters would make the message itself misleading in logs. */
function printable(s: string): string {
  const clipped = s.length > 80 ? `${s.slice(0, 80)}...` : s;
  return clipped.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function extensionOf(segment: string): string {
  return path.posix.extname(segment).toLowerCase();
}

/** Candidate paths relative to the root, in the order they are tried. Throws on a refused spelling. */
function candidatesOf(modulePath: string): string[] {
  if (modulePath.trim() === '') throw invalid(modulePath, 'it is empty');
  if (modulePath.length > MAX_MODULE_PATH_LENGTH) {
    throw invalid(modulePath, `it is longer than ${MAX_MODULE_PATH_LENGTH} characters`);
  }
  if (modulePath.includes('\0')) throw invalid(modulePath, 'it contains a NUL character');
  if (modulePath.includes('%')) {
    throw invalid(modulePath, 'percent-encoding is not allowed (it could hide "..", "/" or "\\")');
  }
  if (modulePath.includes('\\')) throw invalid(modulePath, 'backslashes are not allowed; use "/"');
  if (modulePath.startsWith('/') || path.isAbsolute(modulePath)) {
    throw invalid(modulePath, 'absolute paths are not allowed; give a path inside the modules directory');
  }
  if (modulePath.includes(':')) throw invalid(modulePath, 'drive letters, URLs and ":" are not allowed');
  if (modulePath.split('/').includes('..')) throw invalid(modulePath, '".." segments are not allowed');

  const slashed = modulePath.includes('/');
  const ext = extensionOf(modulePath);
  const fileForm = slashed || (MODULE_FILE_EXTENSIONS as readonly string[]).includes(ext);
  const segments = fileForm ? modulePath.split('/') : modulePath.split('.');
  for (const segment of segments) {
    if (segment === '..') throw invalid(modulePath, '".." segments are not allowed');
    if (segment === '.') throw invalid(modulePath, '"." segments are not allowed');
    if (segment === '') {
      throw invalid(modulePath, fileForm ? 'empty path segments are not allowed' : 'empty name parts are not allowed (".." or a leading/trailing ".")');
    }
    if (!SEGMENT.test(segment)) {
      throw invalid(modulePath, `"${printable(segment)}" has characters outside [A-Za-z0-9_.@+-]`);
    }
  }
  if (!fileForm) return TRIED_EXTENSIONS.map((e) => segments.join('/') + e);
  if (ext === '') return TRIED_EXTENSIONS.map((e) => modulePath + e);
  if (!(MODULE_FILE_EXTENSIONS as readonly string[]).includes(ext)) {
    throw invalid(modulePath, `modules are ${MODULE_FILE_EXTENSIONS.join(', ')} files, not "${ext}"`);
  }
  return [modulePath];
}

function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

function errnoOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Resolves `modulePath` inside `root`, or throws a `ModulePathError`: INVALID_MODULE_PATH for a
 * refused spelling or a path leading outside the root, MODULE_NOT_FOUND when no candidate file
 * exists (or the root itself does not).
 */
export function resolveModulePath(root: string, modulePath: string): ResolvedModulePath {
  if (typeof modulePath !== 'string') throw invalid(String(modulePath), 'it is not a string');
  const candidates = candidatesOf(modulePath);
  let realRoot: string;
  try {
    realRoot = realpathSync(root);
  } catch {
    throw new ModulePathError('MODULE_NOT_FOUND', `The modules directory "${root}" does not exist`, modulePath);
  }
  for (const relativePath of candidates) {
    const joined = path.join(realRoot, ...relativePath.split('/'));
    // A lexical check first, so nothing outside the root is even stat'ed.
    if (!isInside(realRoot, joined)) throw invalid(modulePath, 'it leads outside the modules directory');
    let real: string;
    try {
      real = realpathSync(joined);
    } catch (error) {
      if (errnoOf(error) === 'ENOENT' || errnoOf(error) === 'ENOTDIR') continue;
      throw invalid(modulePath, `it cannot be resolved (${errnoOf(error) ?? 'unknown error'})`);
    }
    if (!isInside(realRoot, real)) {
      throw invalid(modulePath, 'it is a symbolic link (or goes through one) that leads outside the modules directory');
    }
    if (!statSync(real).isFile()) {
      throw new ModulePathError('MODULE_NOT_FOUND', `Module path "${printable(modulePath)}" is not a file`, modulePath);
    }
    return { absolutePath: real, relativePath };
  }
  const tried = candidates.length > 1 ? ` (tried ${candidates.join(', ')})` : '';
  throw new ModulePathError(
    'MODULE_NOT_FOUND',
    `No module file "${printable(modulePath)}" in the modules directory${tried}`,
    modulePath,
  );
}
