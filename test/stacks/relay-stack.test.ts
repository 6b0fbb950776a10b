import { readFileSync } from 'node:fs';
import { Testing } from 'cdktf';
// Importing the adapter (not only calling Testing.setupJest) brings its matcher types into scope.
import { setupJest } from 'cdktf/lib/testing/adapters/jest';
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';
import type { ApplicationRelease } from '../../stacks/artifact-store';
import { RelayStack, type RelayStackProps } from '../../stacks/relay-stack';

setupJest();

type Body = Record<string, unknown>;
interface Synth {
  terraform: { backend: Record<string, Body>; required_providers: Record<string, Body>; required_version?: string };
  resource: Record<string, Record<string, Body>>;
  output: Record<string, { value: string }>;
}
const release = (hex: string): ApplicationRelease => ({ label: `relay-0.1.0-${hex.repeat(12)}`, sha256: hex.repeat(64), md5: hex.repeat(32) });
const A = release('a');
const B = release('b');
const PLATFORM = '64bit Amazon Linux 2023 v6.10.0 running Node.js 22';

function synth(props: Partial<RelayStackProps> = {}): { json: string; s: Synth } {
  const stack = new RelayStack(Testing.app(), 'relay-dev', { app: 'relay', environment: 'dev', region: 'eu-west-1', platform: PLATFORM, releases: [A], activeRelease: A.label, ...props });
  const json = Testing.synth(stack);
  return { json, s: JSON.parse(json) as Synth };
}
const one = (s: Synth, type: string): Body => {
  const all = Object.values(s.resource[type] ?? {});
  expect(all).toHaveLength(1);
  return all[0];
};
const setting = (s: Synth, namespace: string, name: string): string | undefined =>
  (one(s, 'aws_elastic_beanstalk_environment').setting as { namespace: string; name: string; value: string }[]).find(
    (x) => x.namespace === namespace && x.name === name,
  )?.value;

