import { LocalBackend, TerraformOutput, TerraformStack } from 'cdktf';
import { Construct } from 'constructs';
import { DataAwsCallerIdentity } from '@cdktf/provider-aws/lib/data-aws-caller-identity';
import { DataAwsIamPolicyDocument, type DataAwsIamPolicyDocumentStatement } from '@cdktf/provider-aws/lib/data-aws-iam-policy-document';
import { DataAwsPartition } from '@cdktf/provider-aws/lib/data-aws-partition';
import { IamOpenidConnectProvider } from '@cdktf/provider-aws/lib/iam-openid-connect-provider';
import { IamRole } from '@cdktf/provider-aws/lib/iam-role';
import { IamRolePolicy } from '@cdktf/provider-aws/lib/iam-role-policy';
import { IamRolePolicyAttachment } from '@cdktf/provider-aws/lib/iam-role-policy-attachment';
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';
import { S3Bucket } from '@cdktf/provider-aws/lib/s3-bucket';
import { S3BucketLifecycleConfiguration } from '@cdktf/provider-aws/lib/s3-bucket-lifecycle-configuration';
import { S3BucketOwnershipControls } from '@cdktf/provider-aws/lib/s3-bucket-ownership-controls';
import { S3BucketPolicy } from '@cdktf/provider-aws/lib/s3-bucket-policy';
import { S3BucketPublicAccessBlock } from '@cdktf/provider-aws/lib/s3-bucket-public-access-block';
import { S3BucketServerSideEncryptionConfigurationA } from '@cdktf/provider-aws/lib/s3-bucket-server-side-encryption-configuration';
import { S3BucketVersioningA } from '@cdktf/provider-aws/lib/s3-bucket-versioning';
import { REQUIRED_PROVIDERS, REQUIRED_TERRAFORM_VERSION } from './relay-stack';

/** GitHub's OIDC issuer; its tokens carry `sub` = `repo:<owner>/<repo>:<context>` and `aud` = sts.amazonaws.com. */
export const GITHUB_OIDC_HOST = 'token.actions.githubusercontent.com';

/** One environment the pipeline deploys. */
export interface BootstrapEnvironment {
  /** Environment name: the GitHub environment of its deploy job, and the `<app>-<env>-` prefix of its resources. */
  readonly name: string;
  /** State bucket of the environment (one of `stateBuckets`). */
  readonly stateBucket: string;
  /** Object key of the environment's state in that bucket. */
  readonly stateKey: string;
  /**
   * Its apply waits for a reviewer: a read-only role, trusted for the GitHub environment `<name>-plan`, makes the plan first.
   * @default false
   */
  readonly reviewed?: boolean;
}

export interface BootstrapStackProps {
  /** Application name: roles are named `<app>-ci-…`, the stack is tagged `project = <app>`. */
  readonly app: string;
  /** Region of the state bucket(s). */
  readonly region: string;
  /** GitHub repository `<owner>/<name>` whose workflow may assume the roles. */
  readonly repository: string;
  /** State buckets to create (the S3 backends of the deployed environments name them). */
  readonly stateBuckets: readonly string[];
  /** The environments the pipeline deploys, in promotion order. */
  readonly environments: readonly BootstrapEnvironment[];
  /**
   * Days a replaced state version is kept (the bucket is versioned: an overwritten or deleted state can be restored).
   * @default 365
   */
  readonly noncurrentStateDays?: number;
}

/**
 * What must exist before the first CI deploy, in a stack of its own (`relay-bootstrap`) that someone with
 * administrator rights applies once from a laptop: the state bucket (versioned, encrypted, public access blocked,
 * TLS-only), GitHub's OIDC provider, a read-only plan role for pull requests, a read-only plan role per reviewed
 * environment, and a deploy role per environment. Its own state stays local (it cannot live in the bucket it creates).
 */
