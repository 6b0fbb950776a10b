import { connect as netConnect, type Socket } from 'node:net';

/** Upgrade headers of a well-formed WebSocket handshake, to append to any request line. */
export const UPGRADE_HEADERS =
  'Host: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';

/**
 * Writes raw bytes to 127.0.0.1:`port` (without half-closing, as a browser would not) and resolves once the
 * server closes the connection, with its status line ('' when it hung up without answering) and the whole response.
 * Rejects when the server holds the socket open longer than `timeoutMs`: that is the leak the tests look for.
 */
export function rawHttp(port: number, request: string, timeoutMs = 10_000): Promise<{ statusLine: string; response: string }> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`raw request ${JSON.stringify(request.split('\r\n')[0])}: socket still open after ${timeoutMs} ms (answer so far: ${JSON.stringify(data.slice(0, 200))})`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      data += chunk;
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ statusLine: data.split('\r\n')[0], response: data });
    });
    socket.write(request);
  });
}

/**
 * Opens a socket and writes `bytes` without ever finishing the request; the caller destroys it (or the server does).
 * The socket flows, so its 'close' comes when the server hangs up even if nobody reads what it answered.
 */
export function openHalfRequest(port: number, bytes: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1', () => {
      socket.off('error', reject);
      socket.on('error', () => undefined);
      socket.write(bytes);
      socket.resume();
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Resolves when the socket closes; rejects when it is still open after `timeoutMs`. */
export function waitClosed(socket: Socket, timeoutMs: number): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
