import { Testing } from 'cdktf';
// Importing the adapter (not only calling Testing.setupJest) brings its matcher types into scope.
import { setupJest } from 'cdktf/lib/testing/adapters/jest';
import { ElasticacheReplicationGroup } from '@cdktf/provider-aws/lib/elasticache-replication-group';
import { Password } from '@cdktf/provider-random/lib/password';
import { ElastiCacheBackplane, type ElastiCacheBackplaneProps } from '../../stacks/elasticache-backplane';

setupJest();

type Body = Record<string, unknown>;
function resources(json: string, type: string): Body[] {
  const parsed = JSON.parse(json) as { resource?: Record<string, Record<string, Body>> };
  return Object.values(parsed.resource?.[type] ?? {});
}
function synth(props: Partial<ElastiCacheBackplaneProps> = {}): { json: string; redis: ElastiCacheBackplane } {
  let redis: ElastiCacheBackplane | undefined;
  const json = Testing.synthScope((scope) => {
    redis = new ElastiCacheBackplane(scope, 'redis', { namePrefix: 'relay-dev', subnetIds: ['subnet-0123456789abcdef0'], securityGroupId: 'sg-0123456789abcdef0', ...props });
  });
  return { json, redis: redis as ElastiCacheBackplane };
}
const group = (json: string) => {
  const all = resources(json, 'aws_elasticache_replication_group');
  expect(all).toHaveLength(1);
  return all[0];
};

describe('ElastiCacheBackplane', () => {
  it.each(['single', 'replicated', 'cluster'] as const)('encrypts in transit and at rest and requires AUTH (%s)', (topology) => {
    const { json } = synth({ topology, replicas: topology === 'single' ? 0 : 1 });
    const g = group(json);
    expect(g).toMatchObject({ engine: 'redis', engine_version: '7.1', port: 6379, transit_encryption_enabled: true, at_rest_encryption_enabled: 'true' });
    expect(String(g.auth_token)).toMatch(/^\$\{random_password\..*\.result\}$/);
    expect(g.security_group_ids).toEqual(['sg-0123456789abcdef0']);
  });

  it.each([
    ['redis', 'single', 'redis7', []],
    ['redis', 'cluster', 'redis7', [{ name: 'maxmemory-policy', value: 'volatile-ttl' }, { name: 'cluster-enabled', value: 'yes' }]],
    ['valkey', 'replicated', 'valkey7', []],
  ] as const)('engine %s, topology %s: parameter group family %s with an explicit maxmemory-policy', (engine, topology, family, params) => {
    const { json } = synth({ engine, topology, engineVersion: '7.2' });
    const pg = Object.values((JSON.parse(json) as { resource: Record<string, Record<string, Record<string, unknown>>> }).resource.aws_elasticache_parameter_group)[0];
    expect(pg.family).toBe(family);
    expect(pg.parameter).toEqual(params.length > 0 ? params : [{ name: 'maxmemory-policy', value: 'volatile-ttl' }]);
    expect(group(json)).toMatchObject({ engine, maintenance_window: 'sun:05:00-sun:06:00', snapshot_retention_limit: 0 });
  });

  it('single: one node, no failover, the cluster-mode-disabled parameter group, primary endpoint', () => {
    const { json, redis } = synth({ topology: 'single' });
    expect(group(json)).toMatchObject({
      cluster_mode: 'disabled',
      num_cache_clusters: 1,
      automatic_failover_enabled: false,
      multi_az_enabled: false,
      parameter_group_name: expect.stringMatching(/^\$\{aws_elasticache_parameter_group\./) as unknown,
    });
    expect(redis.mode).toBe('standalone');
    expect(redis.url).toMatch(/^rediss:\/\/\$\{TfToken\[TOKEN\.\d+\]\}:6379$/);
  });

  it('replicated: primary + replicas, automatic failover, Multi-AZ, default.redis7', () => {
    const { json } = synth({ topology: 'replicated', replicas: 2 });
    const g = group(json);
    expect(g).toMatchObject({
      cluster_mode: 'disabled',
      num_cache_clusters: 3,
      automatic_failover_enabled: true,
      multi_az_enabled: true,
      parameter_group_name: expect.stringMatching(/^\$\{aws_elasticache_parameter_group\./) as unknown,
    });
    expect(g.num_node_groups).toBeUndefined();
  });

  it('cluster: shards x replicas with default.redis7.cluster.on and the configuration endpoint', () => {
    const { json, redis } = synth({ topology: 'cluster', shards: 3, replicas: 1 });
    const g = group(json);
    expect(g).toMatchObject({
      cluster_mode: 'enabled',
      num_node_groups: 3,
      replicas_per_node_group: 1,
      automatic_failover_enabled: true,
      multi_az_enabled: true,
      parameter_group_name: expect.stringMatching(/^\$\{aws_elasticache_parameter_group\./) as unknown,
    });
    expect(g.num_cache_clusters).toBeUndefined();
    expect(redis.mode).toBe('cluster');
    expect(json).toHaveResource(ElasticacheReplicationGroup);
  });

  it('generates the token with only characters ElastiCache accepts and keeps it in Secrets Manager', () => {
    const { json } = synth();
    expect(json).toHaveResourceWithProperties(Password, { length: 48, special: true, override_special: '!&#$^<>-' });
    const special = '!&#$^<>-';
    for (const c of ['"', '/', '@', ' ']) expect(special).not.toContain(c);
    const versions = resources(json, 'aws_secretsmanager_secret_version');
    expect(versions).toHaveLength(1);
    expect(versions[0].secret_string).toMatch(/random_password\..*\.result/);
    expect(resources(json, 'aws_secretsmanager_secret')[0]).toMatchObject({ name: 'relay-dev/redis-auth-token' });
  });

  it('fails when replicas are asked of a single node', () => {
    expect(() => synth({ topology: 'single', replicas: 1 })).toThrow(
      'ElastiCacheBackplane: replicas must be 0 with topology "single" (got 1); use topology "replicated"',
    );
  });
});
