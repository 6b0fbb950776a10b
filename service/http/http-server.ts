import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { RelayMetrics } from '../metrics';
import { sendJson, writeRawResponse } from './responses';

export interface HttpServerOptions {
  /** Time a client has to send its request headers; a silent or dripping socket gets 408 and is closed. */
  readonly headersTimeoutMs: number;
  /** Time for a whole request, and the idle time allowed on a socket between requests. */
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
  readonly metrics: RelayMetrics;
}

/**
 * How often node checks requests against the headers and request timeouts. Its default (30 s) would let a
 * half-open request live up to 30 s past its deadline.
 */
const TIMEOUT_CHECK_INTERVAL_MS = 1_000;

/**
 * An HTTP server with the relay's timeouts and its answer to requests the parser refuses (400, 408, 431),
 * each followed by closing the socket. `handle` errors are answered 500 and logged without the request target,
 * which may carry a token.
 */
export function createHttpServer(opts: HttpServerOptions, handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>): Server {
  const { logger, metrics } = opts;
  const server = createServer(
    {
      headersTimeout: opts.headersTimeoutMs,
      requestTimeout: opts.requestTimeoutMs,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
    },
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        logger.error({ err, method: req.method }, 'request failed');
        if (!res.headersSent) sendJson(res, 500, { error: 'internal', message: 'internal error; see the relay logs' }, { Connection: 'close' });
        else res.destroy();
      });
    },
  );
  // A socket idle past both deadlines (say, one that stopped reading a response) is destroyed. Later than they are,
  // so that a slow request still gets its 408 from the timeout checks first.
  server.timeout = opts.requestTimeoutMs + 2 * TIMEOUT_CHECK_INTERVAL_MS;
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // A listener here replaces node's own answer, so give the status it would have instead of hanging up
    // silently. The error is not logged whole: it carries the raw request bytes (rawPacket).
    const untouched = socket.writable && (socket as Duplex & { bytesWritten?: number }).bytesWritten === 0;
    if (!untouched) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    metrics.clientErrors.inc({ status: String(status) });
    logger.debug({ status, code: err.code }, 'client error');
    writeRawResponse(socket, status, '');
  });
  return server;
}
