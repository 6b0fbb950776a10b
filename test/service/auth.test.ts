import { createHmac } from 'node:crypto';
import { MAX_NUMERIC_DATE, MAX_TOKEN_CHARS, signHs256Token, verifyToken, type TokenRules } from '../../service/auth';

const SECRET = 'test-secret-0123456789';
const RULES: TokenRules = { secret: SECRET };
const NOW = Date.UTC(2026, 0, 1);
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Signs a payload given as raw JSON text, for claims JSON.stringify cannot write (1e400). */
function signRaw(payloadJson: string, header: Record<string, unknown> = { alg: 'HS256', typ: 'JWT' }, secret = SECRET): string {
  const h = Buffer.from(JSON.stringify(header)).toString('base64url');
  const p = Buffer.from(payloadJson).toString('base64url');
  const s = createHmac(header.alg === 'HS512' ? 'sha512' : 'sha256', secret).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${s}`;
}

/** The same token with one part rewritten. */
function withPart(token: string, index: number, rewrite: (part: string) => string): string {
  const parts = token.split('.');
  parts[index] = rewrite(parts[index]);
  return parts.join('.');
}

/** Flips the lowest bit of the part's last character: for a part whose length is not a multiple of 4 those bits are padding. */
function flipLastLowBit(part: string): string {
  const last = ALPHABET.indexOf(part[part.length - 1]);
  return part.slice(0, -1) + ALPHABET[last ^ 1];
}

describe('verifyToken', () => {
  it('accepts a token signed with the secret and returns sub, exp and every claim', async () => {
    const token = signHs256Token({ sub: 'u1', exp: NOW / 1000 + 60, role: 'reader' }, SECRET);
    expect(await verifyToken(token, RULES, NOW)).toEqual({
      ok: true,
      claims: {
        sub: 'u1',
        exp: NOW / 1000 + 60,
        payload: { sub: 'u1', exp: NOW / 1000 + 60, role: 'reader' },
        access: { sub: 'u1', exact: null, prefixes: [], broadcast: undefined },
      },
    });
  });

  it.each([
    [undefined, 'a token is required: connect to /ws?token=<HS256 JWT>'],
    ['abc', 'token is not a JWT (expected header.payload.signature)'],
    [signHs256Token({ sub: 'u1' }, 'another-secret-0123'), 'token signature does not match; sign it with RELAY_TOKEN_SECRET using HS256'],
    [signHs256Token({ exp: NOW / 1000 - 1 }, SECRET), 'token expired at 2025-12-31T23:59:59.000Z; request a new one'],
    [signHs256Token({ nbf: NOW / 1000 + 10 }, SECRET), 'token not valid before 2026-01-01T00:00:10.000Z'],
    [signHs256Token({ exp: 'tomorrow' }, SECRET), 'token claim exp must be a number of seconds'],
    [signHs256Token({ sub: 42 }, SECRET), 'token claim sub must be a string'],
    [signRaw('{"sub":"u1"}', { alg: 'HS512', typ: 'JWT' }), 'token header must declare alg HS256'],
    [`${'a'.repeat(MAX_TOKEN_CHARS)}.b.c`, `token is longer than ${MAX_TOKEN_CHARS} characters`],
  ])('refuses %s', async (token, reason) => {
    expect(await verifyToken(token, RULES, NOW)).toEqual({ ok: false, reason });
  });

  it('refuses alg none even with an empty signature', async () => {
    const h = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    const p = Buffer.from(JSON.stringify({ sub: 'u1' })).toString('base64url');
    expect(await verifyToken(`${h}.${p}.`, RULES, NOW)).toEqual({ ok: false, reason: 'token header must declare alg HS256' });
  });

  it('refuses a tampered payload', async () => {
    const [h, , s] = signHs256Token({ sub: 'u1' }, SECRET).split('.');
    const p = Buffer.from(JSON.stringify({ sub: 'admin' })).toString('base64url');
    expect((await verifyToken(`${h}.${p}.${s}`, RULES, NOW)).ok).toBe(false);
    // Sanity: the same payload signed correctly passes, so the refusal is about the signature.
    const good = createHmac('sha256', SECRET).update(`${h}.${p}`).digest('base64url');
    expect((await verifyToken(`${h}.${p}.${good}`, RULES, NOW)).ok).toBe(true);
  });

  describe('one spelling per token: only canonical base64url verifies', () => {
    // An HMAC-SHA256 signature is 32 bytes: 43 characters, whose last one carries 2 padding bits. jose on its own
    // accepts a single "=" and ignores those bits, so without the relay's own check each of these would verify.
    const token = signHs256Token({ sub: 'u1', exp: NOW / 1000 + 60 }, SECRET);
    const variants: Array<[string, number, (p: string) => string]> = [
      ['"=" appended to the signature', 2, (p) => `${p}=`],
      ['"==" appended to the signature', 2, (p) => `${p}==`],
      ['"!!!" inserted into the signature', 2, (p) => `${p.slice(0, 10)}!!!${p.slice(10)}`],
      ['the low bit of the signature\'s last character flipped', 2, flipLastLowBit],
      ['"=" appended to the payload', 1, (p) => `${p}=`],
      ['"!!!" inserted into the header', 0, (p) => `${p.slice(0, 5)}!!!${p.slice(5)}`],
      ['a standard base64 "+" in the signature', 2, (p) => `+${p.slice(1)}`],
    ];

    it('the untouched token verifies and its signature has padding bits to flip', async () => {
      expect((await verifyToken(token, RULES, NOW)).ok).toBe(true);
      expect(token.split('.')[2]).toHaveLength(43);
    });

    it.each(variants)('refuses the token with %s', async (_name, index, rewrite) => {
      const variant = withPart(token, index, rewrite);
      expect(variant).not.toBe(token);
      const part = ['header', 'payload', 'signature'][index];
      expect(await verifyToken(variant, RULES, NOW)).toEqual({
        ok: false,
        reason: `token ${part} is not canonical base64url (A-Z a-z 0-9 - _ only, no padding)`,
      });
    });
  });

  describe('time claims outside any real date are refused cleanly, never thrown', () => {
    it.each([
      ['{"sub":"u1","exp":-1e300}', 'exp'],
      ['{"sub":"u1","exp":1e300}', 'exp'],
      ['{"sub":"u1","exp":1e400}', 'exp'],
      ['{"sub":"u1","exp":-1e400}', 'exp'],
      ['{"sub":"u1","exp":-1}', 'exp'],
      ['{"sub":"u1","nbf":-1e300}', 'nbf'],
      ['{"sub":"u1","nbf":1e300}', 'nbf'],
      [`{"sub":"u1","iat":${MAX_NUMERIC_DATE + 1}}`, 'iat'],
    ])('refuses %s', async (payload, claim) => {
      expect(await verifyToken(signRaw(payload), RULES, NOW)).toEqual({
        ok: false,
        reason: `token claim ${claim} is out of range: expected seconds from 0 to ${MAX_NUMERIC_DATE}`,
      });
    });

    it('accepts the largest expiry it allows', async () => {
      expect(await verifyToken(signRaw(`{"sub":"u1","exp":${MAX_NUMERIC_DATE}}`), RULES, NOW)).toMatchObject({
        ok: true,
        claims: { exp: MAX_NUMERIC_DATE },
      });
    });
  });

  describe('RELAY_TOKEN_AUDIENCE and RELAY_TOKEN_ISSUER', () => {
    const rules: TokenRules = { secret: SECRET, audience: ['relay', 'relay-staging'], issuer: ['https://auth.example.com'] };
    const iss = 'https://auth.example.com';

    it('accepts a token naming one of the audiences (as a string or in a list) from the issuer', async () => {
      expect((await verifyToken(signHs256Token({ sub: 'u', aud: 'relay', iss }, SECRET), rules, NOW)).ok).toBe(true);
      expect((await verifyToken(signHs256Token({ sub: 'u', aud: ['other', 'relay-staging'], iss }, SECRET), rules, NOW)).ok).toBe(true);
    });

    it.each([
      [{ sub: 'u', iss }, 'token has no aud claim; RELAY_TOKEN_AUDIENCE requires one'],
      [{ sub: 'u', aud: 'billing', iss }, 'token aud does not name RELAY_TOKEN_AUDIENCE'],
      [{ sub: 'u', aud: 'relay' }, 'token has no iss claim; RELAY_TOKEN_ISSUER requires one'],
      [{ sub: 'u', aud: 'relay', iss: 'https://evil.example.com' }, 'token iss is not RELAY_TOKEN_ISSUER'],
    ])('refuses %j', async (claims, reason) => {
      expect(await verifyToken(signHs256Token(claims, SECRET), rules, NOW)).toEqual({ ok: false, reason });
    });

    it('does not check aud or iss when neither is configured', async () => {
      expect((await verifyToken(signHs256Token({ sub: 'u', aud: 'billing', iss: 'anyone' }, SECRET), RULES, NOW)).ok).toBe(true);
    });
  });
});
