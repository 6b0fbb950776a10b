import { Fn } from 'cdktf';
import { Construct } from 'constructs';
import { DataAwsSubnets } from '@cdktf/provider-aws/lib/data-aws-subnets';
import { DataAwsVpc } from '@cdktf/provider-aws/lib/data-aws-vpc';
import { SecurityGroup } from '@cdktf/provider-aws/lib/security-group';
import { VpcSecurityGroupEgressRule } from '@cdktf/provider-aws/lib/vpc-security-group-egress-rule';
import { VpcSecurityGroupIngressRule } from '@cdktf/provider-aws/lib/vpc-security-group-ingress-rule';

/** Port the relay listens on behind the load balancer (Beanstalk's default process, no nginx hop). */
export const APP_PORT = 8080;
/** The relay's internal port (RELAY_METRICS_PORT's default, APP_PORT + 1000): /metrics and /healthz/detail. */
export const METRICS_PORT = APP_PORT + 1000;
/** Port of every ElastiCache node. */
export const REDIS_PORT = 6379;

/** An existing VPC and the subnets each tier runs in. */
export interface ExistingVpc {
  /** VPC id, `vpc-…`. */
  readonly vpcId: string;
  /** Subnets of the relay instances. */
  readonly instanceSubnets: readonly string[];
  /**
   * Subnets of the load balancer.
   * @default instanceSubnets
   */
  readonly loadBalancerSubnets?: readonly string[];
  /**
   * Subnets of the ElastiCache subnet group.
   * @default instanceSubnets
   */
  readonly redisSubnets?: readonly string[];
}

export interface NetworkProps {
  /** Prefix of every name, `<app>-<env>`. */
  readonly namePrefix: string;
  /**
   * Existing VPC and subnets.
   * @default the account's default VPC and its default subnets, found with data sources
   */
  readonly vpc?: ExistingVpc;
  /**
   * Whether the load balancer faces the internet.
   * @default 'public'
   */
  readonly loadBalancerScheme?: 'public' | 'internal';
  /**
   * Who may reach the load balancer on 80 (and 443 with HTTPS).
   * @default ['0.0.0.0/0'] when public, the VPC's CIDR block when internal
   */
  readonly allowedCidrs?: readonly string[];
  /**
   * Open 443 on the load balancer (an HTTPS listener is configured).
   * @default false
   */
  readonly https?: boolean;
}

/** VPC lookup and the security groups chained load balancer → instances → Redis. */
export class Network extends Construct {
  readonly vpcId: string;
  /** Comma-separated subnet ids, as Beanstalk option settings take them. */
  readonly instanceSubnets: string;
  readonly loadBalancerSubnets: string;
  /** Subnet ids for the ElastiCache subnet group. */
  readonly redisSubnetIds: string[];
  readonly loadBalancerSecurityGroup: SecurityGroup;
  readonly instanceSecurityGroup: SecurityGroup;
  readonly redisSecurityGroup: SecurityGroup;
  /** The VPC's CIDR block: the internal port's only source, and the peers whose X-Forwarded-For the relay believes. */
  readonly vpcCidr: string;
  /** Every security-group rule, for the environment to depend on (instances need them from their first boot). */
  readonly rules: (VpcSecurityGroupIngressRule | VpcSecurityGroupEgressRule)[] = [];

