/** The edge's pure parts, without sockets: request targets, client addresses behind proxies, admission limits. */
import { AdmissionControl, type AdmissionLimits } from '../../service/http/admission';
import { TrustedProxies, normaliseAddress, parseCidr, resolveClientAddress } from '../../service/http/client-address';
import { parseRequestTarget } from '../../service/http/request-target';

describe('parseRequestTarget', () => {
  it('reads origin-form literally, never as a URL with a host', () => {
    expect(parseRequestTarget('/ws?token=a.b.c&x=1')).toEqual({ path: '/ws', query: new URLSearchParams('token=a.b.c&x=1') });
    expect(parseRequestTarget('//x:99999/ws')?.path).toBe('//x:99999/ws');
    expect(parseRequestTarget('/%2E%2E/package.json')?.path).toBe('/%2E%2E/package.json');
    expect(parseRequestTarget('/')?.query.toString()).toBe('');
  });

  it('keeps the path and query of absolute-form targets', () => {
    expect(parseRequestTarget('http://relay.example.com/ws?token=t')).toEqual({ path: '/ws', query: new URLSearchParams('token=t') });
  });

  it.each([undefined, '', '//[', 'http://[', 'http://x:99999/ws', '*', 'relay.example.com:443', 'ws', '/ws#x', '/a b', '/\u00e9', 'ftp://x/ws'])(
    'refuses %j without throwing',
    (raw) => {
      expect(parseRequestTarget(raw)).toBeNull();
    },
  );
});

describe('client addresses', () => {
  const alb = new TrustedProxies(['10.0.0.0/16', '2600:1f18::/56']);

  it('parses addresses and CIDR blocks, and nothing else', () => {
    expect(parseCidr('10.0.0.0/16')).toEqual({ network: '10.0.0.0', prefix: 16, family: 'ipv4' });
    expect(parseCidr('192.0.2.1')).toEqual({ network: '192.0.2.1', prefix: 32, family: 'ipv4' });
    expect(parseCidr('2600:1F18::/56')).toEqual({ network: '2600:1f18::', prefix: 56, family: 'ipv6' });
    for (const bad of ['10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/', 'alb.internal', '::/129', '10.0.0.256', '10.0.0.0/1e1']) {
      expect([bad, parseCidr(bad)]).toEqual([bad, null]);
    }
  });

  it('normalises IPv4-mapped IPv6, zone ids and IPv6 spelling', () => {
    expect(normaliseAddress('::ffff:203.0.113.9')).toBe('203.0.113.9');
    expect(normaliseAddress('::FFFF:cb00:7109')).toBe('203.0.113.9');
    expect(normaliseAddress('2001:DB8:0:0:1::1')).toBe('2001:db8::1:0:0:1');
    expect(normaliseAddress('[2001:db8::1]')).toBe('2001:db8::1');
    expect(normaliseAddress('fe80::1%eth0')).toBe('fe80::1');
    expect(normaliseAddress('unknown')).toBeNull();
    // Ports, as an ALB writes them with routing.http.xff_client_port.enabled.
    expect(normaliseAddress('203.0.113.9:4711')).toBe('203.0.113.9');
    expect(normaliseAddress('[2001:db8::1]:4711')).toBe('2001:db8::1');
    expect(normaliseAddress('203.0.113.9:')).toBeNull();
  });

  it('uses the peer when it is not a trusted proxy, whatever X-Forwarded-For says', () => {
    expect(resolveClientAddress('203.0.113.5', '1.2.3.4', alb)).toEqual({ address: '203.0.113.5', key: '203.0.113.5' });
    expect(resolveClientAddress('203.0.113.5', '1.2.3.4', null).address).toBe('203.0.113.5');
  });

  it('takes the right-most untrusted hop behind the load balancer', () => {
    expect(resolveClientAddress('10.0.1.20', '203.0.113.9', alb).address).toBe('203.0.113.9');
    expect(resolveClientAddress('::ffff:10.0.1.20', '6.6.6.6, 203.0.113.9', alb).address).toBe('203.0.113.9');
    expect(resolveClientAddress('10.0.1.20', ['6.6.6.6', '203.0.113.9, 10.0.2.2'], alb).address).toBe('203.0.113.9');
    // Garbage stops the walk at the last hop a trusted proxy vouched for.
    expect(resolveClientAddress('10.0.1.20', '203.0.113.9, not-an-ip, 10.0.3.3', alb).address).toBe('10.0.3.3');
    // Every hop trusted: the left-most is the client (a caller inside the VPC); no header: the peer.
    expect(resolveClientAddress('10.0.1.20', '10.0.9.9, 10.0.3.3', alb).address).toBe('10.0.9.9');
    expect(resolveClientAddress('10.0.1.20', undefined, alb).address).toBe('10.0.1.20');
  });

  it('counts IPv6 clients by their /64', () => {
    expect(resolveClientAddress('2001:db8:a:b:1:2:3:4', undefined, null)).toEqual({ address: '2001:db8:a:b:1:2:3:4', key: '2001:db8:a:b::/64' });
    expect(resolveClientAddress('2001:db8::1', undefined, null).key).toBe('2001:db8:0:0::/64');
    expect(resolveClientAddress('2600:1f18::5', '2001:db8:a:b::9', alb).key).toBe('2001:db8:a:b::/64');
  });
});

describe('AdmissionControl', () => {
  const limits = (over: Partial<AdmissionLimits> = {}): AdmissionLimits => ({
    maxConnections: 1000,
    maxPerAddress: 0,
    connectRatePerAddress: 0,
    connectBurstPerAddress: 1,
    ...over,
  });

  it('admits up to maxConnections, then refuses with 503 until one is released', () => {
    const a = new AdmissionControl(limits({ maxConnections: 2 }));
    expect([a.admit('a'), a.admit('b'), a.count]).toEqual([null, null, 2]);
    expect(a.admit('c')).toMatchObject({ status: 503, error: 'full' });
    expect(a.atCapacity).toBe(true);
    a.release('a');
    expect(a.count).toBe(1);
    expect(a.atCapacity).toBe(false);
    expect(a.admit('c')).toBeNull();
  });

  it('refills an address bucket at the configured rate and forgets idle addresses', () => {
    let now = 0;
    const a = new AdmissionControl(limits({ connectRatePerAddress: 2, connectBurstPerAddress: 2 }), () => now);
    for (let i = 0; i < 2; i++) {
      expect(a.admit('x')).toBeNull();
      a.release('x');
    }
    expect(a.admit('x')).toEqual({
      status: 429,
      error: 'connect_rate_limited',
      message: 'too many new connections from your address (RELAY_CONNECT_RATE_PER_ADDRESS is 2/s); retry later',
      retryAfterSeconds: 1,
    });
    expect(a.admit('y')).toBeNull();
    now = 500;
    expect(a.admit('x')).toBeNull();
    expect(a.admit('x')).toMatchObject({ status: 429 });
    expect(a.trackedAddresses).toBe(2);
    // Still connected: kept however long it idles. No connection and a full bucket: forgotten.
    a.release('x');
    now = 60_000;
    a.admit('z');
    expect(a.trackedAddresses).toBe(2);
    a.release('y');
    now = 120_000;
    a.admit('z');
    expect(a.trackedAddresses).toBe(1);
  });

  it('keeps no per-address state when both per-address limits are off', () => {
    const a = new AdmissionControl(limits());
    for (let i = 0; i < 100; i++) a.admit(`10.0.0.${i}`);
    expect(a.trackedAddresses).toBe(0);
    expect(a.count).toBe(100);
  });
});
