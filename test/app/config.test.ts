import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseConfig } from '../../app/config';
import { DEFAULT_CONFIG_FILE, REPO_ROOT } from '../../app/paths';
import { POLICY_RULES } from '../../app/policy';
import { exampleConfig } from '../helpers/project';

const CERT = 'arn:aws:acm:eu-west-1:123456789012:certificate/0f7c8c1e-7a43-4e0e-9d9b-3f1c3d0a1b2c';
const env = (extra: Record<string, unknown> = {}) => ({ name: 'dev', region: 'eu-west-1', ...extra });
const problemsOf = (raw: unknown): string[] => {
  try {
    parseConfig(raw, 'test.json');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('invalid_config');
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
};

describe('parseConfig', () => {
  it('fills the defaults: default VPC, 2-4 t3.small, public ALB with 300 s idle timeout, single Redis, 5 releases, local backend', () => {
    const config = parseConfig({ environments: [env()] });
    expect(config.app).toBe('relay');
    expect(config.environments[0]).toEqual({
      name: 'dev',
      region: 'eu-west-1',
      instances: { types: ['t3.small'], min: 2, max: 4 },
      loadBalancer: { scheme: 'public', idleTimeoutSeconds: 300, sslPolicy: 'ELBSecurityPolicy-TLS13-1-2-2021-06' },
      redis: { topology: 'single', nodeType: 'cache.t4g.micro', engineVersion: '7.1', replicas: 0, shards: 1 },
      deploymentPolicy: 'RollingWithAdditionalBatch',
      maintenanceWindow: 'Sun:03:00',
      logRetentionDays: 30,
      retainReleases: 5,
      requireVerification: false,
      backend: { type: 'local' },
      policyWaivers: [],
      platform: '64bit Amazon Linux 2023 v6.10.0 running Node.js 22',
      relay: { tokenAuth: 'generate', apiKey: 'off', logLevel: 'info', drainWindowMs: 20_000, backplaneGraceMs: 60_000 },
      scaling: { cpuPercent: 60 },
      alarms: {},
      redisEngine: 'redis',
      redisMaintenanceWindow: 'sun:05:00-sun:06:00',
    });
  });

  it('accepts a production environment: existing VPC, HTTPS certificate, replicated Redis with one replica, S3 backend', () => {
    const config = parseConfig({
      app: 'relay',
      environments: [
        env({
          name: 'prod',
          vpc: { vpcId: 'vpc-0123456789abcdef0', instanceSubnets: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'], loadBalancerSubnets: ['subnet-0123456789abcdef2'] },
          loadBalancer: { certificateArn: CERT },
          redis: { topology: 'replicated', replicas: 1, nodeType: 'cache.r7g.large' },
          backend: { type: 's3', bucket: 'acme-tfstate' },
        }),
      ],
    });
    const prod = config.environments[0];
    expect(prod.redis).toEqual({ topology: 'replicated', nodeType: 'cache.r7g.large', engineVersion: '7.1', replicas: 1, shards: 1 });
    expect(prod.vpc?.associatePublicIpAddress).toBe(false);
    expect(prod.loadBalancer.certificateArn).toBe(CERT);
    expect(prod.backend).toEqual({ type: 's3', bucket: 'acme-tfstate' });
  });

  it('defaults replicas to 1 and shards to 2 for cluster', () => {
    expect(parseConfig({ environments: [env({ redis: { topology: 'cluster' } })] }).environments[0].redis).toMatchObject({ replicas: 1, shards: 2 });
  });

  it('fails when the topology is unknown', () => {
    expect(problemsOf({ environments: [env({ redis: { topology: 'sharded' } })] })).toEqual([
      'environments[0].redis.topology: received "sharded"; allowed: "single", "replicated" or "cluster"',
    ]);
  });

  it('fails when min instances exceed max', () => {
    expect(problemsOf({ environments: [env({ instances: { min: 5, max: 3 } })] })).toEqual([
      'environments[0].instances.min: received 5; allowed: an integer <= instances.max (3)',
    ]);
  });

  it('fails when fewer than two instances are asked for', () => {
    expect(problemsOf({ environments: [env({ instances: { min: 1, max: 3 } })] })).toEqual([
      'environments[0].instances.min: received 1; allowed: an integer >= 2 (one instance is not horizontally scaled)',
    ]);
  });

  it('fails when a subnet list is empty', () => {
    expect(problemsOf({ environments: [env({ vpc: { vpcId: 'vpc-0123456789abcdef0', instanceSubnets: [] } })] })).toEqual([
      'environments[0].vpc.instanceSubnets: received []; allowed: at least one subnet id (omit the field to use the default)',
    ]);
  });

  it('fails when a CIDR is malformed', () => {
    expect(problemsOf({ environments: [env({ loadBalancer: { allowedCidrs: ['10.0.0.0/8', '10.0.0.300/24', '10.0.0.0'] } })] })).toEqual([
      'environments[0].loadBalancer.allowedCidrs[1]: received "10.0.0.300/24"; allowed: an IPv4 CIDR like "10.0.0.0/16" or "0.0.0.0/0"',
      'environments[0].loadBalancer.allowedCidrs[2]: received "10.0.0.0"; allowed: an IPv4 CIDR like "10.0.0.0/16" or "0.0.0.0/0"',
    ]);
  });

  it('fails when replicas are set on single', () => {
    expect(problemsOf({ environments: [env({ redis: { topology: 'single', replicas: 2 } })] })).toEqual([
      'environments[0].redis.replicas: received 2; allowed: 0 or absent when topology is "single" (use "replicated" for replicas)',
    ]);
  });

  it('fails when shards are set outside cluster, or replicated has no replica', () => {
    expect(problemsOf({ environments: [env({ redis: { topology: 'replicated', replicas: 0, shards: 3 } })] })).toEqual([
      'environments[0].redis.replicas: received 0; allowed: an integer >= 1 when topology is "replicated" (automatic failover needs a replica)',
      'environments[0].redis.shards: received 3; allowed: absent unless topology is "cluster"',
    ]);
  });

  it('fails when the certificate ARN is not an ACM ARN', () => {
    expect(problemsOf({ environments: [env({ loadBalancer: { certificateArn: 'arn:aws:iam::123456789012:server-certificate/relay' } })] })).toEqual([
      'environments[0].loadBalancer.certificateArn: received "arn:aws:iam::123456789012:server-certificate/relay"; allowed: an ACM certificate ARN like "arn:aws:acm:eu-west-1:123456789012:certificate/<uuid>"',
    ]);
  });

  it('fails when an environment name is not DNS-safe', () => {
    expect(problemsOf({ environments: [env({ name: 'Prod_1' })] })).toEqual([
      'environments[0].name: received "Prod_1"; allowed: a DNS-safe name: 1-20 characters of a-z, 0-9 and "-", starting with a letter, not ending with "-"',
    ]);
  });

  it('fails when the idle timeout is not well above the 25 s ping interval', () => {
    expect(problemsOf({ environments: [env({ loadBalancer: { idleTimeoutSeconds: 25 } })] })).toEqual([
      "environments[0].loadBalancer.idleTimeoutSeconds: received 25; allowed: an integer >= 60, well above the relay's 25 s ping interval so idle sockets are never cut",
    ]);
  });

  it('fails when two environments share a name, or a field is unknown', () => {
    expect(problemsOf({ environments: [env(), env({ name: 'staging', regoin: 'eu-west-1' })] })).toEqual([
      'environments[1]: unknown field "regoin"; remove it or fix the spelling',
    ]);
    expect(problemsOf({ environments: [env(), env()] })).toEqual(['environments[1].name: received "dev"; allowed: a name no other environment uses']);
  });

  it('fails when environments are missing or empty', () => {
    expect(problemsOf({})).toEqual(['environments: received nothing; allowed: a list of environments']);
    expect(problemsOf({ environments: [] })).toEqual(['environments: received []; allowed: at least one environment']);
  });

  it('lists every problem at once, under a header naming the file', () => {
    let error: ConfigError | undefined;
    try {
      parseConfig(
        {
          environments: [
            env({ name: 'Prod!', instances: { min: 5, max: 3 }, redis: { topology: 'single', replicas: 1 } }),
            env({ name: 'staging', region: 'Europe', loadBalancer: { idleTimeoutSeconds: 10, allowedCidrs: ['1.2.3.4/40'] } }),
          ],
        },
        'relay.config.json',
      );
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error?.problems).toHaveLength(6);
    expect(error?.message.split('\n')).toEqual([
      'Invalid relay config in relay.config.json (6 problems); fix these and run synth again:',
      '  - environments[0].name: received "Prod!"; allowed: a DNS-safe name: 1-20 characters of a-z, 0-9 and "-", starting with a letter, not ending with "-"',
      '  - environments[0].instances.min: received 5; allowed: an integer <= instances.max (3)',
      '  - environments[0].redis.replicas: received 1; allowed: 0 or absent when topology is "single" (use "replicated" for replicas)',
      '  - environments[1].region: received "Europe"; allowed: an AWS region like "eu-west-1"',
      '  - environments[1].loadBalancer.allowedCidrs[0]: received "1.2.3.4/40"; allowed: an IPv4 CIDR like "10.0.0.0/16" or "0.0.0.0/0"',
      "  - environments[1].loadBalancer.idleTimeoutSeconds: received 10; allowed: an integer >= 60, well above the relay's 25 s ping interval so idle sockets are never cut",
    ]);
  });
});

describe('policyWaivers', () => {
  it('accepts a waiver of a known rule with a reason, trimmed', () => {
    const config = parseConfig({ environments: [env({ policyWaivers: [{ rule: 'imdsv1', reason: '  legacy agent until March ' }] })] });
    expect(config.environments[0].policyWaivers).toEqual([{ rule: 'imdsv1', reason: 'legacy agent until March' }]);
  });

  it('fails when the rule id is unknown, listing the known ones', () => {
    expect(problemsOf({ environments: [env({ policyWaivers: [{ rule: 'imdsv2', reason: 'x' }] })] })).toEqual([
      `environments[0].policyWaivers[0].rule: received "imdsv2"; allowed: one of the policy rule ids: ${POLICY_RULES.join(', ')}`,
    ]);
  });

  it('fails when the reason is empty or missing', () => {
    expect(problemsOf({ environments: [env({ policyWaivers: [{ rule: 'imdsv1', reason: '   ' }, { rule: 'open-ingress' }] })] })).toEqual([
      'environments[0].policyWaivers[0].reason: received ""; allowed: a non-empty reason saying why this environment may break the rule',
      'environments[0].policyWaivers[1].reason: received nothing; allowed: a string saying why this environment may break the rule',
    ]);
  });

  it('fails when a rule is waived twice, or a waiver has an unknown field', () => {
    expect(
      problemsOf({
        environments: [env({ policyWaivers: [{ rule: 'imdsv1', reason: 'a' }, { rule: 'open-ingress', reason: 'b', until: '2027' }] })],
      }),
    ).toEqual([
      'environments[0].policyWaivers[1]: unknown field "until"; remove it or fix the spelling',
    ]);
    expect(problemsOf({ environments: [env({ policyWaivers: [{ rule: 'imdsv1', reason: 'a' }, { rule: 'imdsv1', reason: 'b' }] })] })).toEqual([
      'environments[0].policyWaivers[1].rule: received "imdsv1"; allowed: a rule no other waiver of this environment names',
    ]);
  });
});

describe('loadConfig', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'relay-config-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads relay.config.json at the repository root unless given another file', () => {
    expect(DEFAULT_CONFIG_FILE).toBe(join(REPO_ROOT, 'relay.config.json'));
    const file = join(dir, 'relay.config.json');
    writeFileSync(file, JSON.stringify(exampleConfig()));
    expect(loadConfig(file).environments.map((e) => e.name)).toEqual(['dev', 'staging', 'prod']);
  });

  it('fails with the file name when the JSON is malformed', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{ "environments": [ }');
    expect(() => loadConfig(file)).toThrow(new RegExp(`^Invalid relay config in ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(1 problem\\); fix these and run synth again:\\n  - not valid JSON: `));
  });

  it('fails when the file is missing', () => {
    const file = join(dir, 'missing.json');
    expect(() => loadConfig(file)).toThrow(`  - cannot read the file (ENOENT); create it or pass another path`);
  });
});
