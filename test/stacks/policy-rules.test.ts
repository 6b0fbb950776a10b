/**
 * Each policy rule fires on a deliberately broken stack, and stays quiet on a compliant one.
 * The stacks are built with the real provider classes and synthesized, so the checks read real cdk.tf.json.
 */
import { TerraformStack, Testing } from 'cdktf';
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';
import { S3Bucket } from '@cdktf/provider-aws/lib/s3-bucket';
import { S3BucketPublicAccessBlock } from '@cdktf/provider-aws/lib/s3-bucket-public-access-block';
import { S3BucketServerSideEncryptionConfigurationA } from '@cdktf/provider-aws/lib/s3-bucket-server-side-encryption-configuration';
import { S3BucketPolicy } from '@cdktf/provider-aws/lib/s3-bucket-policy';
import { DataAwsIamPolicyDocument } from '@cdktf/provider-aws/lib/data-aws-iam-policy-document';
import { SecurityGroup } from '@cdktf/provider-aws/lib/security-group';
import { VpcSecurityGroupIngressRule } from '@cdktf/provider-aws/lib/vpc-security-group-ingress-rule';
import { ElasticacheReplicationGroup } from '@cdktf/provider-aws/lib/elasticache-replication-group';
import { IamRole } from '@cdktf/provider-aws/lib/iam-role';
import { IamRolePolicy } from '@cdktf/provider-aws/lib/iam-role-policy';
import { IamRolePolicyAttachment } from '@cdktf/provider-aws/lib/iam-role-policy-attachment';
import { ElasticBeanstalkEnvironment } from '@cdktf/provider-aws/lib/elastic-beanstalk-environment';
import { DataAwsElasticBeanstalkSolutionStack } from '@cdktf/provider-aws/lib/data-aws-elastic-beanstalk-solution-stack';
import { AutoscalingPolicy } from '@cdktf/provider-aws/lib/autoscaling-policy';
import { Fn, Token } from 'cdktf';
import { checkTerraformPolicy, formatViolation, judgePolicy, POLICY_FIXES, POLICY_RULES, type PolicyRule } from '../../app/policy';

type Breakage =
  | 'no-public-access-block'
  | 'public-access-partly-open'
  | 'no-encryption'
  | 'no-tls-policy'
  | 'redis-open-to-world'
  | 'instances-open-on-3389'
  | 'lb-open-on-8080'
  | 'no-transit-encryption'
  | 'no-at-rest-encryption'
  | 'no-auth-token'
  | 'wildcard-action'
  | 'full-access-policy'
  | 'imdsv1'
  | 'plain-token-env'
  | 'plain-api-key'
  | 'password-in-url'
  | 'unpinned-stack'
  | 'percentage-batches'
  | 'all-at-once'
  | 'short-deregistration-delay'
  | 'no-silence-watch'
  | 'no-scaling-policy'
  | 'network-out-scaling-only'
  | 'no-https'
  | 'no-token-auth'
  | 'default-security-group'
  | 'setting-without-resource';

