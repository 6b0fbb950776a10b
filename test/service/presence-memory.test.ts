/**
 * Presence on one relay with the in-memory backplane: the `presence` frame, joined/left events, the cap on listed
 * members, the members-only rule, RELAY_PRESENCE=off and the tracked marker. The Redis and cluster cases are in
 * test/service/presence-redis.test.ts.
 */
import { expect } from '@jest/globals';
import pino from 'pino';
import { MemoryBackplane } from '../../service/backplane/memory';
import { presenceTiming } from '../../service/backplane/types';
import { waitUntil } from '../helpers/redis-server';
import { useInProcessRelays } from '../helpers/in-process-relay';
import type { Frame, TestClient } from '../helpers/ws-client';

const { start: startRelay, connect } = useInProcessRelays({ RELAY_INSTANCE_ID: 'presence-test' });

const member = (c: TestClient) => ({
  connectionId: c.welcome.connectionId,
  user: null,
  instanceId: 'presence-test',
  since: expect.any(Number),
});
const events = (c: TestClient, type: 'joined' | 'left', room: string) => c.frames.filter((f) => f.type === type && f.room === room);
const memberOf = (f: Frame) => (f.member as { connectionId: string }).connectionId;

describe('presence on the memory backplane', () => {
  it('lists every member with the exact count, and sends a watcher one joined and one left per member', async () => {
    const url = await startRelay();
    const [watcher, a, b] = await Promise.all([connect(url), connect(url), connect(url)]);
    expect(await watcher.request({ type: 'join', room: 'lobby', presence: true, id: 'w' })).toMatchObject({ type: 'ack', id: 'w' });
    await a.request({ type: 'join', room: 'lobby', id: 'a' });
    await b.request({ type: 'join', room: 'lobby', id: 'b' });

    const reply = await a.request({ type: 'presence', room: 'lobby', id: 'p' });
    expect(reply).toEqual({ type: 'presence', id: 'p', room: 'lobby', members: expect.any(Array), count: 3 });
    expect(new Set(reply.members as unknown[])).toEqual(new Set([member(watcher), member(a), member(b)]));

    await watcher.waitFor((f) => f.type === 'joined' && memberOf(f) === b.welcome.connectionId);
    expect(events(watcher, 'joined', 'lobby').map(memberOf)).toEqual([watcher, a, b].map((c) => c.welcome.connectionId));
    expect(events(watcher, 'joined', 'lobby')[1]).toEqual({ type: 'joined', room: 'lobby', member: member(a) });

    // One leaves with a frame, the other closes its socket: one left each.
    await a.request({ type: 'leave', room: 'lobby', id: 'l' });
    await b.close();
    await watcher.waitFor((f) => f.type === 'left' && memberOf(f) === b.welcome.connectionId);
    // A marker after both: a late duplicate left would arrive before the marker's joined.
    const late = await connect(url);
    await late.request({ type: 'join', room: 'lobby', id: 'late' });
    await watcher.waitFor((f) => f.type === 'joined' && memberOf(f) === late.welcome.connectionId);
    expect(events(watcher, 'left', 'lobby')).toEqual([
      { type: 'left', room: 'lobby', member: member(a) },
      { type: 'left', room: 'lobby', member: member(b) },
    ]);
    expect((await watcher.request({ type: 'presence', room: 'lobby', id: 'p2' })).count).toBe(2);
  });

  it('sends no events to members that did not ask, and stops them on a join with presence false', async () => {
    const url = await startRelay();
    const [quiet, watcher, other] = await Promise.all([connect(url), connect(url), connect(url)]);
    await quiet.request({ type: 'join', room: 'r', id: 'q' });
    await watcher.request({ type: 'join', room: 'r', presence: true, id: 'w' });
    await other.request({ type: 'join', room: 'r', id: 'o1' });
    await watcher.waitFor((f) => f.type === 'joined' && memberOf(f) === other.welcome.connectionId);
    await watcher.request({ type: 'join', room: 'r', presence: false, id: 'w2' });
    await other.request({ type: 'leave', room: 'r', id: 'o2' });
    // Ping round trips order the check after the left event would have been delivered.
    await Promise.all([quiet.request({ type: 'ping', id: 'x' }), watcher.request({ type: 'ping', id: 'x' })]);
    expect(quiet.frames.filter((f) => f.type === 'joined' || f.type === 'left')).toEqual([]);
    expect(events(watcher, 'left', 'r')).toEqual([]);
  });

  it('lists at most RELAY_PRESENCE_LIST_MAX members and still counts them all', async () => {
    const url = await startRelay({ RELAY_PRESENCE_LIST_MAX: '2' });
    const members = await Promise.all(Array.from({ length: 5 }, () => connect(url)));
    for (const [i, c] of members.entries()) await c.request({ type: 'join', room: 'big', id: `j${i}` });
    const reply = await members[0].request({ type: 'presence', room: 'big', id: 'p' });
    expect(reply.count).toBe(5);
    expect(reply.members).toHaveLength(2);
    const ids = new Set(members.map((c) => c.welcome.connectionId));
    for (const m of reply.members as Array<{ connectionId: string }>) expect(ids.has(m.connectionId)).toBe(true);
  });

  it('fails when the asker is not a member of the room', async () => {
    const url = await startRelay();
    const [inside, outside] = await Promise.all([connect(url), connect(url)]);
    await inside.request({ type: 'join', room: 'private', id: 'j' });
    expect(await outside.request({ type: 'presence', room: 'private', id: 'p' })).toEqual({
      type: 'error',
      id: 'p',
      code: 'forbidden',
      message: 'presence of room "private" is visible to its members only; join it first',
    });
  });

  it('fails with a clear error on a malformed presence frame or flag', async () => {
    const url = await startRelay();
    const c = await connect(url);
    expect(await c.request({ type: 'presence', id: 'p' })).toMatchObject({ type: 'error', code: 'bad_frame', message: 'presence needs a "room" string; received nothing' });
    expect(await c.request({ type: 'join', room: 'r', presence: 'yes', id: 'j' })).toMatchObject({
      type: 'error',
      code: 'bad_frame',
      message: '"presence" must be true (send joined/left events of the room) or false; received the string "yes"',
    });
  });

  it('fails with presence_disabled when RELAY_PRESENCE=off, and still joins without the flag', async () => {
    const url = await startRelay({ RELAY_PRESENCE: 'off' });
    const c = await connect(url);
    const disabled = {
      type: 'error',
      code: 'presence_disabled',
      message: 'presence is turned off on this relay (RELAY_PRESENCE=off): no presence frames and no join with "presence": true; join without it',
    };
    expect(await c.request({ type: 'join', room: 'r', presence: true, id: 'j' })).toEqual({ ...disabled, id: 'j' });
    expect(await c.request({ type: 'join', room: 'r', id: 'j2' })).toMatchObject({ type: 'ack', id: 'j2' });
    expect(await c.request({ type: 'presence', room: 'r', id: 'p' })).toEqual({ ...disabled, id: 'p' });
  });
});

