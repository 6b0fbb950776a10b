import type { Server } from 'node:http';
import type { RelayMetrics } from '../metrics';
import { createHttpServer, type HttpServerOptions } from './http-server';
import { DATA_CSP, SECURITY_HEADERS, readOnlyTarget, sendJson } from './responses';

export interface InternalServerOptions extends HttpServerOptions {
  readonly metrics: RelayMetrics;
  /** The health report with everything in it (backplane error, limits), for operators inside the VPC. */
  readonly detail: () => { statusCode: number; body: unknown };
}

/**
 * The server on RELAY_METRICS_PORT: `/metrics` (Prometheus) and `/healthz/detail`. It is for the VPC only: the load
 * balancer forwards to the public port alone, and the instances' security group must admit this port only from
 * inside. Nothing here is served on the public port.
 */
export function createInternalServer(opts: InternalServerOptions): Server {
  return createHttpServer(opts, async (req, res) => {
    const target = readOnlyTarget(req, res);
    if (!target) return;
    if (target.path === '/metrics') {
      const text = await opts.metrics.registry.metrics();
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        'Content-Security-Policy': DATA_CSP,
        'Cache-Control': 'no-store',
        'Content-Type': opts.metrics.registry.contentType,
      });
      res.end(req.method === 'HEAD' ? undefined : text);
      return;
    }
    if (target.path === '/healthz/detail') {
      const d = opts.detail();
      sendJson(res, d.statusCode, d.body);
      return;
    }
    sendJson(res, 404, { error: 'not_found', message: 'this port serves /metrics and /healthz/detail only' });
  });
}
