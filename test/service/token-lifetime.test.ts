/** The token lifetime's schedule and state, without sockets: one timer for every connection's notice and close. */
import { expect } from '@jest/globals';
import { signHs256Token, verifyToken, type TokenClaims } from '../../service/auth';
import { Schedule, TokenLifetime, type ConnectionAuth } from '../../service/token-lifetime';

const SECRET = 'token-lifetime-secret-0123456789';

/** Resolves when `fired` holds `count` items; bounded by `timeoutMs`. */
function firedCount<T>(fired: T[], count: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (fired.length >= count) resolve();
      else if (Date.now() > deadline) reject(new Error(`${fired.length} of ${count} fired within ${timeoutMs} ms`));
      else setTimeout(check, 10);
    };
    check();
  });
}

describe('Schedule', () => {
  it('fires every item at or after its time, in time order, with one timer', async () => {
    const fired: Array<{ id: number; at: number; due: number }> = [];
    const due = new Map<number, number>();
    const schedule = new Schedule<number>(20, (id) => fired.push({ id, at: Date.now(), due: due.get(id) ?? 0 }));
    const start = Date.now();
    // Added in a scrambled order, so the heap has work to do.
    for (let i = 0; i < 500; i++) {
      const id = (i * 7919) % 500;
      const at = start + 50 + (id % 25) * 10;
      due.set(id, at);
      schedule.add(id, at);
    }
    expect(schedule.size).toBe(500);
    await firedCount(fired, 500);
    expect(schedule.size).toBe(0);
    for (const f of fired) expect(f.at).toBeGreaterThanOrEqual(f.due);
    const dues = fired.map((f) => Math.ceil(f.due / 20));
    expect(dues).toEqual([...dues].sort((x, y) => x - y));
    expect(new Set(fired.map((f) => f.id)).size).toBe(500);
  });

  it('never fires a removed item, and an item added twice at the same time fires once', async () => {
    const fired: string[] = [];
    const schedule = new Schedule<string>(10, (id) => fired.push(id));
    const now = Date.now();
    const keys = new Map<string, number>();
    for (let i = 0; i < 200; i++) keys.set(`c${i}`, schedule.add(`c${i}`, now + 30 + i));
    for (let i = 0; i < 200; i += 2) schedule.remove(`c${i}`, keys.get(`c${i}`) as number);
    schedule.add('c1', now + 31);
    expect(schedule.size).toBe(100);
    schedule.add('sentinel', now + 400);
    await firedCount(fired, 101);
    expect(fired[fired.length - 1]).toBe('sentinel');
    expect(fired.filter((id) => Number(id.slice(1)) % 2 === 0)).toEqual([]);
    expect(fired.filter((id) => id === 'c1')).toHaveLength(1);
    expect(fired).toHaveLength(101);
    expect(schedule.size).toBe(0);
  });

  it('fires an item whose time has passed at the next tick, and lets the callback schedule it again', async () => {
    const fired: string[] = [];
    const schedule: Schedule<string> = new Schedule<string>(10, (id) => {
      fired.push(id);
      if (fired.length === 1) schedule.add(id, Date.now() + 20);
    });
    schedule.add('late', Date.now() - 1000);
    await firedCount(fired, 2);
    expect(fired).toEqual(['late', 'late']);
  });

  it('holds 20,000 items over an hour in buckets, and forgets them all on remove', () => {
    const fired: number[] = [];
    const schedule = new Schedule<number>(100, (id) => fired.push(id));
    const now = Date.now();
    const keys: number[] = [];
    for (let i = 0; i < 20_000; i++) keys.push(schedule.add(i, now + 60_000 + (i % 3600) * 1000));
    expect(schedule.size).toBe(20_000);
    expect(new Set(keys).size).toBe(3600);
    for (let i = 0; i < 20_000; i++) schedule.remove(i, keys[i]);
    expect(schedule.size).toBe(0);
    schedule.clear();
    expect(fired).toEqual([]);
  });

  it('rounds early items down and late ones up to the resolution', async () => {
    const fired: Array<{ id: string; at: number }> = [];
    const schedule = new Schedule<string>(1000, (id) => fired.push({ id, at: Date.now() }));
    const base = Math.ceil(Date.now() / 1000) * 1000;
    schedule.add('early', base + 900, 'early');
    schedule.add('late', base + 100);
    await firedCount(fired, 2);
    expect(fired.map((f) => f.id)).toEqual(['early', 'late']);
    expect(fired[0].at).toBeLessThan(base + 900);
    expect(fired[1].at).toBeGreaterThanOrEqual(base + 1000);
  });

  it('clear() drops everything', async () => {
    const fired: string[] = [];
    const schedule = new Schedule<string>(10, (id) => fired.push(id));
    schedule.add('a', Date.now() + 20);
    schedule.clear();
    const probe = new Schedule<string>(10, (id) => fired.push(id));
    probe.add('probe', Date.now() + 60);
    await firedCount(fired, 1);
    expect(fired).toEqual(['probe']);
  });
});

