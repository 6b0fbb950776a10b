/**
 * The relay core's pieces without sockets: the registry's per-room ordering and catch-up from the history, the join
 * state machine, and the token bucket. The backplane is the real in-memory one.
 */
import pino from 'pino';
import { MemoryBackplane } from '../../service/backplane/memory';
import type { FramePosition, HistoryPosition, HistoryRead } from '../../service/backplane/types';
import { JoinState, compare } from '../../service/core/join-state';
import { takeToken } from '../../service/core/rate-limit';
import { Registry, type Member } from '../../service/core/registry';
import { RelayMetrics } from '../../service/metrics';

interface FakeMember extends Member {
  readonly got: string[];
}

function member(id: string): FakeMember {
  return { id, rooms: new Set(), got: [] };
}

/** A memory backplane whose history reads can be observed; frames from `append` go to the registry as from Redis. */
function setup(): { registry: Registry<FakeMember>; backplane: MemoryBackplane; reads: Array<HistoryPosition | undefined>; overflows: FakeMember[] } {
  const backplane = new MemoryBackplane({ size: 100, ttlSeconds: 300, replayMax: 100 });
  const reads: Array<HistoryPosition | undefined> = [];
  const read = backplane.readHistory.bind(backplane);
  backplane.readHistory = (room: string, since: HistoryPosition | undefined): Promise<HistoryRead> => {
    reads.push(since);
    return read(room, since);
  };
  const overflows: FakeMember[] = [];
  const registry = new Registry<FakeMember>({
    backplane,
    metrics: new RelayMetrics({ connections: () => 0, rooms: () => 0 }),
    logger: pino({ level: 'silent' }),
    send: (m, data) => {
      m.got.push(typeof data === 'string' ? data : data.toString());
      return true;
    },
    onOverflow: (m) => overflows.push(m),
    maxHeldFrames: 100,
  });
  return { registry, backplane, reads, overflows };
}

const text = (data: string) => Buffer.from(`{"type":"message","room":"r","data":${JSON.stringify(data)}}`);
const numbered = (data: string, p: FramePosition) =>
  Buffer.from(`{"type":"message","room":"r","data":${JSON.stringify(data)},"seq":"${p.seq}","epoch":"${p.epoch}"}`);

/** Resolves once `pred` holds, checked after each turn of the event loop; bounded. */
async function until(pred: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !pred(); i++) await new Promise((resolve) => setImmediate(resolve));
  if (!pred()) throw new Error(`${what} did not happen`);
}

