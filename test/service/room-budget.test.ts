/**
 * The budget of rooms a connection may start using per interval (RELAY_ROOM_CREATE_BUDGET): the rule on its own,
 * and a relay on a real Redis refusing the room past the budget with nothing stored.
 */
import { expect } from '@jest/globals';
import { RoomBudget } from '../../service/core/room-budget';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { join, publish } from '../recovery/recovery-helpers';

jest.setTimeout(60_000);

describe('RoomBudget', () => {
  const limits = { roomCreateBudget: 2, roomCreateIntervalMs: 1000 };

  it('charges each room once per interval, leaves joined rooms free and refills after the interval', () => {
    const budget = new RoomBudget(0);
    expect(budget.take('a', false, limits, 0)).toBe(true);
    expect(budget.take('a', false, limits, 10)).toBe(true);
    expect(budget.take('b', false, limits, 20)).toBe(true);
    expect(budget.take('c', false, limits, 30)).toBe(false);
    expect(budget.take('c', true, limits, 40)).toBe(true);
    expect(budget.retryAfterMs(limits, 400)).toBe(600);
    expect(budget.take('c', false, limits, 999)).toBe(false);
    expect(budget.take('c', false, limits, 1000)).toBe(true);
    expect(budget.take('d', false, limits, 1001)).toBe(true);
    expect(budget.take('e', false, limits, 1002)).toBe(false);
  });

  it('keeps one room without a set and counts the same from the second room on, across intervals', () => {
    const wide = { roomCreateBudget: 3, roomCreateIntervalMs: 1000 };
    const budget = new RoomBudget(0);
    expect(budget.size).toBe(0);
    expect(budget.take('a', false, wide, 0)).toBe(true);
    expect(budget.take('a', false, wide, 1)).toBe(true);
    expect(budget.size).toBe(1);
    // A room whose name merely starts like the charged one is a different room.
    expect(budget.take('ab', false, wide, 2)).toBe(true);
    expect(budget.take('b', false, wide, 3)).toBe(true);
    expect(budget.size).toBe(3);
    expect(budget.take('a', false, wide, 4)).toBe(true);
    expect(budget.take('ab', false, wide, 5)).toBe(true);
    expect(budget.take('c', false, wide, 6)).toBe(false);
    expect(budget.size).toBe(3);
    // A new interval starts empty again, with one room, then several.
    expect(budget.take('c', false, wide, 1000)).toBe(true);
    expect(budget.size).toBe(1);
    expect(budget.take('a', false, wide, 1001)).toBe(true);
    expect(budget.take('b', false, wide, 1002)).toBe(true);
    expect(budget.take('d', false, wide, 1003)).toBe(false);
    // A budget of one: the single room is all there is.
    const one = { roomCreateBudget: 1, roomCreateIntervalMs: 1000 };
    const single = new RoomBudget(0);
    expect(single.take('x', false, one, 0)).toBe(true);
    expect(single.take('x', false, one, 1)).toBe(true);
    expect(single.take('y', false, one, 2)).toBe(false);
    expect(single.take('y', true, one, 3)).toBe(true);
    expect(single.size).toBe(1);
  });
});

describe('the room budget on a relay', () => {
  const redisServers = useRedis();
  const relays = useRelays();
  const clients = useClients();

  it('refuses a join or publish to one room more than RELAY_ROOM_CREATE_BUDGET with room_budget, storing nothing', async () => {
    const redis = await redisServers.start();
    const relay = await relays.start({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'budget', RELAY_ROOM_CREATE_BUDGET: '3' });
    const client = await clients.connect(relay);
    expect(await join(client, 'joined')).toMatchObject({ type: 'ack' });
    expect(await publish(client, 'one', 'x')).toMatchObject({ type: 'ack' });
    expect(await publish(client, 'two', 'x')).toMatchObject({ type: 'ack' });
    const refused = await publish(client, 'three', 'x');
    expect(refused).toMatchObject({ type: 'error', code: 'room_budget' });
    expect(String(refused.message)).toContain('RELAY_ROOM_CREATE_BUDGET');
    expect(String(refused.message)).toContain('retry in');
    expect(await join(client, 'three')).toMatchObject({ type: 'error', code: 'room_budget' });
    expect(Number(await redis.cli('EXISTS', 'budget:history:{three}'))).toBe(0);
    // Rooms already used this interval, and rooms the connection is in, are free.
    expect(await publish(client, 'one', 'y')).toMatchObject({ type: 'ack' });
    expect(await publish(client, 'joined', 'y')).toMatchObject({ type: 'ack' });
    // The budget is per connection.
    const other = await clients.connect(relay);
    expect(await publish(other, 'three', 'x')).toMatchObject({ type: 'ack' });
    expect(Number(await redis.cli('EXISTS', 'budget:history:{three}'))).toBe(1);
  });
});
