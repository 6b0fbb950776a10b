import { type ITerraformDependable, Fn, LocalBackend, S3Backend, TerraformOutput, TerraformStack, Token } from 'cdktf';
import { Construct } from 'constructs';
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';
import { RandomProvider } from '@cdktf/provider-random/lib/provider';
import { Password } from '@cdktf/provider-random/lib/password';
import { SecretsmanagerSecret } from '@cdktf/provider-aws/lib/secretsmanager-secret';
import { SecretsmanagerSecretVersion } from '@cdktf/provider-aws/lib/secretsmanager-secret-version';
import { RelayAlarms } from './relay-alarms';
import { RelayCertificate, type RelayHttpsProps } from './relay-https';
import { EnvironmentLoadBalancer } from './relay-load-balancer';
import { RelayMetricsLog } from './relay-metrics-log';
import { RelayScaling, connectionTarget } from './relay-scaling';
import { ArtifactStore, type ApplicationRelease } from './artifact-store';
import { BeanstalkIam } from './beanstalk-iam';
import { ElastiCacheBackplane, type ElastiCacheBackplaneProps } from './elasticache-backplane';
import { Network, type ExistingVpc } from './network';
import { RelayEnvironment, type RelayEnvironmentProps } from './relay-environment';

/**
 * Provider sources written fully qualified so terraform and OpenTofu resolve the same registry namespace, pinned to the
 * exact versions the generated bindings (@cdktf/provider-aws, @cdktf/provider-random) were built from: a plan made in CI
 * and its apply use the same provider, and an upgrade is a reviewed change.
 */
export const REQUIRED_PROVIDERS = {
  aws: { source: 'hashicorp/aws', version: '6.25.0' },
  random: { source: 'hashicorp/random', version: '3.7.2' },
} as const;

/** Native S3 state locking (`use_lockfile`) needs terraform or OpenTofu 1.10 or newer. */
export const REQUIRED_TERRAFORM_VERSION = '>= 1.10.0';

/** Object key of an environment's state when its S3 backend names none. */
export function defaultStateKey(app: string, environment: string): string {
  return `${app}/${environment}/terraform.tfstate`;
}

/** Terraform state in an S3 bucket, locked with S3's native lock file. */
export interface S3StateBackend {
  readonly type: 's3';
  /** Bucket holding the state (it must exist). */
  readonly bucket: string;
  /**
   * Object key of the state.
   * @default `<app>/<environment>/terraform.tfstate`
   */
  readonly key?: string;
  /**
   * Region of the bucket.
   * @default the stack's region
   */
  readonly region?: string;
  /**
   * DynamoDB table for the older lock mechanism, kept for terraform < 1.10.
   * @default no table (the native lock file only)
   */
  readonly dynamodbTable?: string;
}

/** Terraform state in the stack's own output folder, `terraform.<stack id>.tfstate`. */
export interface LocalStateBackend {
  readonly type: 'local';
}

/** Where terraform keeps the stack's state. */
export type StateBackend = LocalStateBackend | S3StateBackend;

/** An existing VPC for the environment. */
export interface RelayVpc extends ExistingVpc {
  /**
   * Give instances a public address (needed in public subnets without a NAT gateway).
   * @default false
   */
  readonly associatePublicIpAddress?: boolean;
}

/** The application load balancer in front of the instances. */
export interface RelayLoadBalancer {
  /**
   * Whether it faces the internet.
   * @default 'public'
   */
  readonly scheme?: 'public' | 'internal';
  /**
   * Who may reach it on 80 (and 443 with HTTPS).
   * @default ['0.0.0.0/0'] when public, the VPC's CIDR block when internal
   */
  readonly allowedCidrs?: readonly string[];
  /**
   * Idle timeout in seconds; must stay well above the relay's 25 s ping interval.
   * @default 300
   */
  readonly idleTimeoutSeconds?: number;
  /**
   * ACM certificate: adds an HTTPS listener on 443.
   * @default no HTTPS listener
   */
  readonly certificateArn?: string;
  /**
   * TLS policy of the HTTPS listener.
   * @default 'ELBSecurityPolicy-TLS13-1-2-2021-06'
   */
  readonly sslPolicy?: string;
}

/** The relay instances Beanstalk scales. */
export interface RelayInstances {
  /**
   * EC2 instance types, first preferred.
   * @default ['t3.small']
   */
  readonly types?: readonly string[];
  /**
   * Fewest instances.
   * @default 2
   */
  readonly min?: number;
  /**
   * Most instances.
   * @default 4
   */
  readonly max?: number;
}

