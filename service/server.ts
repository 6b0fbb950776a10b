import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { verifyToken, type TokenClaims, type TokenRules } from './auth';
import { createBackplane } from './backplane';
import { MemoryBackplane } from './backplane/memory';
import type { Backplane, BackplaneStatus } from './backplane/types';
import type { ServiceConfig } from './config';
import { AdmissionControl } from './http/admission';
import { TrustedProxies, resolveClientAddress } from './http/client-address';
import { createHttpServer } from './http/http-server';
import { destroyOnTimeout, dropClearedIdleTimer } from './http/idle-timer';
import { createInternalServer } from './http/internal-server';
import { parseRequestTarget } from './http/request-target';
import { readOnlyTarget, sendJson, writeRawResponse } from './http/responses';
import { apiBucket, handleServerApi, isServerApiPath, type ServerApiDeps } from './http/server-api';
import { ServerControl } from './core/control';
import { servePublicFile } from './http/static-files';
import { Hub } from './hub';
import { parseProtocolParam, type ProtocolVersion } from './protocol';
import { tokenRulesOf } from './token-lifetime';
import { EmfReporter } from './emf-metrics';
import { BackplaneOutage, DeregistrationWatch, LB_HEALTH_PATH } from './load-balancer-health';
import { createLogger } from './logger';
import { RelayMetrics } from './metrics';

export interface RelayOptions {
  /** @default a pino logger at config.logLevel */
  readonly logger?: Logger;
  /** @default the backplane the config selects */
  readonly backplane?: Backplane;
  /** Folder served at / and /<file>. @default `public` next to this module */
  readonly publicDir?: string;
  /** Grace before a socket we closed is terminated. @default 2000 */
  readonly closeGraceMs?: number;
}

/** What the public /healthz shows: no addresses, no error text. */
export interface HealthReport {
  readonly status: 'ok' | 'degraded' | 'full' | 'draining';
  readonly instanceId: string;
  readonly connections: number;
  readonly rooms: number;
  readonly backplane: Pick<BackplaneStatus, 'kind' | 'state'>;
}

/** What /healthz/detail shows on the internal port. */
export interface HealthDetail extends Omit<HealthReport, 'backplane'> {
  readonly backplane: BackplaneStatus;
  readonly admitted: number;
  readonly maxConnections: number;
  readonly trackedAddresses: number;
  readonly pendingUpgrades: number;
  readonly uptimeSeconds: number;
}

/** What the hub learns about a connection at the upgrade. */
export interface ConnectionMeta {
  /** The client's address (behind a trusted proxy, from X-Forwarded-For). */
  readonly remoteAddress?: string;
  /** The verified token's claims, when RELAY_TOKEN_SECRET is set. */
  readonly claims?: TokenClaims;
  /** The protocol the client asked for with `?protocol=`. @default 1 */
  readonly protocol?: ProtocolVersion;
  /** What its admission counts against (see AdmissionControl); the hub releases it when the connection closes. */
  readonly admissionKey?: string;
}

/** A relay instance: public HTTP server with the WebSocket upgrade, internal metrics server, hub and backplane. */
export interface Relay {
  readonly config: ServiceConfig;
  readonly hub: Hub;
  readonly backplane: Backplane;
  readonly metrics: RelayMetrics;
  readonly server: Server;
  /** The server on RELAY_METRICS_PORT (/metrics, /healthz/detail). */
  readonly internalServer: Server;
  readonly admission: AdmissionControl;
  readonly logger: Logger;
  /** Listens on both ports and starts the backplane (a backplane that cannot connect yet keeps retrying; health says 503 meanwhile). */
  start(): Promise<{ port: number; metricsPort: number }>;
  /** Refuses new upgrades, turns health to 503 and closes clients with 1001 over the drain window. */
  drain(): Promise<void>;
  /** Terminates what is left (sockets mid-upgrade included), closes the backplane and both servers. Idempotent. */
  close(): Promise<void>;
  isDraining(): boolean;
  health(): { statusCode: number; body: HealthReport };
  /** The load balancer's check (/healthz/lb): 503 when draining, full, or the backplane is down past its grace period. */
  loadBalancerHealth(): { statusCode: number; body: HealthReport };
  detail(): { statusCode: number; body: HealthDetail };
}

