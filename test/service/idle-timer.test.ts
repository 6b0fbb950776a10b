/**
 * An upgraded socket lets go of its cleared idle timer (service/http/idle-timer.ts): node keeps the Timeout object
 * of `socket.setTimeout` on the socket after `setTimeout(0)` clears it, about 200 bytes per idle connection. Real TCP
 * sockets on loopback; the test fails if node stops keeping the timer where the relay looks for it.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { dropClearedIdleTimer } from '../../service/http/idle-timer';

const timerOf = (socket: Socket): unknown => {
  const key = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'timeout');
  return key === undefined ? undefined : Reflect.get(socket, key);
};

let server: Server;
const sockets: Socket[] = [];

beforeAll(async () => {
  server = createServer((s) => sockets.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function openSocket(): Promise<Socket> {
  const port = (server.address() as { port: number }).port;
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

describe('dropClearedIdleTimer', () => {
  it('drops a cleared idle timer and keeps an armed one', async () => {
    const cleared = await openSocket();
    cleared.setTimeout(60_000);
    cleared.setTimeout(0);
    expect(timerOf(cleared)).toMatchObject({ _idleTimeout: -1 });
    dropClearedIdleTimer(cleared);
    expect(timerOf(cleared)).toBeNull();
    // The socket still takes a new idle timeout afterwards.
    cleared.setTimeout(60_000);
    expect(timerOf(cleared)).toMatchObject({ _idleTimeout: 60_000 });

    const armed = await openSocket();
    armed.setTimeout(60_000);
    dropClearedIdleTimer(armed);
    expect(timerOf(armed)).toMatchObject({ _idleTimeout: 60_000 });
    armed.setTimeout(0);
  });
});