/** The ElastiCache backplane: topology, node type, engine version, replicas and shards. */
export type RelayRedis = Pick<ElastiCacheBackplaneProps, 'topology' | 'nodeType' | 'engineVersion' | 'replicas' | 'shards' | 'engine' | 'maintenanceWindow'>;

/** A secret the stack generates in Secrets Manager, an existing secret by ARN, or none. */
export type RelaySecretSetting = 'generate' | 'off' | { readonly secretArn: string };

/** Token auth: a secret the stack generates, an existing secret, or none (only with a policy waiver). */
export type RelayTokenAuth = RelaySecretSetting;

/** The server API's bearer key: generated, an existing secret, or off (the relay then answers 404 on /api). */
export type RelayApiKey = RelaySecretSetting;

export interface RelayStackProps {
  /** Application name: the first half of every resource name `<app>-<environment>`, and the `project` tag. */
  readonly app: string;
  /** Environment name: the second half of every resource name, and the `environment` tag. */
  readonly environment: string;
  /** AWS region of every resource. */
  readonly region: string;
  /**
   * Where terraform keeps the state.
   * @default { type: 'local' }
   */
  readonly backend?: StateBackend;
  /**
   * Existing VPC and subnets.
   * @default the account's default VPC and its default subnets, instances with public addresses
   */
  readonly vpc?: RelayVpc;
  /**
   * The load balancer.
   * @default public, open to everyone on 80, 300 s idle timeout, no HTTPS
   */
  readonly loadBalancer?: RelayLoadBalancer;
  /**
   * Instance types and counts.
   * @default 2-4 t3.small
   */
  readonly instances?: RelayInstances;
  /**
   * The Redis backplane.
   * @default one cache.t4g.micro node (topology 'single')
   */
  readonly redis?: RelayRedis;
  /**
   * How Beanstalk replaces instances on a deploy.
   * @default 'RollingWithAdditionalBatch'
   */
  readonly deploymentPolicy?: RelayEnvironmentProps['deploymentPolicy'];
  /**
   * Weekly start of the managed-update window (UTC), e.g. "Sun:03:00".
   * @default 'Sun:03:00'
   */
  readonly maintenanceWindow?: string;
  /**
   * Days CloudWatch keeps the instances' logs.
   * @default 30
   */
  readonly logRetentionDays?: number;
  /**
   * Application versions Beanstalk keeps (the app-version lifecycle's max count).
   * @default 5
   */
  readonly retainReleases?: number;
  /**
   * Name of the artifact bucket.
   * @default `<app>-<environment>-artifacts-<account id>`
   */
  readonly artifactBucket?: string;
  /** Every release to declare, oldest first: one S3 object and one application version each. */
  readonly releases: readonly ApplicationRelease[];
  /** Label of the release the environment runs; must be one of `releases`. */
  readonly activeRelease: string;
  /** Solution stack name, pinned, e.g. "64bit Amazon Linux 2023 v6.10.0 running Node.js 22". */
  readonly platform: string;
  /**
   * HTTPS: an existing certificate, or a domain in a Route 53 zone (certificate and alias created); :80 redirects.
   * @default `loadBalancer.certificateArn`, else HTTP only
   */
  readonly https?: RelayHttpsProps;
  /**
   * Token auth for clients.
   * @default 'generate'
   */
  readonly tokenAuth?: RelayTokenAuth;
  /**
   * The server API's key (RELAY_API_KEY), only ever through `environmentsecrets`.
   * @default 'off'
   */
  readonly apiKey?: RelayApiKey;
  /**
   * Relay settings as environment variables, validated by the config.
   * @default none
   */
  readonly relayEnvironment?: Readonly<Record<string, string>>;
  /**
   * Target-tracking targets.
   * @default connections derived from the instance type, CPU 60 %
   */
  readonly scaling?: { readonly connectionsPerInstance?: number; readonly cpuPercent?: number };
  /**
   * Spot instances.
   * @default On-Demand only
   */
  readonly spot?: { readonly onDemandBase: number; readonly onDemandAbovePercent: number };
  /**
   * Email subscribed to the alarm topic.
   * @default none
   */
  readonly alarmEmail?: string;
  /**
   * ALB deregistration delay, seconds.
   * @default health-check silence + drain window + margin
   */
  readonly deregistrationDelaySeconds?: number;
  /**
   * Keep data on destroy: the artifact bucket refuses to be destroyed while it holds releases, secrets keep a 7-day
   * recovery window.
   * @default false
   */
  readonly protectData?: boolean;
}