  constructor(scope: Construct, id: string, props: NetworkProps) {
    super(scope, id);
    const scheme = props.loadBalancerScheme ?? 'public';
    const vpc = new DataAwsVpc(this, 'vpc', props.vpc ? { id: props.vpc.vpcId } : { default: true });
    this.vpcId = vpc.id;
    this.vpcCidr = vpc.cidrBlock;

    if (props.vpc) {
      const instance = [...props.vpc.instanceSubnets];
      this.instanceSubnets = instance.join(',');
      this.loadBalancerSubnets = [...(props.vpc.loadBalancerSubnets ?? instance)].join(',');
      this.redisSubnetIds = [...(props.vpc.redisSubnets ?? instance)];
    } else {
      const subnets = new DataAwsSubnets(this, 'default-subnets', {
        filter: [
          { name: 'vpc-id', values: [vpc.id] },
          { name: 'default-for-az', values: ['true'] },
        ],
      });
      this.instanceSubnets = Fn.join(',', subnets.ids);
      this.loadBalancerSubnets = this.instanceSubnets;
      this.redisSubnetIds = subnets.ids;
    }

    this.loadBalancerSecurityGroup = securityGroup(this, 'load-balancer-sg', `${props.namePrefix}-alb`, 'Relay load balancer: HTTP/HTTPS in, relay port out to the instances', vpc.id);
    this.instanceSecurityGroup = securityGroup(this, 'instance-sg', `${props.namePrefix}-instances`, 'Relay instances: relay port from the load balancer only', vpc.id);
    this.redisSecurityGroup = securityGroup(this, 'redis-sg', `${props.namePrefix}-redis`, 'Relay Redis backplane: 6379 from the relay instances only', vpc.id);

    const cidrs = props.allowedCidrs ? [...props.allowedCidrs] : scheme === 'public' ? ['0.0.0.0/0'] : [vpc.cidrBlock];
    const ports = props.https ? [80, 443] : [80];
    cidrs.forEach((cidr, i) => {
      for (const port of ports) {
        this.rules.push(new VpcSecurityGroupIngressRule(this, `load-balancer-in-${port}-${i}`, {
          securityGroupId: this.loadBalancerSecurityGroup.id,
          description: `HTTP${port === 443 ? 'S' : ''} from allowed clients`,
          ipProtocol: 'tcp',
          fromPort: port,
          toPort: port,
          cidrIpv4: cidr,
        }));
      }
    });
    this.rules.push(new VpcSecurityGroupEgressRule(this, 'load-balancer-out-instances', {
      securityGroupId: this.loadBalancerSecurityGroup.id,
      description: 'Relay port on the instances',
      ipProtocol: 'tcp',
      fromPort: APP_PORT,
      toPort: APP_PORT,
      referencedSecurityGroupId: this.instanceSecurityGroup.id,
    }));

    this.rules.push(new VpcSecurityGroupIngressRule(this, 'instance-in-load-balancer', {
      securityGroupId: this.instanceSecurityGroup.id,
      description: 'Relay port from the load balancer',
      ipProtocol: 'tcp',
      fromPort: APP_PORT,
      toPort: APP_PORT,
      referencedSecurityGroupId: this.loadBalancerSecurityGroup.id,
    }));
    // The internal port (/metrics, /healthz/detail) from inside the VPC only: scrapers and operators, never the ALB.
    this.rules.push(new VpcSecurityGroupIngressRule(this, 'instance-in-metrics', {
      securityGroupId: this.instanceSecurityGroup.id,
      description: 'Relay internal port (metrics, health detail) from inside the VPC',
      ipProtocol: 'tcp',
      fromPort: METRICS_PORT,
      toPort: METRICS_PORT,
      cidrIpv4: vpc.cidrBlock,
    }));
    // Instances reach AWS APIs (Beanstalk, CloudWatch Logs, Secrets Manager, package repos) over HTTPS only.
    this.rules.push(new VpcSecurityGroupEgressRule(this, 'instance-out-https', {
      securityGroupId: this.instanceSecurityGroup.id,
      description: 'HTTPS to AWS APIs and package repositories',
      ipProtocol: 'tcp',
      fromPort: 443,
      toPort: 443,
      cidrIpv4: '0.0.0.0/0',
    }));
    this.rules.push(new VpcSecurityGroupEgressRule(this, 'instance-out-redis', {
      securityGroupId: this.instanceSecurityGroup.id,
      description: 'Redis backplane',
      ipProtocol: 'tcp',
      fromPort: REDIS_PORT,
      toPort: REDIS_PORT,
      referencedSecurityGroupId: this.redisSecurityGroup.id,
    }));

    this.rules.push(new VpcSecurityGroupIngressRule(this, 'redis-in-instances', {
      securityGroupId: this.redisSecurityGroup.id,
      description: 'Redis from the relay instances',
      ipProtocol: 'tcp',
      fromPort: REDIS_PORT,
      toPort: REDIS_PORT,
      referencedSecurityGroupId: this.instanceSecurityGroup.id,
    }));
  }
}

// Rules live in separate resources; the group itself declares none (terraform drops AWS's default allow-all egress).
function securityGroup(scope: Construct, id: string, name: string, description: string, vpcId: string): SecurityGroup {
  return new SecurityGroup(scope, id, { name, description, vpcId, tags: { Name: name } });
}
