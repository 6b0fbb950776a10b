import { Construct } from 'constructs';
import { CloudwatchDashboard } from '@cdktf/provider-aws/lib/cloudwatch-dashboard';
import { CloudwatchMetricAlarm } from '@cdktf/provider-aws/lib/cloudwatch-metric-alarm';
import { SnsTopic } from '@cdktf/provider-aws/lib/sns-topic';
import { SnsTopicSubscription } from '@cdktf/provider-aws/lib/sns-topic-subscription';
import { RELAY_METRIC_DIMENSION, RELAY_METRIC_NAMESPACE } from './relay-scaling';

export interface RelayAlarmsProps {
  /** `<app>-<env>`: names, and the relay metrics' Environment dimension. */
  readonly namePrefix: string;
  readonly region: string;
  /** `app/<name>/<id>` of the load balancer. */
  readonly loadBalancerArnSuffix: string;
  /** `targetgroup/<name>/<id>` of the environment's default process. */
  readonly targetGroupArnSuffix: string;
  /** Name of the environment's Auto Scaling group. */
  readonly autoscalingGroupName: string;
  /** ElastiCache node ids (CacheClusterId dimension), primaries and replicas. */
  readonly cacheNodes: readonly string[];
  /** The replica node ids, for the replication-lag alarm. */
  readonly cacheReplicas: readonly string[];
  /** Subscribed to the alarm topic. @default no subscription */
  readonly email?: string;
}

interface AlarmSpec {
  readonly id: string;
  readonly description: string;
  readonly namespace: string;
  readonly metricName: string;
  readonly dimensions: Record<string, string>;
  readonly statistic: 'Average' | 'Sum' | 'Maximum';
  readonly threshold: number;
  readonly periods?: number;
  readonly missing?: 'notBreaching' | 'breaching';
}

/** One SNS topic, the alarms an on-call engineer acts on, and one dashboard per environment. */
export class RelayAlarms extends Construct {
  readonly topic: SnsTopic;
  readonly alarms: CloudwatchMetricAlarm[] = [];
  readonly dashboard: CloudwatchDashboard;