describe('TokenLifetime', () => {
  interface Conn {
    auth: ConnectionAuth | null;
    readonly name: string;
  }

  async function claims(payload: Record<string, unknown>): Promise<TokenClaims> {
    const check = await verifyToken(signHs256Token(payload, SECRET), { secret: SECRET });
    if (!check.ok) throw new Error(check.reason);
    return check.claims;
  }

  function lifetime(events: string[], noticeMs = 60_000, graceMs = 100): TokenLifetime<Conn> {
    return new TokenLifetime<Conn>({
      rules: { secret: SECRET },
      noticeMs,
      graceMs,
      defaultAccess: 'all',
      send: (conn, text) => events.push(`${conn.name} ${text}`),
      expire: (conn) => events.push(`${conn.name} expired`),
    });
  }

  it('notices at most half the remaining life before exp, then expires at exp + grace', async () => {
    const events: string[] = [];
    const tokens = lifetime(events);
    const exp = Math.floor(Date.now() / 1000) + 2;
    const conn: Conn = { auth: null, name: 'a' };
    const attachedAt = Date.now();
    tokens.attach(conn, await claims({ sub: 'a', exp }));
    expect(tokens.scheduled).toBe(1);
    await firedCount(events, 1);
    const noticedAt = Date.now();
    expect(events[0]).toBe(`a {"type":"token_expiring","exp":${exp},"closeAt":${exp * 1000 + 100}}`);
    expect(noticedAt).toBeLessThan(exp * 1000);
    // The notice is rounded down to the schedule's 100 ms buckets.
    expect(noticedAt).toBeGreaterThanOrEqual(attachedAt + (exp * 1000 - attachedAt) / 2 - 105);
    await firedCount(events, 2);
    expect(events[1]).toBe('a expired');
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000 + 100);
    expect(tokens.scheduled).toBe(0);
  });

  it('a token without exp is never scheduled; detach forgets a connection', async () => {
    const events: string[] = [];
    const tokens = lifetime(events, 0, 0);
    const forever: Conn = { auth: null, name: 'forever' };
    tokens.attach(forever, await claims({ sub: 'f' }));
    expect(tokens.scheduled).toBe(0);
    const gone: Conn = { auth: null, name: 'gone' };
    tokens.attach(gone, await claims({ sub: 'g', exp: Math.floor(Date.now() / 1000) + 1 }));
    expect(tokens.scheduled).toBe(1);
    tokens.detach(gone);
    expect(tokens.scheduled).toBe(0);
    tokens.stop();
  });

  it('refresh replaces expiry and permissions and keeps the sub', async () => {
    const events: string[] = [];
    const tokens = lifetime(events);
    const conn: Conn = { auth: null, name: 'r' };
    tokens.attach(conn, await claims({ sub: 'r', exp: Math.floor(Date.now() / 1000) + 1, rooms: { a: ['join'] } }));
    expect(tokens.refusal(conn, 'join', 'b')).toBe('your token does not allow join in room "b" (see its "rooms" claim)');
    const exp = Math.floor(Date.now() / 1000) + 3600;
    expect(await tokens.refresh(conn, signHs256Token({ sub: 'r', exp, rooms: { b: ['join'] } }, SECRET))).toEqual({ ok: true, exp });
    expect(tokens.refusal(conn, 'join', 'b')).toBeNull();
    expect(conn.auth?.expMs).toBe(exp * 1000);
    expect(await tokens.refresh(conn, signHs256Token({ sub: 'x', exp }, SECRET))).toEqual({
      ok: false,
      reason: 'the new token is for sub "x", this connection for sub "r"; a refresh must keep the sub (connect again to change user)',
    });
    tokens.stop();
    expect(tokens.scheduled).toBe(0);
    expect(events).toEqual([]);
  });
});
