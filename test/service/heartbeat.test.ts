/**
 * The heartbeat's passes (service/core/heartbeat.ts) driven tick by tick: a pass starts every `slices` ticks whatever
 * the number of connections, and spreads its connections over those ticks. The hub's heartbeat over real sockets is
 * in hub.test.ts.
 */
import { expect } from '@jest/globals';
import { HeartbeatPasses, type HeartbeatMember } from '../../service/core/heartbeat';

class Conn implements HeartbeatMember {
  heartbeatSlot = -1;
  constructor(readonly name: string) {}
}

/** A pass planner over a live set of connections that records, per tick, which connections it visited. */
function setup(slices: number, names: string[]) {
  const members = new Set(names.map((name) => new Conn(name)));
  const visits: string[][] = [];
  let current: string[] = [];
  const passes = new HeartbeatPasses<Conn>({ slices, members: () => members, visit: (c) => current.push(c.name) });
  const tick = (): string[] => {
    current = [];
    passes.tick();
    visits.push(current);
    return current;
  };
  const find = (name: string): Conn => [...members].find((c) => c.name === name) as Conn;
  return { members, visits, passes, tick, find };
}

describe('HeartbeatPasses', () => {
  it('starts a pass every `slices` ticks with fewer connections than slices, visiting each connection once per pass', () => {
    const { visits, tick } = setup(5, ['a', 'b', 'c']);
    for (let i = 0; i < 20; i++) tick();
    // One connection a tick for the first three ticks of each pass, then nothing until the next pass.
    const onePass = [['a'], ['b'], ['c'], [], []];
    expect(visits).toEqual([...onePass, ...onePass, ...onePass, ...onePass]);
  });

  it('spreads more connections than slices over the ticks of a pass, ceil(n / slices) a tick', () => {
    const names = Array.from({ length: 12 }, (_, i) => `c${i}`);
    const { visits, tick } = setup(5, names);
    for (let i = 0; i < 10; i++) tick();
    expect(visits.map((v) => v.length)).toEqual([3, 3, 3, 3, 0, 3, 3, 3, 3, 0]);
    expect(visits.slice(0, 5).flat()).toEqual(names);
    expect(visits.slice(5).flat()).toEqual(names);
  });

  it('visits each connection once per `slices` ticks for any number of connections', () => {
    for (const n of [1, 2, 24, 25, 26, 49, 50, 51, 120]) {
      const names = Array.from({ length: n }, (_, i) => `c${i}`);
      const { visits, tick } = setup(25, names);
      for (let i = 0; i < 100; i++) tick();
      const ticksOf = new Map<string, number[]>();
      visits.forEach((visited, t) => visited.forEach((name) => ticksOf.set(name, [...(ticksOf.get(name) ?? []), t])));
      expect(ticksOf.size).toBe(n);
      for (const ticks of ticksOf.values()) {
        expect(ticks).toHaveLength(4);
        expect(ticks.slice(1).map((t, i) => t - ticks[i])).toEqual([25, 25, 25]);
      }
    }
  });

  it('skips a connection removed during its pass and releases its slot; one added mid-pass waits for the next pass', () => {
    const { members, visits, passes, tick, find } = setup(4, ['a', 'b', 'c']);
    expect(tick()).toEqual(['a']);
    const b = find('b');
    expect(b.heartbeatSlot).toBe(1);
    members.delete(b);
    passes.remove(b);
    expect(b.heartbeatSlot).toBe(-1);
    members.add(new Conn('d'));
    expect([tick(), tick(), tick()]).toEqual([[], ['c'], []]);
    expect([tick(), tick(), tick(), tick()]).toEqual([['a'], ['c'], ['d'], []]);
    expect(visits.flat()).not.toContain('b');
  });
});
