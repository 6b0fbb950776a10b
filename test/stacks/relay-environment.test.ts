import { Testing } from 'cdktf';
// Importing the adapter (not only calling Testing.setupJest) brings its matcher types into scope.
import { setupJest } from 'cdktf/lib/testing/adapters/jest';
import { RelayEnvironment, type RelayEnvironmentProps } from '../../stacks/relay-environment';

setupJest();

type Body = Record<string, unknown>;
interface Setting {
  namespace: string;
  name: string;
  value: string;
}
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:relay-dev/redis-auth-token-AbCdEf';
const CERT = 'arn:aws:acm:eu-west-1:123456789012:certificate/0f7c8c1e-7a43-4e0e-9d9b-3f1c3d0a1b2c';
const BASE: RelayEnvironmentProps = {
  name: 'relay-dev',
  applicationName: 'relay-dev',
  versionLabel: 'relay-0.1.0-aaaaaaaaaaaa',
  serviceRoleArn: 'arn:aws:iam::123456789012:role/relay-dev-eb-service',
  instanceProfileName: 'relay-dev-eb-instance',
  vpcId: 'vpc-0123456789abcdef0',
  instanceSubnets: 'subnet-0123456789abcdef0,subnet-0123456789abcdef1',
  loadBalancerSubnets: 'subnet-0123456789abcdef2',
  loadBalancerSecurityGroupId: 'sg-00000000000000001',
  instanceSecurityGroupId: 'sg-00000000000000002',
  redisUrl: 'rediss://master.relay-dev.abc123.euw1.cache.amazonaws.com:6379',
  redisMode: 'standalone',
  redisAuthTokenSecretArn: SECRET_ARN,
  channelPrefix: 'relay-dev',
  solutionStackName: '64bit Amazon Linux 2023 v6.10.0 running Node.js 22',
  vpcCidr: '10.0.0.0/16',
};

function synth(props: Partial<RelayEnvironmentProps> = {}): { json: string; env: Body; settings: Setting[]; relay: RelayEnvironment } {
  let relay: RelayEnvironment | undefined;
  const json = Testing.synthScope((scope) => {
    relay = new RelayEnvironment(scope, 'relay', { ...BASE, ...props });
  });
  const parsed = JSON.parse(json) as { resource: Record<string, Record<string, Body>> };
  const env = Object.values(parsed.resource.aws_elastic_beanstalk_environment)[0];
  return { json, env, settings: env.setting as Setting[], relay: relay as RelayEnvironment };
}
const get = (settings: Setting[], namespace: string, name: string) =>
  settings.filter((s) => s.namespace === namespace && s.name === name).map((s) => s.value);

