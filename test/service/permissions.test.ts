/** The `rooms` / `broadcast` claims (issue 17.2): generated cases against a matrix written from the rules, and strict validation. */
import { expect } from '@jest/globals';
import { signHs256Token, verifyToken, type TokenRules } from '../../service/auth';
import { refusal, type DefaultRoomAccess } from '../../service/permissions';

const SECRET = 'permissions-secret-0123456789';
const RULES: TokenRules = { secret: SECRET };
const NOW = Date.UTC(2026, 0, 1);

type Action = 'join' | 'publish' | 'broadcast';

interface Claims {
  sub?: string;
  rooms?: Record<string, string[]>;
  broadcast?: boolean;
}

interface Case {
  readonly claims: Claims;
  readonly defaultAccess: DefaultRoomAccess;
  readonly action: Action;
  /** Ignored for broadcasts. */
  readonly room: string;
}

/**
 * The rules of docs/protocol.md ("Permissions"), written as a reader of that page would check a case by hand — not by
 * calling or copying service/permissions.ts: a `*` pattern is a glob turned into a regular expression, actions are
 * looked up in the claim's lists as written.
 */
function expectedAllowed(c: Case): boolean {
  const { claims, defaultAccess, action, room } = c;
  if (action === 'broadcast') {
    if (claims.broadcast !== undefined) return claims.broadcast;
    return claims.rooms === undefined && defaultAccess === 'all';
  }
  if (action === 'join' && room.startsWith('user:')) return claims.sub !== undefined && room === `user:${claims.sub}`;
  if (claims.rooms === undefined) return defaultAccess === 'all';
  return Object.entries(claims.rooms).some(([pattern, actions]) => globMatches(pattern, room) && actions.includes(action));
}

