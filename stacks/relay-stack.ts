import { LocalBackend, S3Backend, TerraformOutput, TerraformStack } from 'cdktf';
import { Construct } from 'constructs';
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';
import { RandomProvider } from '@cdktf/provider-random/lib/provider';
import type { AppConfig, EnvironmentConfig } from '../app/config';
import type { ResolvedReleases } from '../app/releases';
import { ArtifactStore } from './artifact-store';
import { BeanstalkIam } from './beanstalk-iam';
import { Network } from './network';
import { RedisBackplane } from './redis-backplane';
import { RelayEnvironment } from './relay-environment';

/** Provider sources written fully qualified so terraform and OpenTofu resolve the same registry namespace. */
export const REQUIRED_PROVIDERS = {
  aws: { source: 'hashicorp/aws', version: '~> 6.25' },
  random: { source: 'hashicorp/random', version: '~> 3.7' },
} as const;

export interface RelayStackProps {
  readonly config: AppConfig;
  readonly env: EnvironmentConfig;
  /** Releases to declare and the active one (from app/releases.ts). */
  readonly releases: ResolvedReleases;
}

/** One environment of the relay: provider, backend, tags, outputs, and the constructs that make it up. */
export class RelayStack extends TerraformStack {
  readonly artifactStore: ArtifactStore;
  readonly iam: BeanstalkIam;
  readonly network: Network;
  readonly redis: RedisBackplane;
  readonly relay: RelayEnvironment;

  constructor(scope: Construct, id: string, props: RelayStackProps) {
    super(scope, id);
    const { config, env, releases } = props;
    const prefix = `${config.app}-${env.name}`;

    new AwsProvider(this, 'aws', {
      region: env.region,
      defaultTags: [{ tags: { project: config.app, environment: env.name, 'managed-by': 'cdktf' } }],
    });
    new RandomProvider(this, 'random');
    // cdktf writes the short source ("aws"); pin the fully qualified form and a version constraint.
    this.addOverride('terraform.required_providers', REQUIRED_PROVIDERS);

    if (env.backend.type === 's3') {
      new S3Backend(this, {
        bucket: env.backend.bucket,
        key: env.backend.key ?? `${config.app}/${env.name}/terraform.tfstate`,
        region: env.backend.region ?? env.region,
        encrypt: true,
        ...(env.backend.dynamodbTable ? { dynamodbTable: env.backend.dynamodbTable } : {}),
      });
      // Native S3 locking (terraform >= 1.10, OpenTofu >= 1.10); cdktf's S3Backend has no field for it yet.
      this.addOverride('terraform.backend.s3.use_lockfile', true);
    } else {
      // Relative: terraform runs in cdktf.out/stacks/<stack>, and no absolute path may reach the synthesized JSON.
      new LocalBackend(this, { path: `terraform.${id}.tfstate` });
    }

    const https = env.loadBalancer.certificateArn !== undefined;
    this.network = new Network(this, 'network', {
      namePrefix: prefix,
      vpc: env.vpc,
      loadBalancerScheme: env.loadBalancer.scheme,
      allowedCidrs: env.loadBalancer.allowedCidrs,
      https,
    });
    this.redis = new RedisBackplane(this, 'redis', {
      namePrefix: prefix,
      topology: env.redis.topology,
      nodeType: env.redis.nodeType,
      engineVersion: env.redis.engineVersion,
      replicas: env.redis.replicas,
      shards: env.redis.shards,
      subnetIds: this.network.redisSubnetIds,
      securityGroupId: this.network.redisSecurityGroup.id,
    });
    this.iam = new BeanstalkIam(this, 'iam', { namePrefix: prefix, authTokenSecretArn: this.redis.authTokenSecret.arn });
    this.artifactStore = new ArtifactStore(this, 'artifacts', {
      namePrefix: prefix,
      bucketName: env.artifactBucket,
      releases: releases.releases,
      retainReleases: env.retainReleases,
      lifecycleRoleArn: this.iam.lifecycleRole.arn,
      readerRole: this.iam.instanceRole.id,
    });
    const active = this.artifactStore.versions.get(releases.active.label);
    if (!active) {
      throw new Error(`RelayStack ${id}: active release ${releases.active.label} is not among the declared releases; fix releases/${env.name}.json`);
    }
    this.relay = new RelayEnvironment(this, 'relay', {
      name: prefix,
      applicationName: this.artifactStore.application.name,
      versionLabel: active.name,
      serviceRoleArn: this.iam.serviceRole.arn,
      instanceProfileName: this.iam.instanceProfile.name,
      vpcId: this.network.vpcId,
      instanceSubnets: this.network.instanceSubnets,
      loadBalancerSubnets: this.network.loadBalancerSubnets,
      associatePublicIpAddress: env.vpc ? env.vpc.associatePublicIpAddress : true,
      loadBalancerSecurityGroupId: this.network.loadBalancerSecurityGroup.id,
      instanceSecurityGroupId: this.network.instanceSecurityGroup.id,
      loadBalancerScheme: env.loadBalancer.scheme,
      idleTimeoutSeconds: env.loadBalancer.idleTimeoutSeconds,
      certificateArn: env.loadBalancer.certificateArn,
      sslPolicy: env.loadBalancer.sslPolicy,
      instanceTypes: env.instances.types,
      minInstances: env.instances.min,
      maxInstances: env.instances.max,
      deploymentPolicy: env.deploymentPolicy,
      maintenanceWindow: env.maintenanceWindow,
      logRetentionDays: env.logRetentionDays,
      redisUrl: this.redis.url,
      redisMode: this.redis.mode,
      redisAuthTokenSecretArn: this.redis.authTokenSecret.arn,
      channelPrefix: prefix,
    });

    const env$ = this.relay.environment;
    new TerraformOutput(this, 'environment_name', { value: env$.name, description: 'Beanstalk environment name' });
    new TerraformOutput(this, 'url', { value: this.relay.url, description: 'Load balancer URL' });
    new TerraformOutput(this, 'websocket_url', { value: this.relay.webSocketUrl, description: 'WebSocket endpoint clients connect to' });
    // Read back from the environment so that switching the active release changes only its version_label.
    new TerraformOutput(this, 'active_version_label', { value: env$.versionLabel, description: 'Application version the environment runs' });
    new TerraformOutput(this, 'redis_endpoint', { value: this.redis.endpointAddress, description: 'Redis endpoint (configuration endpoint for cluster)' });
    new TerraformOutput(this, 'artifact_bucket', { value: this.artifactStore.bucket.bucket, description: 'S3 bucket holding application versions' });
  }
}
