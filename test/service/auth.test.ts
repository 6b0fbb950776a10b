import { createHmac } from 'node:crypto';
import { signHs256Token, verifyHs256Token } from '../../service/auth';

const SECRET = 'test-secret-0123456789';
const NOW = Date.UTC(2026, 0, 1);

describe('verifyHs256Token', () => {
  it('accepts a token signed with the secret and returns its claims', () => {
    const token = signHs256Token({ sub: 'u1', exp: NOW / 1000 + 60 }, SECRET);
    expect(verifyHs256Token(token, SECRET, NOW)).toEqual({ ok: true, claims: { sub: 'u1', exp: NOW / 1000 + 60 } });
  });

  it.each([
    [undefined, 'a token is required: connect to /ws?token=<HS256 JWT>'],
    ['abc', 'token is not a JWT (expected header.payload.signature)'],
    [signHs256Token({ sub: 'u1' }, 'another-secret-0123'), 'token signature does not match; sign it with RELAY_TOKEN_SECRET using HS256'],
    [signHs256Token({ exp: NOW / 1000 - 1 }, SECRET), 'token expired at 2025-12-31T23:59:59.000Z; request a new one'],
    [signHs256Token({ nbf: NOW / 1000 + 10 }, SECRET), 'token not valid before 2026-01-01T00:00:10.000Z'],
    [signHs256Token({ exp: 'tomorrow' }, SECRET), 'token claim exp must be a number of seconds'],
  ])('refuses %s', (token, reason) => {
    expect(verifyHs256Token(token, SECRET, NOW)).toEqual({ ok: false, reason });
  });

  it('refuses alg none even with an empty signature', () => {
    const h = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    const p = Buffer.from(JSON.stringify({ sub: 'u1' })).toString('base64url');
    expect(verifyHs256Token(`${h}.${p}.`, SECRET, NOW)).toEqual({ ok: false, reason: 'token header must declare alg HS256' });
  });

  it('refuses a tampered payload', () => {
    const [h, , s] = signHs256Token({ sub: 'u1' }, SECRET).split('.');
    const p = Buffer.from(JSON.stringify({ sub: 'admin' })).toString('base64url');
    expect(verifyHs256Token(`${h}.${p}.${s}`, SECRET, NOW).ok).toBe(false);
    // Sanity: the same payload signed correctly passes, so the refusal is about the signature.
    const good = createHmac('sha256', SECRET).update(`${h}.${p}`).digest('base64url');
    expect(verifyHs256Token(`${h}.${p}.${good}`, SECRET, NOW).ok).toBe(true);
  });
});
