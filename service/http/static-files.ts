import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join } from 'node:path';
import { PAGE_CSP, SECURITY_HEADERS } from './responses';

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

/**
 * Serves `path` from `dir` when it names a file there; false when it does not (the caller answers 404).
 * The files keep their names across deploys (no content hash in them), so browsers must revalidate every time:
 * `no-cache` with an ETag, answered 304 when unchanged.
 */
export async function servePublicFile(dir: string, path: string, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const name = await findPublicFile(dir, path === '/' ? 'index.html' : path.slice(1));
  if (!name) return false;
  const body = await readFile(join(dir, name));
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  const headers = {
    ...SECURITY_HEADERS,
    'Content-Security-Policy': PAGE_CSP,
    'Cache-Control': 'no-cache',
    ETag: etag,
  };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers);
    res.end();
    return true;
  }
  res.writeHead(200, {
    ...headers,
    'Content-Type': CONTENT_TYPES[extname(name).toLowerCase()] ?? 'application/octet-stream',
    'Content-Length': body.length,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
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
