/**
 * Relays created in the test's own process (createRelay, memory backplane unless the environment names Redis) on
 * ephemeral loopback ports, with TestClients; both are closed after each test, clients first.
 */
import { loadServiceConfig } from '../../service/config';
import { createRelay, type Relay } from '../../service/server';
import { TestClient } from './ws-client';

export interface InProcessRelays {
  /** Starts a relay with `base` and `env` over the defaults (port 0, loopback, silent); resolves with its ws:// URL. */
  readonly start: (env?: Record<string, string>) => Promise<string>;
  /** A TestClient connected to `url`, welcome received. */
  readonly connect: (url: string) => Promise<TestClient>;
}

export function useInProcessRelays(base: Record<string, string> = {}): InProcessRelays {
  const relays: Relay[] = [];
  const clients: TestClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await Promise.all(relays.splice(0).map((r) => r.close()));
  });
  return {
    start: async (env = {}) => {
      const relay = createRelay(loadServiceConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', ...base, ...env }));
      relays.push(relay);
      const { port } = await relay.start();
      return `ws://127.0.0.1:${port}/ws`;
    },
    connect: async (url) => {
      const c = await TestClient.connect(url);
      clients.push(c);
      return c;
    },
  };
}
