import { ConfigError, loadServiceConfig, type ServiceConfig } from './config';
import { createLogger } from './logger';
import { createRelay } from './server';

/** Process entry: config from the environment, start, drain on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  let config: ServiceConfig;
  try {
    config = loadServiceConfig(process.env);
  } catch (err) {
    process.stderr.write(`${err instanceof ConfigError ? err.message : String(err)}\n`);
    process.exit(1);
  }
  const logger = createLogger(config.logLevel, { instanceId: config.instanceId });
  // A stray error (a Redis socket hiccup, a bad client) must never take every connection down with it.
  process.on('uncaughtException', (err) => logger.error({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection'));

  const relay = createRelay(config, { logger });
  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting at once');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal, deadlineMs: config.shutdownTimeoutMs }, 'shutting down');
    const deadline = setTimeout(() => {
      logger.error({ deadlineMs: config.shutdownTimeoutMs }, 'shutdown deadline passed: forcing exit');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    relay
      .drain()
      .then(() => relay.close())
      .then(() => {
        logger.info('shutdown complete');
        process.exit(0);
      })
      .catch((err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  const { port } = await relay.start();
  // instanceId rides on every line through the logger's base fields. `event` is the readiness signal that process
  // harnesses wait on (app/local-servers.ts), so the message text stays free to change.
  logger.info({ event: 'listening', port, backplane: relay.backplane.kind }, 'relay listening');
}

main().catch((err: unknown) => {
  // Errors with a stable code (e.g. an unusable REDIS_URL or CA file) say what to fix; a stack adds nothing.
  const coded = err instanceof Error && typeof (err as { code?: unknown }).code === 'string';
  const detail = err instanceof Error ? (coded ? err.message : (err.stack ?? err.message)) : String(err);
  process.stderr.write(`relay failed to start: ${detail}\n`);
  process.exit(1);
});
