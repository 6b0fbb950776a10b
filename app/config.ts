import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { pipelineProblems, pipelineSchema } from './config-pipeline';
import { DEFAULT_CONFIG_FILE, displayPath } from './paths';
import { POLICY_RULES } from './policy';
import { checkPromotionOrder, promotionOrderSchema, requireVerificationSchema, withReleaseDefaults } from './config-releases';
import { infraEnvironmentFields, withInfraRules } from './config-relay';

/** The relay pings every client this often; the load balancer must never time out a healthy socket first. */
export const RELAY_PING_INTERVAL_SECONDS = 25;

/** Bad config: `message` names the file and lists every problem, one per line. */
export class ConfigError extends Error {
  readonly code = 'invalid_config';
  readonly problems: string[];
  constructor(source: string, problems: string[]) {
    super(
      `Invalid relay config in ${source} (${problems.length} problem${problems.length === 1 ? '' : 's'}); fix these and run synth again:\n` +
        problems.map((p) => `  - ${p}`).join('\n'),
    );
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

// DNS label rules, kept short so every derived name (bucket, role, replication group) stays within AWS limits.
const dnsName = (max: number) =>
  z
    .string({ error: 'a string' })
    .regex(new RegExp(`^[a-z](?:[a-z0-9-]{0,${max - 2}}[a-z0-9])?$`), {
      error: `a DNS-safe name: 1-${max} characters of a-z, 0-9 and "-", starting with a letter, not ending with "-"`,
    });

const subnetId = z.string().regex(/^subnet-[0-9a-f]{8,17}$/, { error: 'a subnet id like "subnet-0123456789abcdef0"' });
const subnetList = z
  .array(subnetId, { error: 'a list of subnet ids' })
  .min(1, { error: 'at least one subnet id (omit the field to use the default)' });

const cidr = z.string().refine(isIpv4Cidr, { error: 'an IPv4 CIDR like "10.0.0.0/16" or "0.0.0.0/0"' });

// CloudWatch Logs accepts only these retention periods.
const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;

const vpcSchema = z.strictObject({
  /** Existing VPC; without a `vpc` block the account's default VPC and its subnets are used. */
  vpcId: z.string().regex(/^vpc-[0-9a-f]{8,17}$/, { error: 'a VPC id like "vpc-0123456789abcdef0"' }).meta({ description: 'The existing VPC to deploy into.', allowed: 'a VPC id like `vpc-0123456789abcdef0`' }),
  instanceSubnets: subnetList.meta({ description: 'Subnets of the relay instances.', allowed: 'at least one subnet id like `subnet-0123456789abcdef0`' }),
  loadBalancerSubnets: subnetList.optional().meta({ description: 'Subnets of the load balancer.', allowed: 'at least one subnet id', unset: '`instanceSubnets`' }),
  redisSubnets: subnetList.optional().meta({ description: 'Subnets of the ElastiCache subnet group.', allowed: 'at least one subnet id', unset: '`instanceSubnets`' }),
  associatePublicIpAddress: z.boolean({ error: 'true or false' }).default(false).meta({ description: 'Give the instances public IP addresses (needed in public subnets without a NAT gateway).' }),
});

const instancesSchema = z
  .strictObject({
    types: z
      .array(z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, { error: 'an EC2 instance type like "t3.small"' }), {
        error: 'a list of EC2 instance types',
      })
      .min(1, { error: 'at least one EC2 instance type' })
      .default(['t3.small']).meta({ description: 'EC2 instance types: one, unless `spot` is set (then Beanstalk mixes them).', allowed: 'at least one instance type like `t3.small`' }),
    min: z.int({ error: 'an integer' }).min(2, { error: 'an integer >= 2 (one instance is not horizontally scaled)' }).default(2).meta({ description: 'Fewest instances (one instance is not horizontally scaled).', allowed: 'an integer >= 2 and <= `max`' }),
    max: z.int({ error: 'an integer' }).max(100, { error: 'an integer <= 100' }).default(4).meta({ description: 'Most instances the environment scales out to.' }),
  })
  .superRefine((v, ctx) => {
    if (v.min > v.max) {
      ctx.addIssue({ code: 'custom', path: ['min'], input: v.min, message: `an integer <= instances.max (${v.max})` });
    }
  });

const loadBalancerSchema = z.strictObject({
  scheme: z.enum(['public', 'internal'], { error: '"public" or "internal"' }).default('public').meta({ description: '`public`: reachable from the internet; `internal`: only inside the VPC.' }),
  allowedCidrs: z
    .array(cidr, { error: 'a list of IPv4 CIDRs' })
    .min(1, { error: 'at least one CIDR (omit the field for the default)' })
    .optional().meta({ description: 'Client address ranges the load balancer accepts (ports 80, and 443 with a certificate).', allowed: 'at least one IPv4 CIDR like `10.0.0.0/16`', unset: '`["0.0.0.0/0"]` when public, the VPC\'s CIDR when internal' }),
  idleTimeoutSeconds: z
    .int({ error: 'an integer' })
    .min(60, {
      error: `an integer >= 60, well above the relay's ${RELAY_PING_INTERVAL_SECONDS} s ping interval so idle sockets are never cut`,
    })
    .max(3600, { error: 'an integer <= 3600 (the Beanstalk IdleTimeout maximum)' })
    .default(300).meta({ description: 'Load balancer idle timeout in seconds; kept well above the relay\'s 25 s ping interval so idle sockets are never cut.' }),
  certificateArn: z
    .string()
    .regex(/^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[0-9a-f-]{36}$/, {
      error: 'an ACM certificate ARN like "arn:aws:acm:eu-west-1:123456789012:certificate/<uuid>"',
    })
    .optional().meta({ description: 'ACM certificate for the HTTPS listener on port 443.', allowed: 'an ACM certificate ARN', unset: 'HTTP only (port 80)' }),
  sslPolicy: z
    .string()
    .regex(/^ELBSecurityPolicy-[A-Za-z0-9-]+$/, { error: 'an ALB security policy name starting with "ELBSecurityPolicy-"' })
    .default('ELBSecurityPolicy-TLS13-1-2-2021-06').meta({ description: 'TLS policy of the HTTPS listener.', allowed: 'an ALB security policy name starting with `ELBSecurityPolicy-`' }),
});

const redisSchema = z
  .strictObject({
    topology: z.enum(['single', 'replicated', 'cluster'], { error: '"single", "replicated" or "cluster"' }).default('single').meta({ description: '`single`: one node; `replicated`: a primary and replicas with automatic failover and Multi-AZ; `cluster`: cluster mode enabled, shards x replicas.' }),
    nodeType: z.string().regex(/^cache\.[a-z0-9]+\.[a-z0-9]+$/, { error: 'an ElastiCache node type like "cache.t4g.micro"' }).default('cache.t4g.micro').meta({ description: 'ElastiCache node type.', allowed: 'an ElastiCache node type like `cache.t4g.micro`' }),
    engineVersion: z.string().regex(/^7\.\d+$/, { error: 'a Redis 7.x engine version like "7.1"' }).default('7.1').meta({ description: 'Redis engine version.', allowed: '`7.x`' }),
    replicas: z.int({ error: 'an integer' }).min(0, { error: 'an integer >= 0' }).max(5, { error: 'an integer <= 5' }).optional().meta({ description: 'Replicas per primary (per shard with `cluster`).', allowed: '0-5; 0 with `single`, at least 1 with `replicated`', unset: '0 with `single`, 1 otherwise' }),
    shards: z.int({ error: 'an integer' }).min(1, { error: 'an integer >= 1' }).max(500, { error: 'an integer <= 500' }).optional().meta({ description: 'Number of shards.', allowed: '1-500; only with `cluster`', unset: '2 with `cluster`' }),
  })
  .superRefine((v, ctx) => {
    if (v.topology === 'single' && v.replicas !== undefined && v.replicas !== 0) {
      ctx.addIssue({ code: 'custom', path: ['replicas'], input: v.replicas, message: '0 or absent when topology is "single" (use "replicated" for replicas)' });
    }
    if (v.topology === 'replicated' && v.replicas === 0) {
      ctx.addIssue({ code: 'custom', path: ['replicas'], input: v.replicas, message: 'an integer >= 1 when topology is "replicated" (automatic failover needs a replica)' });
    }
    if (v.topology !== 'cluster' && v.shards !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['shards'], input: v.shards, message: 'absent unless topology is "cluster"' });
    }
  })
  .transform((v) => ({
    topology: v.topology,
    nodeType: v.nodeType,
    engineVersion: v.engineVersion,
    replicas: v.replicas ?? (v.topology === 'single' ? 0 : 1),
    shards: v.topology === 'cluster' ? (v.shards ?? 2) : 1,
  }));