describe('RelayEnvironment', () => {
  it('gives every setting resource "" so the plan settles', () => {
    const { settings } = synth();
    expect(settings.filter((x) => (x as unknown as Body).resource !== '')).toEqual([]);
  });

  it('keeps the deregistration delay longer than the health-check silence plus the drain window', () => {
    const { settings, relay } = synth({ relayEnvironment: { RELAY_DRAIN_WINDOW_MS: '30000' } });
    expect(relay.deregistrationDelaySeconds).toBe(15 + 30 + 15);
    expect(get(settings, 'aws:elasticbeanstalk:environment:process:default', 'DeregistrationDelay')).toEqual(['60']);
    expect(get(settings, 'aws:elasticbeanstalk:application:environment', 'RELAY_SHUTDOWN_TIMEOUT_MS')).toEqual(['40000']);
  });

  it('passes the relay settings and the token secret through, the secret only as environmentsecrets', () => {
    const token = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:relay-dev/relay-token-secret-AbCdEf';
    const { settings } = synth({ relayEnvironment: { LOG_LEVEL: 'warn', RELAY_ALLOWED_ORIGINS: 'https://a.example' }, tokenSecretArn: token });
    expect(get(settings, 'aws:elasticbeanstalk:application:environment', 'LOG_LEVEL')).toEqual(['warn']);
    expect(get(settings, 'aws:elasticbeanstalk:application:environment', 'RELAY_ALLOWED_ORIGINS')).toEqual(['https://a.example']);
    expect(get(settings, 'aws:elasticbeanstalk:application:environmentsecrets', 'RELAY_TOKEN_SECRET')).toEqual([token]);
  });

  it('fails when several instance types are given without Spot', () => {
    expect(() => synth({ instanceTypes: ['c7g.large', 'c6g.large'] })).toThrow(/2 instance types without Spot; On-Demand uses only the first/);
  });

  it('runs the pinned platform, so an upgrade is a config change that shows in the diff', () => {
    const { json, env } = synth();
    expect(json).not.toContain('aws_elastic_beanstalk_solution_stack');
    expect(env.solution_stack_name).toBe('64bit Amazon Linux 2023 v6.10.0 running Node.js 22');
    expect(env).toMatchObject({ tier: 'WebServer', version_label: 'relay-0.1.0-aaaaaaaaaaaa', name: 'relay-dev' });
  });

  it.each([
    ['aws:elasticbeanstalk:environment', 'LoadBalancerType', 'application'],
    ['aws:elasticbeanstalk:environment', 'ServiceRole', BASE.serviceRoleArn],
    ['aws:elbv2:loadbalancer', 'IdleTimeout', '300'],
    ['aws:elbv2:loadbalancer', 'SecurityGroups', 'sg-00000000000000001'],
    ['aws:elbv2:loadbalancer', 'ManagedSecurityGroup', 'sg-00000000000000001'],
    ['aws:elasticbeanstalk:environment:proxy', 'ProxyServer', 'nginx'],
    ['aws:elasticbeanstalk:environment:process:default', 'DeregistrationDelay', '50'],
    ['aws:elasticbeanstalk:environment:process:default', 'HealthCheckInterval', '5'],
    ['aws:elasticbeanstalk:command', 'BatchSizeType', 'Fixed'],
    ['aws:elasticbeanstalk:command', 'BatchSize', '1'],
    ['aws:autoscaling:launchconfiguration', 'DisableDefaultEC2SecurityGroup', 'true'],
    ['aws:autoscaling:trigger', 'UpperThreshold', '100'],
    ['aws:elasticbeanstalk:application:environment', 'RELAY_DEREGISTRATION_SILENCE_MS', '15000'],
    ['aws:elasticbeanstalk:application:environment', 'RELAY_TRUSTED_PROXY', '10.0.0.0/16'],
    ['aws:elasticbeanstalk:environment:process:default', 'Port', '8080'],
    ['aws:elasticbeanstalk:environment:process:default', 'Protocol', 'HTTP'],
    ['aws:elasticbeanstalk:environment:process:default', 'HealthCheckPath', '/healthz/lb'],
    ['aws:elasticbeanstalk:environment:process:default', 'StickinessEnabled', 'false'],
    ['aws:autoscaling:launchconfiguration', 'IamInstanceProfile', 'relay-dev-eb-instance'],
    ['aws:autoscaling:launchconfiguration', 'SecurityGroups', 'sg-00000000000000002'],
    ['aws:autoscaling:launchconfiguration', 'DisableIMDSv1', 'true'],
    ['aws:ec2:instances', 'InstanceTypes', 't3.small'],
    ['aws:autoscaling:asg', 'MinSize', '2'],
    ['aws:autoscaling:asg', 'MaxSize', '4'],
    ['aws:ec2:vpc', 'VPCId', 'vpc-0123456789abcdef0'],
    ['aws:ec2:vpc', 'Subnets', 'subnet-0123456789abcdef0,subnet-0123456789abcdef1'],
    ['aws:ec2:vpc', 'ELBSubnets', 'subnet-0123456789abcdef2'],
    ['aws:ec2:vpc', 'ELBScheme', 'public'],
    ['aws:ec2:vpc', 'AssociatePublicIpAddress', 'false'],
    ['aws:elasticbeanstalk:command', 'DeploymentPolicy', 'RollingWithAdditionalBatch'],
    ['aws:autoscaling:updatepolicy:rollingupdate', 'RollingUpdateEnabled', 'true'],
    ['aws:autoscaling:updatepolicy:rollingupdate', 'RollingUpdateType', 'Health'],
    ['aws:elasticbeanstalk:healthreporting:system', 'SystemType', 'enhanced'],
    ['aws:elasticbeanstalk:managedactions', 'ManagedActionsEnabled', 'true'],
    ['aws:elasticbeanstalk:managedactions', 'PreferredStartTime', 'Sun:03:00'],
    ['aws:elasticbeanstalk:managedactions:platformupdate', 'UpdateLevel', 'minor'],
    ['aws:elasticbeanstalk:cloudwatch:logs', 'StreamLogs', 'true'],
    ['aws:elasticbeanstalk:cloudwatch:logs', 'RetentionInDays', '30'],
    ['aws:elasticbeanstalk:cloudwatch:logs', 'DeleteOnTerminate', 'false'],
    ['aws:elasticbeanstalk:application:environment', 'PORT', '8080'],
    ['aws:elasticbeanstalk:application:environment', 'NODE_ENV', 'production'],
    ['aws:elasticbeanstalk:application:environment', 'REDIS_URL', BASE.redisUrl],
    ['aws:elasticbeanstalk:application:environment', 'REDIS_MODE', 'standalone'],
    ['aws:elasticbeanstalk:application:environment', 'RELAY_CHANNEL_PREFIX', 'relay-dev'],
  ])('sets %s %s = %s by default', (namespace, name, value) => {
    expect(get(synth().settings, namespace, name)).toEqual([value]);
  });

  it('hands the AUTH token over only through environmentsecrets', () => {
    const { settings } = synth();
    expect(get(settings, 'aws:elasticbeanstalk:application:environmentsecrets', 'REDIS_AUTH_TOKEN')).toEqual([SECRET_ARN]);
    const plain = settings.filter((s) => s.namespace === 'aws:elasticbeanstalk:application:environment');
    expect(plain.map((s) => s.name).sort()).toEqual([
      'NODE_ENV',
      'PORT',
      'REDIS_MODE',
      'REDIS_URL',
      'RELAY_CHANNEL_PREFIX',
      'RELAY_DEREGISTRATION_SILENCE_MS',
      'RELAY_DRAIN_WINDOW_MS',
      'RELAY_EMF_FILE',
      'RELAY_SHUTDOWN_TIMEOUT_MS',
      'RELAY_TRUSTED_PROXY',
    ]);
    expect(settings.filter((s) => /token|password|auth/i.test(s.name) && s.namespace !== 'aws:elasticbeanstalk:application:environmentsecrets')).toEqual([]);
  });

  it('declares every option once', () => {
    const keys = synth({ certificateArn: CERT }).settings.map((s) => `${s.namespace}/${s.name}`);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('has no HTTPS listener and ws:// URLs without a certificate', () => {
    const { settings, relay } = synth();
    expect(settings.filter((s) => s.namespace === 'aws:elbv2:listener:443')).toEqual([]);
    expect(relay.webSocketUrl).toMatch(/^ws:\/\/.*\/ws$/);
    expect(relay.url).toMatch(/^http:\/\//);
  });

  it('adds an HTTPS listener with the certificate and policy, and wss:// URLs, when a certificate is set', () => {
    const { settings, relay } = synth({ certificateArn: CERT });
    expect(get(settings, 'aws:elbv2:listener:443', 'Protocol')).toEqual(['HTTPS']);
    expect(get(settings, 'aws:elbv2:listener:443', 'SSLCertificateArns')).toEqual([CERT]);
    expect(get(settings, 'aws:elbv2:listener:443', 'SSLPolicy')).toEqual(['ELBSecurityPolicy-TLS13-1-2-2021-06']);
    expect(relay.webSocketUrl).toMatch(/^wss:\/\/.*\/ws$/);
    expect(relay.url).toMatch(/^https:\/\//);
  });

  it('passes the configured sizes, policy, window and retention through', () => {
    const { settings } = synth({
      instanceTypes: ['c7g.large', 'c6g.large'],
      spot: { onDemandBase: 1, onDemandAbovePercent: 25 },
      minInstances: 3,
      maxInstances: 9,
      deploymentPolicy: 'Immutable',
      maintenanceWindow: 'Tue:04:30',
      logRetentionDays: 90,
      idleTimeoutSeconds: 600,
      loadBalancerScheme: 'internal',
      redisMode: 'cluster',
    });
    expect(get(settings, 'aws:ec2:instances', 'InstanceTypes')).toEqual(['c7g.large,c6g.large']);
    expect(get(settings, 'aws:ec2:instances', 'EnableSpot')).toEqual(['true']);
    expect(get(settings, 'aws:ec2:instances', 'SpotFleetOnDemandBase')).toEqual(['1']);
    expect(get(settings, 'aws:ec2:instances', 'SpotFleetOnDemandAboveBasePercentage')).toEqual(['25']);
    expect(get(settings, 'aws:autoscaling:asg', 'MinSize')).toEqual(['3']);
    expect(get(settings, 'aws:autoscaling:asg', 'MaxSize')).toEqual(['9']);
    expect(get(settings, 'aws:elasticbeanstalk:command', 'DeploymentPolicy')).toEqual(['Immutable']);
    expect(get(settings, 'aws:elasticbeanstalk:managedactions', 'PreferredStartTime')).toEqual(['Tue:04:30']);
    expect(get(settings, 'aws:elasticbeanstalk:cloudwatch:logs', 'RetentionInDays')).toEqual(['90']);
    expect(get(settings, 'aws:elbv2:loadbalancer', 'IdleTimeout')).toEqual(['600']);
    expect(get(settings, 'aws:ec2:vpc', 'ELBScheme')).toEqual(['internal']);
    expect(get(settings, 'aws:elasticbeanstalk:application:environment', 'REDIS_MODE')).toEqual(['cluster']);
  });
});
