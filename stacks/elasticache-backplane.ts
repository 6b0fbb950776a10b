import { Construct } from 'constructs';
import { ElasticacheParameterGroup } from '@cdktf/provider-aws/lib/elasticache-parameter-group';
import { ElasticacheReplicationGroup } from '@cdktf/provider-aws/lib/elasticache-replication-group';
import { ElasticacheSubnetGroup } from '@cdktf/provider-aws/lib/elasticache-subnet-group';
import { SecretsmanagerSecret } from '@cdktf/provider-aws/lib/secretsmanager-secret';
import { SecretsmanagerSecretVersion } from '@cdktf/provider-aws/lib/secretsmanager-secret-version';
import { Password } from '@cdktf/provider-random/lib/password';
import { REDIS_PORT } from './network';

export type RedisTopology = 'single' | 'replicated' | 'cluster';

export interface ElastiCacheBackplaneProps {
  /** Prefix of every name, `<app>-<env>` (at most 40 characters: the replication group id limit). */
  readonly namePrefix: string;
  /**
   * `single`: one node; `replicated`: primary + replicas with automatic failover (cluster mode disabled);
   * `cluster`: sharded (cluster mode enabled).
   * @default 'single'
   */
  readonly topology?: RedisTopology;
  /**
   * ElastiCache node type.
   * @default 'cache.t4g.micro'
   */
  readonly nodeType?: string;
  /**
   * Redis engine version (7.x).
   * @default '7.1'
   */
  readonly engineVersion?: string;
  /**
   * Replicas per primary (per shard for `cluster`); must be 0 for `single`.
   * @default 0 for single, 1 otherwise
   */
  readonly replicas?: number;
  /**
   * Shards for `cluster`.
   * @default 2
   */
  readonly shards?: number;
  /**
   * Engine: Redis OSS or Valkey (wire-compatible); the parameter group family follows it.
   * @default 'redis'
   */
  readonly engine?: 'redis' | 'valkey';
  /**
   * Weekly maintenance window, `ddd:hh24:mi-ddd:hh24:mi` (UTC).
   * @default 'sun:05:00-sun:06:00'
   */
  readonly maintenanceWindow?: string;
  /**
   * Keep data on destroy: the AUTH secret gets a 7-day recovery window (0 otherwise, so destroy-then-create works).
   * @default false
   */
  readonly protectData?: boolean;
  /** Subnets of the ElastiCache subnet group. */
  readonly subnetIds: readonly string[];
  /** Security group admitting 6379 from the relay instances. */
  readonly securityGroupId: string;
}

// ElastiCache AUTH tokens take printable ASCII except space, '"', '/' and '@'.
const AUTH_TOKEN_SPECIALS = '!&#$^<>-';

/** ElastiCache replication group in one of three topologies, TLS + at-rest encryption, AUTH token in Secrets Manager. */
export class ElastiCacheBackplane extends Construct {
  readonly replicationGroup: ElasticacheReplicationGroup;
  /** Secret holding the AUTH token; instances receive it through the environmentsecrets namespace. */
  readonly authTokenSecret: SecretsmanagerSecret;
  /** Host clients connect to: the primary endpoint, or the configuration endpoint for `cluster`. */
  readonly endpointAddress: string;
  /** `rediss://<endpoint>:6379` (TLS). */
  readonly url: string;
  /** What the relay's REDIS_MODE must say. */
  readonly mode: 'standalone' | 'cluster';
  readonly authTokenVersion: SecretsmanagerSecretVersion;
  readonly parameterGroup: ElasticacheParameterGroup;
  /** Node ids (the CacheClusterId dimension of AWS/ElastiCache metrics). */
  readonly nodeIds: string[];
  /** Replica node ids. */
  readonly replicaIds: string[];