describe('registry', () => {
  it('fans a room frame out to its members only, and a broadcast to every member', async () => {
    const { registry, backplane } = setup();
    await backplane.start();
    const a = member('a');
    const b = member('b');
    registry.members.add(a);
    registry.members.add(b);
    registry.join(a, 'r');
    expect(registry.deliver('r', text('room'))).toBe(1);
    expect(registry.deliver(null, text('all'))).toBe(2);
    expect(a.got).toHaveLength(2);
    expect(b.got).toHaveLength(1);
    expect(registry.leave(a, 'r')).toBe(true);
    expect(registry.rooms.size).toBe(0);
  });

  it('drops a numbered frame it already delivered and catches a gap up from the history, in order', async () => {
    const { registry, backplane, reads } = setup();
    await backplane.start();
    const a = member('a');
    registry.join(a, 'r');
    // Frames numbered by the backplane, as the subscription would hand them over; 2 and 3 never arrive live.
    let seen: Array<{ frame: Buffer; position: FramePosition }> = [];
    backplane.onFrame((_t, frame, position) => seen.push({ frame, position: position! }));
    for (let i = 1; i <= 4; i++) await backplane.append('r', text(`m${i}`));
    const [m1, , , m4] = seen;
    seen = [];
    registry.deliver('r', m1.frame, m1.position);
    registry.deliver('r', m1.frame, m1.position);
    registry.deliver('r', m4.frame, m4.position);
    await until(() => a.got.length === 4, 'the catch-up');
    expect(a.got.map((f) => (JSON.parse(f) as { data: string }).data)).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(reads).toEqual([{ seq: '1', epoch: m1.position.epoch }]);
  });

  it('tells members when the epoch changed, then delivers the new epoch from its start', async () => {
    const { registry, backplane } = setup();
    await backplane.start();
    const a = member('a');
    registry.join(a, 'r');
    registry.notePosition(registry.rooms.get('r')!, { seq: 7, epoch: 'old' });
    const seen: Array<{ frame: Buffer; position: FramePosition }> = [];
    backplane.onFrame((_t, frame, position) => seen.push({ frame, position: position! }));
    await backplane.append('r', text('n1'));
    await backplane.append('r', text('n2'));
    registry.deliver('r', seen[1].frame, seen[1].position);
    await until(() => a.got.length === 3, 'the resync and the new epoch');
    const epoch = seen[0].position.epoch;
    expect(JSON.parse(a.got[0])).toEqual({ type: 'resync', room: 'r', position: { seq: '0', epoch }, reason: 'epoch' });
    expect(a.got.slice(1).map((f) => (JSON.parse(f) as { seq: string }).seq)).toEqual(['1', '2']);
  });

  it('holds a joining member\'s frames, skips what its ack covers and goes live on the first newer frame', async () => {
    const { registry, backplane, overflows } = setup();
    await backplane.start();
    const a = member('a');
    const room = registry.join(a, 'r');
    const state = registry.startJoin(room, a, 1000);
    const p = (seq: number) => ({ seq, epoch: 'E' });
    registry.deliver('r', numbered('1', p(1)), p(1));
    registry.deliver('r', numbered('2', p(2)), p(2));
    expect(a.got).toEqual([]);
    expect(state.acked(p(1)).map((h) => h.position?.seq)).toEqual([2]);
    expect(registry.memberPosition(room, a)).toEqual(p(1));
    registry.deliver('r', numbered('3', p(3)), p(3));
    expect(a.got).toHaveLength(1);
    expect(room.joins).toBeNull();
    expect(registry.memberPosition(room, a)).toEqual(p(3));
    // A join that holds more than its bound reports the member as a slow consumer.
    registry.startJoin(room, a, 10);
    registry.deliver('r', numbered('4', p(4)), p(4));
    expect(overflows).toEqual([a]);
  });
});

describe('join state and positions', () => {
  it('compares positions', () => {
    expect(compare({ seq: 2, epoch: 'E' }, { seq: 1, epoch: 'E' })).toBe('next');
    expect(compare({ seq: 1, epoch: 'E' }, { seq: 1, epoch: 'E' })).toBe('old');
    expect(compare({ seq: 5, epoch: 'E' }, { seq: 1, epoch: 'E' })).toBe('gap');
    expect(compare({ seq: 1, epoch: 'F' }, { seq: 1, epoch: 'E' })).toBe('epoch');
  });

  it('releases every held frame when the position is unknown', () => {
    const state = new JoinState(100);
    expect(state.route(Buffer.from('x'), { seq: 1, epoch: 'E' })).toBe('hold');
    expect(state.acked(undefined)).toHaveLength(1);
    expect(state.route(Buffer.from('y'), { seq: 2, epoch: 'E' })).toBe('deliver');
  });
});

describe('token bucket', () => {
  it('allows a burst, refills at the rate and reports sustained abuse', () => {
    const bucket = { tokens: 2, lastRefill: 0, rejects: 0, rejectWindowStart: 0 };
    const limits = { rateLimit: 1, rateBurst: 2, rateLimitMaxRejects: 2 };
    expect([takeToken(bucket, limits, 0), takeToken(bucket, limits, 0)]).toEqual(['ok', 'ok']);
    expect(takeToken(bucket, limits, 0)).toBe('limited');
    expect(takeToken(bucket, limits, 1000)).toBe('ok');
    expect([takeToken(bucket, limits, 1000), takeToken(bucket, limits, 1000)]).toEqual(['limited', 'abuse']);
  });
});
