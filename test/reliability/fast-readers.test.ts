/**
 * The slow-consumer decision counts only what the kernel has not accepted once a batch is flushed. On main, bytes
 * corked in the current turn counted as backlog, so a 2.4 MB burst to a reader draining at loopback speed was closed
 * with 1013 in most runs. Here: 20 bursts to a reader that keeps up, zero cut-offs; a reader that stopped reading
 * is still cut off with 1013.
 */
import WebSocket from 'ws';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { closeRaw, openRaw, trustedEnv } from '../helpers/load';
import { frameText } from '../helpers/ws-client';

jest.setTimeout(180_000);

const BURSTS = 20;
const PER_BURST = 40;
/** 40 messages of ~60 KB: a 2.4 MB burst against the default 1 MB send-buffer cap. */
const PAYLOAD = 'x'.repeat(60_000);
const WAIT_MS = 30_000;

const redisServers = useRedis();
const relayFixture = useRelays();
const clients = useClients();

/** A raw socket that counts the room's messages and records its close; joined to `room`. */
async function reader(url: string, room: string): Promise<{ ws: WebSocket; count: () => number; closed: () => number | undefined; next: (n: number) => Promise<void> }> {
  const ws = await openRaw(url, { perMessageDeflate: false });
  clients.track({
    close: () => {
      ws.resume();
      return closeRaw(ws);
    },
  });
  let count = 0;
  let closeCode: number | undefined;
  const waiters: Array<() => void> = [];
  const acked = new Promise<void>((resolve) => {
    ws.on('message', (data: WebSocket.RawData) => {
      const text = frameText(data);
      if (text.startsWith('{"type":"ack"')) resolve();
      if (text.startsWith('{"type":"message"')) count++;
      for (const w of waiters.splice(0)) w();
    });
  });
  ws.on('close', (code) => {
    closeCode = code;
    for (const w of waiters.splice(0)) w();
  });
  ws.send(JSON.stringify({ type: 'join', room, id: 'j' }));
  await acked;
  const next = (n: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error(`reader: ${count} of ${n} messages within ${WAIT_MS} ms`)), WAIT_MS);
      const check = (): void => {
        if (count >= n || closeCode !== undefined) {
          clearTimeout(deadline);
          resolve();
          return;
        }
        waiters.push(check);
      };
      check();
    });
  return { ws, count: () => count, closed: () => closeCode, next };
}

describe('fast readers and slow consumers', () => {
  it('never cuts off a reader that keeps up with 2.4 MB bursts, and still cuts off one that stopped reading', async () => {
    const redis = await redisServers.start();
    const relays = await relayFixture.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'bursts' }));
    const fast = await reader(relays[0].wsUrl, 'burst');
    const stalled = await reader(relays[0].wsUrl, 'burst');
    stalled.ws.pause();
    const publisher = await openRaw(relays[1].wsUrl, { perMessageDeflate: false });
    clients.track({ close: () => closeRaw(publisher) });
    const frame = JSON.stringify({ type: 'publish', room: 'burst', data: PAYLOAD });
    // The stalled reader resumes the moment its relay gives up on it, so it reads its backlog and the close frame.
    const cutOff = relays[0].waitLog((l) => l.msg === 'closing slow consumer', WAIT_MS * 4).then((line) => {
      stalled.ws.resume();
      return line;
    });

    for (let burst = 1; burst <= BURSTS; burst++) {
      // The whole burst is written at once, so the relays receive and fan it out in as few turns as they can.
      for (let i = 0; i < PER_BURST; i++) publisher.send(frame);
      await fast.next(burst * PER_BURST);
      expect({ burst, closed: fast.closed() }).toEqual({ burst, closed: undefined });
    }
    expect(fast.count()).toBe(BURSTS * PER_BURST);

    expect(await cutOff).toMatchObject({ msg: 'closing slow consumer' });
    await stalled.next(Number.MAX_SAFE_INTEGER);
    expect(stalled.closed()).toBe(1013);
  });
});
