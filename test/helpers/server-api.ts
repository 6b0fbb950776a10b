import { request as httpRequest } from 'node:http';
import type { RelayProcess } from './relay-process';

/** A key accepted by RELAY_API_KEY (32+ characters). */
export const API_KEY = 'test-api-key-0123456789abcdefghijklmnop';

export interface ApiResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body (undefined when the body is not JSON). */
  readonly body: Record<string, unknown>;
  readonly text: string;
}

export interface ApiRequest {
  readonly method?: string;
  /** An object is sent as JSON; a string or Buffer as is. */
  readonly body?: unknown;
  /** @default the Authorization header with API_KEY */
  readonly headers?: Record<string, string>;
  /** Send no Authorization header. */
  readonly noAuth?: boolean;
}

/**
 * One HTTP request to a relay's server API. The response is what counts: an error writing the rest of a body the
 * relay refused (it closes the connection after a 413) is ignored once the response arrived.
 */
export function callApi(relay: RelayProcess | number, path: string, req: ApiRequest = {}): Promise<ApiResponse> {
  const port = typeof relay === 'number' ? relay : relay.port;
  const raw = req.body === undefined ? undefined : typeof req.body === 'string' || Buffer.isBuffer(req.body) ? req.body : JSON.stringify(req.body);
  const headers: Record<string, string> = {
    ...(req.noAuth ? {} : { Authorization: `Bearer ${API_KEY}` }),
    ...(raw === undefined ? {} : { 'Content-Type': 'application/json' }),
    // A chunked body (the test sets Transfer-Encoding) has no length up front.
    ...(raw === undefined || req.headers?.['Transfer-Encoding'] !== undefined ? {} : { 'Content-Length': String(Buffer.byteLength(raw)) }),
    ...req.headers,
  };
  return new Promise((resolve, reject) => {
    let answered = false;
    const r = httpRequest({ host: '127.0.0.1', port, path, method: req.method ?? (raw === undefined ? 'GET' : 'POST'), headers, agent: false }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          // Not JSON: the test looks at text.
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text });
      });
    });
    r.setTimeout(10_000, () => r.destroy(new Error(`${path}: no response within 10 s`)));
    r.on('error', (err) => {
      if (!answered) reject(err);
    });
    r.end(raw);
  });
}

/** The `error.code` of an API error body. */
export function errorCode(res: ApiResponse): unknown {
  return (res.body.error as { code?: unknown } | undefined)?.code;
}