  constructor(scope: Construct, id: string, props: RelayAlarmsProps) {
    super(scope, id);
    const p = props.namePrefix;
    this.topic = new SnsTopic(this, 'topic', { name: `${p}-alarms` });
    if (props.email) {
      new SnsTopicSubscription(this, 'email', { topicArn: this.topic.arn, protocol: 'email', endpoint: props.email });
    }
    const lb = { LoadBalancer: props.loadBalancerArnSuffix };
    const relay = { [RELAY_METRIC_DIMENSION]: p };
    const specs: AlarmSpec[] = [
      { id: 'unhealthy-hosts', description: 'Targets failing the load balancer health check', namespace: 'AWS/ApplicationELB', metricName: 'UnHealthyHostCount', dimensions: { ...lb, TargetGroup: props.targetGroupArnSuffix }, statistic: 'Maximum', threshold: 0, periods: 3 },
      { id: 'alb-5xx', description: '5xx answered by the load balancer itself (no healthy target, target reset)', namespace: 'AWS/ApplicationELB', metricName: 'HTTPCode_ELB_5XX_Count', dimensions: lb, statistic: 'Sum', threshold: 10 },
      { id: 'target-5xx', description: '5xx answered by the relays (draining, full, backplane down past its grace)', namespace: 'AWS/ApplicationELB', metricName: 'HTTPCode_Target_5XX_Count', dimensions: lb, statistic: 'Sum', threshold: 50 },
      { id: 'rejected-connections', description: 'Connections the load balancer refused (its connection limit)', namespace: 'AWS/ApplicationELB', metricName: 'RejectedConnectionCount', dimensions: lb, statistic: 'Sum', threshold: 0 },
      { id: 'backplane-down', description: 'A relay has not reached the backplane for more than 60 s', namespace: RELAY_METRIC_NAMESPACE, metricName: 'BackplaneDownSeconds', dimensions: relay, statistic: 'Maximum', threshold: 60 },
      { id: 'slow-consumers', description: 'Clients cut off as slow consumers (1013)', namespace: RELAY_METRIC_NAMESPACE, metricName: 'SlowConsumerCutoffs', dimensions: relay, statistic: 'Sum', threshold: 100 },
      ...props.cacheNodes.flatMap((node): AlarmSpec[] => [
        { id: `redis-cpu-${node}`, description: `Redis engine CPU of ${node}`, namespace: 'AWS/ElastiCache', metricName: 'EngineCPUUtilization', dimensions: { CacheClusterId: node }, statistic: 'Average', threshold: 80, periods: 3 },
        { id: `redis-memory-${node}`, description: `Redis memory use of ${node} (of maxmemory)`, namespace: 'AWS/ElastiCache', metricName: 'DatabaseMemoryUsagePercentage', dimensions: { CacheClusterId: node }, statistic: 'Maximum', threshold: 80 },
        { id: `redis-evictions-${node}`, description: `Keys evicted on ${node}: history lost before its TTL`, namespace: 'AWS/ElastiCache', metricName: 'Evictions', dimensions: { CacheClusterId: node }, statistic: 'Sum', threshold: 0 },
      ]),
      ...props.cacheReplicas.map((node): AlarmSpec => ({ id: `redis-replication-lag-${node}`, description: `Replication lag of ${node}, seconds`, namespace: 'AWS/ElastiCache', metricName: 'ReplicationLag', dimensions: { CacheClusterId: node }, statistic: 'Maximum', threshold: 5, periods: 3 })),
    ];
    for (const spec of specs) {
      this.alarms.push(
        new CloudwatchMetricAlarm(this, spec.id, {
          alarmName: `${p}-${spec.id}`,
          alarmDescription: spec.description,
          namespace: spec.namespace,
          metricName: spec.metricName,
          dimensions: spec.dimensions,
          statistic: spec.statistic,
          period: 60,
          evaluationPeriods: spec.periods ?? 1,
          threshold: spec.threshold,
          comparisonOperator: 'GreaterThanThreshold',
          treatMissingData: spec.missing ?? 'notBreaching',
          alarmActions: [this.topic.arn],
          okActions: [this.topic.arn],
        }),
      );
    }

    const metric = (namespace: string, name: string, dims: Record<string, string>, stat: string): unknown[] => [
      namespace,
      name,
      ...Object.entries(dims).flat(),
      { stat },
    ];
    const widget = (title: string, metrics: unknown[][], x: number, y: number): Record<string, unknown> => ({
      type: 'metric',
      x,
      y,
      width: 12,
      height: 6,
      properties: { title, region: props.region, view: 'timeSeries', period: 60, metrics },
    });
    const redis = (name: string, stat: string): unknown[][] => props.cacheNodes.map((n) => metric('AWS/ElastiCache', name, { CacheClusterId: n }, stat));
    this.dashboard = new CloudwatchDashboard(this, 'dashboard', {
      dashboardName: p,
      dashboardBody: JSON.stringify({
        widgets: [
          widget('Connections per instance (average) and in total', [metric(RELAY_METRIC_NAMESPACE, 'Connections', relay, 'Average'), metric(RELAY_METRIC_NAMESPACE, 'Connections', relay, 'Sum')], 0, 0),
          widget('Deliveries per second', [metric(RELAY_METRIC_NAMESPACE, 'DeliveriesPerSecond', relay, 'Sum')], 12, 0),
          // Per-instance p50/p99 per minute (EMF): the worst instance's p99 and the instances' average p50.
          widget('Publish latency (ms): p50 average, p99 and max of the worst instance', [metric(RELAY_METRIC_NAMESPACE, 'PublishLatencyP50', relay, 'Average'), metric(RELAY_METRIC_NAMESPACE, 'PublishLatencyP99', relay, 'Maximum'), metric(RELAY_METRIC_NAMESPACE, 'PublishLatencyMax', relay, 'Maximum')], 0, 6),
          widget('Backplane: instances up, longest outage (s)', [metric(RELAY_METRIC_NAMESPACE, 'BackplaneUp', relay, 'Sum'), metric(RELAY_METRIC_NAMESPACE, 'BackplaneDownSeconds', relay, 'Maximum')], 12, 6),
          widget('Instances in service', [metric('AWS/AutoScaling', 'GroupInServiceInstances', { AutoScalingGroupName: props.autoscalingGroupName }, 'Average')], 0, 12),
          widget('Redis engine CPU and memory', [...redis('EngineCPUUtilization', 'Average'), ...redis('DatabaseMemoryUsagePercentage', 'Maximum')], 12, 12),
        ],
      }),
    });
  }
}
