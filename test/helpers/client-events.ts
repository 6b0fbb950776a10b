import type { RelayClient, RelayClientEvents } from '../../service/public/relay-client';

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