/** One environment of the relay: provider, backend, tags, outputs, and the constructs that make it up. */
export class RelayStack extends TerraformStack {
  readonly artifactStore: ArtifactStore;
  readonly iam: BeanstalkIam;
  readonly network: Network;
  readonly redis: ElastiCacheBackplane;
  readonly relay: RelayEnvironment;
  readonly loadBalancer: EnvironmentLoadBalancer;
  readonly scaling: RelayScaling;
  readonly alarms: RelayAlarms;
  readonly metricsLog: RelayMetricsLog;

  constructor(scope: Construct, id: string, props: RelayStackProps) {
    super(scope, id);
    const prefix = `${props.app}-${props.environment}`;
    const backend = props.backend ?? { type: 'local' };
    const loadBalancer = props.loadBalancer ?? {};
    const instances = props.instances ?? {};
    const redis = props.redis ?? {};

    new AwsProvider(this, 'aws', {
      region: props.region,
      defaultTags: [{ tags: { project: props.app, environment: props.environment, 'managed-by': 'cdktf' } }],
    });
    new RandomProvider(this, 'random');
    // cdktf writes the short source ("aws"); pin the fully qualified form and a version constraint.
    this.addOverride('terraform.required_providers', REQUIRED_PROVIDERS);
    this.addOverride('terraform.required_version', REQUIRED_TERRAFORM_VERSION);

    if (backend.type === 's3') {
      new S3Backend(this, {
        bucket: backend.bucket,
        key: backend.key ?? defaultStateKey(props.app, props.environment),
        region: backend.region ?? props.region,
        encrypt: true,
        ...(backend.dynamodbTable ? { dynamodbTable: backend.dynamodbTable } : {}),
      });
      // Native S3 locking (terraform >= 1.10, OpenTofu >= 1.10); cdktf's S3Backend has no field for it yet.
      this.addOverride('terraform.backend.s3.use_lockfile', true);
    } else {
      // Relative: terraform runs in cdktf.out/stacks/<stack>, and no absolute path may reach the synthesized JSON.
      new LocalBackend(this, { path: `terraform.${id}.tfstate` });
    }

    const httpsProps: RelayHttpsProps | undefined =
      props.https ?? (loadBalancer.certificateArn !== undefined ? { certificateArn: loadBalancer.certificateArn } : undefined);
    const https = httpsProps !== undefined;
    const protectData = props.protectData ?? false;
    this.network = new Network(this, 'network', {
      namePrefix: prefix,
      vpc: props.vpc,
      loadBalancerScheme: loadBalancer.scheme,
      allowedCidrs: loadBalancer.allowedCidrs,
      https,
    });
    this.redis = new ElastiCacheBackplane(this, 'redis', {
      ...redis,
      namePrefix: prefix,
      subnetIds: this.network.redisSubnetIds,
      securityGroupId: this.network.redisSecurityGroup.id,
      protectData,
    });
    const dependsOn: ITerraformDependable[] = [this.redis.authTokenVersion, ...this.network.rules];
    const secretArn = (setting: RelaySecretSetting, id: string, name: string, description: string, length: number): string | undefined => {
      if (setting === 'off') return undefined;
      if (setting !== 'generate') return setting.secretArn;
      const secret = new SecretsmanagerSecret(this, id, { name: `${prefix}/${name}`, description, recoveryWindowInDays: protectData ? 7 : 0 });
      const value = new Password(this, `${id}-value`, { length, special: false });
      // The environment waits for the value: an instance started before it would read an empty secret.
      dependsOn.push(new SecretsmanagerSecretVersion(this, `${id}-version`, { secretId: secret.id, secretString: value.result }));
      return secret.arn;
    };
    const tokenSecretArn = secretArn(
      props.tokenAuth ?? 'generate',
      'token-secret',
      'relay-token-secret',
      'HS256 secret the relay verifies client tokens with (RELAY_TOKEN_SECRET); token issuers sign with it',
      64,
    );
    const apiKeySecretArn = secretArn(
      props.apiKey ?? 'off',
      'api-key',
      'relay-api-key',
      'Bearer key of the relay\'s server API (RELAY_API_KEY): one key, or "old,new" while callers move to a new one',
      48,
    );
    this.iam = new BeanstalkIam(this, 'iam', {
      namePrefix: prefix,
      authTokenSecretArn: this.redis.authTokenSecret.arn,
      otherSecretArns: [tokenSecretArn, apiKeySecretArn].filter((arn): arn is string => arn !== undefined),
    });
    const certificate = httpsProps ? new RelayCertificate(this, 'https', httpsProps) : undefined;
    this.artifactStore = new ArtifactStore(this, 'artifacts', {
      namePrefix: prefix,
      bucketName: props.artifactBucket,
      releases: props.releases,
      retainReleases: props.retainReleases ?? 5,
      lifecycleRoleArn: this.iam.lifecycleRole.arn,
      readerRole: this.iam.instanceRole.id,
      forceDestroy: !protectData,
    });
    // Exists before the first instance streams into it: the instance role may write to it, not create it.
    this.metricsLog = new RelayMetricsLog(this, 'metrics-log', { environmentName: prefix, retentionDays: props.logRetentionDays ?? 30 });
    dependsOn.push(this.metricsLog.logGroup);
    const active = this.artifactStore.versions.get(props.activeRelease);
    if (!active) {
      const declared = props.releases.map((r) => r.label).join(', ') || 'none';
      throw new Error(`RelayStack ${id}: the active release ${props.activeRelease} is not among the declared releases (${declared}); declare it in releases`);
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
      // The default VPC's subnets are public and have no NAT: without a public address instances cannot reach AWS APIs.
      associatePublicIpAddress: props.vpc ? (props.vpc.associatePublicIpAddress ?? false) : true,
      loadBalancerSecurityGroupId: this.network.loadBalancerSecurityGroup.id,
      instanceSecurityGroupId: this.network.instanceSecurityGroup.id,
      loadBalancerScheme: loadBalancer.scheme,
      idleTimeoutSeconds: loadBalancer.idleTimeoutSeconds,
      certificateArn: certificate?.certificateArn,
      sslPolicy: loadBalancer.sslPolicy,
      instanceTypes: instances.types,
      spot: props.spot,
      solutionStackName: props.platform,
      vpcCidr: this.network.vpcCidr,
      relayEnvironment: props.relayEnvironment,
      tokenSecretArn,
      apiKeySecretArn,
      deregistrationDelaySeconds: props.deregistrationDelaySeconds,
      dependsOn: [...dependsOn, ...this.iam.dependables],
      minInstances: instances.min,
      maxInstances: instances.max,
      deploymentPolicy: props.deploymentPolicy,
      maintenanceWindow: props.maintenanceWindow,
      logRetentionDays: props.logRetentionDays,
      redisUrl: this.redis.url,
      redisMode: this.redis.mode,
      redisAuthTokenSecretArn: this.redis.authTokenSecret.arn,
      channelPrefix: prefix,
    });