describe('the memory backplane’s tracked marker', () => {
  it('stores entries only while the marker lives, answers lists only once it is ready, says which rooms have one, and forgets the room when it expires', async () => {
    const bp = new MemoryBackplane(undefined, pino({ level: 'silent' }));
    await bp.start();
    const events: string[] = [];
    bp.onPresence((_room, frame) => events.push(frame.toString()));
    const timing = presenceTiming(500);
    const m = { connectionId: 'c1', user: null, instanceId: 'i', since: 1 };
    expect(await bp.presenceEnter('r', [m], timing, false)).toBeNull();
    expect(await bp.presenceMembers('r', 10, timing)).toBeNull();
    expect(await bp.presenceTracked(['r', 'other'])).toEqual([false, false]);

    await bp.presenceTrack('r', timing, 'pending');
    expect(await bp.presenceTracked(['other', 'r'])).toEqual([false, true]);
    expect(await bp.presenceEnter('r', [m], timing, false)).toBe(1);
    // Still pending: nobody reads a list the instances may not have finished.
    expect(await bp.presenceMembers('r', 10, timing)).toBeNull();
    await bp.presenceTrack('r', timing, 'ready');
    expect(await bp.presenceMembers('r', 10, timing)).toEqual({ count: 1, members: [m] });
    expect(events).toEqual(['{"type":"joined","room":"r","member":{"connectionId":"c1","user":null,"instanceId":"i","since":1}}']);

    // Nobody watches or asks: the marker goes after keyTtlMs, and the next refresh removes the entry without an event.
    const asked = Date.now();
    await waitUntil(async () => (await bp.presenceEnter('r', [m], timing, false)) === null, 5000, 'the marker to expire');
    expect(Date.now() - asked).toBeGreaterThanOrEqual(timing.keyTtlMs - 50);
    expect(await bp.presenceTracked(['r'])).toEqual([false]);
    await bp.presenceTrack('r', timing, 'ready');
    expect(await bp.presenceMembers('r', 10, timing)).toEqual({ count: 0, members: [] });
    expect(events).toHaveLength(1);
    await bp.close();
  });
});
