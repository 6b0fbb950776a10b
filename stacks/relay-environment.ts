import type { ITerraformDependable } from 'cdktf';
import { Construct } from 'constructs';
import {
  ElasticBeanstalkEnvironment,
  type ElasticBeanstalkEnvironmentSetting,
} from '@cdktf/provider-aws/lib/elastic-beanstalk-environment';
import { APP_PORT } from './network';
import { EMF_LOG_FILE } from './relay-metrics-log';

/** Path of the load balancer's health check (service/load-balancer-health.ts): grace period, drain on silence. */
export const LB_HEALTH_PATH = '/healthz/lb';
/** Seconds between the load balancer's health checks; the relay drains after three intervals without one. */
export const HEALTH_CHECK_INTERVAL_SECONDS = 5;
/** Silence of the health checks after which the relay counts itself deregistered and drains. */
export const DEREGISTRATION_SILENCE_MS = 3 * HEALTH_CHECK_INTERVAL_SECONDS * 1000;
/** Seconds the deregistration delay keeps beyond the silence and the drain window. */
export const DEREGISTRATION_MARGIN_SECONDS = 15;
/** The relay's drain window when the environment does not set RELAY_DRAIN_WINDOW_MS. */
const DEFAULT_DRAIN_WINDOW_MS = 20_000;

export interface RelayEnvironmentProps {
  /** Environment name, `<app>-<env>`. */
  readonly name: string;
  /** Solution stack name, pinned (config `platform`), e.g. "64bit Amazon Linux 2023 v6.10.0 running Node.js 22". */
  readonly solutionStackName: string;
  /** Beanstalk application name. */
  readonly applicationName: string;
  /** Application version the environment runs. */
  readonly versionLabel: string;
  /** ARN of the Beanstalk service role (enhanced health, managed updates). */
  readonly serviceRoleArn: string;
  /** Instance profile the relay instances run with. */
  readonly instanceProfileName: string;
  /** VPC of the instances and the load balancer. */
  readonly vpcId: string;
  /** Comma-separated subnet ids of the instances. */
  readonly instanceSubnets: string;
  /** Comma-separated subnet ids of the load balancer. */
  readonly loadBalancerSubnets: string;
  /**
   * Give instances a public address (needed in the default VPC's public subnets, which have no NAT).
   * @default false
   */
  readonly associatePublicIpAddress?: boolean;
  /** Security group of the load balancer, also given to Beanstalk as its managed group. */
  readonly loadBalancerSecurityGroupId: string;
  /** Security group of the instances. */
  readonly instanceSecurityGroupId: string;
  /**
   * Whether the load balancer faces the internet.
   * @default 'public'
   */
  readonly loadBalancerScheme?: 'public' | 'internal';
  /**
   * ALB idle timeout in seconds; must stay well above the relay's 25 s ping interval.
   * @default 300
   */
  readonly idleTimeoutSeconds?: number;
  /**
   * ACM certificate for an HTTPS listener on 443.
   * @default no HTTPS listener
   */
  readonly certificateArn?: string;
  /**
   * TLS policy of the HTTPS listener.
   * @default 'ELBSecurityPolicy-TLS13-1-2-2021-06'
   */
  readonly sslPolicy?: string;
  /**
   * EC2 instance types: one On-Demand type, or several with `spot`.
   * @default ['t3.small']
   */
  readonly instanceTypes?: readonly string[];
  /**
   * Spot instances: the On-Demand base and the On-Demand percentage above it.
   * @default On-Demand only
   */
  readonly spot?: { readonly onDemandBase: number; readonly onDemandAbovePercent: number };
  /**
   * Relay settings as environment variables (LOG_LEVEL, RELAY_DRAIN_WINDOW_MS, …), already validated.
   * @default none
   */
  readonly relayEnvironment?: Readonly<Record<string, string>>;
  /**
   * Secret holding RELAY_TOKEN_SECRET, passed through environmentsecrets.
   * @default no token auth
   */
  readonly tokenSecretArn?: string;
  /**
   * Secret holding RELAY_API_KEY (one key, or two comma-separated during a rotation), passed through environmentsecrets.
   * @default no server API (the relay answers 404 on /api)
   */
  readonly apiKeySecretArn?: string;
  /** CIDR of the VPC: the only peers whose X-Forwarded-For the relay believes (the load balancer lives there). */
  readonly vpcCidr: string;
  /**
   * ALB deregistration delay in seconds.
   * @default silence + drain window + 15 s
   */
  readonly deregistrationDelaySeconds?: number;
  /**
   * What the environment must wait for: the secret versions, IAM attachments and policies and security-group rules
   * the instances need from their first boot (and that must outlive them on destroy).
   * @default none
   */
  readonly dependsOn?: ITerraformDependable[];
  /**
   * Fewest instances.
   * @default 2
   */
  readonly minInstances?: number;
  /**
   * Most instances.
   * @default 4
   */
  readonly maxInstances?: number;
  /**
   * How a deploy replaces instances: a batch at a time with an extra batch, or a fresh set (Immutable).
   * @default 'RollingWithAdditionalBatch'
   */
  readonly deploymentPolicy?: 'RollingWithAdditionalBatch' | 'Immutable';
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
  /** REDIS_URL the relay connects to. */
  readonly redisUrl: string;
  /** REDIS_MODE: `cluster` for a sharded replication group, else `standalone`. */
  readonly redisMode: 'standalone' | 'cluster';
  /** ARN of the secret whose value reaches instances as REDIS_AUTH_TOKEN (environmentsecrets, never a plain variable). */
  readonly redisAuthTokenSecretArn: string;
  /** Prefix of the relay's Redis channels, `<app>-<env>`. */
  readonly channelPrefix: string;
}

