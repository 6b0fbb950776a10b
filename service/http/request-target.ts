/** A request target the relay understands: the path exactly as sent, and the decoded query. */
export interface RequestTarget {
  /** The path, not decoded or normalised: `/ws`, `/healthz`, `/demo.js`. */
  readonly path: string;
  readonly query: URLSearchParams;
}

/** RFC 3986 path characters (pchar and '/'); anything else in a path is refused rather than interpreted. */
const PATH_RE = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/;

/**
 * Parses a raw request target once, without throwing. Origin-form (`/path?query`) is read literally: `//x:99999/ws`
 * is a path that begins with two slashes, not a host, because resolving it against a base URL would turn part of
 * it into an authority (and throw on the bad port). Absolute-form (`http://host/path`), which HTTP/1.1 servers
 * must accept, keeps only its path and query. Everything else (asterisk-form, authority-form, garbage) is null.
 */
export function parseRequestTarget(raw: string | undefined): RequestTarget | null {
  if (raw === undefined || raw.length === 0) return null;
  if (raw.startsWith('/')) {
    const q = raw.indexOf('?');
    const path = q === -1 ? raw : raw.slice(0, q);
    if (!PATH_RE.test(path)) return null;
    return { path, query: new URLSearchParams(q === -1 ? '' : raw.slice(q + 1)) };
  }
  if (!/^https?:\/\//i.test(raw)) return null;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  return PATH_RE.test(url.pathname) ? { path: url.pathname, query: url.searchParams } : null;
}
