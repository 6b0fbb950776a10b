import { Testing } from 'cdktf';
// Importing the adapter (not only calling Testing.setupJest) brings its matcher types into scope.
import { setupJest } from 'cdktf/lib/testing/adapters/jest';
import { IamInstanceProfile } from '@cdktf/provider-aws/lib/iam-instance-profile';
import { BeanstalkIam } from '../../stacks/beanstalk-iam';

setupJest();

type Body = Record<string, unknown>;
interface Synth {
  resource: Record<string, Record<string, Body>>;
  data: Record<string, Record<string, Body>>;
}
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:relay-dev/redis-auth-token-AbCdEf';

function synth(): Synth {
  return JSON.parse(
    Testing.synthScope((scope) => {
      new BeanstalkIam(scope, 'iam', { namePrefix: 'relay-dev', authTokenSecretArn: SECRET_ARN });
    }),
  ) as Synth;
}
const roleByName = (s: Synth, name: string) => Object.values(s.resource.aws_iam_role).find((r) => r.name === name) as Body;
const attachments = (s: Synth, roleKey: string) =>
  Object.values(s.resource.aws_iam_role_policy_attachment)
    .filter((a) => String(a.role).includes(roleKey))
    .map((a) => String(a.policy_arn).replace(/^arn:\$\{data\.aws_partition\.[^}]+\}:iam::aws:policy\//, ''))
    .sort();

describe('BeanstalkIam', () => {
  it('trusts elasticbeanstalk.amazonaws.com with the elasticbeanstalk external id for the service role', () => {
    const s = synth();
    const trust = JSON.parse(String(roleByName(s, 'relay-dev-eb-service').assume_role_policy)) as { Statement: unknown };
    expect(trust.Statement).toEqual([
      {
        Effect: 'Allow',
        Principal: { Service: 'elasticbeanstalk.amazonaws.com' },
        Action: 'sts:AssumeRole',
        Condition: { StringEquals: { 'sts:ExternalId': 'elasticbeanstalk' } },
      },
    ]);
    expect(attachments(s, 'service-role')).toEqual([
      'AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy',
      'service-role/AWSElasticBeanstalkEnhancedHealth',
    ]);
  });

  it('gives the instance role WebTier only: no CloudWatchFullAccess, no Worker or Docker policy', () => {
    const s = synth();
    const trust = JSON.parse(String(roleByName(s, 'relay-dev-eb-instance').assume_role_policy)) as { Statement: unknown };
    expect(trust.Statement).toEqual([{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }]);
    const policies = attachments(s, 'instance-role');
    expect(policies).toEqual(['AWSElasticBeanstalkWebTier']);
    const all = Object.values(s.resource.aws_iam_role_policy_attachment).map((a) => String(a.policy_arn));
    for (const bad of ['CloudWatchFullAccess', 'WorkerTier', 'MulticontainerDocker']) {
      expect(all.some((arn) => arn.includes(bad))).toBe(false);
    }
  });

  it('lets instances read exactly the AUTH-token secret and nothing broader', () => {
    const s = synth();
    const doc = Object.values(s.data.aws_iam_policy_document)[0];
    expect(doc.statement).toEqual([
      { sid: 'ReadRedisAuthToken', effect: 'Allow', actions: ['secretsmanager:GetSecretValue'], resources: [SECRET_ARN] },
    ]);
    const inline = Object.values(s.resource.aws_iam_role_policy);
    expect(inline).toHaveLength(1);
    expect(String(inline[0].role)).toContain('instance-role');
    expect(String(inline[0].policy)).toMatch(/^\$\{data\.aws_iam_policy_document\..*\.json\}$/);
    expect(JSON.stringify(s)).not.toMatch(/"(secretsmanager:)?\*"/);
  });

  it('wraps the instance role in an instance profile', () => {
    const json = JSON.stringify(synth());
    expect(json).toHaveResourceWithProperties(IamInstanceProfile, { name: 'relay-dev-eb-instance' });
  });
});