/** A small stack that follows every rule unless told to break one. */
function synthStack(breakage?: Breakage): unknown {
  const app = Testing.app();
  const stack = new TerraformStack(app, 'policy-fixture');
  new AwsProvider(stack, 'aws', { region: 'eu-west-1' });
  const is = (b: Breakage): boolean => breakage === b;

  const bucket = new S3Bucket(stack, 'bucket', { bucket: 'fixture-artifacts' });
  if (!is('no-public-access-block')) {
    new S3BucketPublicAccessBlock(stack, 'bucket-pab', {
      bucket: bucket.id,
      blockPublicAcls: true,
      blockPublicPolicy: !is('public-access-partly-open'),
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    });
  }
  if (!is('no-encryption')) {
    new S3BucketServerSideEncryptionConfigurationA(stack, 'bucket-sse', {
      bucket: bucket.id,
      rule: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: 'aws:kms' } }],
    });
  }
  const tlsDoc = new DataAwsIamPolicyDocument(stack, 'tls-only', {
    statement: [
      {
        sid: is('no-tls-policy') ? 'AllowRead' : 'DenyInsecureTransport',
        effect: is('no-tls-policy') ? 'Allow' : 'Deny',
        actions: ['s3:GetObject'],
        resources: [`${bucket.arn}/*`],
        principals: [{ type: 'AWS', identifiers: ['arn:aws:iam::123456789012:root'] }],
        condition: is('no-tls-policy') ? [] : [{ test: 'Bool', variable: 'aws:SecureTransport', values: ['false'] }],
      },
    ],
  });
  new S3BucketPolicy(stack, 'bucket-policy', { bucket: bucket.id, policy: tlsDoc.json });

  const lbSg = new SecurityGroup(stack, 'lb-sg', { name: 'lb', vpcId: 'vpc-1' });
  const appSg = new SecurityGroup(stack, 'app-sg', { name: 'app', vpcId: 'vpc-1' });
  const redisSg = new SecurityGroup(stack, 'redis-sg', { name: 'redis', vpcId: 'vpc-1' });
  for (const port of [80, 443]) {
    new VpcSecurityGroupIngressRule(stack, `lb-${port}`, {
      securityGroupId: lbSg.id,
      cidrIpv4: '0.0.0.0/0',
      ipProtocol: 'tcp',
      fromPort: port,
      toPort: port,
    });
  }
  new VpcSecurityGroupIngressRule(stack, 'app-from-lb', {
    securityGroupId: appSg.id,
    referencedSecurityGroupId: lbSg.id,
    ipProtocol: 'tcp',
    fromPort: 8080,
    toPort: 8080,
  });
  if (is('lb-open-on-8080')) {
    new VpcSecurityGroupIngressRule(stack, 'lb-8080', {
      securityGroupId: lbSg.id,
      cidrIpv4: '0.0.0.0/0',
      ipProtocol: 'tcp',
      fromPort: 8080,
      toPort: 8080,
    });
  }
  if (is('instances-open-on-3389')) {
    new VpcSecurityGroupIngressRule(stack, 'app-rdp', {
      securityGroupId: appSg.id,
      cidrIpv6: '::/0',
      ipProtocol: 'tcp',
      fromPort: 3389,
      toPort: 3389,
    });
  }
  new VpcSecurityGroupIngressRule(stack, 'redis-from-app', {
    securityGroupId: redisSg.id,
    ...(is('redis-open-to-world') ? { cidrIpv4: '0.0.0.0/0', ipProtocol: '-1' } : { referencedSecurityGroupId: appSg.id, ipProtocol: 'tcp', fromPort: 6379, toPort: 6379 }),
  });

  new ElasticacheReplicationGroup(stack, 'redis', {
    replicationGroupId: 'fixture',
    description: 'fixture',
    nodeType: 'cache.t4g.micro',
    transitEncryptionEnabled: !is('no-transit-encryption'),
    atRestEncryptionEnabled: is('no-at-rest-encryption') ? 'false' : 'true',
    ...(is('no-auth-token') ? {} : { authToken: '${random_password.auth.result}' }),
    securityGroupIds: [redisSg.id],
  });

  const role = new IamRole(stack, 'instance-role', {
    name: 'fixture-instance',
    assumeRolePolicy: JSON.stringify({
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }],
    }),
  });
  new IamRolePolicy(stack, 'read-secret', {
    role: role.name,
    policy: JSON.stringify({
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Action: is('wildcard-action') ? ['secretsmanager:*'] : ['secretsmanager:GetSecretValue'],
          Resource: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:fixture',
        },
      ],
    }),
  });
  new IamRolePolicyAttachment(stack, 'web-tier', {
    role: role.name,
    policyArn: is('full-access-policy')
      ? 'arn:aws:iam::aws:policy/CloudWatchFullAccess'
      : 'arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier',
  });

  const solution = is('unpinned-stack')
    ? new DataAwsElasticBeanstalkSolutionStack(stack, 'solution', { mostRecent: true, nameRegex: '^64bit Amazon Linux 2023 (.*) running Node.js 22$' }).name
    : '64bit Amazon Linux 2023 v6.10.0 running Node.js 22';
  const env = (namespace: string, name: string, value: string) =>
    is('setting-without-resource') && name === 'PORT' ? { namespace, name, value } : { namespace, name, value, resource: '' };
  const command = (name: string, value: string) => env('aws:elasticbeanstalk:command', name, value);
  const listener = (name: string, value: string) => env('aws:elbv2:listener:443', name, value);
  const eb = new ElasticBeanstalkEnvironment(stack, 'env', {
    name: 'fixture',
    application: 'fixture',
    solutionStackName: solution,
    setting: [
      command('DeploymentPolicy', is('all-at-once') ? 'AllAtOnce' : 'RollingWithAdditionalBatch'),
      command('BatchSizeType', is('percentage-batches') ? 'Percentage' : 'Fixed'),
      command('BatchSize', is('percentage-batches') ? '30' : '1'),
      env('aws:elasticbeanstalk:environment:process:default', 'DeregistrationDelay', is('short-deregistration-delay') ? '20' : '45'),
      env('aws:elasticbeanstalk:application:environment', 'RELAY_DRAIN_WINDOW_MS', '20000'),
      ...(is('no-silence-watch') ? [] : [env('aws:elasticbeanstalk:application:environment', 'RELAY_DEREGISTRATION_SILENCE_MS', '15000')]),
      listener('ListenerEnabled', 'true'),
      listener('Protocol', is('no-https') ? 'HTTP' : 'HTTPS'),
      ...(is('no-https') ? [] : [listener('SSLCertificateArns', 'arn:aws:acm:eu-west-1:123456789012:certificate/0f7c8c1e-7a43-4e0e-9d9b-3f1c3d0a1b2c')]),
      ...(is('no-token-auth') ? [] : [env('aws:elasticbeanstalk:application:environmentsecrets', 'RELAY_TOKEN_SECRET', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:token')]),
      env('aws:autoscaling:launchconfiguration', 'DisableDefaultEC2SecurityGroup', is('default-security-group') ? 'false' : 'true'),
      env('aws:elbv2:loadbalancer', 'SecurityGroups', lbSg.id),
      env('aws:autoscaling:launchconfiguration', 'DisableIMDSv1', is('imdsv1') ? 'false' : 'true'),
      env('aws:elasticbeanstalk:application:environment', 'REDIS_URL', is('password-in-url') ? 'rediss://default:hunter2@redis.example:6379' : 'rediss://redis.example:6379'),
      env('aws:elasticbeanstalk:application:environment', 'PORT', '8080'),
      is('plain-api-key')
        ? env('aws:elasticbeanstalk:application:environment', 'RELAY_API_KEY', 'f3e1c0ffee')
        : env('aws:elasticbeanstalk:application:environmentsecrets', 'RELAY_API_KEY', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:api-key'),
      is('plain-token-env')
        ? env('aws:elasticbeanstalk:application:environment', 'REDIS_AUTH_TOKEN', '${random_password.auth.result}')
        : env('aws:elasticbeanstalk:application:environmentsecrets', 'REDIS_AUTH_TOKEN', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:fixture'),
    ],
  });
  if (!is('no-scaling-policy')) {
    new AutoscalingPolicy(stack, 'scale', {
      name: 'fixture-scale',
      autoscalingGroupName: Token.asString(Fn.element(eb.autoscalingGroups, 0)),
      policyType: is('network-out-scaling-only') ? 'SimpleScaling' : 'TargetTrackingScaling',
      ...(is('network-out-scaling-only')
        ? { adjustmentType: 'ChangeInCapacity', scalingAdjustment: 1 }
        : { targetTrackingConfiguration: { targetValue: 60, predefinedMetricSpecification: { predefinedMetricType: 'ASGAverageCPUUtilization' } } }),
    });
  }
  return JSON.parse(Testing.synth(stack));
}

function rulesFired(breakage?: Breakage): PolicyRule[] {
  return [...new Set(checkTerraformPolicy(synthStack(breakage)).map((v) => v.rule))].sort();
}

describe('infrastructure policy rules', () => {
  it('reports nothing for a stack that follows every rule', () => {
    // GIVEN a compliant stack WHEN checked THEN no violation
    expect(checkTerraformPolicy(synthStack())).toEqual([]);
  });

  const cases: [Breakage, PolicyRule][] = [
    ['no-public-access-block', 's3-public-access-block'],
    ['public-access-partly-open', 's3-public-access-block'],
    ['no-encryption', 's3-encryption'],
    ['no-tls-policy', 's3-tls-only'],
    ['redis-open-to-world', 'open-ingress'],
    ['instances-open-on-3389', 'open-ingress'],
    ['lb-open-on-8080', 'open-ingress'],
    ['no-transit-encryption', 'redis-transit-encryption'],
    ['no-at-rest-encryption', 'redis-at-rest-encryption'],
    ['no-auth-token', 'redis-auth'],
    ['wildcard-action', 'iam-wildcard-action'],
    ['full-access-policy', 'iam-full-access'],
    ['imdsv1', 'imdsv1'],
    ['plain-token-env', 'plain-secret'],
    ['plain-api-key', 'plain-secret'],
    ['password-in-url', 'plain-secret'],
    ['unpinned-stack', 'unpinned-solution-stack'],
    ['percentage-batches', 'deploy-batch-size'],
    ['all-at-once', 'deploy-batch-size'],
    ['short-deregistration-delay', 'deregistration-delay'],
    ['no-silence-watch', 'deregistration-delay'],
    ['no-scaling-policy', 'scaling-policy'],
    ['network-out-scaling-only', 'scaling-policy'],
    ['no-https', 'https-and-auth'],
    ['no-token-auth', 'https-and-auth'],
    ['default-security-group', 'default-security-group'],
    ['setting-without-resource', 'setting-resource'],
  ];

  it.each(cases)('fails when the stack has %s (rule %s fires, and only it)', (breakage, rule) => {
    expect(rulesFired(breakage)).toEqual([rule]);
  });

  it('names the resource and says what to do', () => {
    const [violation] = checkTerraformPolicy(synthStack('short-deregistration-delay'));
    expect(violation.address).toMatch(/^aws_elastic_beanstalk_environment\./);
    expect(violation.message).toBe('DeregistrationDelay 20 s is shorter than silence 15000 ms + drain 20000 ms + 10 s = 45 s');
    expect(violation.fix).toMatch(/^set aws:elasticbeanstalk:environment:process:default DeregistrationDelay to at least/);
    expect(formatViolation('relay-dev', violation).split('\n')).toEqual([
      `relay-dev: [deregistration-delay] ${violation.address}: ${violation.message}`,
      `  fix: ${violation.fix}`,
    ]);
  });

  it('has a fix for every rule, and a test case that makes every rule fire', () => {
    expect(Object.keys(POLICY_FIXES).sort()).toEqual([...POLICY_RULES].sort());
    expect([...new Set(cases.map(([, rule]) => rule))].sort()).toEqual([...POLICY_RULES].sort());
  });

  it('lets a waiver take a rule out of the failing set, keeps its reason, and reports a waiver that matches nothing', () => {
    const violations = checkTerraformPolicy(synthStack('imdsv1'));
    const verdict = judgePolicy(violations, [
      { rule: 'imdsv1', reason: 'legacy agent needs IMDSv1 until March' },
      { rule: 'open-ingress', reason: 'stale' },
    ]);
    expect(verdict.failing).toEqual([]);
    expect(verdict.waived).toEqual([{ ...violations[0], reason: 'legacy agent needs IMDSv1 until March' }]);
    expect(verdict.unusedWaivers).toEqual([{ rule: 'open-ingress', reason: 'stale' }]);
    expect(judgePolicy(violations, []).failing).toEqual(violations);
  });

  it('treats a policy it cannot read as unsafe', () => {
    const doc = {
      resource: { aws_iam_policy: { p: { policy: '${jsonencode(local.whatever)}' } } },
    };
    expect(checkTerraformPolicy(doc).map((v) => v.rule)).toEqual(['iam-wildcard-action']);
  });
});
