import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { parseRequestTarget, type RequestTarget } from './request-target';

/**
 * The demo page's policy: its own scripts and styles only (no inline code, no eval), WebSocket connections to any
 * relay (`?urls=` may name other instances), nothing may frame it.
 */
export const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self' ws: wss:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** JSON and text answers are data, never documents: nothing in them may load or run. */
export const DATA_CSP = "default-src 'none'; frame-ancestors 'none'";

/** Headers on every HTTP response the relay sends. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
};

/** Answers with a JSON body; `Cache-Control: no-store` because every such answer describes a moment. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'Content-Security-Policy': DATA_CSP,
    'Cache-Control': 'no-store',
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** How long a refused socket may take to read its answer before it is destroyed anyway. */
const REFUSAL_FLUSH_MS = 2_000;

/**
 * Answers a refused upgrade (or a request the HTTP parser rejected) on the raw socket, then destroys it: once the
 * answer is flushed, or after a short grace if the peer does not read it.
 */
/**
 * The common front of the read-only HTTP routes: the parsed target of a GET or HEAD request, or null once a 400
 * (unparseable target) or 405 (any other method) has been sent.
 */
export function readOnlyTarget(req: IncomingMessage, res: ServerResponse): RequestTarget | null {
  const target = parseRequestTarget(req.url);
  if (!target) {
    sendJson(res, 400, { error: 'bad_request', message: 'the request target is not a valid path' }, { Connection: 'close' });
    return null;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendJson(res, 405, { error: 'method_not_allowed', message: `${req.method} is not supported; use GET` }, { Allow: 'GET, HEAD' });
    return null;
  }
  return target;
}

export function writeRawResponse(socket: Duplex, status: number, body: string, headers: Record<string, string> = {}): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const lines = Object.entries({
    ...SECURITY_HEADERS,
    'Cache-Control': 'no-store',
    ...(body.length > 0 ? { 'Content-Type': 'application/json; charset=utf-8' } : {}),
    'Content-Length': String(Buffer.byteLength(body)),
    ...headers,
  }).map(([k, v]) => `${k}: ${v}\r\n`);
  const timer = setTimeout(() => socket.destroy(), REFUSAL_FLUSH_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\n${lines.join('')}\r\n${body}`);
}