    const env$ = this.relay.environment;
    const asg = Token.asString(Fn.element(env$.autoscalingGroups, 0));
    this.loadBalancer = new EnvironmentLoadBalancer(this, 'load-balancer', { environment: env$, redirectHttp: https });
    certificate?.aliasTo(this.loadBalancer.dnsName, this.loadBalancer.zoneId);
    const maxConnections = Number(props.relayEnvironment?.RELAY_MAX_CONNECTIONS ?? 10_000);
    this.scaling = new RelayScaling(this, 'scaling', {
      namePrefix: prefix,
      autoscalingGroupName: asg,
      connectionsPerInstance: props.scaling?.connectionsPerInstance ?? connectionTarget(instances.types ?? ['t3.small'], maxConnections),
      cpuPercent: props.scaling?.cpuPercent ?? 60,
    });
    this.alarms = new RelayAlarms(this, 'alarms', {
      namePrefix: prefix,
      region: props.region,
      loadBalancerArnSuffix: this.loadBalancer.arnSuffix,
      targetGroupArnSuffix: this.loadBalancer.targetGroupArnSuffix,
      autoscalingGroupName: asg,
      cacheNodes: this.redis.nodeIds,
      cacheReplicas: this.redis.replicaIds,
      email: props.alarmEmail,
    });
    new TerraformOutput(this, 'environment_name', { value: env$.name, description: 'Beanstalk environment name' });
    new TerraformOutput(this, 'url', { value: this.relay.url, description: 'Load balancer URL' });
    new TerraformOutput(this, 'websocket_url', { value: this.relay.webSocketUrl, description: 'WebSocket endpoint clients connect to' });
    // Read back from the environment so that switching the active release changes only its version_label.
    new TerraformOutput(this, 'active_version_label', { value: env$.versionLabel, description: 'Application version the environment runs' });
    new TerraformOutput(this, 'redis_endpoint', { value: this.redis.endpointAddress, description: 'Redis endpoint (configuration endpoint for cluster)' });
    new TerraformOutput(this, 'artifact_bucket', { value: this.artifactStore.bucket.bucket, description: 'S3 bucket holding application versions' });
  }
}
