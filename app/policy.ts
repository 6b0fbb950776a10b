/**
 * Security policy over synthesized Terraform JSON (cdk.tf.json).
 *
 * It reads what Terraform will actually be asked to create, so it catches a weakened stack however the
 * weakening was written: a construct change, an escape hatch override or a hand edit. `npm run synth` applies it to
 * every stack before the output is moved into place (app/synth.ts); a rule can only be waived per environment, with a
 * reason, in the config's `policyWaivers`.
 */

/** Every rule id, as a violation reports it and a waiver names it. */
export const POLICY_RULES = [
  's3-public-access-block',
  's3-encryption',
  's3-tls-only',
  'open-ingress',
  'redis-transit-encryption',
  'redis-at-rest-encryption',
  'redis-auth',
  'iam-wildcard-action',
  'iam-full-access',
  'imdsv1',
  'plain-secret',
  'unpinned-solution-stack',
  'deploy-batch-size',
  'deregistration-delay',
  'scaling-policy',
  'https-and-auth',
  'default-security-group',
  'setting-resource',
] as const;

export type PolicyRule = (typeof POLICY_RULES)[number];

/** Seconds the deregistration delay must exceed the health-check silence plus the drain window by. */
export const DRAIN_MARGIN_SECONDS = 10;

/** What to change so a rule holds; printed under every violation of it. */
export const POLICY_FIXES: Readonly<Record<PolicyRule, string>> = {
  's3-public-access-block':
    'add an aws_s3_bucket_public_access_block for the bucket with block_public_acls, block_public_policy, ignore_public_acls and restrict_public_buckets all true',
  's3-encryption': 'add an aws_s3_bucket_server_side_encryption_configuration for the bucket with sse_algorithm AES256 or aws:kms',
  's3-tls-only': 'attach a bucket policy with a Deny statement for requests where aws:SecureTransport is false',
  'open-ingress': 'admit the traffic from a security group or a narrower CIDR; only the public load balancer may accept 80/443 from anywhere',
  'redis-transit-encryption': 'use an aws_elasticache_replication_group with transit_encryption_enabled = true',
  'redis-at-rest-encryption': 'set at_rest_encryption_enabled = true on the replication group',
  'redis-auth': 'set auth_token from a random_password kept in Secrets Manager',
  'iam-wildcard-action': 'list the actions needed, in a JSON policy or an aws_iam_policy_document so the policy can be checked',
  'iam-full-access': 'attach a narrower managed policy, or an inline policy with only the actions needed',
  imdsv1:
    'require IMDSv2: aws:autoscaling:launchconfiguration DisableIMDSv1 = true on a Beanstalk environment, metadata_options.http_tokens = "required" on a launch template',
  'plain-secret': 'pass the value through the aws:elasticbeanstalk:application:environmentsecrets namespace (a Secrets Manager ARN)',
  'unpinned-solution-stack':
    'pin solution_stack_name to a literal Amazon Linux 2023 Node.js name from config ("platform"; `npm run ops -- platform` moves it on), never a most_recent lookup',
  'deploy-batch-size':
    'replace one instance at a time: aws:elasticbeanstalk:command BatchSizeType = Fixed and BatchSize = 1, or DeploymentPolicy = Immutable',
  'deregistration-delay': `set aws:elasticbeanstalk:environment:process:default DeregistrationDelay to at least the health-check silence plus RELAY_DRAIN_WINDOW_MS plus ${DRAIN_MARGIN_SECONDS} s, so every client gets 1001 before the load balancer cuts it`,
  'scaling-policy': 'attach a TargetTrackingScaling aws_autoscaling_policy on average connections (namespace Relay) or CPU to the environment\'s Auto Scaling group',
  'https-and-auth':
    'give the environment an HTTPS listener (aws:elbv2:listener:443 with a certificate) and RELAY_TOKEN_SECRET through environmentsecrets, or say why not in the config\'s "insecure"',
  'default-security-group': 'set aws:autoscaling:launchconfiguration DisableDefaultEC2SecurityGroup = true so only the environment\'s own instance group applies',
  'setting-resource': 'give every setting block a "resource" key ("" for the environment itself) so the plan settles',
};


