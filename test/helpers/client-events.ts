import WebSocket from 'ws';
import { RelayClient, type RelayClientEvents, type RelayError } from '../../service/public/relay-client';
import type { ClientFixture } from './fixtures';

/** Reconnects quickly, so tests that stop a relay do not wait for the default backoff. */
export const FAST_BACKOFF = { initialMs: 50, maxMs: 400 };

/** Relays for RelayClient tests: no drain window, so a stopped relay closes its sockets at once. */
export const RELAY_CLIENT_ENV = { RELAY_DRAIN_WINDOW_MS: '0' };

/** Makes RelayClients over Node's `ws` with FAST_BACKOFF, closed by the fixture at teardown. */
export function relayClients(clients: ClientFixture) {
  return (urls: string[], extra: Partial<ConstructorParameters<typeof RelayClient>[0]> = {}): RelayClient =>
    clients.track(new RelayClient({ urls, WebSocket, backoff: FAST_BACKOFF, ...extra }));
}

/** The error `p` rejects with; fails when it resolves. */
export async function rejection(p: Promise<unknown>): Promise<RelayError> {
  try {
    await p;
  } catch (err) {
    return err as RelayError;
  }
  throw new Error('expected the promise to reject, it resolved');
}

/** Resolves with the first `event` payload matching `pred` that the client emits after this call; rejects after `timeoutMs`. */
export function nextEvent<E extends keyof RelayClientEvents>(
  c: RelayClient,
  event: E,
  pred: (payload: RelayClientEvents[E]) => boolean = () => true,
  timeoutMs = 15_000,
): Promise<RelayClientEvents[E]> {
  return new Promise((resolve, reject) => {
    const listener = (payload: RelayClientEvents[E]): void => {
      if (!pred(payload)) return;
      clearTimeout(timer);
      c.off(event, listener);
      resolve(payload);
    };
    const timer = setTimeout(() => {
      c.off(event, listener);
      reject(new Error(`no matching "${event}" event within ${timeoutMs} ms (client state ${c.state})`));
    }, timeoutMs);
    c.on(event, listener);
  });
}