export function createRelay(config: ServiceConfig, opts: RelayOptions = {}): Relay {
  const logger = opts.logger ?? createLogger(config.logLevel, { instanceId: config.instanceId });
  const backplane = opts.backplane ?? createBackplane(config, logger);
  const publicDir = opts.publicDir ?? join(__dirname, 'public');
  // The gauges read the hub only when scraped, after it exists.
  const metrics: RelayMetrics = new RelayMetrics({
    connections: () => hub.connectionCount,
    rooms: () => hub.roomCount,
    maxConnections: config.maxConnections,
    historyBytes: backplane instanceof MemoryBackplane ? () => backplane.historyStats().bytes : undefined,
  });
  const hub: Hub = new Hub({ config, backplane, metrics, logger, closeGraceMs: opts.closeGraceMs, release: (key) => admission.release(key) });
  const control = new ServerControl(backplane, hub, config.instanceId, logger.child({ component: 'server-api' }));
  hub.useControl(control);
  const api: ServerApiDeps = {
    config,
    backplane,
    deliver: (room, frame) => hub.deliver(room, frame),
    control,
    logger,
    bucket: apiBucket(config),
  };
  const wss = new WebSocketServer({ noServer: true, maxPayload: config.maxPayloadBytes, perMessageDeflate: false, clientTracking: false });
  const admission = new AdmissionControl({
    maxConnections: config.maxConnections,
    maxPerAddress: config.maxConnectionsPerAddress,
    connectRatePerAddress: config.connectRatePerAddress,
    connectBurstPerAddress: config.connectBurstPerAddress,
  });
  const trusted = config.trustedProxies ? new TrustedProxies(config.trustedProxies) : null;
  const tokenRules: TokenRules | null = tokenRulesOf(config);
  /** Sockets between the upgrade request and the hand-over to the hub: nothing else would close them at shutdown. */
  const upgrading = new Set<Duplex>();
  /** The per-address key each admitted socket counts against, until its close releases it. */
  const admittedAs = new Map<Duplex, string>();
  const startedAt = Date.now();
  let draining = false;
  /** Why the relay drains: a signal is for good; a deregistration ends if the load balancer registers it again. */
  let drainCause: 'signal' | 'deregistered' | undefined;
  let closing: Promise<void> | undefined;
  const outage = new BackplaneOutage(config.backplaneGraceMs);
  const deregistration = new DeregistrationWatch({
    silenceMs: config.deregistrationSilenceMs,
    onSilence: () => {
      if (draining) return;
      drainCause = 'deregistered';
      logger.warn({ silenceMs: config.deregistrationSilenceMs }, 'load balancer health checks stopped: deregistered, draining');
      void startDrain();
    },
    onResume: () => {
      if (drainCause !== 'deregistered' || closing) return;
      draining = false;
      drainCause = undefined;
      logger.info('load balancer health checks resumed: accepting clients again');
    },
  });
  const emf = config.emfFile
    ? new EmfReporter({
        file: config.emfFile,
        intervalMs: config.emfIntervalMs,
        environment: config.channelPrefix,
        logger,
        sample: async () => ({
          connections: hub.connectionCount,
          deliveriesTotal: (await metrics.messagesOut.get()).values[0]?.value ?? 0,
          slowConsumersTotal: (await metrics.slowConsumers.get()).values[0]?.value ?? 0,
          backplaneReady: backplane.status().state === 'ready',
          backplaneDownMs: outage.downForMs(),
          publishLatency: metrics.publishLatencyWindow.take(),
        }),
      })
    : undefined;

  backplane.onStateChange((s) => {
    outage.observe(s.state);
    logger.info({ backplane: s }, 'backplane state changed');
  });

  const status = (): HealthReport['status'] =>
    draining ? 'draining' : backplane.status().state !== 'ready' ? 'degraded' : admission.atCapacity ? 'full' : 'ok';

  const health = (): { statusCode: number; body: HealthReport } => {
    const s = status();
    const { kind, state } = backplane.status();
    return {
      statusCode: s === 'ok' ? 200 : 503,
      body: { status: s, instanceId: config.instanceId, connections: hub.connectionCount, rooms: hub.roomCount, backplane: { kind, state } },
    };
  };

  const loadBalancerHealth = (): { statusCode: number; body: HealthReport } => {
    const h = health();
    outage.observe(h.body.backplane.state);
    const down = h.body.status === 'degraded' && outage.exceedsGrace();
    return { statusCode: h.body.status === 'ok' || (h.body.status === 'degraded' && !down) ? 200 : 503, body: h.body };
  };

  async function startDrain(): Promise<void> {
    draining = true;
    logger.info({ connections: hub.connectionCount, windowMs: config.drainWindowMs, cause: drainCause }, 'draining');
    await hub.drain(config.drainWindowMs);
  }

  const detail = (): { statusCode: number; body: HealthDetail } => {
    const h = health();
    return {
      statusCode: h.statusCode,
      body: {
        ...h.body,
        backplane: backplane.status(),
        admitted: admission.count,
        maxConnections: config.maxConnections,
        trackedAddresses: admission.trackedAddresses,
        pendingUpgrades: upgrading.size,
        uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      },
    };
  };

  const timeouts = { headersTimeoutMs: config.headersTimeoutMs, requestTimeoutMs: config.requestTimeoutMs, logger, metrics };
  const server = createHttpServer(timeouts, handleRequest);
  const internalServer = createInternalServer({ ...timeouts, detail });

  async function handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const apiTarget = parseRequestTarget(req.url);
    if (apiTarget !== null && isServerApiPath(apiTarget.path)) return handleServerApi(req, res, apiTarget, api);
    const target = readOnlyTarget(req, res);
    if (!target) return;
    if (target.path === LB_HEALTH_PATH) {
      deregistration.seen();
      const h = loadBalancerHealth();
      sendJson(res, h.statusCode, h.body);
      return;
    }
    if (target.path === '/healthz') {
      const h = health();
      sendJson(res, h.statusCode, h.body);
      return;
    }
    if (target.path === '/ws') {
      sendJson(res, 426, { error: 'upgrade_required', message: '/ws speaks WebSocket only; connect with a WebSocket client' }, { Upgrade: 'websocket' });
      return;
    }
    if (!(await servePublicFile(publicDir, target.path, req, res))) {
      sendJson(res, 404, { error: 'not_found', message: `no such path: ${target.path}` });
    }
  }

  // Listeners that live as long as a socket are created here, once, not inside the upgrade handler: a closure made
  // there would share its scope with the handler's and keep the whole upgrade request alive with the connection.
  function onUpgradeSocketError(err: Error): void {
    logger.debug({ err }, 'upgrade socket error');
  }
  /** The relay's 'close' listener on a socket until the hub takes it: forgets the upgrade and ends the admission. */
  function onUpgradeSocketClose(this: Duplex): void {
    upgrading.delete(this);
    const key = admittedAs.get(this);
    if (key === undefined) return;
    admittedAs.delete(this);
    admission.release(key);
  }

  /** Answers a refused upgrade with a JSON body and closes the socket; counted by reason, logged without the request. */
  function refuse(socket: Duplex, status: number, error: string, message: string, headers: Record<string, string> = {}): void {
    metrics.upgradesRefused.inc({ reason: error });
    logger.debug({ status, error }, 'upgrade refused');
    writeRawResponse(socket, status, JSON.stringify({ error, message }), headers);
  }

  function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', onUpgradeSocketError);
    upgrading.add(socket);
    socket.on('close', onUpgradeSocketClose);
    // Bounds the checks below (the token check is asynchronous); ws clears it once the socket is a WebSocket.
    // The HTTP server only ever hands over net sockets.
    (socket as Socket).setTimeout(config.requestTimeoutMs, destroyOnTimeout);

    const target = parseRequestTarget(req.url);
    if (!target) return refuse(socket, 400, 'bad_request', 'the request target is not a valid path; connect to /ws');
    if (target.path !== '/ws') return refuse(socket, 404, 'not_found', `no WebSocket endpoint at ${target.path}; connect to /ws`);
    if (draining) return refuse(socket, 503, 'draining', 'this instance is shutting down; reconnect to another instance');
    const asked = parseProtocolParam(target.query.get('protocol'));
    if (!asked.ok) return refuse(socket, 400, 'bad_protocol', asked.message);
    const protocol = asked.version;
    const client = resolveClientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], trusted);
    const refusal = admission.admit(client.key);
    if (refusal) {
      const retry: Record<string, string> = refusal.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(refusal.retryAfterSeconds) };
      return refuse(socket, refusal.status, refusal.error, refusal.message, retry);
    }
    // The socket's close ends the admission, whether it is refused below, fails the handshake or lives on as a WebSocket.
    admittedAs.set(socket, client.key);
    const origin = req.headers.origin;
    if (config.allowedOrigins && (!origin || !config.allowedOrigins.includes(origin))) {
      return refuse(socket, 403, 'forbidden_origin', `origin ${origin === undefined ? '(none)' : JSON.stringify(origin)} is not in RELAY_ALLOWED_ORIGINS`);
    }
    const remoteAddress = client.address;
    if (!tokenRules) return accept(req, socket, head, { remoteAddress, protocol });
    verifyToken(target.query.get('token'), tokenRules).then(
      (check) => {
        if (!check.ok) refuse(socket, 401, 'unauthorized', check.reason);
        else accept(req, socket, head, { remoteAddress, claims: check.claims, protocol });
      },
      (err: unknown) => {
        logger.error({ err }, 'token check failed');
        refuse(socket, 500, 'internal', 'the token could not be checked; see the relay logs');
      },
    );
  }

  function accept(req: IncomingMessage, socket: Duplex, head: Buffer, meta: ConnectionMeta): void {
    if (socket.destroyed) return;
    if (draining) return refuse(socket, 503, 'draining', 'this instance is shutting down; reconnect to another instance');
    wss.handleUpgrade(req, socket, head, (ws) => {
      // Handed over: the hub closes it from now on, and these listeners would only cost memory per connection.
      upgrading.delete(socket);
      socket.off('timeout', destroyOnTimeout);
      if (draining) {
        ws.close(1001, 'server shutting down');
        return;
      }
      // The hub ends the admission at the close; ours go (a 2nd listener costs an array), as does the cleared timer.
      const admissionKey = admittedAs.get(socket);
      admittedAs.delete(socket);
      socket.off('close', onUpgradeSocketClose);
      socket.off('error', onUpgradeSocketError);
      dropClearedIdleTimer(socket);
      hub.add(ws, { ...meta, admissionKey });
    });
  }

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    try {
      onUpgrade(req, socket, head);
    } catch (err) {
      // Nothing above should throw; if something does, this socket is answered and the process carries on.
      logger.error({ err }, 'upgrade failed');
      refuse(socket, 500, 'internal', 'internal error; see the relay logs');
    }
  });

  const listen = (srv: Server, port: number, host: string, variable: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(Object.assign(new Error(`cannot listen on ${host}:${port} (${variable}): ${err.message}`), { code: err.code ?? 'listen_failed' }));
      };
      srv.once('error', onError);
      srv.listen(port, host, () => {
        srv.off('error', onError);
        resolve((srv.address() as AddressInfo).port);
      });
    });

  const closeServer = (srv: Server): Promise<void> =>
    new Promise((resolve) => {
      if (!srv.listening) return resolve();
      srv.close(() => resolve());
      srv.closeAllConnections();
    });

  return {
    config,
    hub,
    backplane,
    metrics,
    server,
    internalServer,
    admission,
    logger,
    health,
    loadBalancerHealth,
    detail,
    isDraining: () => draining,
    async start() {
      hub.start();
      emf?.start();
      backplane.start().catch((err: unknown) => logger.warn({ err }, 'backplane not ready at start-up; it keeps retrying'));
      const metricsPort = await listen(internalServer, config.metricsPort, config.metricsHost, 'RELAY_METRICS_PORT');
      const port = await listen(server, config.port, config.host, 'PORT');
      return { port, metricsPort };
    },
    async drain() {
      drainCause = 'signal';
      await startDrain();
    },
    close() {
      closing ??= (async () => {
        draining = true;
        deregistration.stop();
        await emf?.stop();
        hub.stop();
        control.stop();
        for (const socket of upgrading) socket.destroy();
        await Promise.all([closeServer(server), closeServer(internalServer)]);
        try {
          await hub.closePresence();
          await backplane.close();
        } catch (err) {
          logger.warn({ err }, 'backplane close failed');
        }
      })();
      return closing;
    },
  };
}