const backendSchema = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('local').meta({ description: 'Local state in `terraform.relay-<env>.tfstate`, relative to the stack\'s folder in `cdktf.out/`.' }) }),
    z.strictObject({
      type: z.literal('s3').meta({ description: 'Remote state in S3, locked with a lock file (`use_lockfile`, terraform/OpenTofu 1.10 or newer).' }),
      bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { error: 'an S3 bucket name' }).meta({ description: 'Bucket that holds the state.', allowed: 'an S3 bucket name' }),
      key: z.string().min(1, { error: 'a non-empty object key' }).optional().meta({ description: 'Object key of the state.', allowed: 'a non-empty key', unset: '`<app>/<env>/terraform.tfstate`' }),
      region: z.string().regex(/^[a-z]{2}(-gov)?-[a-z]+-\d$/, { error: 'an AWS region like "eu-west-1"' }).optional().meta({ description: 'Region of the state bucket.', allowed: 'an AWS region like `eu-west-1`', unset: 'the environment\'s `region`' }),
      dynamodbTable: z.string().min(3, { error: 'a DynamoDB table name' }).optional().meta({ description: 'DynamoDB table for state locking, in addition to the lock file.', allowed: 'a DynamoDB table name', unset: 'no table' }),
    }),
  ],
  { error: 'an object with type "local" or "s3"' },
);

