import { createHmac, timingSafeEqual } from 'node:crypto';

/** Outcome of checking a connect token. */
export type TokenCheck =
  | { readonly ok: true; readonly claims: Record<string, unknown> }
  | { readonly ok: false; readonly reason: string };

/**
 * Verifies an HS256 JWT (header.payload.signature, base64url) with node:crypto.
 * Honours `exp` and `nbf` (seconds since the epoch). Only HS256 is accepted, so `alg: none` cannot slip through.
 */
export function verifyHs256Token(token: string | null | undefined, secret: string, nowMs = Date.now()): TokenCheck {
  if (!token) return { ok: false, reason: 'a token is required: connect to /ws?token=<HS256 JWT>' };
  const parts = token.split('.');
  if (parts.length !== 3) return { ok: false, reason: 'token is not a JWT (expected header.payload.signature)' };
  const [h, p, s] = parts;
  const header = decodeJson(h);
  if (!header || header.alg !== 'HS256') {
    return { ok: false, reason: 'token header must declare alg HS256' };
  }
  const expected = createHmac('sha256', secret).update(`${h}.${p}`).digest();
  const given = Buffer.from(s, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, reason: 'token signature does not match; sign it with RELAY_TOKEN_SECRET using HS256' };
  }
  const claims = decodeJson(p);
  if (!claims) return { ok: false, reason: 'token payload is not a JSON object' };
  const now = nowMs / 1000;
  if (claims.exp !== undefined) {
    if (typeof claims.exp !== 'number') return { ok: false, reason: 'token claim exp must be a number of seconds' };
    if (now >= claims.exp) return { ok: false, reason: `token expired at ${new Date(claims.exp * 1000).toISOString()}; request a new one` };
  }
  if (claims.nbf !== undefined) {
    if (typeof claims.nbf !== 'number') return { ok: false, reason: 'token claim nbf must be a number of seconds' };
    if (now < claims.nbf) return { ok: false, reason: `token not valid before ${new Date(claims.nbf * 1000).toISOString()}` };
  }
  return { ok: true, claims };
}

/** Signs claims as an HS256 JWT; used by tests and tools that mint tokens for the relay. */
export function signHs256Token(claims: Record<string, unknown>, secret: string): string {
  const h = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
  const p = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const s = createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${s}`;
}

function decodeJson(part: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
