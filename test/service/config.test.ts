import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadServiceConfig } from '../../service/config';

function problemsOf(env: Record<string, string>): ConfigError {
  try {
    loadServiceConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected loadServiceConfig to throw a ConfigError');
}

describe('loadServiceConfig', () => {
  it('applies the documented defaults to an empty environment', () => {
    const c = loadServiceConfig({});
    expect(c).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      logLevel: 'info',
      redisUrl: undefined,
      redisMode: 'standalone',
      channelPrefix: 'relay',
      maxPayloadBytes: 65536,
      rateLimit: 100,
      rateBurst: 200,
      rateLimitMaxRejects: 200,
      maxRooms: 100,
      sendBufferBytes: 1048576,
      pingIntervalMs: 25000,
      allowedOrigins: null,
      tokenSecret: undefined,
      drainWindowMs: 5000,
      shutdownTimeoutMs: 15000,
      tokenAudience: undefined,
      tokenIssuer: undefined,
      metricsPort: 9080,
      metricsHost: '0.0.0.0',
      maxConnections: 10000,
      maxConnectionsPerAddress: 256,
      connectRatePerAddress: 10,
      connectBurstPerAddress: 50,
      trustedProxies: null,
      headersTimeoutMs: 10000,
      requestTimeoutMs: 15000,
    });
    // Random, never the host name (on EC2 it spells the private IP) and different for every start.
    expect(c.instanceId).toMatch(/^relay-[0-9a-f]{16}$/);
    expect(c.instanceId).not.toContain(hostname());
    expect(loadServiceConfig({}).instanceId).not.toBe(c.instanceId);
  });

  it('puts the metrics port 1000 above PORT, on HOST, unless set', () => {
    expect(loadServiceConfig({ PORT: '8081', HOST: '127.0.0.1' })).toMatchObject({ metricsPort: 9081, metricsHost: '127.0.0.1' });
    expect(loadServiceConfig({ PORT: '0' })).toMatchObject({ metricsPort: 0 });
    expect(loadServiceConfig({ PORT: '8080', RELAY_METRICS_PORT: '9100', RELAY_METRICS_HOST: '10.0.0.5' })).toMatchObject({
      metricsPort: 9100,
      metricsHost: '10.0.0.5',
    });
    expect(() => loadServiceConfig({ PORT: '65000' })).toThrow('RELAY_METRICS_PORT=(unset): required when PORT is above 64535 (PORT is 65000)');
    expect(() => loadServiceConfig({ PORT: '9000', RELAY_METRICS_PORT: '9000' })).toThrow(
      'RELAY_METRICS_PORT="9000": expected a port other than PORT (9000)',
    );
  });

  it('never shows a secret in its message: the token secret and AUTH token are hidden, the Redis URL redacted', () => {
    const err = problemsOf({ RELAY_TOKEN_SECRET: 'short-secret', REDIS_URL: 'http://:pa@ss@cache:6379', RELAY_MAX_ROOMS: '0' });
    expect(err.message).toContain('RELAY_TOKEN_SECRET="***": expected a secret of at least 16 characters');
    expect(err.message).toContain('REDIS_URL="http://:***@cache:6379": expected a redis:// or rediss:// URL');
    expect(err.message).not.toContain('short-secret');
    expect(err.message).not.toContain('pa@ss');
    expect(JSON.stringify(err.problems)).not.toMatch(/short-secret|pa@ss/);
  });

  it('reads every variable', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-config-'));
    const ca = join(dir, 'ca.pem');
    writeFileSync(ca, 'not checked here');
    try {
      const c = loadServiceConfig({
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'silent',
        REDIS_URL: 'rediss://:secret@cache.example.com:6379',
        REDIS_MODE: 'cluster',
        REDIS_AUTH_TOKEN: 'tok',
        REDIS_TLS_CA_FILE: ca,
        RELAY_CHANNEL_PREFIX: 'app-dev',
        RELAY_INSTANCE_ID: 'i-123',
        RELAY_MAX_PAYLOAD_BYTES: '1024',
        RELAY_RATE_LIMIT: '5',
        RELAY_RATE_BURST: '6',
        RELAY_RATE_LIMIT_MAX_REJECTS: '7',
        RELAY_MAX_ROOMS: '8',
        RELAY_SEND_BUFFER_BYTES: '4096',
        RELAY_PING_INTERVAL_MS: '1000',
        RELAY_ALLOWED_ORIGINS: 'https://a.example.com, http://localhost:3000',
        RELAY_TOKEN_SECRET: 'a-secret-of-16-chars',
        RELAY_DRAIN_WINDOW_MS: '100',
        RELAY_SHUTDOWN_TIMEOUT_MS: '200',
        RELAY_TOKEN_AUDIENCE: 'relay, relay-staging',
        RELAY_TOKEN_ISSUER: 'https://auth.example.com',
        RELAY_METRICS_PORT: '9200',
        RELAY_METRICS_HOST: '10.0.0.7',
        RELAY_MAX_CONNECTIONS: '500',
        RELAY_MAX_CONNECTIONS_PER_ADDRESS: '0',
        RELAY_CONNECT_RATE_PER_ADDRESS: '3',
        RELAY_CONNECT_BURST_PER_ADDRESS: '4',
        RELAY_TRUSTED_PROXY: '10.0.0.0/16, 2600:1f18::/56,192.0.2.10',
        RELAY_HEADERS_TIMEOUT_MS: '2000',
        RELAY_REQUEST_TIMEOUT_MS: '3000',
      });
      expect(c).toMatchObject({
        port: 0,
        host: '127.0.0.1',
        logLevel: 'silent',
        redisUrl: 'rediss://:secret@cache.example.com:6379',
        redisMode: 'cluster',
        redisAuthToken: 'tok',
        redisTlsCaFile: ca,
        channelPrefix: 'app-dev',
        instanceId: 'i-123',
        maxPayloadBytes: 1024,
        rateLimit: 5,
        rateBurst: 6,
        rateLimitMaxRejects: 7,
        maxRooms: 8,
        sendBufferBytes: 4096,
        pingIntervalMs: 1000,
        allowedOrigins: ['https://a.example.com', 'http://localhost:3000'],
        tokenSecret: 'a-secret-of-16-chars',
        drainWindowMs: 100,
        shutdownTimeoutMs: 200,
        tokenAudience: ['relay', 'relay-staging'],
        tokenIssuer: ['https://auth.example.com'],
        metricsPort: 9200,
        metricsHost: '10.0.0.7',
        maxConnections: 500,
        maxConnectionsPerAddress: 0,
        connectRatePerAddress: 3,
        connectBurstPerAddress: 4,
        trustedProxies: ['10.0.0.0/16', '2600:1f18::/56', '192.0.2.10'],
        headersTimeoutMs: 2000,
        requestTimeoutMs: 3000,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('treats empty strings as unset', () => {
    expect(loadServiceConfig({ PORT: '', REDIS_URL: ' ' })).toMatchObject({ port: 8080, redisUrl: undefined });
  });

  it('fails listing every problem with the variable, the value and what is allowed', () => {
    const err = problemsOf({
      PORT: 'eighty',
      LOG_LEVEL: 'loud',
      REDIS_URL: 'http://cache:6379',
      REDIS_MODE: 'sharded',
      REDIS_TLS_CA_FILE: '/nonexistent/ca.pem',
      RELAY_CHANNEL_PREFIX: 'my app',
      RELAY_INSTANCE_ID: 'has space',
      RELAY_MAX_ROOMS: '0',
      RELAY_RATE_LIMIT: '-1',
      RELAY_ALLOWED_ORIGINS: 'https://ok.example.com,https://bad.example.com/path',
      RELAY_TOKEN_SECRET: 'short',
      RELAY_DRAIN_WINDOW_MS: '20000',
    });
    expect(err.code).toBe('invalid_config');
    expect(err.problems.map((p) => p.variable).sort()).toEqual(
      [
        'LOG_LEVEL',
        'PORT',
        'REDIS_MODE',
        'REDIS_TLS_CA_FILE',
        'REDIS_URL',
        'RELAY_ALLOWED_ORIGINS',
        'RELAY_CHANNEL_PREFIX',
        'RELAY_INSTANCE_ID',
        'RELAY_MAX_ROOMS',
        'RELAY_RATE_LIMIT',
        'RELAY_SHUTDOWN_TIMEOUT_MS',
        'RELAY_TOKEN_SECRET',
      ].sort(),
    );
    expect(err.message).toMatch(/^invalid relay configuration \(12 problems\); fix these environment variables:/);
    expect(err.message).toContain('PORT="eighty": expected an integer from 0 to 65535 (default 8080)');
    expect(err.message).toContain('LOG_LEVEL="loud": expected one of fatal, error, warn, info, debug, trace, silent (default info)');
    expect(err.message).toContain('REDIS_URL="http://cache:6379": expected a redis:// or rediss:// URL');
    expect(err.message).toContain('REDIS_MODE="sharded": expected one of standalone, cluster (default standalone)');
    expect(err.message).toContain('REDIS_TLS_CA_FILE="/nonexistent/ca.pem": expected the path of an existing, readable PEM file');
    expect(err.message).toContain('RELAY_CHANNEL_PREFIX="my app": expected 1-64 characters of A-Z a-z 0-9 : _ . -');
    expect(err.message).toContain('RELAY_INSTANCE_ID="has space": expected 1-128 characters of A-Z a-z 0-9 : _ . - and no spaces');
    expect(err.message).toContain('RELAY_MAX_ROOMS="0": expected an integer from 1 to 100000 (default 100)');
    expect(err.message).toContain('RELAY_RATE_LIMIT="-1": expected an integer from 1 to 1000000 (default 100)');
    expect(err.message).toContain('not an origin: https://bad.example.com/path');
    expect(err.message).toContain('RELAY_TOKEN_SECRET="***": expected a secret of at least 16 characters');
    expect(err.message).toContain(
      'RELAY_SHUTDOWN_TIMEOUT_MS=(unset): expected more than RELAY_DRAIN_WINDOW_MS (20000 ms) so clients can be drained before the deadline',
    );
  });

  it('fails on bad connection limits, proxies and timeouts, naming each', () => {
    const err = problemsOf({
      RELAY_MAX_CONNECTIONS: '0',
      RELAY_MAX_CONNECTIONS_PER_ADDRESS: '-1',
      RELAY_CONNECT_BURST_PER_ADDRESS: '0',
      RELAY_TRUSTED_PROXY: '10.0.0.0/16,10.0.0.0/33,alb.internal',
      RELAY_HEADERS_TIMEOUT_MS: '20000',
      RELAY_REQUEST_TIMEOUT_MS: '5000',
      RELAY_METRICS_PORT: '70000',
    });
    expect(err.problems.map((p) => p.variable).sort()).toEqual([
      'RELAY_CONNECT_BURST_PER_ADDRESS',
      'RELAY_MAX_CONNECTIONS',
      'RELAY_MAX_CONNECTIONS_PER_ADDRESS',
      'RELAY_METRICS_PORT',
      'RELAY_REQUEST_TIMEOUT_MS',
      'RELAY_TRUSTED_PROXY',
    ]);
    expect(err.message).toContain('RELAY_MAX_CONNECTIONS="0": expected an integer from 1 to 1000000 (default 10000)');
    expect(err.message).toContain('RELAY_MAX_CONNECTIONS_PER_ADDRESS="-1": expected an integer from 0 to 1000000 (default 256)');
    expect(err.message).toContain('RELAY_CONNECT_BURST_PER_ADDRESS="0": expected an integer from 1 to 1000000 (default 50)');
    expect(err.message).toContain(
      'RELAY_TRUSTED_PROXY="10.0.0.0/16,10.0.0.0/33,alb.internal": expected a comma-separated list of IP addresses or CIDR blocks ' +
        'of the load balancer, such as 10.0.0.0/16 (unset = trust no proxy); not valid: 10.0.0.0/33, alb.internal',
    );
    expect(err.message).toContain(
      'RELAY_REQUEST_TIMEOUT_MS="5000": expected at least RELAY_HEADERS_TIMEOUT_MS (20000 ms): the headers are part of the request',
    );
    expect(err.message).toContain('RELAY_METRICS_PORT="70000": expected an integer from 0 to 65535 (default PORT + 1000, or 0 when PORT is 0)');
  });

  it('fails when REDIS_MODE=cluster has no REDIS_URL', () => {
    expect(() => loadServiceConfig({ REDIS_MODE: 'cluster' })).toThrow(/REDIS_URL=\(unset\): required when REDIS_MODE=cluster/);
  });
});
