import type { Duplex } from 'node:stream';

/** The 'timeout' listener of a socket still being upgraded (`socket.setTimeout`): one shared function, no closure. */
export function destroyOnTimeout(this: Duplex): void {
  this.destroy();
}

/** The symbol under which node keeps a socket's idle timer (`socket.setTimeout`); found on the first socket. */
let timerKey: symbol | undefined;

/**
 * Lets go of an upgraded socket's cleared idle timer. The HTTP server gives every socket one (`server.timeout`) and
 * `setTimeout(0)` (which ws calls when the socket becomes a WebSocket) clears it but keeps the Timeout object on the
 * socket for as long as it lives: about 200 bytes per idle connection. Only a cleared timer is dropped; a socket
 * whose timer is still armed is left as it is.
 */
export function dropClearedIdleTimer(socket: Duplex): void {
  timerKey ??= Object.getOwnPropertySymbols(socket).find((s) => s.description === 'timeout');
  if (timerKey === undefined) return;
  const timer: unknown = Reflect.get(socket, timerKey);
  // A cleared timer has _idleTimeout -1 (node's unenroll); it is never armed again unless setTimeout makes a new one.
  if (typeof timer === 'object' && timer !== null && Reflect.get(timer, '_idleTimeout') === -1) Reflect.set(socket, timerKey, null);
}