// The only way past a policy rule: named, per environment, with the reason a reviewer reads in the diff.
const policyWaiverSchema = z.strictObject({
  rule: z
    .enum(POLICY_RULES, { error: `one of the policy rule ids: ${POLICY_RULES.join(', ')}` })
    .meta({ description: 'The security policy rule this environment may break; each rule at most once.' }),
  reason: z
    .string({ error: 'a string saying why this environment may break the rule' })
    .trim()
    .min(1, { error: 'a non-empty reason saying why this environment may break the rule' })
    .meta({ description: 'Why: synth prints it next to every violation the waiver lets through.' }),
});

const policyWaiversSchema = z
  .array(policyWaiverSchema, { error: 'a list of waivers like { "rule": "<rule id>", "reason": "<why>" }' })
  .superRefine((waivers, ctx) => {
    const seen = new Set<string>();
    waivers.forEach((w, i) => {
      if (seen.has(w.rule)) ctx.addIssue({ code: 'custom', path: [i, 'rule'], input: w.rule, message: 'a rule no other waiver of this environment names' });
      seen.add(w.rule);
    });
  });

const environmentSchema = withInfraRules(z.strictObject({
  name: dnsName(20).meta({ description: 'Environment name: the stack is `relay-<name>`, resources are named `<app>-<name>-…`, the ledger is `releases/<name>.json`.', allowed: '1-20 characters of `a-z 0-9 -`, starting with a letter, not ending with `-`; unique' }),
  region: z.string({ error: 'a string' }).regex(/^[a-z]{2}(-gov)?-[a-z]+-\d$/, { error: 'an AWS region like "eu-west-1"' }).meta({ description: 'AWS region of every resource of the environment.', allowed: 'an AWS region like `eu-west-1`' }),
  vpc: vpcSchema.optional().meta({ description: 'An existing VPC and its subnets.', unset: 'the account\'s default VPC and its default subnets (instances get public IPs)' }),
  instances: instancesSchema.default({ types: ['t3.small'], min: 2, max: 4 }).meta({ description: 'The relay instances (EC2, auto scaling).' }),
  loadBalancer: loadBalancerSchema.default({ scheme: 'public', idleTimeoutSeconds: 300, sslPolicy: 'ELBSecurityPolicy-TLS13-1-2-2021-06' }).meta({ description: 'The application load balancer in front of the instances.' }),
  redis: redisSchema.default({ topology: 'single', nodeType: 'cache.t4g.micro', engineVersion: '7.1', replicas: 0, shards: 1 }).meta({ description: 'The ElastiCache replication group used as the backplane.' }),
  deploymentPolicy: z.enum(['RollingWithAdditionalBatch', 'Immutable'], { error: '"RollingWithAdditionalBatch" or "Immutable"' }).default('RollingWithAdditionalBatch').meta({ description: 'How Beanstalk deploys a new version: in batches with an extra batch, or on a fresh set of instances.' }),
  maintenanceWindow: z
    .string()
    .regex(/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun):([01]\d|2[0-3]):[0-5]\d$/, { error: 'a weekly start time like "Sun:03:00" (UTC)' })
    .default('Sun:03:00').meta({ description: 'Weekly start of managed platform updates (minor and patch), UTC.', allowed: '`Day:HH:MM`, e.g. `Sun:03:00`' }),
  logRetentionDays: z
    .int({ error: 'an integer' })
    .refine((n) => (LOG_RETENTION_DAYS as readonly number[]).includes(n), { error: `one of ${LOG_RETENTION_DAYS.join(', ')}` })
    .default(30)
    .meta({ description: 'Days CloudWatch Logs keeps the streamed instance logs.', allowed: LOG_RETENTION_DAYS.join(', ') }),
  retainReleases: z.int({ error: 'an integer' }).min(1, { error: 'an integer >= 1' }).max(1000, { error: 'an integer <= 1000' }).default(5).meta({ description: 'Releases kept in the ledger by `release`, and the Beanstalk version lifecycle\'s max count.' }),
  artifactBucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { error: 'an S3 bucket name (3-63 of a-z 0-9 . -)' }).optional().meta({ description: 'Name of the bucket that holds the application versions.', allowed: 'an S3 bucket name (3-63 of `a-z 0-9 . -`)', unset: '`<app>-<env>-artifacts-<account id>`' }),
  backend: backendSchema.default({ type: 'local' }).meta({ description: 'Where terraform keeps the environment\'s state.' }),
  policyWaivers: policyWaiversSchema
    .default([])
    .meta({ description: 'Security policy rules this environment may break, each with its reason; the only way past a rule (see infrastructure.md). A waiver that matches nothing draws a warning.' }),
  requireVerification: requireVerificationSchema,
  ...infraEnvironmentFields,
}));

