import { ConfigError, loadServiceConfig, type ServiceConfig } from './config';
import { createLogger } from './logger';
import { startMemoryReducer } from './memory-reducer';
import { createRelay } from './server';

/** Process entry: config from the environment, start, drain on SIGTERM/SIGINT or after an uncaught error. */
async function main(): Promise<void> {
  let config: ServiceConfig;
  try {
    config = loadServiceConfig(process.env);
  } catch (err) {
    process.stderr.write(`${err instanceof ConfigError ? err.message : String(err)}\n`);
    process.exit(1);
  }
  const logger = createLogger(config.logLevel, { instanceId: config.instanceId });
  const relay = createRelay(config, { logger });
  let stopping = false;

  /** Drains and exits with `exitCode`, or with 1 once RELAY_SHUTDOWN_TIMEOUT_MS has passed. */
  const shutdown = (reason: string, exitCode: 0 | 1): void => {
    stopping = true;
    logger.info({ reason, deadlineMs: config.shutdownTimeoutMs }, 'shutting down');
    const deadline = setTimeout(() => {
      logger.error({ deadlineMs: config.shutdownTimeoutMs }, 'shutdown deadline passed: forcing exit');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    relay
      .drain()
      .then(() => relay.close())
      .then(() => {
        logger.info({ exitCode }, 'shutdown complete');
        process.exit(exitCode);
      })
      .catch((err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting at once');
      process.exit(1);
    }
    shutdown(signal, 0);
  };
  // After an error nothing caught, the process's state is unknown: it must not carry on serving. Clients still get
  // their 1001 and the backplane is closed, then exit 1 tells the platform to start a fresh process.
  const onFatal = (kind: string) => (err: unknown) => {
    logger.fatal({ err }, kind);
    if (!stopping) shutdown(kind, 1);
  };
  process.on('uncaughtException', onFatal('uncaught exception'));
  process.on('unhandledRejection', onFatal('unhandled rejection'));
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  const { port, metricsPort } = await relay.start();
  // instanceId rides on every line through the logger's base fields. `event` is the readiness signal that process
  // harnesses wait on (app/local-servers.ts), so the message text stays free to change.
  logger.info({ event: 'listening', port, metricsPort, backplane: relay.backplane.kind }, 'relay listening');
  startMemoryReducer({
    onReduce: (r) => logger.info({ youngBytesBefore: r.beforeBytes, youngBytesAfter: r.afterBytes, ms: Math.round(r.ms) }, 'idle: young generation given back'),
  });
}

main().catch((err: unknown) => {
  // Errors with a stable code (e.g. an unusable REDIS_URL or CA file) say what to fix; a stack adds nothing.
  const coded = err instanceof Error && typeof (err as { code?: unknown }).code === 'string';
  const detail = err instanceof Error ? (coded ? err.message : (err.stack ?? err.message)) : String(err);
  process.stderr.write(`relay failed to start: ${detail}\n`);
  process.exit(1);
});