export class BootstrapStack extends TerraformStack {
  readonly stateBuckets: readonly S3Bucket[];
  readonly oidcProvider: IamOpenidConnectProvider;
  /** Read-only; trusted only for the repository's pull_request subject. */
  readonly planRole: IamRole;
  /** Read-only; one per reviewed environment, trusted only for its GitHub environment `<env>-plan`. */
  readonly reviewedPlanRoles: ReadonlyMap<string, IamRole>;
  /** One per environment, trusted only for its GitHub environment. */
  readonly deployRoles: ReadonlyMap<string, IamRole>;

  constructor(scope: Construct, id: string, props: BootstrapStackProps) {
    super(scope, id);
    new AwsProvider(this, 'aws', {
      region: props.region,
      defaultTags: [{ tags: { project: props.app, environment: 'bootstrap', 'managed-by': 'cdktf' } }],
    });
    this.addOverride('terraform.required_providers', { aws: REQUIRED_PROVIDERS.aws });
    this.addOverride('terraform.required_version', REQUIRED_TERRAFORM_VERSION);
    // Relative, like the environments' local backends: cdktf.out/ is never committed, so keep a copy of this file safe.
    new LocalBackend(this, { path: `terraform.${id}.tfstate` });

    const partition = new DataAwsPartition(this, 'partition').partition;
    const account = new DataAwsCallerIdentity(this, 'account').accountId;

    this.stateBuckets = props.stateBuckets.map((name, i) => stateBucket(this, i === 0 ? 'state' : `state-${i}`, name, props.noncurrentStateDays ?? 365));

    this.oidcProvider = new IamOpenidConnectProvider(this, 'github-oidc', {
      url: `https://${GITHUB_OIDC_HOST}`,
      clientIdList: ['sts.amazonaws.com'],
    });

    const role = (roleId: string, name: string, description: string, subject: string): IamRole => {
      const trust = new DataAwsIamPolicyDocument(this, `${roleId}-trust`, {
        statement: [
          {
            effect: 'Allow',
            actions: ['sts:AssumeRoleWithWebIdentity'],
            principals: [{ type: 'Federated', identifiers: [this.oidcProvider.arn] }],
            condition: [
              { test: 'StringEquals', variable: `${GITHUB_OIDC_HOST}:aud`, values: ['sts.amazonaws.com'] },
              { test: 'StringEquals', variable: `${GITHUB_OIDC_HOST}:sub`, values: [`repo:${props.repository}:${subject}`] },
            ],
          },
        ],
      });
      return new IamRole(this, roleId, { name, description, assumeRolePolicy: trust.json, maxSessionDuration: 3600 });
    };
    const attach = (roleId: string, target: IamRole, policy: string): void => {
      new IamRolePolicyAttachment(this, `${roleId}-${policy}`, { role: target.name, policyArn: `arn:${partition}:iam::aws:policy/${policy}` });
    };
    const inline = (roleId: string, target: IamRole, name: string, statement: DataAwsIamPolicyDocumentStatement[]): void => {
      const doc = new DataAwsIamPolicyDocument(this, `${roleId}-${name}-policy`, { statement });
      new IamRolePolicy(this, `${roleId}-${name}`, { name, role: target.id, policy: doc.json });
    };
    const bucketArn = (bucket: string) => `arn:${partition}:s3:::${bucket}`;
    const readOnly = (roleId: string, target: IamRole, envs: readonly BootstrapEnvironment[]): void => {
      // Reads every resource and state terraform refreshes; the only writes are the lock files terraform plan takes.
      attach(roleId, target, 'ReadOnlyAccess');
      inline(roleId, target, 'plan-state', [
        { sid: 'ListState', effect: 'Allow', actions: ['s3:ListBucket'], resources: unique(envs.map((e) => bucketArn(e.stateBucket))) },
        { sid: 'ReadState', effect: 'Allow', actions: ['s3:GetObject'], resources: envs.map((e) => `${bucketArn(e.stateBucket)}/${e.stateKey}`) },
        { sid: 'LockState', effect: 'Allow', actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'], resources: envs.map((e) => `${bucketArn(e.stateBucket)}/${e.stateKey}.tflock`) },
        // Refreshing the AUTH-token secret version reads its value (the state holds it too, so this grants nothing more).
        { sid: 'RefreshAuthTokenSecrets', effect: 'Allow', actions: ['secretsmanager:GetSecretValue'], resources: envs.map((e) => `arn:${partition}:secretsmanager:*:${account}:secret:${props.app}-${e.name}/*`) },
      ]);
    };

    this.planRole = role('plan-role', `${props.app}-ci-plan`, 'Read-only: terraform plan of pull requests', 'pull_request');
    readOnly('plan-role', this.planRole, props.environments);

    const reviewedPlanRoles = new Map<string, IamRole>();
    const deployRoles = new Map<string, IamRole>();
    for (const env of props.environments) {
      if (env.reviewed === true) {
        const planId = `plan-role-${env.name}`;
        const plan = role(planId, `${props.app}-ci-plan-${env.name}`, `Read-only: the plan of ${env.name} made before a reviewer approves its apply`, `environment:${env.name}-plan`);
        readOnly(planId, plan, [env]);
        // The saved plan waits in the state bucket for the approval (it holds state values, so it is no run artifact).
        inline(planId, plan, 'store-plan', [{ sid: 'StorePlanFile', effect: 'Allow', actions: ['s3:PutObject'], resources: [`${bucketArn(env.stateBucket)}/${planPrefix(env)}*`] }]);
        reviewedPlanRoles.set(env.name, plan);
      }
      const deployId = `deploy-role-${env.name}`;
      const deploy = role(deployId, `${props.app}-ci-deploy-${env.name}`, `Applies the reviewed plan of ${env.name}`, `environment:${env.name}`);
      // Beanstalk's own managed policy for operators: the environment and what it runs on (EC2, Auto Scaling, ELB, CloudFormation, CloudWatch).
      attach(deployId, deploy, 'AdministratorAccess-AWSElasticBeanstalk');
      inline(deployId, deploy, 'deploy-resources', deployStatements(partition, account, props.app, env, bucketArn(env.stateBucket)));
      deployRoles.set(env.name, deploy);
    }
    this.reviewedPlanRoles = reviewedPlanRoles;
    this.deployRoles = deployRoles;

    this.stateBuckets.forEach((b, i) => new TerraformOutput(this, i === 0 ? 'state_bucket' : `state_bucket_${i}`, { value: b.bucket, description: 'S3 bucket holding the environments\' Terraform state' }));
    new TerraformOutput(this, 'plan_role_arn', { value: this.planRole.arn, description: 'Repository variable AWS_PLAN_ROLE_ARN (pull-request plans)' });
    for (const [env, r] of reviewedPlanRoles) {
      new TerraformOutput(this, `plan_role_arn_${env.replace(/-/g, '_')}`, { value: r.arn, description: `Variable AWS_ROLE_ARN of the GitHub environment ${env}-plan` });
    }
    for (const [env, r] of deployRoles) {
      new TerraformOutput(this, `deploy_role_arn_${env.replace(/-/g, '_')}`, { value: r.arn, description: `Variable AWS_ROLE_ARN of the GitHub environment ${env}` });
    }
  }
}

/** What the deploy role of one environment needs beyond Beanstalk's managed policy, each scoped to `<app>-<env>-…`. */
function deployStatements(partition: string, account: string, app: string, env: BootstrapEnvironment, stateBucketArn: string): DataAwsIamPolicyDocumentStatement[] {
  const prefix = `${app}-${env.name}`;
  const iam = (kind: string) => `arn:${partition}:iam::${account}:${kind}/${prefix}-*`;
  return [
    { sid: 'ListState', effect: 'Allow', actions: ['s3:ListBucket'], resources: [stateBucketArn] },
    {
      sid: 'ReadWriteStateAndLock',
      effect: 'Allow',
      actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
      resources: [`${stateBucketArn}/${env.stateKey}`, `${stateBucketArn}/${env.stateKey}.tflock`],
    },
    { sid: 'ReadApprovedPlanFile', effect: 'Allow', actions: ['s3:GetObject'], resources: [`${stateBucketArn}/${planPrefix(env)}*`] },
    {
      sid: 'ArtifactBucket',
      effect: 'Allow',
      actions: [
        's3:CreateBucket', 's3:DeleteBucket', 's3:ListBucket', 's3:ListBucketVersions', 's3:GetBucketLocation', 's3:GetBucketAcl', 's3:GetBucketCORS',
        's3:GetBucketWebsite', 's3:GetBucketVersioning', 's3:PutBucketVersioning', 's3:GetAccelerateConfiguration', 's3:GetBucketRequestPayment',
        's3:GetBucketLogging', 's3:GetLifecycleConfiguration', 's3:PutLifecycleConfiguration', 's3:GetReplicationConfiguration',
        's3:GetEncryptionConfiguration', 's3:PutEncryptionConfiguration', 's3:GetBucketObjectLockConfiguration', 's3:GetBucketTagging',
        's3:PutBucketTagging', 's3:GetBucketPolicy', 's3:PutBucketPolicy', 's3:DeleteBucketPolicy', 's3:GetBucketOwnershipControls',
        's3:PutBucketOwnershipControls', 's3:GetBucketPublicAccessBlock', 's3:PutBucketPublicAccessBlock', 's3:GetObject', 's3:GetObjectTagging',
        's3:PutObject', 's3:PutObjectTagging', 's3:DeleteObject', 's3:DeleteObjectVersion',
      ],
      resources: [`arn:${partition}:s3:::${prefix}-*`],
    },
    {
      sid: 'Redis',
      effect: 'Allow',
      actions: [
        'elasticache:CreateReplicationGroup', 'elasticache:ModifyReplicationGroup', 'elasticache:DeleteReplicationGroup',
        'elasticache:ModifyReplicationGroupShardConfiguration', 'elasticache:IncreaseReplicaCount', 'elasticache:DecreaseReplicaCount',
        'elasticache:DescribeReplicationGroups', 'elasticache:DescribeCacheClusters', 'elasticache:CreateCacheSubnetGroup',
        'elasticache:ModifyCacheSubnetGroup', 'elasticache:DeleteCacheSubnetGroup', 'elasticache:DescribeCacheSubnetGroups',
        'elasticache:DescribeCacheParameterGroups', 'elasticache:AddTagsToResource', 'elasticache:RemoveTagsFromResource',
        'elasticache:ListTagsForResource',
      ],
      resources: [`arn:${partition}:elasticache:*:${account}:replicationgroup:${prefix}-*`, `arn:${partition}:elasticache:*:${account}:subnetgroup:${prefix}-*`,
        `arn:${partition}:elasticache:*:${account}:cluster:${prefix}-*`, `arn:${partition}:elasticache:*:${account}:parametergroup:*`],
    },
    {
      sid: 'RedisAuthTokenSecret',
      effect: 'Allow',
      actions: [
        'secretsmanager:CreateSecret', 'secretsmanager:DeleteSecret', 'secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue',
        'secretsmanager:PutSecretValue', 'secretsmanager:UpdateSecret', 'secretsmanager:TagResource', 'secretsmanager:UntagResource',
        'secretsmanager:GetResourcePolicy', 'secretsmanager:ListSecretVersionIds',
      ],
      resources: [`arn:${partition}:secretsmanager:*:${account}:secret:${prefix}/*`],
    },
    {
      sid: 'EnvironmentRoles',
      effect: 'Allow',
      actions: [
        'iam:CreateRole', 'iam:DeleteRole', 'iam:GetRole', 'iam:UpdateRole', 'iam:UpdateAssumeRolePolicy', 'iam:TagRole', 'iam:UntagRole',
        'iam:ListRolePolicies', 'iam:ListAttachedRolePolicies', 'iam:ListInstanceProfilesForRole', 'iam:GetRolePolicy', 'iam:PutRolePolicy',
        'iam:DeleteRolePolicy', 'iam:AttachRolePolicy', 'iam:DetachRolePolicy', 'iam:PassRole', 'iam:CreateInstanceProfile',
        'iam:DeleteInstanceProfile', 'iam:GetInstanceProfile', 'iam:AddRoleToInstanceProfile', 'iam:RemoveRoleFromInstanceProfile',
        'iam:TagInstanceProfile', 'iam:UntagInstanceProfile',
      ],
      resources: [iam('role'), iam('instance-profile')],
    },
    {
      // ElastiCache's service-linked role, created by AWS the first time an account uses ElastiCache.
      sid: 'ElastiCacheServiceLinkedRole',
      effect: 'Allow',
      actions: ['iam:CreateServiceLinkedRole'],
      resources: [`arn:${partition}:iam::${account}:role/aws-service-role/elasticache.amazonaws.com/*`],
      condition: [{ test: 'StringEquals', variable: 'iam:AWSServiceName', values: ['elasticache.amazonaws.com'] }],
    },
  ];
}

/** A state bucket: versioned, SSE-S3 encrypted, public access blocked, owner-enforced, TLS-only, never destroyed by terraform. */
function stateBucket(scope: Construct, id: string, name: string, noncurrentDays: number): S3Bucket {
  const bucket = new S3Bucket(scope, id, { bucket: name, lifecycle: { preventDestroy: true } });
  new S3BucketPublicAccessBlock(scope, `${id}-public-access-block`, {
    bucket: bucket.id,
    blockPublicAcls: true,
    blockPublicPolicy: true,
    ignorePublicAcls: true,
    restrictPublicBuckets: true,
  });
  new S3BucketOwnershipControls(scope, `${id}-ownership`, { bucket: bucket.id, rule: { objectOwnership: 'BucketOwnerEnforced' } });
  new S3BucketServerSideEncryptionConfigurationA(scope, `${id}-encryption`, {
    bucket: bucket.id,
    rule: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: 'AES256' }, bucketKeyEnabled: true }],
  });
  new S3BucketVersioningA(scope, `${id}-versioning`, { bucket: bucket.id, versioningConfiguration: { status: 'Enabled' } });
  new S3BucketLifecycleConfiguration(scope, `${id}-lifecycle`, {
    bucket: bucket.id,
    rule: [
      {
        id: 'expire-noncurrent-state',
        status: 'Enabled',
        filter: [{ prefix: '' }],
        noncurrentVersionExpiration: [{ noncurrentDays }],
        abortIncompleteMultipartUpload: [{ daysAfterInitiation: 7 }],
      },
      {
        // Saved plans are stale once applied or superseded; the state versions are the history that matters.
        id: 'expire-saved-plans',
        status: 'Enabled',
        filter: [{ prefix: 'plans/' }],
        expiration: [{ days: 30 }],
        noncurrentVersionExpiration: [{ noncurrentDays: 1 }],
      },
    ],
  });
  const tlsOnly = new DataAwsIamPolicyDocument(scope, `${id}-tls-only-policy`, {
    statement: [
      {
        sid: 'DenyInsecureTransport',
        effect: 'Deny',
        principals: [{ type: '*', identifiers: ['*'] }],
        actions: ['s3:*'],
        resources: [bucket.arn, `${bucket.arn}/*`],
        condition: [{ test: 'Bool', variable: 'aws:SecureTransport', values: ['false'] }],
      },
    ],
  });
  new S3BucketPolicy(scope, `${id}-policy`, { bucket: bucket.id, policy: tlsOnly.json });
  return bucket;
}

/** Where the workflow stores an environment's reviewed plan files: `plans/<state key>/<run id>.tfplan`. */
export function planPrefix(env: BootstrapEnvironment): string {
  return `plans/${env.stateKey}/`;
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}
