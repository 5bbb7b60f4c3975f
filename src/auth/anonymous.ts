/**
 * What a caller without a token may do (`HELIOS_ANONYMOUS=none|viewer`). The default is `viewer`
 * only while the server listens on a loopback address, where every caller is already on the
 * host; on any other address (including 0.0.0.0 and ::) the default is `none`, so exposing the
 * port never exposes the state by accident.
 */
import { isIP } from 'node:net';

export const ANONYMOUS_MODES = ['none', 'viewer'] as const;
export type AnonymousMode = (typeof ANONYMOUS_MODES)[number];

export class AnonymousModeError extends Error {
  override name = 'AnonymousModeError';
}

/** Parses `HELIOS_ANONYMOUS` (case-insensitive); empty or missing means "use the default". */
export function parseAnonymousMode(raw: string | undefined | null): AnonymousMode | undefined {
  if (raw === undefined || raw === null || raw.trim() === '') return undefined;
  const value = raw.trim().toLowerCase();
  if (value === 'none' || value === 'viewer') return value;
  throw new AnonymousModeError(`HELIOS_ANONYMOUS must be "none" or "viewer", got "${raw}"`);
}

export function resolveAnonymousRole(mode: AnonymousMode | undefined, host: string): AnonymousMode {
  if (mode !== undefined) return mode;
  return isLoopbackHost(host) ? 'viewer' : 'none';
}

/** 127.0.0.0/8, ::1 (also bracketed and IPv4-mapped) and `localhost`; anything else is not. */
export function isLoopbackHost(host: string): boolean {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (h.startsWith('::ffff:') && isIP(h.slice(7)) === 4) h = h.slice(7);
  const family = isIP(h);
  if (family === 4) return h.split('.')[0] === '127';
  if (family === 6) return isIpv6Loopback(h);
  return false;
}

function isIpv6Loopback(address: string): boolean {
  // Expands "::" so that every spelling of ::1 (0:0:0:0:0:0:0:1, ::0001, ...) is recognised.
  const [head = '', tail] = address.split('::');
  const headParts = head === '' ? [] : head.split(':');
  const tailParts = tail === undefined || tail === '' ? [] : tail.split(':');
  const parts = tail === undefined
    ? headParts
    : [...headParts, ...Array<string>(8 - headParts.length - tailParts.length).fill('0'), ...tailParts];
  if (parts.length !== 8) return false;
  return parts.every((p, i) => parseInt(p, 16) === (i === 7 ? 1 : 0));
}