/** The Beanstalk environment and every option setting a WebSocket relay behind an ALB needs. */
export class RelayEnvironment extends Construct {
  readonly environment: ElasticBeanstalkEnvironment;
  /** ALB deregistration delay, seconds. */
  readonly deregistrationDelaySeconds: number;
  /** `http(s)://<cname>`. */
  readonly url: string;
  /** `ws(s)://<cname>/ws`. */
  readonly webSocketUrl: string;

  constructor(scope: Construct, id: string, props: RelayEnvironmentProps) {
    super(scope, id);
    const https = props.certificateArn !== undefined;
    const relayEnv = props.relayEnvironment ?? {};
    const drainMs = Number(relayEnv.RELAY_DRAIN_WINDOW_MS ?? DEFAULT_DRAIN_WINDOW_MS);
    this.deregistrationDelaySeconds =
      props.deregistrationDelaySeconds ?? Math.ceil((DEREGISTRATION_SILENCE_MS + drainMs) / 1000) + DEREGISTRATION_MARGIN_SECONDS;
    const types = props.instanceTypes ?? ['t3.small'];
    if (types.length > 1 && !props.spot) {
      throw new Error(`RelayEnvironment ${id}: ${types.length} instance types without Spot; On-Demand uses only the first, so give one type or enable Spot`);
    }

    // `resource: ""` on every setting: without it the provider reports a diff on every plan (terraform-provider-aws#1471).
    const s = (namespace: string, name: string, value: string | number | boolean): ElasticBeanstalkEnvironmentSetting => ({
      namespace,
      name,
      value: String(value),
      resource: '',
    });
    const target = 'aws:elasticbeanstalk:environment:process:default';
    const settings: ElasticBeanstalkEnvironmentSetting[] = [
      s('aws:elasticbeanstalk:environment', 'EnvironmentType', 'LoadBalanced'),
      s('aws:elasticbeanstalk:environment', 'LoadBalancerType', 'application'),
      s('aws:elasticbeanstalk:environment', 'ServiceRole', props.serviceRoleArn),
      s('aws:elbv2:loadbalancer', 'IdleTimeout', props.idleTimeoutSeconds ?? 300),
      s('aws:elbv2:loadbalancer', 'SecurityGroups', props.loadBalancerSecurityGroupId),
      s('aws:elbv2:loadbalancer', 'ManagedSecurityGroup', props.loadBalancerSecurityGroupId),
      // nginx is the AL2023 Node.js platform's default proxy and stays installed, but the ALB's default process
      // targets the relay's own port: no nginx hop, no nginx timeouts on upgraded sockets (docs/infrastructure.md).
      s('aws:elasticbeanstalk:environment:proxy', 'ProxyServer', 'nginx'),
      s(target, 'Port', APP_PORT),
      s(target, 'Protocol', 'HTTP'),
      s(target, 'HealthCheckPath', LB_HEALTH_PATH),
      s(target, 'HealthCheckInterval', HEALTH_CHECK_INTERVAL_SECONDS),
      s(target, 'HealthyThresholdCount', 2),
      s(target, 'UnhealthyThresholdCount', 3),
      s(target, 'MatcherHTTPCode', '200'),
      s(target, 'DeregistrationDelay', this.deregistrationDelaySeconds),
      // Any instance serves any client: the backplane carries messages between them.
      s(target, 'StickinessEnabled', false),
      s('aws:autoscaling:launchconfiguration', 'IamInstanceProfile', props.instanceProfileName),
      s('aws:autoscaling:launchconfiguration', 'SecurityGroups', props.instanceSecurityGroupId),
      s('aws:autoscaling:launchconfiguration', 'DisableDefaultEC2SecurityGroup', true),
      s('aws:autoscaling:launchconfiguration', 'DisableIMDSv1', true),
      s('aws:ec2:instances', 'InstanceTypes', types.join(',')),
      ...(props.spot
        ? [
            s('aws:ec2:instances', 'EnableSpot', true),
            s('aws:ec2:instances', 'SpotFleetOnDemandBase', props.spot.onDemandBase),
            s('aws:ec2:instances', 'SpotFleetOnDemandAboveBasePercentage', props.spot.onDemandAbovePercent),
          ]
        : []),
      s('aws:autoscaling:asg', 'MinSize', props.minInstances ?? 2),
      s('aws:autoscaling:asg', 'MaxSize', props.maxInstances ?? 4),
      s('aws:ec2:vpc', 'VPCId', props.vpcId),
      s('aws:ec2:vpc', 'Subnets', props.instanceSubnets),
      s('aws:ec2:vpc', 'ELBSubnets', props.loadBalancerSubnets),
      s('aws:ec2:vpc', 'ELBScheme', props.loadBalancerScheme ?? 'public'),
      s('aws:ec2:vpc', 'AssociatePublicIpAddress', props.associatePublicIpAddress ?? false),
      s('aws:elasticbeanstalk:command', 'DeploymentPolicy', props.deploymentPolicy ?? 'RollingWithAdditionalBatch'),
      // One instance at a time: its clients reconnect to instances that stay (the default is 100 %, all at once).
      s('aws:elasticbeanstalk:command', 'BatchSizeType', 'Fixed'),
      s('aws:elasticbeanstalk:command', 'BatchSize', 1),
      s('aws:autoscaling:updatepolicy:rollingupdate', 'RollingUpdateEnabled', true),
      s('aws:autoscaling:updatepolicy:rollingupdate', 'MaxBatchSize', 1),
      s('aws:autoscaling:updatepolicy:rollingupdate', 'RollingUpdateType', 'Health'),
      s('aws:elasticbeanstalk:healthreporting:system', 'SystemType', 'enhanced'),
      s('aws:elasticbeanstalk:managedactions', 'ManagedActionsEnabled', true),
      s('aws:elasticbeanstalk:managedactions', 'PreferredStartTime', props.maintenanceWindow ?? 'Sun:03:00'),
      s('aws:elasticbeanstalk:managedactions:platformupdate', 'UpdateLevel', 'minor'),
      s('aws:elasticbeanstalk:cloudwatch:logs', 'StreamLogs', true),
      s('aws:elasticbeanstalk:cloudwatch:logs', 'RetentionInDays', props.logRetentionDays ?? 30),
      s('aws:elasticbeanstalk:cloudwatch:logs', 'DeleteOnTerminate', false),
      // The default trigger scales on NetworkOut; idle sockets cost memory, not bandwidth. Thresholds no average can
      // cross leave it inert: target tracking on connections and CPU scales instead (stacks/relay-scaling.ts).
      s('aws:autoscaling:trigger', 'MeasureName', 'CPUUtilization'),
      s('aws:autoscaling:trigger', 'Statistic', 'Average'),
      s('aws:autoscaling:trigger', 'Unit', 'Percent'),
      s('aws:autoscaling:trigger', 'UpperThreshold', 100),
      s('aws:autoscaling:trigger', 'LowerThreshold', 0),
      s('aws:elasticbeanstalk:application:environment', 'PORT', APP_PORT),
      s('aws:elasticbeanstalk:application:environment', 'NODE_ENV', 'production'),
      s('aws:elasticbeanstalk:application:environment', 'REDIS_URL', props.redisUrl),
      s('aws:elasticbeanstalk:application:environment', 'REDIS_MODE', props.redisMode),
      s('aws:elasticbeanstalk:application:environment', 'RELAY_CHANNEL_PREFIX', props.channelPrefix),
      s('aws:elasticbeanstalk:application:environment', 'RELAY_TRUSTED_PROXY', props.vpcCidr),
      s('aws:elasticbeanstalk:application:environment', 'RELAY_DEREGISTRATION_SILENCE_MS', DEREGISTRATION_SILENCE_MS),
      s('aws:elasticbeanstalk:application:environment', 'RELAY_DRAIN_WINDOW_MS', drainMs),
      // Drain, then close the backplane, well inside the platform's stop timeout.
      s('aws:elasticbeanstalk:application:environment', 'RELAY_SHUTDOWN_TIMEOUT_MS', drainMs + 10_000),
      s('aws:elasticbeanstalk:application:environment', 'RELAY_EMF_FILE', EMF_LOG_FILE),
      ...Object.entries(relayEnv)
        .filter(([name]) => name !== 'RELAY_DRAIN_WINDOW_MS')
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([name, value]) => s('aws:elasticbeanstalk:application:environment', name, value)),
      // Beanstalk resolves the ARN to the secret's value at instance start; the token never sits in the environment's config.
      s('aws:elasticbeanstalk:application:environmentsecrets', 'REDIS_AUTH_TOKEN', props.redisAuthTokenSecretArn),
      ...(props.tokenSecretArn ? [s('aws:elasticbeanstalk:application:environmentsecrets', 'RELAY_TOKEN_SECRET', props.tokenSecretArn)] : []),
      ...(props.apiKeySecretArn ? [s('aws:elasticbeanstalk:application:environmentsecrets', 'RELAY_API_KEY', props.apiKeySecretArn)] : []),
    ];
    if (https) {
      settings.push(
        s('aws:elbv2:listener:443', 'ListenerEnabled', true),
        s('aws:elbv2:listener:443', 'Protocol', 'HTTPS'),
        s('aws:elbv2:listener:443', 'SSLCertificateArns', props.certificateArn),
        s('aws:elbv2:listener:443', 'SSLPolicy', props.sslPolicy ?? 'ELBSecurityPolicy-TLS13-1-2-2021-06'),
        s('aws:elbv2:listener:443', 'DefaultProcess', 'default'),
      );
    }

    this.environment = new ElasticBeanstalkEnvironment(this, 'environment', {
      name: props.name,
      application: props.applicationName,
      tier: 'WebServer',
      solutionStackName: props.solutionStackName,
      versionLabel: props.versionLabel,
      setting: settings,
      dependsOn: props.dependsOn,
    });
    this.url = `${https ? 'https' : 'http'}://${this.environment.cname}`;
    this.webSocketUrl = `${https ? 'wss' : 'ws'}://${this.environment.cname}/ws`;
  }
}
