/** Recovery on the in-memory backplane (one process, no Redis): the same numbering and rules as Redis. */
import { expect } from '@jest/globals';
import { MemoryBackplane } from '../../service/backplane/memory';
import { useInProcessRelays } from '../helpers/in-process-relay';
import type { TestClient } from '../helpers/ws-client';
import { expectConsecutive, join, lastPosition, publish, publishAll, roomMessages, waitForCondition } from './recovery-helpers';

const { start: startRelay, connect } = useInProcessRelays({ RELAY_RATE_LIMIT: '100000', RELAY_RATE_BURST: '100000' });

/** A client that received `before` messages of `room` and left; returns its last position. */
async function readerThatLeft(url: string, publisher: TestClient, room: string, before: number): Promise<{ seq: string; epoch: string }> {
  const reader = await connect(url);
  await join(reader, room);
  await publishAll(publisher, room, Array.from({ length: before }, (_, i) => `before-${i}`));
  await reader.waitForMessages(before);
  const position = lastPosition(reader, room);
  await reader.close();
  return position;
}

describe('recovery on the in-memory backplane', () => {
  it('numbers room messages and broadcasts separately, and acks every join with the room position', async () => {
    const url = await startRelay();
    const c = await connect(url);
    const ack = await join(c, 'r');
    expect(ack).toEqual({ type: 'ack', id: ack.id, position: { seq: '0', epoch: expect.stringMatching(/^[A-Za-z0-9_-]+$/) } });
    const epoch = (ack.position as { epoch: string }).epoch;
    await publish(c, 'r', 'one');
    await publish(c, null, 'all');
    await publish(c, 'r', 'two');
    const msgs = await c.waitForMessages(3);
    expect(msgs).toEqual([
      { type: 'message', room: 'r', data: 'one', from: c.welcome.connectionId, seq: '1', epoch },
      { type: 'message', data: 'all', from: c.welcome.connectionId, seq: '1', epoch: expect.any(String) },
      { type: 'message', room: 'r', data: 'two', from: c.welcome.connectionId, seq: '2', epoch },
    ]);
    expect(msgs[1].epoch).not.toBe(epoch);
    expect((await join(c, 'r')).position).toEqual({ seq: '2', epoch });
  });

  it('replays exactly what a client missed, in order, before the ack, then continues live', async () => {
    const url = await startRelay();
    const publisher = await connect(url);
    const since = await readerThatLeft(url, publisher, 'room', 3);
    await publishAll(publisher, 'room', Array.from({ length: 50 }, (_, i) => `missed-${i}`));

    const back = await connect(url);
    const ack = await join(back, 'room', since);
    expect(ack).toEqual({ type: 'ack', id: ack.id, recovered: true, replayed: 50, position: { seq: '53', epoch: since.epoch } });
    // The replay precedes the ack on the wire.
    const ackAt = back.frames.indexOf(ack);
    expect(back.frames.slice(0, ackAt).filter((f) => f.type === 'message')).toHaveLength(50);
    await publishAll(publisher, 'room', ['live-0', 'live-1']);
    await back.waitForMessages(52);
    const frames = roomMessages(back, 'room');
    expect(frames.map((f) => f.data)).toEqual([...Array.from({ length: 50 }, (_, i) => `missed-${i}`), 'live-0', 'live-1']);
    expectConsecutive(frames, 3, since.epoch);
  });

  it('answers recovered:true with nothing to replay when nothing was missed', async () => {
    const url = await startRelay();
    const publisher = await connect(url);
    const since = await readerThatLeft(url, publisher, 'quiet', 2);
    const back = await connect(url);
    const ack = await join(back, 'quiet', since);
    expect(ack).toEqual({ type: 'ack', id: ack.id, recovered: true, replayed: 0, position: since });
    expect(back.messages()).toEqual([]);
  });

  it.each([
    // [what, env, since seq (last is 20), recovered, replayed, reason of a refusal]
    ['older than the 10 kept', { RELAY_HISTORY_SIZE: '10', RELAY_HISTORY_REPLAY_MAX: '15' }, '9', false, 0, 'trimmed'],
    ['exactly the 10 kept', { RELAY_HISTORY_SIZE: '10', RELAY_HISTORY_REPLAY_MAX: '15' }, '10', true, 10, undefined],
    ['over the replay cap of 8', { RELAY_HISTORY_SIZE: '100', RELAY_HISTORY_REPLAY_MAX: '8' }, '11', false, 0, 'cap'],
    ['exactly the replay cap of 8', { RELAY_HISTORY_SIZE: '100', RELAY_HISTORY_REPLAY_MAX: '8' }, '12', true, 8, undefined],
    ['in the future', {}, '21', false, 0, 'future'],
  ] as const)('since %s: recovered is %s, and a refusal replays nothing and says why', async (_what, env, seq, recovered, replayed, reason) => {
    const url = await startRelay(env);
    const publisher = await connect(url);
    const since = await readerThatLeft(url, publisher, 'small', 1);
    await publishAll(publisher, 'small', Array.from({ length: 19 }, (_, i) => i));
    const c = await connect(url);
    const ack = await join(c, 'small', { seq, epoch: since.epoch });
    const expected = recovered ? { recovered, replayed } : { recovered, reason };
    expect(ack).toEqual({ type: 'ack', id: ack.id, ...expected, position: { seq: '20', epoch: since.epoch } });
    expect(c.messages().map((m) => Number(m.seq))).toEqual(Array.from({ length: replayed }, (_, i) => 21 - replayed + i));
  });

  it('refuses a since from another epoch', async () => {
    const url = await startRelay();
    const publisher = await connect(url);
    const since = await readerThatLeft(url, publisher, 'e', 2);
    const c = await connect(url);
    const ack = await join(c, 'e', { seq: '1', epoch: 'not-this-one' });
    expect(ack).toEqual({ type: 'ack', id: ack.id, recovered: false, reason: 'epoch', position: since });
    expect(c.messages()).toEqual([]);
  });

  it('with RELAY_HISTORY_SIZE=0 sends no seq or epoch, no position, and never recovers', async () => {
    const url = await startRelay({ RELAY_HISTORY_SIZE: '0' });
    const c = await connect(url);
    const ack = await join(c, 'plain');
    expect(ack).toEqual({ type: 'ack', id: ack.id });
    await publish(c, 'plain', 'x');
    expect(await c.waitForMessages(1)).toEqual([{ type: 'message', room: 'plain', data: 'x', from: c.welcome.connectionId }]);
    const again = await join(c, 'plain', { seq: '0', epoch: 'e' });
    expect(again).toEqual({ type: 'ack', id: again.id, recovered: false, reason: 'disabled' });
  });

  it('refuses a since whose seq is not a decimal string', async () => {
    const url = await startRelay();
    const c = await connect(url);
    expect(await join(c, 'r', { seq: '-1', epoch: 'e' })).toMatchObject({
      type: 'error',
      code: 'bad_frame',
      message: '"since.seq" must be a decimal string such as "42" (at most 15 digits); received the string "-1"',
    });
  });

  it('delivers every message of a room once when a publisher floods it while another client rejoins', async () => {
    const url = await startRelay();
    const publisher = await connect(url);
    const since = await readerThatLeft(url, publisher, 'busy', 1);
    const flood = publishAll(publisher, 'busy', Array.from({ length: 300 }, (_, i) => i));
    const back = await connect(url);
    const ack = await join(back, 'busy', since);
    expect(ack.recovered).toBe(true);
    await flood;
    await waitForCondition(back, () => roomMessages(back, 'busy').length >= 300, '300 messages');
    const frames = roomMessages(back, 'busy');
    expect(frames.map((f) => f.data)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expectConsecutive(frames, 1, since.epoch);
  });
});

describe('MemoryBackplane history expiry', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('starts a new epoch once a room sat idle past the TTL, and then refuses the old epoch', async () => {
    jest.useFakeTimers({ now: new Date('2026-01-01T00:00:00Z'), doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    const bp = new MemoryBackplane({ size: 100, ttlSeconds: 60, replayMax: 100 });
    await bp.start();
    await bp.append('r', Buffer.from('{"type":"message","room":"r","data":1}'));
    const first = await bp.readHistory('r', undefined);
    expect(first).toEqual({ position: { seq: '1', epoch: expect.any(String) }, outcome: 'none', frames: [] });
    jest.setSystemTime(new Date('2026-01-01T00:00:59Z'));
    expect((await bp.readHistory('r', { seq: '0', epoch: first.position.epoch })).outcome).toBe('ok');
    // 61 s after the last use (the read above counts as use).
    jest.setSystemTime(new Date('2026-01-01T00:02:00Z'));
    const later = await bp.readHistory('r', { seq: '1', epoch: first.position.epoch });
    expect(later.outcome).toBe('epoch');
    expect(later.position.seq).toBe('0');
    expect(later.position.epoch).not.toBe(first.position.epoch);
    await bp.close();
  });
});
