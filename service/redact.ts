/** What replaces a secret in anything the relay writes. */
export const REDACTED = '***';

/**
 * A URL safe to log or show: its password (or, without one, its user name, which some clients use as the password)
 * replaced by `***`, the rest exactly as written. The WHATWG URL parser decides whether there are credentials, and
 * they are cut where it finds them: up to the last `@` of the authority, so `redis://:pa@ss@host` loses all of
 * `pa@ss`. A string it cannot parse loses everything between the scheme and its last `@`.
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return redactUnparsed(url);
  }
  if (parsed.username === '' && parsed.password === '') return url;
  const start = url.indexOf('//') + 2;
  const rest = url.slice(start).search(/[/?#\\]/);
  const at = url.lastIndexOf('@', rest === -1 ? url.length : start + rest);
  if (start < 2 || at < start) return redactUnparsed(url);
  const colon = url.indexOf(':', start);
  const user = parsed.password !== '' && colon !== -1 && colon < at ? `${url.slice(start, colon)}:` : '';
  return `${url.slice(0, start)}${user}${REDACTED}${url.slice(at)}`;
}

function redactUnparsed(url: string): string {
  const at = url.lastIndexOf('@');
  if (at === -1) return url;
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(url);
  const start = scheme ? scheme[0].length : 0;
  const colon = url.indexOf(':', start);
  const user = colon !== -1 && colon < at ? `${url.slice(start, colon)}:` : '';
  return `${url.slice(0, start)}${user}${REDACTED}${url.slice(at)}`;
}