  constructor(scope: Construct, id: string, props: ElastiCacheBackplaneProps) {
    super(scope, id);
    const topology = props.topology ?? 'single';
    const replicas = props.replicas ?? (topology === 'single' ? 0 : 1);
    if (topology === 'single' && replicas !== 0) {
      throw new Error(`ElastiCacheBackplane: replicas must be 0 with topology "single" (got ${replicas}); use topology "replicated"`);
    }

    const subnetGroup = new ElasticacheSubnetGroup(this, 'subnet-group', {
      name: `${props.namePrefix}-redis`,
      description: 'Subnets of the relay Redis backplane',
      subnetIds: [...props.subnetIds],
    });

    const token = new Password(this, 'auth-token', {
      length: 48,
      special: true,
      overrideSpecial: AUTH_TOKEN_SPECIALS,
      minSpecial: 2,
      minNumeric: 2,
      minUpper: 2,
      minLower: 2,
    });
    this.authTokenSecret = new SecretsmanagerSecret(this, 'auth-token-secret', {
      name: `${props.namePrefix}/redis-auth-token`,
      description: 'AUTH token of the relay Redis backplane',
      recoveryWindowInDays: props.protectData ? 7 : 0,
    });
    this.authTokenVersion = new SecretsmanagerSecretVersion(this, 'auth-token-secret-value', {
      secretId: this.authTokenSecret.id,
      secretString: token.result,
    });

    const engine = props.engine ?? 'redis';
    const engineVersion = props.engineVersion ?? '7.1';
    const family = `${engine}${engineVersion.split('.')[0]}`;
    this.parameterGroup = new ElasticacheParameterGroup(this, 'parameters', {
      name: `${props.namePrefix}-${family}`,
      family,
      description: `Relay backplane (${family}${topology === 'cluster' ? ', cluster mode' : ''})`,
      parameter: [
        // Every key the relay writes (history, epochs) has a TTL; under memory pressure the rooms closest to expiry go
        // first and publishes keep working (docs/infrastructure.md, "Redis memory policy").
        { name: 'maxmemory-policy', value: 'volatile-ttl' },
        ...(topology === 'cluster' ? [{ name: 'cluster-enabled', value: 'yes' }] : []),
      ],
      lifecycle: { createBeforeDestroy: true },
    });

    const common = {
      replicationGroupId: props.namePrefix,
      description: `Relay backplane (${topology})`,
      engine,
      engineVersion,
      parameterGroupName: this.parameterGroup.name,
      maintenanceWindow: props.maintenanceWindow ?? 'sun:05:00-sun:06:00',
      // Pub/sub and a few minutes of history: a snapshot would restore nothing anyone still needs.
      snapshotRetentionLimit: 0,
      nodeType: props.nodeType ?? 'cache.t4g.micro',
      port: REDIS_PORT,
      subnetGroupName: subnetGroup.name,
      securityGroupIds: [props.securityGroupId],
      transitEncryptionEnabled: true,
      // The provider types these two flags as strings.
      atRestEncryptionEnabled: 'true',
      authToken: token.result,
      autoMinorVersionUpgrade: 'true',
    };
    if (topology === 'cluster') {
      this.replicationGroup = new ElasticacheReplicationGroup(this, 'replication-group', {
        ...common,
        clusterMode: 'enabled',
        numNodeGroups: props.shards ?? 2,
        replicasPerNodeGroup: replicas,
        // Cluster mode always fails over automatically; Multi-AZ needs a replica to move to.
        automaticFailoverEnabled: true,
        multiAzEnabled: replicas > 0,
      });
      this.endpointAddress = this.replicationGroup.configurationEndpointAddress;
      this.mode = 'cluster';
    } else {
      const replicated = topology === 'replicated';
      this.replicationGroup = new ElasticacheReplicationGroup(this, 'replication-group', {
        ...common,
        clusterMode: 'disabled',
        numCacheClusters: 1 + replicas,
        automaticFailoverEnabled: replicated,
        multiAzEnabled: replicated,
      });
      this.endpointAddress = this.replicationGroup.primaryEndpointAddress;
      this.mode = 'standalone';
    }
    const pad = (n: number, width: number): string => String(n).padStart(width, '0');
    if (topology === 'cluster') {
      const shards = Array.from({ length: props.shards ?? 2 }, (_, i) => i + 1);
      this.nodeIds = shards.flatMap((sh) => Array.from({ length: replicas + 1 }, (_, n) => `${props.namePrefix}-${pad(sh, 4)}-${pad(n + 1, 3)}`));
      this.replicaIds = this.nodeIds.filter((id) => !id.endsWith('-001'));
    } else {
      this.nodeIds = Array.from({ length: replicas + 1 }, (_, n) => `${props.namePrefix}-${pad(n + 1, 3)}`);
      this.replicaIds = this.nodeIds.slice(1);
    }
    this.url = `rediss://${this.endpointAddress}:${REDIS_PORT}`;
  }
}
