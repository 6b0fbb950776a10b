/**
 * The three stacks the repository ships (relay.config.json: dev, staging, prod), synthesized as `npm run synth` does,
 * asserted one alarm, one widget and one wiring at a time: what an on-call engineer and CloudWatch will actually get.
 */
import { join } from 'node:path';
import { Testing } from 'cdktf';
import { loadConfig, type AppConfig, type EnvironmentConfig } from '../../app/config';
import { REPO_ROOT } from '../../app/paths';
import type { ArtifactRef } from '../../app/releases';
import { relayStackProps } from '../../app/synth';
import { EMF_DIMENSION, EMF_NAMESPACE, emfDocument } from '../../service/emf-metrics';
import { EMF_LOG_FILE, metricsLogGroupName } from '../../stacks/relay-metrics-log';
import { RELAY_METRIC_DIMENSION, RELAY_METRIC_NAMESPACE } from '../../stacks/relay-scaling';
import { RelayStack } from '../../stacks/relay-stack';

type Body = Record<string, unknown>;
interface Doc {
  resource: Record<string, Record<string, Body>>;
  data: Record<string, Record<string, Body>>;
}
interface Setting {
  namespace: string;
  name: string;
  value: string;
}

const release: ArtifactRef = { label: 'relay-0.1.0-0123456789ab', sha256: '0'.repeat(64), md5: '0'.repeat(32), zipPath: '/nonexistent/relay.zip' };
const shipped: AppConfig = loadConfig(join(REPO_ROOT, 'relay.config.json'));

function synth(config: AppConfig, env: EnvironmentConfig): Doc {
  const stack = new RelayStack(Testing.app(), `relay-${env.name}`, relayStackProps(config, env, { releases: [release], active: release }));
  return JSON.parse(Testing.synth(stack)) as Doc;
}
const only = (doc: Doc, kind: 'resource' | 'data', type: string): [string, Body] => {
  const all = Object.entries(doc[kind][type] ?? {});
  expect(all).toHaveLength(1);
  return all[0];
};
const ref = (doc: Doc, kind: 'resource' | 'data', type: string, attribute: string): string => `\${${kind === 'data' ? 'data.' : ''}${type}.${only(doc, kind, type)[0]}.${attribute}}`;
const alarmsOf = (doc: Doc): Map<string, Body> => new Map(Object.values(doc.resource.aws_cloudwatch_metric_alarm).map((a) => [String(a.alarm_name), a]));
const settingsOf = (doc: Doc): Setting[] => only(doc, 'resource', 'aws_elastic_beanstalk_environment')[1].setting as Setting[];

/** ElastiCache node ids of each shipped topology, as ElastiCache names the member clusters. */
const CACHE_NODES: Record<string, { nodes: string[]; replicas: string[] }> = {
  dev: { nodes: ['relay-dev-001'], replicas: [] },
  staging: { nodes: ['relay-staging-001', 'relay-staging-002'], replicas: ['relay-staging-002'] },
  prod: {
    nodes: ['relay-prod-0001-001', 'relay-prod-0001-002', 'relay-prod-0002-001', 'relay-prod-0002-002'],
    replicas: ['relay-prod-0001-002', 'relay-prod-0002-002'],
  },
};

/** The environments relay.config.json ships with; a project may add its own, which these expectations do not describe. */
const SHIPPED = ['dev', 'staging', 'prod'];