export interface PolicyViolation {
  readonly rule: PolicyRule;
  /** Terraform address, e.g. `aws_s3_bucket.artifacts`. */
  readonly address: string;
  /** What is wrong with this resource. */
  readonly message: string;
  /** What to change (the rule's entry in POLICY_FIXES). */
  readonly fix: string;
}

/** A rule an environment accepts breaking, and why (config `policyWaivers`). */
export interface PolicyWaiverRef {
  readonly rule: PolicyRule;
  readonly reason: string;
}

/** Violations split by an environment's waivers. */
export interface PolicyVerdict {
  /** Violations no waiver covers: synth fails on any of them. */
  readonly failing: readonly PolicyViolation[];
  /** Violations a waiver covers, with its reason: synth reports them and goes on. */
  readonly waived: readonly (PolicyViolation & { readonly reason: string })[];
  /** Waivers that matched nothing: probably stale. */
  readonly unusedWaivers: readonly PolicyWaiverRef[];
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** Checks one stack's cdk.tf.json document and returns every violation found (empty when compliant). */
export function checkTerraformPolicy(doc: unknown): PolicyViolation[] {
  const tf = new TerraformDoc(asObject(doc));
  return [
    ...checkBuckets(tf),
    ...checkIngress(tf),
    ...checkRedis(tf),
    ...checkIam(tf),
    ...checkBeanstalk(tf),
    ...checkDeploys(tf),
  ];
}

/** Applies an environment's waivers to the violations of its stack. */
export function judgePolicy(violations: readonly PolicyViolation[], waivers: readonly PolicyWaiverRef[]): PolicyVerdict {
  const reasons = new Map(waivers.map((w) => [w.rule, w.reason]));
  const failing = violations.filter((v) => !reasons.has(v.rule));
  const waived = violations.flatMap((v) => {
    const reason = reasons.get(v.rule);
    return reason === undefined ? [] : [{ ...v, reason }];
  });
  const unusedWaivers = waivers.filter((w) => !violations.some((v) => v.rule === w.rule));
  return { failing, waived, unusedWaivers };
}

/** A violation for people: the stack, rule and resource on one line, the fix on the next. */
export function formatViolation(stack: string, v: PolicyViolation): string {
  return `${stack}: [${v.rule}] ${v.address}: ${v.message}\n  fix: ${v.fix}`;
}

function violation(rule: PolicyRule, address: string, message: string): PolicyViolation {
  return { rule, address, message, fix: POLICY_FIXES[rule] };
}

const WORLD_CIDRS = new Set(['0.0.0.0/0', '::/0']);
const PUBLIC_LB_PORTS = new Set([80, 443]);
const SECRET_NAME = /(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|API_KEY|ACCESS_KEY)/i;
const SECRET_REFERENCE = /\$\{(random_password|aws_secretsmanager_secret_version|data\.aws_secretsmanager_secret_version)\./;
const URL_WITH_PASSWORD = /^[a-z][a-z0-9+.-]*:\/\/[^/@\s]*:[^/@\s]+@/i;
const MANAGED_FULL_ACCESS = /^arn:aws[a-z-]*:iam::aws:policy\/(.*\/)?[A-Za-z0-9]*FullAccess[A-Za-z0-9]*$/;
const ENV_NS = 'aws:elasticbeanstalk:application:environment';

class TerraformDoc {
  constructor(private readonly doc: JsonObject) {}

  /** Every resource of a type as [address, body]. */
  resources(type: string): [string, JsonObject][] {
    return entriesOf(asObject(asObject(this.doc.resource)[type]), type);
  }

  /** Resources of `type` whose `attr` references the resource at `address`. */
  referencing(type: string, attr: string, address: string): JsonObject[] {
    const ref = new RegExp(`^\\$\\{${escapeRegExp(address)}\\.(id|bucket|arn|name)\\}$`);
    return this.resources(type)
      .map(([, body]) => body)
      .filter((body) => typeof body[attr] === 'string' && ref.test(body[attr]));
  }

  /**
   * Statements of a policy given as a JSON string literal or as a reference to an aws_iam_policy_document.
   * Returns null when the policy cannot be read statically (then it cannot be proven safe).
   */
  statements(policy: Json | undefined): Statement[] | null {
    if (typeof policy !== 'string') return null;
    const docRef = /^\$\{data\.aws_iam_policy_document\.([^.}]+)\.json\}$/.exec(policy);
    if (docRef) {
      const body = asObject(asObject(asObject(this.doc.data).aws_iam_policy_document)[docRef[1]]);
      return asArray(body.statement).map((s) => fromDocumentStatement(asObject(s)));
    }
    try {
      const parsed = asObject(JSON.parse(policy) as Json);
      const raw = parsed.Statement;
      return (Array.isArray(raw) ? raw : [raw]).map((s) => fromJsonStatement(asObject(s)));
    } catch {
      return null;
    }
  }
}

interface Statement {
  readonly effect: string;
  readonly actions: string[];
  /** Flattened conditions as `test:variable=value`. */
  readonly conditions: string[];
}

function fromDocumentStatement(s: JsonObject): Statement {
  const conditions = asArray(s.condition).flatMap((c) => {
    const cond = asObject(c);
    return asArray(cond.values).map((v) => `${text(cond.test)}:${text(cond.variable)}=${text(v)}`);
  });
  return { effect: typeof s.effect === 'string' ? s.effect : 'Allow', actions: strings(s.actions), conditions };
}

function fromJsonStatement(s: JsonObject): Statement {
  const conditions: string[] = [];
  for (const [test, vars] of Object.entries(asObject(s.Condition))) {
    for (const [variable, values] of Object.entries(asObject(vars))) {
      for (const v of Array.isArray(values) ? values : [values]) conditions.push(`${test}:${variable}=${text(v)}`);
    }
  }
  return { effect: text(s.Effect ?? 'Allow'), actions: strings(s.Action), conditions };
}

function checkBuckets(tf: TerraformDoc): PolicyViolation[] {
  const out: PolicyViolation[] = [];
  for (const [address] of tf.resources('aws_s3_bucket')) {
    const blocks = tf.referencing('aws_s3_bucket_public_access_block', 'bucket', address);
    const flags = ['block_public_acls', 'block_public_policy', 'ignore_public_acls', 'restrict_public_buckets'];
    if (!blocks.some((b) => flags.every((f) => b[f] === true))) {
      out.push(violation('s3-public-access-block', address, `no aws_s3_bucket_public_access_block with ${flags.join(', ')} all true`));
    }
    const sse = tf.referencing('aws_s3_bucket_server_side_encryption_configuration', 'bucket', address);
    const encrypted = sse.some((c) =>
      asArray(c.rule).some((r) => {
        const algo = asObject(asObject(r).apply_server_side_encryption_by_default).sse_algorithm;
        return typeof algo === 'string' && /^(AES256|aws:kms|aws:kms:dsse)$/.test(algo);
      }),
    );
    if (!encrypted) {
      out.push(violation('s3-encryption', address, 'no server-side encryption configuration (AES256 or aws:kms)'));
    }
    const policies = tf.referencing('aws_s3_bucket_policy', 'bucket', address);
    const tlsOnly = policies.some((p) =>
      (tf.statements(p.policy) ?? []).some(
        (s) => s.effect === 'Deny' && s.conditions.some((c) => /^Bool:aws:SecureTransport=false$/i.test(c)),
      ),
    );
    if (!tlsOnly) {
      out.push(violation('s3-tls-only', address, 'no bucket policy denies requests where aws:SecureTransport is false'));
    }
  }
  return out;
}

function checkIngress(tf: TerraformDoc): PolicyViolation[] {
  const lbGroups = loadBalancerGroups(tf);
  const out: PolicyViolation[] = [];
  const check = (address: string, group: string | undefined, cidrs: string[], from: Json, to: Json): void => {
    const world = cidrs.filter((c) => WORLD_CIDRS.has(c));
    if (world.length === 0) return;
    const port = typeof from === 'number' && from === to ? from : undefined;
    const allowed = group !== undefined && lbGroups.has(group) && port !== undefined && PUBLIC_LB_PORTS.has(port);
    if (!allowed) {
      out.push(violation('open-ingress', address, `ingress from ${world.join(', ')} on ports ${text(from)}-${text(to)}`));
    }
  };
  for (const [address, body] of tf.resources('aws_security_group')) {
    for (const rule of asArray(body.ingress)) {
      const r = asObject(rule);
      check(address, address, [...strings(r.cidr_blocks), ...strings(r.ipv6_cidr_blocks)], r.from_port, r.to_port);
    }
  }
  for (const [address, body] of tf.resources('aws_security_group_rule')) {
    if (body.type !== 'ingress') continue;
    const group = groupAddress(body.security_group_id);
    check(address, group, [...strings(body.cidr_blocks), ...strings(body.ipv6_cidr_blocks)], body.from_port, body.to_port);
  }
  for (const [address, body] of tf.resources('aws_vpc_security_group_ingress_rule')) {
    const group = groupAddress(body.security_group_id);
    const cidrs = [body.cidr_ipv4, body.cidr_ipv6].filter((c): c is string => typeof c === 'string');
    const from = body.ip_protocol === '-1' ? 0 : body.from_port;
    const to = body.ip_protocol === '-1' ? 65535 : body.to_port;
    check(address, group, cidrs, from, to);
  }
  return out;
}

/** Security groups the Beanstalk environments hand to their application load balancer. */
function loadBalancerGroups(tf: TerraformDoc): Set<string> {
  const groups = new Set<string>();
  for (const [, env] of tf.resources('aws_elastic_beanstalk_environment')) {
    for (const s of settings(env)) {
      if (s.namespace === 'aws:elbv2:loadbalancer' && /^(SecurityGroups|ManagedSecurityGroup)$/.test(s.name)) {
        for (const part of s.value.split(',')) {
          const group = groupAddress(part.trim());
          if (group) groups.add(group);
        }
      }
    }
  }
  return groups;
}

function checkRedis(tf: TerraformDoc): PolicyViolation[] {
  const out: PolicyViolation[] = [];
  for (const [address, body] of tf.resources('aws_elasticache_replication_group')) {
    if (body.transit_encryption_enabled !== true) {
      out.push(violation('redis-transit-encryption', address, 'transit_encryption_enabled is not true'));
    }
    if (body.at_rest_encryption_enabled !== true && body.at_rest_encryption_enabled !== 'true') {
      out.push(violation('redis-at-rest-encryption', address, 'at_rest_encryption_enabled is not true'));
    }
    if (typeof body.auth_token !== 'string' || body.auth_token.length === 0) {
      out.push(violation('redis-auth', address, 'no auth_token: any client inside the network may connect'));
    }
  }
  for (const [address] of tf.resources('aws_elasticache_cluster')) {
    out.push(violation('redis-transit-encryption', address, 'a bare aws_elasticache_cluster cannot enforce transit encryption and AUTH'));
  }
  return out;
}

function checkIam(tf: TerraformDoc): PolicyViolation[] {
  const out: PolicyViolation[] = [];
  const checkPolicy = (address: string, policy: Json | undefined): void => {
    const statements = tf.statements(policy);
    if (statements === null) {
      out.push(violation('iam-wildcard-action', address, 'the policy cannot be read statically, so it cannot be proven free of wildcards'));
      return;
    }
    for (const s of statements) {
      const wild = s.effect === 'Allow' ? s.actions.filter((a) => a.includes('*')) : [];
      if (wild.length > 0) {
        out.push(violation('iam-wildcard-action', address, `allows wildcard actions ${wild.join(', ')}`));
      }
    }
  };
  for (const type of ['aws_iam_policy', 'aws_iam_role_policy', 'aws_iam_user_policy', 'aws_iam_group_policy']) {
    for (const [address, body] of tf.resources(type)) checkPolicy(address, body.policy);
  }
  for (const [address, body] of tf.resources('aws_iam_role')) {
    for (const inline of asArray(body.inline_policy)) checkPolicy(address, asObject(inline).policy);
  }
  const arns: [string, string[]][] = [
    ...tf.resources('aws_iam_role_policy_attachment').map(([a, b]): [string, string[]] => [a, strings(b.policy_arn)]),
    ...tf.resources('aws_iam_policy_attachment').map(([a, b]): [string, string[]] => [a, strings(b.policy_arn)]),
    ...tf.resources('aws_iam_role_policy_attachments_exclusive').map(([a, b]): [string, string[]] => [a, strings(b.policy_arns)]),
    ...tf.resources('aws_iam_role').map(([a, b]): [string, string[]] => [a, strings(b.managed_policy_arns)]),
  ];
  for (const [address, list] of arns) {
    for (const arn of list.filter((x) => MANAGED_FULL_ACCESS.test(x))) {
      out.push(violation('iam-full-access', address, `attaches the AWS-managed ${arn}`));
    }
  }
  return out;
}

function checkBeanstalk(tf: TerraformDoc): PolicyViolation[] {
  const out: PolicyViolation[] = [];
  for (const [address, env] of tf.resources('aws_elastic_beanstalk_environment')) {
    const all = settings(env);
    const imds = all.find((s) => s.namespace === 'aws:autoscaling:launchconfiguration' && s.name === 'DisableIMDSv1');
    if (!imds || imds.value.toLowerCase() !== 'true') {
      out.push(violation('imdsv1', address, 'instances allow IMDSv1 (aws:autoscaling:launchconfiguration DisableIMDSv1 is not true)'));
    }
    for (const s of all.filter((x) => x.namespace === ENV_NS)) {
      if (SECRET_NAME.test(s.name) || SECRET_REFERENCE.test(s.value) || URL_WITH_PASSWORD.test(s.value)) {
        out.push(violation('plain-secret', address, `environment variable ${s.name} carries a secret in plain text`));
      }
    }
    const stack = env.solution_stack_name;
    if (typeof stack !== 'string' || !PINNED_PLATFORM.test(stack)) {
      out.push(violation('unpinned-solution-stack', address, `solution_stack_name ${JSON.stringify(stack ?? null)} is not a pinned Amazon Linux 2023 Node.js platform, so a platform upgrade would not show in the diff`));
    }
  }
  for (const [address, body] of tf.resources('aws_launch_template')) {
    const tokens = asObject(asArray(body.metadata_options)[0] ?? asObject(body.metadata_options)).http_tokens;
    if (tokens !== 'required') {
      out.push(violation('imdsv1', address, 'metadata_options.http_tokens is not "required", so IMDSv1 is allowed'));
    }
  }
  return out;
}

const PINNED_PLATFORM = /^64bit Amazon Linux 2023 v\d+\.\d+\.\d+ running Node\.js \d+$/;
const SECRETS_NS = 'aws:elasticbeanstalk:application:environmentsecrets';
const PROCESS_NS = 'aws:elasticbeanstalk:environment:process:default';
/** The relay's defaults, for an environment that does not set them. */
const RELAY_DEFAULT_DRAIN_MS = 5000;

/** Deploys that drop nobody, scaling, HTTPS and auth, the default security group and settled settings. */
function checkDeploys(tf: TerraformDoc): PolicyViolation[] {
  const out: PolicyViolation[] = [];
  const policies = tf.resources('aws_autoscaling_policy').map(([, body]) => body);
  for (const [address, env] of tf.resources('aws_elastic_beanstalk_environment')) {
    const all = settings(env);
    const value = (namespace: string, name: string): string | undefined => all.find((s) => s.namespace === namespace && s.name === name)?.value;

    const policy = value('aws:elasticbeanstalk:command', 'DeploymentPolicy') ?? 'AllAtOnce';
    if (policy !== 'Immutable' && policy !== 'TrafficSplitting') {
      const type = value('aws:elasticbeanstalk:command', 'BatchSizeType');
      const size = value('aws:elasticbeanstalk:command', 'BatchSize');
      if (policy === 'AllAtOnce' || type !== 'Fixed' || size !== '1') {
        out.push(violation('deploy-batch-size', address, `DeploymentPolicy ${policy} with BatchSizeType ${type ?? '(default Percentage)'} and BatchSize ${size ?? '(default 100)'} replaces more than one instance at a time`));
      }
    }

    const delay = Number(value(PROCESS_NS, 'DeregistrationDelay') ?? Number.NaN);
    const silenceMs = Number(value(ENV_NS, 'RELAY_DEREGISTRATION_SILENCE_MS') ?? 0);
    const drainMs = Number(value(ENV_NS, 'RELAY_DRAIN_WINDOW_MS') ?? RELAY_DEFAULT_DRAIN_MS);
    const needed = Math.ceil((silenceMs + drainMs) / 1000) + DRAIN_MARGIN_SECONDS;
    if (!(silenceMs > 0)) {
      out.push(violation('deregistration-delay', address, 'RELAY_DEREGISTRATION_SILENCE_MS is not set: the relay never drains while the load balancer still carries its clients'));
    } else if (!(delay >= needed)) {
      out.push(violation('deregistration-delay', address, `DeregistrationDelay ${Number.isNaN(delay) ? '(unset, 20 s)' : `${delay} s`} is shorter than silence ${silenceMs} ms + drain ${drainMs} ms + ${DRAIN_MARGIN_SECONDS} s = ${needed} s`));
    }

    const asg = `${address}.autoscaling_groups`;
    const scaling = policies.filter((p) => p.policy_type === 'TargetTrackingScaling' && typeof p.autoscaling_group_name === 'string' && p.autoscaling_group_name.includes(asg));
    const onWhatCosts = scaling.some((p) => {
      const conf = asObject(asArray(p.target_tracking_configuration)[0]);
      const predefined = asObject(asArray(conf.predefined_metric_specification)[0]).predefined_metric_type;
      const custom = asObject(asArray(conf.customized_metric_specification)[0]);
      return predefined === 'ASGAverageCPUUtilization' || (custom.namespace === 'Relay' && custom.metric_name === 'Connections');
    });
    if (!onWhatCosts) {
      out.push(violation('scaling-policy', address, 'no target-tracking policy on connections or CPU for the environment\'s Auto Scaling group'));
    }

    const https = value('aws:elbv2:listener:443', 'Protocol') === 'HTTPS' && (value('aws:elbv2:listener:443', 'SSLCertificateArns') ?? '') !== '' && value('aws:elbv2:listener:443', 'ListenerEnabled') !== 'false';
    const auth = (value(SECRETS_NS, 'RELAY_TOKEN_SECRET') ?? '') !== '';
    if (!https || !auth) {
      const missing = [https ? '' : 'no HTTPS listener on 443', auth ? '' : 'no RELAY_TOKEN_SECRET (token auth off)'].filter(Boolean).join(' and ');
      out.push(violation('https-and-auth', address, missing));
    }

    if ((value('aws:autoscaling:launchconfiguration', 'DisableDefaultEC2SecurityGroup') ?? '').toLowerCase() !== 'true') {
      out.push(violation('default-security-group', address, 'Beanstalk still attaches its default instance security group (DisableDefaultEC2SecurityGroup is not true)'));
    }

    const bare = asArray(env.setting).filter((s) => !('resource' in asObject(s))).length;
    if (bare > 0) out.push(violation('setting-resource', address, `${bare} setting block${bare === 1 ? ' has' : 's have'} no "resource" key: the plan never settles`));
  }
  return out;
}

interface Setting {
  readonly namespace: string;
  readonly name: string;
  readonly value: string;
}

function settings(env: JsonObject): Setting[] {
  return asArray(env.setting).map((s) => {
    const o = asObject(s);
    return { namespace: text(o.namespace ?? ''), name: text(o.name ?? ''), value: text(o.value ?? '') };
  });
}

function groupAddress(value: Json | undefined): string | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^\$\{(aws_security_group\.[^.}]+)\.id\}$/.exec(value);
  return m ? m[1] : undefined;
}

function entriesOf(group: JsonObject, prefix: string): [string, JsonObject][] {
  return Object.keys(group)
    .sort()
    .map((name): [string, JsonObject] => [`${prefix}.${name}`, asObject(group[name])]);
}

function asObject(value: unknown): JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as JsonObject) : {};
}

function asArray(value: Json | undefined): Json[] {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

function strings(value: Json | undefined): string[] {
  return asArray(value).filter((v): v is string => typeof v === 'string');
}

/** A JSON value as text for messages and comparisons: objects and arrays as JSON, not "[object Object]". */
function text(value: Json | undefined): string {
  if (value === undefined) return '';
  return typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
