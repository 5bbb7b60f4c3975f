/**
 * The secret half of a token: 32 random bytes (256 bits) in base64url behind a `hel_` prefix, so
 * a leaked token is recognisable by secret scanners and in logs. Only `hashToken(token)` is ever
 * stored or compared.
 *
 * Why a plain SHA-256 and no salt or slow hash: the input is 256 bits of randomness, so neither
 * rainbow tables nor brute force apply; a slow hash would only cost every request time.
 *
 * Why no constant-time comparison for stored tokens: lookups go by the hash of what the caller
 * presents. Timing can at most reveal how close the *hash of the attacker's own guess* is to a
 * stored hash, and without a SHA-256 preimage attack that gives no way to build a matching token.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const TOKEN_PREFIX = 'hel_';
const TOKEN_BYTES = 32;
/** base64url of 32 bytes, without padding. */
const TOKEN_PATTERN = /^hel_[A-Za-z0-9_-]{43}$/;

export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(TOKEN_BYTES).toString('base64url');
}

/** Lowercase hex SHA-256 of the whole token, prefix included. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Whether `value` has the shape of a token Helios generated (saves a lookup for garbage). */
export function isGeneratedTokenShape(value: string): boolean {
  return TOKEN_PATTERN.test(value);
}

/** Equal-length hex digests compared in constant time (used for the HELIOS_ADMIN_TOKEN hash). */
export function sameHash(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && left.length > 0 && timingSafeEqual(left, right);
}
