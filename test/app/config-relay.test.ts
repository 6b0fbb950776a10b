/** The per-environment infrastructure fields of relay.config.json: shared relay rules, cross-field rules, stack props. */
import { parseConfig } from '../../app/config';
import { infraStackProps, overlaps } from '../../app/config-relay';

const env = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ name: 'dev', region: 'eu-west-1', ...over });
const problems = (over: Record<string, unknown>): string => {
  try {
    parseConfig({ environments: [env(over)] }, 'test.json');
    return '';
  } catch (err) {
    return (err as Error).message;
  }
};

describe('infrastructure fields', () => {
  it('validates relay settings with the relay\'s own rules', () => {
    expect(problems({ relay: { rateLimit: 0 } })).toContain('environments[0].relay.rateLimit: received 0; allowed: expected an integer from 1 to 1000000 (default 100) (the relay\'s RELAY_RATE_LIMIT)');
    expect(problems({ relay: { allowedOrigins: ['https://a.example/path'] } })).toContain('not an origin: https://a.example/path');
    expect(problems({ relay: { drainWindowMs: 700_000 } })).toContain('RELAY_DRAIN_WINDOW_MS');
  });

  it('fails when several instance types are given without spot, and accepts them with it', () => {
    expect(problems({ instances: { types: ['c7g.large', 'c6g.large'] } })).toContain('a single instance type unless "spot" is set');
    expect(problems({ instances: { types: ['c7g.large', 'c6g.large'] }, spot: {} })).toBe('');
    // SpotFleetOnDemandBase is documented as 0 to MaxSize.
    expect(problems({ instances: { types: ['c7g.large', 'c6g.large'], max: 4 }, spot: { onDemandBase: 5 } })).toContain(
      'environments[0].spot.onDemandBase: received 5; allowed: an integer <= instances.max (4): Beanstalk accepts an On-Demand base from 0 to MaxSize',
    );
    expect(problems({ instances: { types: ['c7g.large', 'c6g.large'], max: 4 }, spot: { onDemandBase: 4 } })).toBe('');
  });

  it('fails when the ElastiCache window overlaps the Beanstalk managed-update window', () => {
    expect(problems({ maintenanceWindow: 'Sun:03:00', redisMaintenanceWindow: 'sun:04:00-sun:05:00' })).toContain('does not overlap the two-hour Beanstalk managed-update window starting Sun:03:00');
    expect(overlaps('Sun:03:00', 'sun:05:00-sun:06:00')).toBe(false);
    expect(overlaps('Sat:23:30', 'sun:00:00-sun:01:00')).toBe(true);
  });

  it('takes the server API key as "generate", "off" (the default) or an existing secret, and never as a plain value', () => {
    const keyOf = (relay?: Record<string, unknown>) => infraStackProps(parseConfig({ environments: [env(relay ? { relay } : {})] }).environments[0]).apiKey;
    expect(keyOf()).toBe('off');
    expect(keyOf({ apiKey: 'generate' })).toBe('generate');
    const secretArn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:relay-prod/api-key-AbCdEf';
    expect(keyOf({ apiKey: { secretArn } })).toEqual({ secretArn });
    // The key itself in the config would land in the plan and the state in plain text.
    expect(problems({ relay: { apiKey: 'k3y-in-plain-text' } })).toContain(
      'environments[0].relay.apiKey: received "k3y-in-plain-text"; allowed: "generate", "off" or { "secretArn": "<Secrets Manager ARN>" }',
    );
    expect(problems({ relay: { apiKey: { secretArn: 'relay-prod/api-key' } } })).toContain('environments[0].relay.apiKey');
    // The relay's variables never carry it: it travels only as a secret reference.
    expect(Object.keys(infraStackProps(parseConfig({ environments: [env({ relay: { apiKey: 'generate' } })] }).environments[0]).relayEnvironment ?? {})).not.toContain('RELAY_API_KEY');
  });

  it('turns "insecure" into the waiver of the https-and-auth rule, and fails on an empty reason', () => {
    const config = parseConfig({ environments: [env({ insecure: { reason: 'sandbox' } })] });
    expect(config.environments[0].policyWaivers).toEqual([{ rule: 'https-and-auth', reason: 'sandbox' }]);
    expect(problems({ insecure: { reason: ' ' } })).toContain('environments[0].insecure.reason');
  });

  it('maps the fields to stack props: relay variables, token auth, engine, data protection only in prod', () => {
    const config = parseConfig({
      environments: [env({ relay: { logLevel: 'warn', allowedOrigins: ['https://a.example'], maxConnections: 5000 }, redisEngine: 'valkey', https: { domain: 'relay.example.com', hostedZone: 'example.com' } })],
    });
    const props = infraStackProps(config.environments[0]);
    expect(props.relayEnvironment).toEqual({
      LOG_LEVEL: 'warn',
      RELAY_DRAIN_WINDOW_MS: '20000',
      RELAY_BACKPLANE_GRACE_MS: '60000',
      RELAY_ALLOWED_ORIGINS: 'https://a.example',
      RELAY_MAX_CONNECTIONS: '5000',
      RELAY_DEFAULT_ROOM_ACCESS: 'none',
    });
    expect(props).toMatchObject({ tokenAuth: 'generate', protectData: false, redis: { engine: 'valkey', maintenanceWindow: 'sun:05:00-sun:06:00' } });
    expect(props.https).toEqual({ domain: 'relay.example.com', hostedZone: 'example.com' });
  });

  it('closes rooms to tokens without a rooms claim when token auth is on, unless the environment says otherwise', () => {
    const vars = (relay: Record<string, unknown>) =>
      infraStackProps(parseConfig({ environments: [env({ relay, insecure: { reason: 'test' } })] }).environments[0]).relayEnvironment;
    expect(vars({})?.RELAY_DEFAULT_ROOM_ACCESS).toBe('none');
    expect(vars({ defaultRoomAccess: 'all' })?.RELAY_DEFAULT_ROOM_ACCESS).toBe('all');
    expect(vars({ tokenAuth: 'off' })?.RELAY_DEFAULT_ROOM_ACCESS).toBeUndefined();
    expect(problems({ relay: { defaultRoomAccess: 'some' } })).toContain('environments[0].relay.defaultRoomAccess');
  });
});
