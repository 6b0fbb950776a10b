import type { ITerraformDependable } from 'cdktf';
import { Construct } from 'constructs';
import { DataAwsIamPolicyDocument } from '@cdktf/provider-aws/lib/data-aws-iam-policy-document';
import { DataAwsPartition } from '@cdktf/provider-aws/lib/data-aws-partition';
import { IamInstanceProfile } from '@cdktf/provider-aws/lib/iam-instance-profile';
import { IamRole } from '@cdktf/provider-aws/lib/iam-role';
import { IamRolePolicy } from '@cdktf/provider-aws/lib/iam-role-policy';
import { IamRolePolicyAttachment } from '@cdktf/provider-aws/lib/iam-role-policy-attachment';

export interface BeanstalkIamProps {
  /** Prefix of every role name, `<app>-<env>`. */
  readonly namePrefix: string;
  /** ARN of the Secrets Manager secret holding the Redis AUTH token: the only secret instances may read. */
  readonly authTokenSecretArn: string;
  /**
   * Other secrets the relay reads through environmentsecrets (the token secret).
   * @default none
   */
  readonly otherSecretArns?: readonly string[];
}

/** Service role (also runs the app-version lifecycle) and the instance role + profile, least privilege. */
export class BeanstalkIam extends Construct {
  /** Trusted by elasticbeanstalk.amazonaws.com: enhanced health, managed updates and the version lifecycle. */
  readonly serviceRole: IamRole;
  /** Role the application-version lifecycle runs as (the service role, as Beanstalk's console sets it up). */
  readonly lifecycleRole: IamRole;
  readonly instanceRole: IamRole;
  readonly instanceProfile: IamInstanceProfile;
  /** Attachments and inline policies the environment must wait for on create and outlive on destroy. */
  readonly dependables: ITerraformDependable[] = [];

  constructor(scope: Construct, id: string, props: BeanstalkIamProps) {
    super(scope, id);
    const partition = new DataAwsPartition(this, 'partition').partition;
    const managed = (path: string) => `arn:${partition}:iam::aws:policy/${path}`;

    this.serviceRole = new IamRole(this, 'service-role', {
      name: `${props.namePrefix}-eb-service`,
      description: 'Elastic Beanstalk service role of the relay environment',
      assumeRolePolicy: JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { Service: 'elasticbeanstalk.amazonaws.com' },
            Action: 'sts:AssumeRole',
            Condition: { StringEquals: { 'sts:ExternalId': 'elasticbeanstalk' } },
          },
        ],
      }),
    });
    const enhancedHealth = new IamRolePolicyAttachment(this, 'service-enhanced-health', {
      role: this.serviceRole.name,
      policyArn: managed('service-role/AWSElasticBeanstalkEnhancedHealth'),
    });
    const managedUpdates = new IamRolePolicyAttachment(this, 'service-managed-updates', {
      role: this.serviceRole.name,
      policyArn: managed('AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy'),
    });
    this.lifecycleRole = this.serviceRole;

    this.instanceRole = new IamRole(this, 'instance-role', {
      name: `${props.namePrefix}-eb-instance`,
      description: 'Relay instances: web tier, log streaming, the Redis AUTH token secret',
      assumeRolePolicy: JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }],
      }),
    });
    // WebTier also grants the logs:CreateLogStream/PutLogEvents on /aws/elasticbeanstalk* that log streaming needs.
    const webTier = new IamRolePolicyAttachment(this, 'instance-web-tier', {
      role: this.instanceRole.name,
      policyArn: managed('AWSElasticBeanstalkWebTier'),
    });
    const readSecret = new DataAwsIamPolicyDocument(this, 'read-auth-token-policy', {
      statement: [
        {
          sid: 'ReadRedisAuthToken',
          effect: 'Allow',
          actions: ['secretsmanager:GetSecretValue'],
          resources: [props.authTokenSecretArn, ...(props.otherSecretArns ?? [])],
        },
      ],
    });
    const readPolicy = new IamRolePolicy(this, 'instance-read-auth-token', {
      name: 'read-redis-auth-token',
      role: this.instanceRole.id,
      policy: readSecret.json,
    });
    this.instanceProfile = new IamInstanceProfile(this, 'instance-profile', {
      name: `${props.namePrefix}-eb-instance`,
      role: this.instanceRole.name,
    });
    this.dependables.push(enhancedHealth, managedUpdates, webTier, readPolicy, this.instanceProfile);
  }
}
