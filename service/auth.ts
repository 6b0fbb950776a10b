import { createHmac } from 'node:crypto';
import { jwtVerify, type JWTPayload } from 'jose';
import { parseRoomAccess, type RoomAccess } from './permissions';

/** The verified claims of a connection's token, handed to the hub as `meta.claims`. */
export interface TokenClaims {
  readonly sub?: string;
  /** Expiry in seconds since the epoch, when the token has one. */
  readonly exp?: number;
  /** Every claim of the token, as signed. */
  readonly payload: Readonly<Record<string, unknown>>;
  /** The `rooms` and `broadcast` claims, checked (service/permissions.ts). */
  readonly access: RoomAccess;
}

/** Outcome of checking a connect token. */
export type TokenCheck = { readonly ok: true; readonly claims: TokenClaims } | { readonly ok: false; readonly reason: string };

/** What a token must satisfy besides its HS256 signature and its exp/nbf. */
export interface TokenRules {
  /** RELAY_TOKEN_SECRET. */
  readonly secret: string;
  /** RELAY_TOKEN_AUDIENCE: when set, the token's `aud` must name one of these. */
  readonly audience?: readonly string[];
  /** RELAY_TOKEN_ISSUER: when set, the token's `iss` must be one of these. */
  readonly issuer?: readonly string[];
}

/** Longer tokens are refused before any decoding; real ones are a few hundred characters. */
export const MAX_TOKEN_CHARS = 4096;
/** The largest NumericDate accepted (9999-12-31T23:59:59Z), so every accepted time can be formatted and compared. */
export const MAX_NUMERIC_DATE = 253_402_300_799;
const TIME_CLAIMS = ['exp', 'nbf', 'iat'] as const;

/**
 * Verifies an HS256 JWT with jose, after a check of its own that every part is canonical base64url (no padding,
 * no characters outside the alphabet, no stray low bits), so one token has exactly one spelling. `exp`, `nbf` and
 * `iat` must be numbers from 0 to MAX_NUMERIC_DATE. Only HS256 is accepted, so `alg: none` cannot slip through.
 * The reason of a refusal never repeats the token.
 */
export async function verifyToken(token: string | null | undefined, rules: TokenRules, nowMs = Date.now()): Promise<TokenCheck> {
  if (!token) return refuse('a token is required: connect to /ws?token=<HS256 JWT>');
  if (token.length > MAX_TOKEN_CHARS) return refuse(`token is longer than ${MAX_TOKEN_CHARS} characters`);
  const parts = token.split('.');
  if (parts.length !== 3) return refuse('token is not a JWT (expected header.payload.signature)');
  const bad = parts.findIndex((part) => !isCanonicalBase64url(part));
  if (bad !== -1) {
    return refuse(`token ${['header', 'payload', 'signature'][bad]} is not canonical base64url (A-Z a-z 0-9 - _ only, no padding)`);
  }
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, new TextEncoder().encode(rules.secret), {
      algorithms: ['HS256'],
      audience: rules.audience ? [...rules.audience] : undefined,
      issuer: rules.issuer ? [...rules.issuer] : undefined,
      currentDate: new Date(nowMs),
    }));
  } catch (err) {
    return refuse(describeFailure(err));
  }
  const problem = timeClaimProblem(payload);
  if (problem) return refuse(problem);
  if (payload.sub !== undefined && typeof payload.sub !== 'string') return refuse('token claim sub must be a string');
  const access = parseRoomAccess(payload);
  if (!access.ok) return refuse(access.reason);
  return { ok: true, claims: { sub: payload.sub, exp: payload.exp, payload, access: access.access } };
}

/** Signs claims as an HS256 JWT; for tests and tools that mint tokens for the relay. */
export function signHs256Token(claims: Record<string, unknown>, secret: string): string {
  const h = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
  const p = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const s = createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${s}`;
}

/** Base64url as RFC 7515 writes it: decoding and encoding again gives back the same text. */
function isCanonicalBase64url(part: string): boolean {
  return /^[A-Za-z0-9_-]*$/.test(part) && Buffer.from(part, 'base64url').toString('base64url') === part;
}

function refuse(reason: string): TokenCheck {
  return { ok: false, reason };
}

/** A time claim that is not a usable number of seconds, checked before any of them is compared or formatted. */
function timeClaimProblem(payload: Record<string, unknown>): string | null {
  for (const claim of TIME_CLAIMS) {
    const v = payload[claim];
    if (v === undefined) continue;
    if (typeof v !== 'number') return `token claim ${claim} must be a number of seconds`;
    if (!(v >= 0 && v <= MAX_NUMERIC_DATE)) return `token claim ${claim} is out of range: expected seconds from 0 to ${MAX_NUMERIC_DATE}`;
  }
  return null;
}

/** jose's failure, in words that say what to fix (jose's errors never quote the token). */
function describeFailure(err: unknown): string {
  const { code, claim, reason, payload } = (err ?? {}) as { code?: unknown; claim?: unknown; reason?: unknown; payload?: unknown };
  switch (code) {
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'token signature does not match; sign it with RELAY_TOKEN_SECRET using HS256';
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return 'token header must declare alg HS256';
    case 'ERR_JWT_EXPIRED':
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      // Claims are validated after the signature, so this payload is authentic; its times may still be absurd.
      const claims = typeof payload === 'object' && payload !== null ? (payload as Record<string, unknown>) : {};
      const problem = timeClaimProblem(claims);
      if (problem) return problem;
      if (claim === 'exp') return `token expired at ${isoSeconds(claims.exp)}; request a new one`;
      if (claim === 'nbf') return `token not valid before ${isoSeconds(claims.nbf)}`;
      if (claim === 'aud') {
        return reason === 'missing' ? 'token has no aud claim; RELAY_TOKEN_AUDIENCE requires one' : 'token aud does not name RELAY_TOKEN_AUDIENCE';
      }
      if (claim === 'iss') {
        return reason === 'missing' ? 'token has no iss claim; RELAY_TOKEN_ISSUER requires one' : 'token iss is not RELAY_TOKEN_ISSUER';
      }
      return `token claim ${String(claim)} is not valid`;
    }
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return `token is not a valid HS256 JWT: ${err instanceof Error ? err.message : 'unreadable'}`;
    default:
      return 'token could not be verified';
  }
}

function isoSeconds(seconds: unknown): string {
  return typeof seconds === 'number' ? new Date(seconds * 1000).toISOString() : String(seconds);
}
