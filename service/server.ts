import { readFile, readdir } from 'node:fs/promises';
import { STATUS_CODES, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { extname, join } from 'node:path';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { verifyHs256Token } from './auth';
import { createBackplane } from './backplane';
import type { Backplane, BackplaneStatus } from './backplane/types';
import type { ServiceConfig } from './config';
import { Hub } from './hub';
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

export interface HealthReport {
  readonly status: 'ok' | 'degraded' | 'draining';
  readonly instanceId: string;
  readonly connections: number;
  readonly rooms: number;
  readonly backplane: BackplaneStatus;
}

/** A relay instance: HTTP server, WebSocket upgrade, hub and backplane. */
export interface Relay {
  readonly config: ServiceConfig;
  readonly hub: Hub;
  readonly backplane: Backplane;
  readonly metrics: RelayMetrics;
  readonly server: Server;
  readonly logger: Logger;
  /** Listens and starts the backplane (a backplane that cannot connect yet keeps retrying; health says 503 meanwhile). */
  start(): Promise<{ port: number }>;
  /** Refuses new upgrades, turns health to 503 and closes clients with 1001 over the drain window. */
  drain(): Promise<void>;
  /** Terminates what is left, closes the backplane and the server. Idempotent. */
  close(): Promise<void>;
  isDraining(): boolean;
  health(): { statusCode: number; body: HealthReport };
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

export function createRelay(config: ServiceConfig, opts: RelayOptions = {}): Relay {
  const logger = opts.logger ?? createLogger(config.logLevel, { instanceId: config.instanceId });
  const backplane = opts.backplane ?? createBackplane(config, logger);
  const publicDir = opts.publicDir ?? join(__dirname, 'public');
  // The gauges read the hub only when scraped, after it exists.
  const metrics: RelayMetrics = new RelayMetrics({ connections: () => hub.connectionCount, rooms: () => hub.roomCount });
  const hub: Hub = new Hub({ config, backplane, metrics, logger, closeGraceMs: opts.closeGraceMs });
  const wss = new WebSocketServer({ noServer: true, maxPayload: config.maxPayloadBytes, perMessageDeflate: false, clientTracking: false });
  let draining = false;
  let closing: Promise<void> | undefined;

  backplane.onStateChange((s) => logger.info({ backplane: s }, 'backplane state changed'));

  const health = (): { statusCode: number; body: HealthReport } => {
    const bp = backplane.status();
    const status = draining ? 'draining' : bp.state === 'ready' ? 'ok' : 'degraded';
    return {
      statusCode: status === 'ok' ? 200 : 503,
      body: { status, instanceId: config.instanceId, connections: hub.connectionCount, rooms: hub.roomCount, backplane: bp },
    };
  };

  const server = createServer((req, res) => {
    handleRequest(req, res).catch((err: unknown) => {
      logger.error({ err, url: req.url }, 'request failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal', message: 'internal error; see the relay logs' });
      else res.destroy();
    });
  });

  async function handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://relay.invalid').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      sendJson(res, 405, { error: 'method_not_allowed', message: `${req.method} is not supported; use GET` });
      return;
    }
    if (path === '/healthz') {
      const h = health();
      res.setHeader('Cache-Control', 'no-store');
      sendJson(res, h.statusCode, h.body);
      return;
    }
    if (path === '/metrics') {
      const text = await metrics.registry.metrics();
      res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
      res.end(text);
      return;
    }
    if (path === '/ws') {
      res.setHeader('Upgrade', 'websocket');
      sendJson(res, 426, { error: 'upgrade_required', message: '/ws speaks WebSocket only; connect with a WebSocket client' });
      return;
    }
    const file = await findPublicFile(publicDir, path === '/' ? 'index.html' : path.slice(1));
    if (!file) {
      sendJson(res, 404, { error: 'not_found', message: `no such path: ${path}` });
      return;
    }
    const body = await readFile(join(publicDir, file));
    res.writeHead(200, {
      'Content-Type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'Content-Length': body.length,
      'X-Content-Type-Options': 'nosniff',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', (err) => logger.debug({ err }, 'upgrade socket error'));
    const url = new URL(req.url ?? '/', 'http://relay.invalid');
    if (url.pathname !== '/ws') {
      return refuse(socket, 404, 'not_found', `no WebSocket endpoint at ${url.pathname}; connect to /ws`);
    }
    if (draining) {
      return refuse(socket, 503, 'draining', 'this instance is shutting down; reconnect to another instance');
    }
    const origin = req.headers.origin;
    if (config.allowedOrigins && (!origin || !config.allowedOrigins.includes(origin))) {
      return refuse(socket, 403, 'forbidden_origin', `origin ${origin === undefined ? '(none)' : JSON.stringify(origin)} is not in RELAY_ALLOWED_ORIGINS`);
    }
    if (config.tokenSecret) {
      const check = verifyHs256Token(url.searchParams.get('token'), config.tokenSecret);
      if (!check.ok) return refuse(socket, 401, 'unauthorized', check.reason);
    }
    // Read before the callback: a closure over `req` would share its scope with the socket's error listener
    // and keep the whole upgrade request alive for as long as the connection lasts.
    const remoteAddress = req.socket.remoteAddress;
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (draining) {
        ws.close(1001, 'server shutting down');
        return;
      }
      hub.add(ws, { remoteAddress });
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    logger.debug({ err }, 'client error');
    // A listener here replaces node's own answer, so give the status it would have (431 for oversized headers)
    // instead of hanging up silently; a client that gets no status cannot tell what it did wrong.
    const untouched = socket.writable && (socket as Duplex & { bytesWritten?: number }).bytesWritten === 0;
    if (!untouched) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    socket.once('finish', () => socket.destroy());
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });

  return {
    config,
    hub,
    backplane,
    metrics,
    server,
    logger,
    health,
    isDraining: () => draining,
    async start() {
      hub.start();
      backplane.start().catch((err: unknown) => logger.warn({ err }, 'backplane not ready at start-up; it keeps retrying'));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      return { port: (server.address() as AddressInfo).port };
    },
    async drain() {
      draining = true;
      logger.info({ connections: hub.connectionCount, windowMs: config.drainWindowMs }, 'draining');
      await hub.drain(config.drainWindowMs);
    },
    close() {
      closing ??= (async () => {
        draining = true;
        hub.stop();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        try {
          await backplane.close();
        } catch (err) {
          logger.warn({ err }, 'backplane close failed');
        }
      })();
      return closing;
    },
  };
}

/** Only plain names that exist in the folder are served, so no path can escape it. */
async function findPublicFile(dir: string, name: string): Promise<string | null> {
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name)) return null;
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    return entries.some((e) => e.isFile() && e.name === name) ? name : null;
  } catch {
    return null;
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Answers a refused upgrade with a real HTTP response, then closes the socket once it is written. */
function refuse(socket: Duplex, status: number, error: string, message: string): void {
  const body = JSON.stringify({ error, message });
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
      'Connection: close\r\n' +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