const configSchema = z
  .strictObject({
    app: dnsName(16).default('relay').meta({ description: 'Application name, the start of every resource name.', allowed: '1-16 characters of `a-z 0-9 -`, starting with a letter, not ending with `-`' }),
    environments: z.array(environmentSchema, { error: 'a list of environments' }).min(1, { error: 'at least one environment' }).meta({ description: 'The environments, one stack `relay-<name>` each.' }),
    promotionOrder: promotionOrderSchema,
    pipeline: pipelineSchema.optional().meta({ description: 'The CI/CD pipeline: GitHub repository, deployed environments, the bootstrap stack (see pipeline.md).', unset: 'no `relay-bootstrap` stack; CI requires shared state for every environment' }),
  })
  .superRefine((v, ctx) => {
    const seen = new Set<string>();
    v.environments.forEach((e, i) => {
      if (seen.has(e.name)) ctx.addIssue({ code: 'custom', path: ['environments', i, 'name'], input: e.name, message: 'a name no other environment uses' });
      seen.add(e.name);
    });
    for (const p of pipelineProblems(v.environments, v.pipeline)) ctx.addIssue({ code: 'custom', ...p });
    checkPromotionOrder(v, ctx);
  })
  .transform(withReleaseDefaults);

/** The schema of relay.config.json, for the generated reference (docs/generate-configuration.ts). */
export { configSchema as relayConfigSchema };

export type AppConfig = z.output<typeof configSchema>;
export type EnvironmentConfig = AppConfig['environments'][number];
export type PolicyWaiver = EnvironmentConfig['policyWaivers'][number];

/** Validates raw config (already parsed JSON); `source` names it in the error. */
export function parseConfig(raw: unknown, source = 'config'): AppConfig {
  const result = configSchema.safeParse(raw, { reportInput: true });
  if (result.success) return result.data;
  throw new ConfigError(source, result.error.issues.map(describeIssue));
}

/** Reads and validates the config file (relay.config.json at the repository root by default). */
export function loadConfig(file: string = DEFAULT_CONFIG_FILE): AppConfig {
  const shown = displayPath(file);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(shown, [`cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)}); create it or pass another path`]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(shown, [`not valid JSON: ${(err as Error).message}`]);
  }
  return parseConfig(raw, shown);
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const where = formatPath(issue.path) || '(root)';
  if (issue.code === 'unrecognized_keys') {
    return `${where}: unknown field${issue.keys.length === 1 ? '' : 's'} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}; remove ${issue.keys.length === 1 ? 'it' : 'them'} or fix the spelling`;
  }
  const received = 'input' in issue && issue.input !== undefined ? formatValue(issue.input) : 'nothing';
  return `${where}: received ${received}; allowed: ${issue.message}`;
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
}

function formatValue(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function isIpv4Cidr(value: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(value);
  if (!m) return false;
  const octets = m.slice(1, 5).map(Number);
  const prefix = Number(m[5]);
  return octets.every((o) => o <= 255) && prefix <= 32 && !/(^|\.)0\d/.test(value.split('/')[0]);
}