describe.each(shipped.environments.filter((env) => SHIPPED.includes(env.name)).map((env) => [env.name, env] as const))('the shipped %s stack', (name, env) => {
  const doc = synth(shipped, env);
  const prefix = `relay-${name}`;
  const topic = ref(doc, 'resource', 'aws_sns_topic', 'arn');
  const lb = ref(doc, 'data', 'aws_lb', 'arn_suffix');
  const targetGroup = ref(doc, 'data', 'aws_lb_target_group', 'arn_suffix');
  const alarms = alarmsOf(doc);
  const relayDims = { [RELAY_METRIC_DIMENSION]: prefix };
  const expectAlarm = (alarm: string, want: Body) => {
    const got = alarms.get(`${prefix}-${alarm}`);
    expect(got).toBeDefined();
    expect(got).toMatchObject({
      comparison_operator: 'GreaterThanThreshold',
      period: 60,
      evaluation_periods: 1,
      treat_missing_data: 'notBreaching',
      alarm_actions: [topic],
      ok_actions: [topic],
      ...want,
    });
  };

  it('is one of dev, staging and prod, all three of which the config holds', () => {
    expect(SHIPPED).toContain(name);
    expect(shipped.environments.filter((e) => SHIPPED.includes(e.name)).map((e) => e.name)).toEqual(SHIPPED);
  });

  it('alarms on unhealthy hosts of the environment\'s target group', () => {
    expectAlarm('unhealthy-hosts', { namespace: 'AWS/ApplicationELB', metric_name: 'UnHealthyHostCount', dimensions: { LoadBalancer: lb, TargetGroup: targetGroup }, statistic: 'Maximum', threshold: 0, evaluation_periods: 3 });
  });

  it('alarms on 5xx from the load balancer and from the relays', () => {
    expectAlarm('alb-5xx', { namespace: 'AWS/ApplicationELB', metric_name: 'HTTPCode_ELB_5XX_Count', dimensions: { LoadBalancer: lb }, statistic: 'Sum', threshold: 10 });
    expectAlarm('target-5xx', { namespace: 'AWS/ApplicationELB', metric_name: 'HTTPCode_Target_5XX_Count', dimensions: { LoadBalancer: lb }, statistic: 'Sum', threshold: 50 });
  });

  it('alarms on connections the load balancer rejected', () => {
    expectAlarm('rejected-connections', { namespace: 'AWS/ApplicationELB', metric_name: 'RejectedConnectionCount', dimensions: { LoadBalancer: lb }, statistic: 'Sum', threshold: 0 });
  });

  it('alarms on backplane-down time and slow-consumer cut-offs from the relay\'s own metrics', () => {
    expectAlarm('backplane-down', { namespace: RELAY_METRIC_NAMESPACE, metric_name: 'BackplaneDownSeconds', dimensions: relayDims, statistic: 'Maximum', threshold: 60 });
    expectAlarm('slow-consumers', { namespace: RELAY_METRIC_NAMESPACE, metric_name: 'SlowConsumerCutoffs', dimensions: relayDims, statistic: 'Sum', threshold: 100 });
  });

  it('alarms on engine CPU, memory and evictions of every ElastiCache node, and replication lag of every replica', () => {
    const { nodes, replicas } = CACHE_NODES[name];
    for (const node of nodes) {
      const dims = { CacheClusterId: node };
      expectAlarm(`redis-cpu-${node}`, { namespace: 'AWS/ElastiCache', metric_name: 'EngineCPUUtilization', dimensions: dims, statistic: 'Average', threshold: 80, evaluation_periods: 3 });
      expectAlarm(`redis-memory-${node}`, { namespace: 'AWS/ElastiCache', metric_name: 'DatabaseMemoryUsagePercentage', dimensions: dims, statistic: 'Maximum', threshold: 80 });
      expectAlarm(`redis-evictions-${node}`, { namespace: 'AWS/ElastiCache', metric_name: 'Evictions', dimensions: dims, statistic: 'Sum', threshold: 0 });
    }
    for (const node of replicas) {
      expectAlarm(`redis-replication-lag-${node}`, { namespace: 'AWS/ElastiCache', metric_name: 'ReplicationLag', dimensions: { CacheClusterId: node }, statistic: 'Maximum', threshold: 5, evaluation_periods: 3 });
    }
    // Nothing else: six load-balancer and relay alarms plus the per-node ones.
    expect(alarms.size).toBe(6 + 3 * nodes.length + replicas.length);
  });

  it('sends the alarms to the environment\'s topic, with no subscription while the config names no email', () => {
    expect(only(doc, 'resource', 'aws_sns_topic')[1]).toEqual({ name: `${prefix}-alarms` });
    expect(env.alarms.email).toBeUndefined();
    expect(doc.resource.aws_sns_topic_subscription).toBeUndefined();
  });

  it('reads the load balancer Beanstalk reports by ARN, so the alarms get the `app/<name>/<id>` suffix', () => {
    const [, data] = only(doc, 'data', 'aws_lb');
    expect(data).toEqual({ arn: `\${element(${ref(doc, 'resource', 'aws_elastic_beanstalk_environment', 'load_balancers').slice(2, -1)}, 0)}` });
    expect(only(doc, 'data', 'aws_lb_listener')[1]).toEqual({ load_balancer_arn: ref(doc, 'data', 'aws_lb', 'arn'), port: 80 });
  });

  it('shows connections, deliveries/s, latency, backplane state, instance count and Redis on one dashboard', () => {
    const [, dashboard] = only(doc, 'resource', 'aws_cloudwatch_dashboard');
    expect(dashboard.dashboard_name).toBe(prefix);
    const body = JSON.parse(String(dashboard.dashboard_body)) as { widgets: { properties: { title: string; region: string; metrics: unknown[][] } }[] };
    const byTitle = new Map(body.widgets.map((w) => [w.properties.title, w.properties]));
    const metricsOf = (title: string) => {
      const widget = byTitle.get(title);
      expect(widget).toBeDefined();
      expect(widget?.region).toBe(env.region);
      return widget?.metrics;
    };
    const relayMetric = (metric: string, stat: string) => [RELAY_METRIC_NAMESPACE, metric, RELAY_METRIC_DIMENSION, prefix, { stat }];
    expect(metricsOf('Connections per instance (average) and in total')).toEqual([relayMetric('Connections', 'Average'), relayMetric('Connections', 'Sum')]);
    expect(metricsOf('Deliveries per second')).toEqual([relayMetric('DeliveriesPerSecond', 'Sum')]);
    const latency = metricsOf('Publish latency (ms): p50 average, p99 and max of the worst instance');
    expect(latency).toEqual([relayMetric('PublishLatencyP50', 'Average'), relayMetric('PublishLatencyP99', 'Maximum'), relayMetric('PublishLatencyMax', 'Maximum')]);
    // The names are the ones the relay's EMF document declares, so the widget is not an empty graph.
    const emf = emfDocument(prefix, 60_000, { connections: 0, deliveriesTotal: 0, backplaneReady: true, backplaneDownMs: 0, slowConsumersTotal: 0, publishLatency: { count: 3, p50: 1, p99: 2, max: 2 } }, undefined) as { _aws: { CloudWatchMetrics: { Metrics: { Name: string; Unit: string }[] }[] } };
    const declared = new Map(emf._aws.CloudWatchMetrics[0]?.Metrics.map((m) => [m.Name, m.Unit]));
    for (const m of latency ?? []) expect(declared.get(String(m[1]))).toBe('Milliseconds');
    expect(JSON.stringify(body)).not.toContain('TargetResponseTime');
    expect(metricsOf('Backplane: instances up, longest outage (s)')).toEqual([relayMetric('BackplaneUp', 'Sum'), relayMetric('BackplaneDownSeconds', 'Maximum')]);
    const asg = `\${element(${ref(doc, 'resource', 'aws_elastic_beanstalk_environment', 'autoscaling_groups').slice(2, -1)}, 0)}`;
    expect(metricsOf('Instances in service')).toEqual([['AWS/AutoScaling', 'GroupInServiceInstances', 'AutoScalingGroupName', asg, { stat: 'Average' }]]);
    const { nodes } = CACHE_NODES[name];
    expect(metricsOf('Redis engine CPU and memory')).toEqual([
      ...nodes.map((n) => ['AWS/ElastiCache', 'EngineCPUUtilization', 'CacheClusterId', n, { stat: 'Average' }]),
      ...nodes.map((n) => ['AWS/ElastiCache', 'DatabaseMemoryUsagePercentage', 'CacheClusterId', n, { stat: 'Maximum' }]),
    ]);
    expect(body.widgets).toHaveLength(6);
  });

  it('streams the EMF file into a log group the stack owns, before the environment exists, in the namespace the relay writes', () => {
    // The relay writes the file and the metrics the scaling policy and alarms read: one namespace, one dimension.
    expect([EMF_NAMESPACE, EMF_DIMENSION]).toEqual([RELAY_METRIC_NAMESPACE, RELAY_METRIC_DIMENSION]);
    expect(settingsOf(doc).find((s) => s.name === 'RELAY_EMF_FILE')).toEqual({ namespace: 'aws:elasticbeanstalk:application:environment', name: 'RELAY_EMF_FILE', value: EMF_LOG_FILE, resource: '' });
    expect(settingsOf(doc).find((s) => s.name === 'RELAY_CHANNEL_PREFIX')?.value).toBe(prefix);
    const [id, group] = only(doc, 'resource', 'aws_cloudwatch_log_group');
    expect(group).toEqual({ name: metricsLogGroupName(prefix), retention_in_days: env.logRetentionDays });
    expect(only(doc, 'resource', 'aws_elastic_beanstalk_environment')[1].depends_on).toContain(`aws_cloudwatch_log_group.${id}`);
    const [, policy] = Object.entries(doc.resource.aws_autoscaling_policy).find(([, p]) => String(p.name).endsWith('-connections')) ?? [];
    expect(policy?.target_tracking_configuration).toMatchObject({
      customized_metric_specification: { namespace: EMF_NAMESPACE, metric_name: 'Connections', statistic: 'Average', metric_dimension: [{ name: EMF_DIMENSION, value: prefix }] },
    });
  });
});

describe('alarm notifications', () => {
  it('subscribes the configured email to the topic every alarm notifies', () => {
    // GIVEN the shipped prod with an email WHEN synthesized THEN the topic gets one email subscription
    const prod = shipped.environments.find((e) => e.name === 'prod') as EnvironmentConfig;
    const doc = synth(shipped, { ...prod, alarms: { email: 'oncall@example.com' } });
    const topic = ref(doc, 'resource', 'aws_sns_topic', 'arn');
    expect(only(doc, 'resource', 'aws_sns_topic_subscription')[1]).toEqual({ topic_arn: topic, protocol: 'email', endpoint: 'oncall@example.com' });
    for (const alarm of alarmsOf(doc).values()) expect(alarm.alarm_actions).toEqual([topic]);
  });
});
