import { createServer, type AddressInfo, type Server } from 'node:net';

/**
 * A port the OS just handed out on `host` and that is closed again, so it is free unless another process takes it
 * first (callers that bind it later retry on a clash). Node built-ins only: tests, benchmarks and `npm run dev`
 * import it without loading anything else.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (err) =>
      reject(Object.assign(new Error(`could not bind an ephemeral port on ${host}: ${err.message}`), { code: 'no_free_port' })),
    );
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(Object.assign(new Error(`could not read the port of a probe server on ${host}`), { code: 'no_free_port' }));
      });
    });
  });
}

/** `count` distinct free ports: each probe stays bound until all are chosen, so two calls cannot return one port twice. */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err) => reject(Object.assign(new Error(`could not bind an ephemeral port on ${host}: ${err.message}`), { code: 'no_free_port' })));
        server.listen(0, host, resolve);
      });
    }
    return servers.map((s) => (s.address() as AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))));
  }
}
