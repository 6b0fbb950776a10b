import { Construct } from 'constructs';
import { DataAwsElasticBeanstalkSolutionStack } from '@cdktf/provider-aws/lib/data-aws-elastic-beanstalk-solution-stack';
import {
  ElasticBeanstalkEnvironment,
  type ElasticBeanstalkEnvironmentSetting,
} from '@cdktf/provider-aws/lib/elastic-beanstalk-environment';
import { APP_PORT } from './network';

/** Latest Amazon Linux 2023 Node.js 22 platform; never a hard-coded, retirable stack name. */
export const SOLUTION_STACK_REGEX = '^64bit Amazon Linux 2023 (.*) running Node.js 22$';

export interface RelayEnvironmentProps {
  /** Environment name, `<app>-<env>`. */
  readonly name: string;
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
   * EC2 instance types, first preferred.
   * @default ['t3.small']
   */
  readonly instanceTypes?: readonly string[];
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
  /** `http(s)://<cname>`. */
  readonly url: string;
  /** `ws(s)://<cname>/ws`. */
  readonly webSocketUrl: string;

  constructor(scope: Construct, id: string, props: RelayEnvironmentProps) {
    super(scope, id);
    const https = props.certificateArn !== undefined;
    const stack = new DataAwsElasticBeanstalkSolutionStack(this, 'solution-stack', {
      mostRecent: true,
      nameRegex: SOLUTION_STACK_REGEX,
    });

    const s = (namespace: string, name: string, value: string | number | boolean): ElasticBeanstalkEnvironmentSetting => ({
      namespace,
      name,
      value: String(value),
    });
    const settings: ElasticBeanstalkEnvironmentSetting[] = [
      s('aws:elasticbeanstalk:environment', 'EnvironmentType', 'LoadBalanced'),
      s('aws:elasticbeanstalk:environment', 'LoadBalancerType', 'application'),
      s('aws:elasticbeanstalk:environment', 'ServiceRole', props.serviceRoleArn),
      s('aws:elbv2:loadbalancer', 'IdleTimeout', props.idleTimeoutSeconds ?? 300),
      s('aws:elbv2:loadbalancer', 'SecurityGroups', props.loadBalancerSecurityGroupId),
      s('aws:elbv2:loadbalancer', 'ManagedSecurityGroup', props.loadBalancerSecurityGroupId),
      // The ALB talks to the relay directly: no nginx hop and no nginx timeouts on upgraded sockets.
      s('aws:elasticbeanstalk:environment:proxy', 'ProxyServer', 'none'),
      s('aws:elasticbeanstalk:environment:process:default', 'Port', APP_PORT),
      s('aws:elasticbeanstalk:environment:process:default', 'Protocol', 'HTTP'),
      s('aws:elasticbeanstalk:environment:process:default', 'HealthCheckPath', '/healthz'),
      s('aws:elasticbeanstalk:environment:process:default', 'MatcherHTTPCode', '200'),
      // Any instance serves any client: the backplane carries messages between them.
      s('aws:elasticbeanstalk:environment:process:default', 'StickinessEnabled', false),
      s('aws:autoscaling:launchconfiguration', 'IamInstanceProfile', props.instanceProfileName),
      s('aws:autoscaling:launchconfiguration', 'SecurityGroups', props.instanceSecurityGroupId),
      s('aws:autoscaling:launchconfiguration', 'DisableIMDSv1', true),
      s('aws:ec2:instances', 'InstanceTypes', (props.instanceTypes ?? ['t3.small']).join(',')),
      s('aws:autoscaling:asg', 'MinSize', props.minInstances ?? 2),
      s('aws:autoscaling:asg', 'MaxSize', props.maxInstances ?? 4),
      s('aws:ec2:vpc', 'VPCId', props.vpcId),
      s('aws:ec2:vpc', 'Subnets', props.instanceSubnets),
      s('aws:ec2:vpc', 'ELBSubnets', props.loadBalancerSubnets),
      s('aws:ec2:vpc', 'ELBScheme', props.loadBalancerScheme ?? 'public'),
      s('aws:ec2:vpc', 'AssociatePublicIpAddress', props.associatePublicIpAddress ?? false),
      s('aws:elasticbeanstalk:command', 'DeploymentPolicy', props.deploymentPolicy ?? 'RollingWithAdditionalBatch'),
      s('aws:autoscaling:updatepolicy:rollingupdate', 'RollingUpdateEnabled', true),
      s('aws:autoscaling:updatepolicy:rollingupdate', 'RollingUpdateType', 'Health'),
      s('aws:elasticbeanstalk:healthreporting:system', 'SystemType', 'enhanced'),
      s('aws:elasticbeanstalk:managedactions', 'ManagedActionsEnabled', true),
      s('aws:elasticbeanstalk:managedactions', 'PreferredStartTime', props.maintenanceWindow ?? 'Sun:03:00'),
      s('aws:elasticbeanstalk:managedactions:platformupdate', 'UpdateLevel', 'minor'),
      s('aws:elasticbeanstalk:cloudwatch:logs', 'StreamLogs', true),
      s('aws:elasticbeanstalk:cloudwatch:logs', 'RetentionInDays', props.logRetentionDays ?? 30),
      s('aws:elasticbeanstalk:cloudwatch:logs', 'DeleteOnTerminate', false),
      s('aws:elasticbeanstalk:application:environment', 'PORT', APP_PORT),
      s('aws:elasticbeanstalk:application:environment', 'NODE_ENV', 'production'),
      s('aws:elasticbeanstalk:application:environment', 'REDIS_URL', props.redisUrl),
      s('aws:elasticbeanstalk:application:environment', 'REDIS_MODE', props.redisMode),
      s('aws:elasticbeanstalk:application:environment', 'RELAY_CHANNEL_PREFIX', props.channelPrefix),
      // Beanstalk resolves the ARN to the secret's value at instance start; the token never sits in the environment's config.
      s('aws:elasticbeanstalk:application:environmentsecrets', 'REDIS_AUTH_TOKEN', props.redisAuthTokenSecretArn),
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
      solutionStackName: stack.name,
      versionLabel: props.versionLabel,
      setting: settings,
    });
    this.url = `${https ? 'https' : 'http'}://${this.environment.cname}`;
    this.webSocketUrl = `${https ? 'wss' : 'ws'}://${this.environment.cname}/ws`;
  }
}
