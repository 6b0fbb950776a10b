import { Construct } from 'constructs';
import { AutoscalingPolicy } from '@cdktf/provider-aws/lib/autoscaling-policy';

/** Namespace and dimension of the relay's embedded-metric-format metrics (service/emf-metrics.ts). */
export const RELAY_METRIC_NAMESPACE = 'Relay';
export const RELAY_METRIC_DIMENSION = 'Environment';

/**
 * Memory one connection is budgeted: the measured idle footprint is about 6.5 KB (BENCHMARKS.md, idle footprint);
 * eight times that leaves room for send buffers, history replays and V8's headroom under load.
 */
export const BYTES_PER_CONNECTION = 52 * 1024;
/** Share of an instance's memory the connections may take; the rest is the OS, the agents, nginx and Node itself. */
const MEMORY_SHARE = 0.5;

/** Memory (MiB) of the instance types the config accepts without `scaling.connectionsPerInstance`. */
export const INSTANCE_MEMORY_MIB: Readonly<Record<string, number>> = {
  't3.micro': 1024, 't3.small': 2048, 't3.medium': 4096, 't3.large': 8192,
  't4g.micro': 1024, 't4g.small': 2048, 't4g.medium': 4096, 't4g.large': 8192,
  'c6g.large': 4096, 'c6g.xlarge': 8192, 'c7g.large': 4096, 'c7g.xlarge': 8192,
  'c6i.large': 4096, 'c7i.large': 4096, 'm6g.large': 8192, 'm7g.large': 8192, 'm6i.large': 8192, 'm7i.large': 8192,
  'r6g.large': 16384, 'r7g.large': 16384,
};

/**
 * Average connections per instance to aim at: what half the smallest instance type's memory holds at
 * BYTES_PER_CONNECTION, and never above 70 % of RELAY_MAX_CONNECTIONS (the instance refuses upgrades past it).
 */
export function connectionTarget(instanceTypes: readonly string[], maxConnections: number): number {
  const memories = instanceTypes.map((t) => INSTANCE_MEMORY_MIB[t]);
  const unknown = instanceTypes.filter((_, i) => memories[i] === undefined);
  if (unknown.length > 0) {
    throw new Error(
      `no memory size known for ${unknown.join(', ')}; set scaling.connectionsPerInstance in the config (known types: ${Object.keys(INSTANCE_MEMORY_MIB).join(', ')})`,
    );
  }
  const byMemory = Math.floor((Math.min(...memories) * 1024 * 1024 * MEMORY_SHARE) / BYTES_PER_CONNECTION);
  return Math.max(100, Math.min(byMemory, Math.floor(maxConnections * 0.7)));
}

export interface RelayScalingProps {
  /** `<app>-<env>`: policy names and the metric's Environment dimension. */
  readonly namePrefix: string;
  /** Name of the environment's Auto Scaling group. */
  readonly autoscalingGroupName: string;
  /** Target of the average connections per instance. */
  readonly connectionsPerInstance: number;
  /** Target of the average CPU utilisation, percent. */
  readonly cpuPercent: number;
}

/** Target tracking on what a relay spends: connections (memory), and CPU (fan-out). */
export class RelayScaling extends Construct {
  readonly connections: AutoscalingPolicy;
  readonly cpu: AutoscalingPolicy;

  constructor(scope: Construct, id: string, props: RelayScalingProps) {
    super(scope, id);
    this.connections = new AutoscalingPolicy(this, 'connections', {
      name: `${props.namePrefix}-connections`,
      autoscalingGroupName: props.autoscalingGroupName,
      policyType: 'TargetTrackingScaling',
      // A new instance's first minute counts it with no connections; warm-up keeps it out of the average meanwhile.
      estimatedInstanceWarmup: 120,
      targetTrackingConfiguration: {
        targetValue: props.connectionsPerInstance,
        customizedMetricSpecification: {
          namespace: RELAY_METRIC_NAMESPACE,
          metricName: 'Connections',
          statistic: 'Average',
          metricDimension: [{ name: RELAY_METRIC_DIMENSION, value: props.namePrefix }],
        },
      },
    });
    this.cpu = new AutoscalingPolicy(this, 'cpu', {
      name: `${props.namePrefix}-cpu`,
      autoscalingGroupName: props.autoscalingGroupName,
      policyType: 'TargetTrackingScaling',
      estimatedInstanceWarmup: 120,
      targetTrackingConfiguration: {
        targetValue: props.cpuPercent,
        predefinedMetricSpecification: { predefinedMetricType: 'ASGAverageCPUUtilization' },
      },
    });
  }
}
