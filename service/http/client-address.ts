import { BlockList, isIP } from 'node:net';

/** Where a connection comes from, as far as the relay can trust it. */
export interface ClientAddress {
  /** The client's IP address: the peer, or the right-most untrusted X-Forwarded-For hop behind a trusted proxy. */
  readonly address: string;
  /** What per-address limits count by: the IPv4 address, or the /64 of an IPv6 address (one host's usual share). */
  readonly key: string;
}

/** Parsed RELAY_TRUSTED_PROXY: the peers whose X-Forwarded-For header is believed. */
export class TrustedProxies {
  private readonly list = new BlockList();

  /** @param cidrs entries such as `10.0.0.0/16`, `2600:1f18::/56` or a single address */
  constructor(readonly cidrs: readonly string[]) {
    for (const entry of cidrs) {
      const parsed = parseCidr(entry);
      if (!parsed) throw new Error(`not an IP address or CIDR block: ${entry}`);
      this.list.addSubnet(parsed.network, parsed.prefix, parsed.family);
    }
  }

  has(address: string): boolean {
    const family = isIP(address);
    return family !== 0 && this.list.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }
}

/** An IP address or CIDR block, or null when `entry` is neither. */
export function parseCidr(entry: string): { network: string; prefix: number; family: 'ipv4' | 'ipv6' } | null {
  const slash = entry.indexOf('/');
  const network = normaliseAddress(slash === -1 ? entry : entry.slice(0, slash));
  const family = network === null ? 0 : isIP(network);
  if (network === null || family === 0) return null;
  const max = family === 4 ? 32 : 128;
  const prefixText = slash === -1 ? String(max) : entry.slice(slash + 1);
  const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN;
  if (!(prefix >= 0 && prefix <= max)) return null;
  return { network, prefix, family: family === 4 ? 'ipv4' : 'ipv6' };
}

/**
 * The client behind `peer`. X-Forwarded-For is read only when the peer is a trusted proxy (the load balancer): each
 * proxy appends the address it saw, so the hops are walked from the right and the first one that is not itself a
 * trusted proxy is the client. Anything left of it was written by the client and proves nothing. An entry that is
 * not an address stops the walk at the last trusted hop.
 */
export function resolveClientAddress(peer: string | undefined, forwardedFor: string | string[] | undefined, trusted: TrustedProxies | null): ClientAddress {
  let address = normaliseAddress(peer ?? '') ?? 'unknown';
  if (trusted && trusted.has(address) && forwardedFor !== undefined) {
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
    // Bounded by the header size limit (16 KiB), so at most a few thousand hops.
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = normaliseAddress(hops[i].trim());
      if (hop === null) break;
      address = hop;
      if (!trusted.has(hop)) break;
    }
  }
  return { address, key: addressKey(address) };
}

/**
 * An IP address in canonical text (IPv4-mapped IPv6 as plain IPv4, no zone id), or null. A port is dropped
 * (`203.0.113.9:4711`, `[2001:db8::1]:4711`): an ALB with `routing.http.xff_client_port.enabled` writes one.
 */
export function normaliseAddress(text: string): string | null {
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(text);
  const v4WithPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(text);
  let a = bracketed ? bracketed[1] : v4WithPort ? v4WithPort[1] : text;
  const zone = a.indexOf('%');
  if (zone !== -1) a = a.slice(0, zone);
  const family = isIP(a);
  if (family === 4) return a;
  if (family !== 6) return null;
  // The URL parser writes IPv6 hosts in their canonical (RFC 5952) form, embedded IPv4 as two hex groups.
  const canonical = new URL(`http://[${a}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (!mapped) return canonical;
  const [hi, lo] = [parseInt(mapped[1], 16), parseInt(mapped[2], 16)];
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

function addressKey(address: string): string {
  if (isIP(address) !== 6) return address;
  return `${expandIpv6(address).slice(0, 4).join(':')}::/64`;
}

/** The eight 16-bit groups of a canonical IPv6 address (no embedded IPv4), as lowercase hex without leading zeros. */
function expandIpv6(address: string): string[] {
  const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? [] : new Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...fill, ...right];
}