function globMatches(pattern: string, room: string): boolean {
  if (!pattern.endsWith('*')) return pattern === room;
  const literal = pattern.slice(0, -1).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${literal}.*$`, 's').test(room);
}

/** Deterministic cases: mulberry32, so a failure names a case that every run reproduces. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PATTERNS = ['lobby', 'chat:*', 'chat:team-1', '*', 'user:*', 'user:alice', 'doc.*', 'doc.', 'a', 'a*', 'chat:team-*'];
const ROOMS = ['lobby', 'lobby2', 'chat:team-1', 'chat:team-2', 'chat:', 'chat', 'user:alice', 'user:bob', 'doc.1', 'doc.', 'doc', 'a', 'ab', 'zzz'];
const SUBS = ['alice', 'bob', undefined];
const ACTION_LISTS = [['join'], ['publish'], ['join', 'publish'], ['publish', 'join']];

function generate(count: number, seed: number): Case[] {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const cases: Case[] = [];
  for (let i = 0; i < count; i++) {
    const claims: Claims = {};
    const sub = pick(SUBS);
    if (sub !== undefined) claims.sub = sub;
    if (rnd() < 0.7) {
      claims.rooms = {};
      const n = Math.floor(rnd() * 5);
      for (let k = 0; k < n; k++) claims.rooms[pick(PATTERNS)] = pick(ACTION_LISTS);
    }
    const b = pick([undefined, true, false]);
    if (b !== undefined) claims.broadcast = b;
    cases.push({ claims, defaultAccess: pick(['all', 'none'] as const), action: pick(['join', 'publish', 'broadcast'] as const), room: pick(ROOMS) });
  }
  return cases;
}

async function actualAllowed(c: Case): Promise<boolean> {
  const check = await verifyToken(signHs256Token({ ...c.claims, exp: NOW / 1000 + 60 }, SECRET), RULES, NOW);
  if (!check.ok) throw new Error(`token refused: ${check.reason}`);
  const action = c.action === 'broadcast' ? 'publish' : c.action;
  return refusal(check.claims.access, c.defaultAccess, action, c.action === 'broadcast' ? null : c.room) === null;
}

describe('room permissions', () => {
  // Hand-checked rows first: they pin the expected matrix itself to the documented rules.
  it.each<[string, Case, boolean]>([
    ['exact room, listed action', { claims: { rooms: { lobby: ['join'] } }, defaultAccess: 'none', action: 'join', room: 'lobby' }, true],
    ['exact room, other action', { claims: { rooms: { lobby: ['join'] } }, defaultAccess: 'all', action: 'publish', room: 'lobby' }, false],
    ['exact pattern is not a prefix', { claims: { rooms: { lobby: ['join'] } }, defaultAccess: 'all', action: 'join', room: 'lobby2' }, false],
    ['prefix pattern', { claims: { rooms: { 'chat:*': ['publish'] } }, defaultAccess: 'none', action: 'publish', room: 'chat:team-2' }, true],
    ['prefix matches the bare prefix', { claims: { rooms: { 'chat:*': ['join'] } }, defaultAccess: 'none', action: 'join', room: 'chat:' }, true],
    ['* matches every room', { claims: { rooms: { '*': ['join'] } }, defaultAccess: 'none', action: 'join', room: 'zzz' }, true],
    ['actions of matching patterns add up', { claims: { rooms: { 'chat:*': ['join'], 'chat:team-1': ['publish'] } }, defaultAccess: 'none', action: 'publish', room: 'chat:team-1' }, true],
    ['empty rooms claim allows nothing', { claims: { rooms: {} }, defaultAccess: 'all', action: 'join', room: 'lobby' }, false],
    ['no claim, default all', { claims: {}, defaultAccess: 'all', action: 'publish', room: 'lobby' }, true],
    ['no claim, default none', { claims: {}, defaultAccess: 'none', action: 'join', room: 'lobby' }, false],
    ['own user room', { claims: { sub: 'alice' }, defaultAccess: 'none', action: 'join', room: 'user:alice' }, true],
    ['another user room, even with user:*', { claims: { sub: 'bob', rooms: { 'user:*': ['join'] } }, defaultAccess: 'all', action: 'join', room: 'user:alice' }, false],
    ['user room without sub', { claims: {}, defaultAccess: 'all', action: 'join', room: 'user:alice' }, false],
    ['publish to a user room follows the claims', { claims: { sub: 'bob', rooms: { 'user:*': ['publish'] } }, defaultAccess: 'none', action: 'publish', room: 'user:alice' }, true],
    ['broadcast: true', { claims: { broadcast: true, rooms: {} }, defaultAccess: 'none', action: 'broadcast', room: '' }, true],
    ['broadcast: false', { claims: { broadcast: false }, defaultAccess: 'all', action: 'broadcast', room: '' }, false],
    ['rooms without broadcast', { claims: { rooms: { '*': ['publish'] } }, defaultAccess: 'all', action: 'broadcast', room: '' }, false],
    ['no claims, default all broadcasts', { claims: {}, defaultAccess: 'all', action: 'broadcast', room: '' }, true],
    ['no claims, default none', { claims: {}, defaultAccess: 'none', action: 'broadcast', room: '' }, false],
  ])('%s', async (_name, c, allowed) => {
    expect(expectedAllowed(c)).toBe(allowed);
    expect(await actualAllowed(c)).toBe(allowed);
  });

  it('agrees with the expected matrix on 600 generated cases', async () => {
    const cases = generate(600, 17);
    const mismatches: Array<Case & { expected: boolean }> = [];
    const tally = { allowed: 0, refused: 0, userRooms: 0, broadcasts: 0, noClaimAll: 0, noClaimNone: 0, prefixes: 0 };
    for (const c of cases) {
      const expected = expectedAllowed(c);
      if ((await actualAllowed(c)) !== expected) mismatches.push({ ...c, expected });
      tally[expected ? 'allowed' : 'refused']++;
      if (c.action !== 'broadcast' && c.room.startsWith('user:')) tally.userRooms++;
      if (c.action === 'broadcast') tally.broadcasts++;
      if (c.claims.rooms === undefined) tally[c.defaultAccess === 'all' ? 'noClaimAll' : 'noClaimNone']++;
      if (c.action !== 'broadcast' && Object.keys(c.claims.rooms ?? {}).some((p) => p.endsWith('*') && globMatches(p, c.room))) tally.prefixes++;
    }
    expect(mismatches).toEqual([]);
    // The generator reaches every rule: both outcomes, user rooms, broadcasts, prefixes and both defaults.
    for (const [name, n] of Object.entries(tally)) expect([name, n >= 30]).toEqual([name, true]);
  });

  it.each<[string, unknown, string]>([
    ['an array', ['lobby'], 'token claim rooms must be an object mapping room patterns to lists of actions, e.g. {"chat:*":["join","publish"]}; received an array'],
    ['a string', 'lobby', 'token claim rooms must be an object mapping room patterns to lists of actions, e.g. {"chat:*":["join","publish"]}; received the string "lobby"'],
    ['null', null, 'token claim rooms must be an object mapping room patterns to lists of actions, e.g. {"chat:*":["join","publish"]}; received null'],
    ['a pattern with a space', { 'no spaces': ['join'] }, 'token claim rooms has an invalid pattern "no spaces": use a room name (1-128 characters of A-Z a-z 0-9 : _ . -) or such a prefix followed by one trailing *'],
    ['a * inside a pattern', { 'a*b': ['join'] }, 'token claim rooms has an invalid pattern "a*b": use a room name (1-128 characters of A-Z a-z 0-9 : _ . -) or such a prefix followed by one trailing *'],
    ['an empty pattern', { '': ['join'] }, 'token claim rooms has an invalid pattern "": use a room name (1-128 characters of A-Z a-z 0-9 : _ . -) or such a prefix followed by one trailing *'],
    ['an unknown action', { lobby: ['read'] }, 'token claim rooms["lobby"] must be a non-empty list of distinct actions among join, publish; received the string "read" in the list'],
    ['actions as a string', { lobby: 'join' }, 'token claim rooms["lobby"] must be a non-empty list of distinct actions among join, publish; received the string "join"'],
    ['no actions', { lobby: [] }, 'token claim rooms["lobby"] must be a non-empty list of distinct actions among join, publish; received an array'],
    ['an action twice', { lobby: ['join', 'join'] }, 'token claim rooms["lobby"] must be a non-empty list of distinct actions among join, publish; "join" is listed twice'],
    ['a prototype key as action', { lobby: ['constructor'] }, 'token claim rooms["lobby"] must be a non-empty list of distinct actions among join, publish; received the string "constructor" in the list'],
    ['too many patterns', Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`r${i}`, ['join']])), 'token claim rooms has 65 patterns; at most 64 are allowed'],
  ])('refuses a token whose rooms claim is %s', async (_name, rooms, reason) => {
    const token = signHs256Token({ sub: 'u', rooms, exp: NOW / 1000 + 60 }, SECRET);
    expect(await verifyToken(token, RULES, NOW)).toEqual({ ok: false, reason });
  });

  it('refuses a broadcast claim that is not a boolean', async () => {
    const token = signHs256Token({ sub: 'u', broadcast: 'yes', exp: NOW / 1000 + 60 }, SECRET);
    expect(await verifyToken(token, RULES, NOW)).toEqual({ ok: false, reason: 'token claim broadcast must be true or false; received the string "yes"' });
  });
});
