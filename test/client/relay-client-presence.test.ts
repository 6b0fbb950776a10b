import { expect } from '@jest/globals';
import { RELAY_CLIENT_ENV as RELAY_ENV, nextEvent, rejection, relayClients } from '../helpers/client-events';
import { useClients, useRelays } from '../helpers/fixtures';

// relay-client.js presence: presence(room), join(room, { presence: true }) and the joined/left events, against
// bundled relay processes (memory backplane: each relay is its own instance).

jest.setTimeout(60_000);

const relays = useRelays();
const client = relayClients(useClients());

describe('RelayClient presence', () => {
  it('emits joined and left for a room joined with presence, and resolves presence() with the members', async () => {
    const relay = await relays.start(RELAY_ENV);
    const watcher = client([relay.wsUrl]);
    const other = client([relay.wsUrl]);
    await Promise.all([watcher.connect(), other.connect()]);
    await watcher.join('room-a', { presence: true });
    const joined = nextEvent(watcher, 'joined', (e) => e.member.connectionId === other.welcome?.connectionId);
    await other.join('room-a');
    expect(await joined).toEqual({
      room: 'room-a',
      member: { connectionId: other.welcome?.connectionId, user: null, instanceId: other.welcome?.instanceId, since: expect.any(Number) },
    });

    const reply = await other.presence('room-a');
    expect(reply).toMatchObject({ type: 'presence', room: 'room-a', count: 2 });
    expect(reply.members.map((m) => m.connectionId).sort()).toEqual([watcher.welcome?.connectionId, other.welcome?.connectionId].sort());

    const left = nextEvent(watcher, 'left', (e) => e.member.connectionId === other.welcome?.connectionId);
    await other.leave('room-a');
    expect((await left).room).toBe('room-a');
  });

  it('fails when presence() names a room the client is not in, or join gets bad options', async () => {
    const relay = await relays.start(RELAY_ENV);
    const c = client([relay.wsUrl]);
    await c.connect();
    const notMember = await rejection(c.presence('elsewhere'));
    expect(notMember.code).toBe('forbidden');
    expect(notMember.message).toBe('presence of room "elsewhere" is visible to its members only; join it first');
    const badFlag = await rejection(c.join('r', { presence: 'yes' as unknown as boolean }));
    expect(badFlag.code).toBe('invalid_argument');
    expect(badFlag.message).toBe('join(room, { presence }): presence must be true or false, got "yes".');
    const badOptions = await rejection(c.join('r', 5 as unknown as { presence: boolean }));
    expect(badOptions.message).toBe('join(room, options): options must be an object such as { presence: true }, got 5.');
  });

  it('rejoins with presence after a reconnect, so joined events keep coming', async () => {
    const [first, second] = await Promise.all([relays.start(RELAY_ENV), relays.start(RELAY_ENV)]);
    const watcher = client([first.wsUrl, second.wsUrl]);
    await watcher.connect();
    await watcher.join('room-b', { presence: true });
    const reopened = nextEvent(watcher, 'open');
    await first.stop();
    expect((await reopened).url).toBe(second.wsUrl);
    const newcomer = client([second.wsUrl]);
    await newcomer.connect();
    const joined = nextEvent(watcher, 'joined', (e) => e.member.connectionId === newcomer.welcome?.connectionId);
    await newcomer.join('room-b');
    expect((await joined).member.instanceId).toBe(newcomer.welcome?.instanceId);
  });
});