describe('RelayStack', () => {
  it('writes the providers fully qualified, pinned to the versions of the generated bindings', () => {
    const { s } = synth();
    const bindings = (pkg: string) => (JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), 'utf8')) as { cdktf: { provider: { version: string } } }).cdktf.provider.version;
    expect(s.terraform.required_providers).toEqual({
      aws: { source: 'hashicorp/aws', version: bindings('@cdktf/provider-aws') },
      random: { source: 'hashicorp/random', version: bindings('@cdktf/provider-random') },
    });
    expect(s.terraform.required_providers.aws.version).toMatch(/^\d+\.\d+\.\d+$/);
    // use_lockfile: terraform or OpenTofu 1.10 and newer.
    expect(s.terraform.required_version).toBe('>= 1.10.0');
  });

  it('tags every resource with project, environment and managed-by', () => {
    const { json } = synth();
    expect(json).toHaveProviderWithProperties(AwsProvider, {
      region: 'eu-west-1',
      default_tags: [{ tags: { project: 'relay', environment: 'dev', 'managed-by': 'cdktf' } }],
    });
  });

  it('uses a local backend with a relative path by default', () => {
    expect(synth().s.terraform.backend).toEqual({ local: { path: 'terraform.relay-dev.tfstate' } });
  });

  it('uses an S3 backend with native locking when configured', () => {
    const { s } = synth({ backend: { type: 's3', bucket: 'acme-tfstate', dynamodbTable: 'tf-locks' } });
    expect(s.terraform.backend).toEqual({
      s3: {
        bucket: 'acme-tfstate',
        key: 'relay/dev/terraform.tfstate',
        region: 'eu-west-1',
        encrypt: true,
        dynamodb_table: 'tf-locks',
        use_lockfile: true,
      },
    });
  });

  it('builds REDIS_URL from the primary endpoint, or the configuration endpoint for cluster', () => {
    const replicated = synth({ redis: { topology: 'replicated', replicas: 1 } }).s;
    expect(setting(replicated, 'aws:elasticbeanstalk:application:environment', 'REDIS_URL')).toMatch(
      /^rediss:\/\/\$\{aws_elasticache_replication_group\.[^.]+\.primary_endpoint_address\}:6379$/,
    );
    expect(setting(replicated, 'aws:elasticbeanstalk:application:environment', 'REDIS_MODE')).toBe('standalone');
    const cluster = synth({ redis: { topology: 'cluster', shards: 2, replicas: 1 } }).s;
    expect(setting(cluster, 'aws:elasticbeanstalk:application:environment', 'REDIS_URL')).toMatch(
      /^rediss:\/\/\$\{aws_elasticache_replication_group\.[^.]+\.configuration_endpoint_address\}:6379$/,
    );
    expect(setting(cluster, 'aws:elasticbeanstalk:application:environment', 'REDIS_MODE')).toBe('cluster');
  });

  it('chains the pieces: the instance policy names the AUTH secret, the environment the IAM and network it needs', () => {
    const { s } = synth();
    const secretArn = setting(s, 'aws:elasticbeanstalk:application:environmentsecrets', 'REDIS_AUTH_TOKEN');
    expect(secretArn).toMatch(/^\$\{aws_secretsmanager_secret\.redis_auth-token-secret_[^.]+\.arn\}$/);
    const policyDoc = Object.values((JSON.parse(JSON.stringify(s)) as { data: Record<string, Record<string, Body>> }).data.aws_iam_policy_document).find(
      (d) => JSON.stringify(d).includes('secretsmanager:GetSecretValue'),
    ) as Body;
    expect((policyDoc.statement as { resources: string[] }[])[0].resources).toEqual([secretArn, '${aws_secretsmanager_secret.token-secret.arn}']);
    expect(setting(s, 'aws:autoscaling:launchconfiguration', 'IamInstanceProfile')).toMatch(/aws_iam_instance_profile\./);
    expect(setting(s, 'aws:elasticbeanstalk:environment', 'ServiceRole')).toMatch(/aws_iam_role\.iam_service-role_/);
    expect(setting(s, 'aws:ec2:vpc', 'Subnets')).toMatch(/^\$\{join\(",", data\.aws_subnets\./);
    expect(setting(s, 'aws:ec2:vpc', 'AssociatePublicIpAddress')).toBe('true');
  });

  it('generates the server API key in Secrets Manager and hands it to the instances only through environmentsecrets', () => {
    // GIVEN apiKey "generate" WHEN synthesized
    const { s, json } = synth({ apiKey: 'generate' });
    // THEN a secret with a random 48-character value, recoverable at once outside prod
    const secret = Object.entries(s.resource.aws_secretsmanager_secret).find(([, b]) => b.name === 'relay-dev/relay-api-key');
    expect(secret?.[1]).toMatchObject({ recovery_window_in_days: 0 });
    expect(s.resource.random_password['api-key-value']).toEqual({ length: 48, special: false });
    expect(s.resource.aws_secretsmanager_secret_version['api-key-version']).toEqual({
      secret_id: `\${aws_secretsmanager_secret.${secret?.[0]}.id}`,
      secret_string: '${random_password.api-key-value.result}',
    });
    // AND the environment reads it as RELAY_API_KEY from the secret, waits for its value, and the instances may read it
    const arn = `\${aws_secretsmanager_secret.${secret?.[0]}.arn}`;
    expect(setting(s, 'aws:elasticbeanstalk:application:environmentsecrets', 'RELAY_API_KEY')).toBe(arn);
    expect(setting(s, 'aws:elasticbeanstalk:application:environment', 'RELAY_API_KEY')).toBeUndefined();
    expect(one(s, 'aws_elastic_beanstalk_environment').depends_on).toContain('aws_secretsmanager_secret_version.api-key-version');
    expect(json).toContain(`"${arn}"`);
    const policy = Object.values((JSON.parse(json) as { data: Record<string, Record<string, Body>> }).data.aws_iam_policy_document).find((d) => JSON.stringify(d).includes('GetSecretValue'));
    expect((policy?.statement as { resources: string[] }[])[0].resources).toContain(arn);
    // AND production keeps a deleted key recoverable for 7 days
    const prod = synth({ apiKey: 'generate', protectData: true }).s;
    expect(Object.values(prod.resource.aws_secretsmanager_secret).find((b) => b.name === 'relay-dev/relay-api-key')).toMatchObject({ recovery_window_in_days: 7 });
  });

  it('uses an existing API key secret as given, and has no RELAY_API_KEY at all when the key is off', () => {
    const secretArn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:relay-dev/api-key-AbCdEf';
    const existing = synth({ apiKey: { secretArn } });
    expect(setting(existing.s, 'aws:elasticbeanstalk:application:environmentsecrets', 'RELAY_API_KEY')).toBe(secretArn);
    expect(existing.s.resource.random_password['api-key-value']).toBeUndefined();
    expect(Object.values(existing.s.resource.aws_secretsmanager_secret).map((b) => b.name)).not.toContain('relay-dev/relay-api-key');
    const off = synth();
    expect(off.json).not.toContain('RELAY_API_KEY');
    expect(off.json).not.toContain('relay-api-key');
  });

  it('uses the configured VPC and subnets as given, without public addresses', () => {
    const { s } = synth({
      vpc: {
        vpcId: 'vpc-0a1b2c3d4e5f67890',
        instanceSubnets: ['subnet-0aa11bb22cc33dd44', 'subnet-0ee55ff66aa77bb88'],
        loadBalancerSubnets: ['subnet-0cc99dd00ee11ff22'],
        redisSubnets: ['subnet-0aa33bb44cc55dd66', 'subnet-0aa33bb44cc55dd77'],
      },
    });
    expect(setting(s, 'aws:ec2:vpc', 'Subnets')).toBe('subnet-0aa11bb22cc33dd44,subnet-0ee55ff66aa77bb88');
    expect(setting(s, 'aws:ec2:vpc', 'ELBSubnets')).toBe('subnet-0cc99dd00ee11ff22');
    expect(setting(s, 'aws:ec2:vpc', 'AssociatePublicIpAddress')).toBe('false');
    expect(setting(s, 'aws:ec2:vpc', 'VPCId')).toMatch(/^\$\{data\.aws_vpc\.[^.]+\.id\}$/);
    expect(one(s, 'aws_elasticache_subnet_group').subnet_ids).toEqual(['subnet-0aa33bb44cc55dd66', 'subnet-0aa33bb44cc55dd77']);
  });
  it('declares the outputs, with wss:// when a certificate is set', () => {
    const { s } = synth({ loadBalancer: { certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0f7c8c1e-7a43-4e0e-9d9b-3f1c3d0a1b2c' } });
    expect(Object.keys(s.output).sort()).toEqual(['active_version_label', 'artifact_bucket', 'environment_name', 'redis_endpoint', 'url', 'websocket_url']);
    expect(s.output.websocket_url.value).toMatch(/^wss:\/\/\$\{aws_elastic_beanstalk_environment\.[^.]+\.cname\}\/ws$/);
    expect(s.output.url.value).toMatch(/^https:\/\//);
    expect(s.output.active_version_label.value).toMatch(/\.version_label\}$/);
    expect(synth().s.output.websocket_url.value).toMatch(/^ws:\/\//);
  });

  it('changes only the environment version_label when only the active release changes', () => {
    const onA = synth({ releases: [A, B], activeRelease: A.label }).json;
    const onB = synth({ releases: [A, B], activeRelease: B.label }).json;
    const a = onA.split('\n');
    const b = onB.split('\n');
    expect(b).toHaveLength(a.length);
    const changed = a.flatMap((line, i) => (line === b[i] ? [] : [[line.trim(), b[i].trim()]]));
    expect(changed).toHaveLength(1);
    expect(changed[0][0]).toMatch(/^"version_label": "\$\{aws_elastic_beanstalk_application_version\.artifacts_version-relay-010-a+_[^.]+\.name\}",?$/);
    expect(changed[0][1]).toMatch(/^"version_label": "\$\{aws_elastic_beanstalk_application_version\.artifacts_version-relay-010-b+_[^.]+\.name\}",?$/);
  });

  it('fails when the active release is not among the declared ones', () => {
    expect(() => synth({ releases: [A], activeRelease: B.label })).toThrow(
      `RelayStack relay-dev: the active release ${B.label} is not among the declared releases (${A.label}); declare it in releases`,
    );
  });

  it('writes no absolute path and no timestamp', () => {
    const { json } = synth();
    expect(json).not.toContain(process.cwd());
    expect(json).not.toMatch(/"\/(home|tmp|work|root|Users)\//);
    expect(json).not.toMatch(/timestamp\(|uuid\(/);
  });

  it('has no ingress from 0.0.0.0/0 except the load balancer on 80/443', () => {
    const { s } = synth({ loadBalancer: { certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0f7c8c1e-7a43-4e0e-9d9b-3f1c3d0a1b2c' } });
    const open = Object.values(s.resource.aws_vpc_security_group_ingress_rule).filter((r) => r.cidr_ipv4 === '0.0.0.0/0');
    expect(open.map((r) => [String(r.security_group_id).includes('load-balancer-sg'), r.from_port]).sort()).toEqual([
      [true, 443],
      [true, 80],
    ]);
  });
});
