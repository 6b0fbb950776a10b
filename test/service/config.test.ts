import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
    });
    expect(c.instanceId).toMatch(/^[A-Za-z0-9:_.-]+-\d+-[0-9a-f]{4}$/);
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
    expect(err.message).toContain('RELAY_TOKEN_SECRET="short": expected a secret of at least 16 characters');
    expect(err.message).toContain(
      'RELAY_SHUTDOWN_TIMEOUT_MS=(unset): expected more than RELAY_DRAIN_WINDOW_MS (20000 ms) so clients can be drained before the deadline',
    );
  });

  it('fails when REDIS_MODE=cluster has no REDIS_URL', () => {
    expect(() => loadServiceConfig({ REDIS_MODE: 'cluster' })).toThrow(/REDIS_URL=\(unset\): required when REDIS_MODE=cluster/);
  });
});
