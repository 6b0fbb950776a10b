/**
 * Security policy over synthesized Terraform JSON (cdk.tf.json).
 *
 * It reads what Terraform will actually be asked to create, so it catches a weakened stack however the
 * weakening was written: a construct change, an escape hatch override or a hand edit.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export type PolicyRule =
  | 's3-public-access-block'
  | 's3-encryption'
  | 's3-tls-only'
  | 'open-ingress'
  | 'redis-transit-encryption'
  | 'redis-at-rest-encryption'
  | 'redis-auth'
  | 'iam-wildcard-action'
  | 'iam-full-access'
  | 'imdsv1'
  | 'plain-secret'
  | 'hardcoded-solution-stack';

export interface PolicyViolation {
  readonly rule: PolicyRule;
  /** Terraform address, e.g. `aws_s3_bucket.artifacts`. */
  readonly address: string;
  readonly message: string;
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
  ];
}

/** Checks every stack under a cdktf.out folder; keys are stack names. */
export function checkSynthOutput(outDir: string): Map<string, PolicyViolation[]> {
  const stacksDir = join(outDir, 'stacks');
  const result = new Map<string, PolicyViolation[]>();
  for (const name of readdirSync(stacksDir).sort()) {
    const doc: unknown = JSON.parse(readFileSync(join(stacksDir, name, 'cdk.tf.json'), 'utf8'));
    result.set(name, checkTerraformPolicy(doc));
  }
  return result;
}

/** One line per violation, for people. */
export function formatViolations(stack: string, violations: readonly PolicyViolation[]): string {
  return violations.map((v) => `${stack}: [${v.rule}] ${v.address}: ${v.message}`).join('\n');
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

  dataSources(type: string): [string, JsonObject][] {
    return entriesOf(asObject(asObject(this.doc.data)[type]), `data.${type}`);
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
      out.push({
        rule: 's3-public-access-block',
        address,
        message: `no aws_s3_bucket_public_access_block with ${flags.join(', ')} all true; add one for this bucket`,
      });
    }
    const sse = tf.referencing('aws_s3_bucket_server_side_encryption_configuration', 'bucket', address);
    const encrypted = sse.some((c) =>
      asArray(c.rule).some((r) => {
        const algo = asObject(asObject(r).apply_server_side_encryption_by_default).sse_algorithm;
        return typeof algo === 'string' && /^(AES256|aws:kms|aws:kms:dsse)$/.test(algo);
      }),
    );
    if (!encrypted) {
      out.push({
        rule: 's3-encryption',
        address,
        message: 'no server-side encryption configuration (AES256 or aws:kms); add aws_s3_bucket_server_side_encryption_configuration',
      });
    }
    const policies = tf.referencing('aws_s3_bucket_policy', 'bucket', address);
    const tlsOnly = policies.some((p) =>
      (tf.statements(p.policy) ?? []).some(
        (s) => s.effect === 'Deny' && s.conditions.some((c) => /^Bool:aws:SecureTransport=false$/i.test(c)),
      ),
    );
    if (!tlsOnly) {
      out.push({
        rule: 's3-tls-only',
        address,
        message: 'no bucket policy denying requests where aws:SecureTransport is false; add a TLS-only Deny statement',
      });
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
      out.push({
        rule: 'open-ingress',
        address,
        message: `ingress from ${world.join(', ')} on ports ${text(from)}-${text(to)}; only the public load balancer may accept 80/443 from anywhere`,
      });
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
      out.push({ rule: 'redis-transit-encryption', address, message: 'transit_encryption_enabled must be true' });
    }
    if (body.at_rest_encryption_enabled !== true && body.at_rest_encryption_enabled !== 'true') {
      out.push({ rule: 'redis-at-rest-encryption', address, message: 'at_rest_encryption_enabled must be true' });
    }
    if (typeof body.auth_token !== 'string' || body.auth_token.length === 0) {
      out.push({ rule: 'redis-auth', address, message: 'auth_token must be set (from a random_password kept in Secrets Manager)' });
    }
  }
  for (const [address] of tf.resources('aws_elasticache_cluster')) {
    out.push({
      rule: 'redis-transit-encryption',
      address,
      message: 'a bare aws_elasticache_cluster cannot enforce transit encryption and AUTH; use an aws_elasticache_replication_group',
    });
  }
  return out;
}

function checkIam(tf: TerraformDoc): PolicyViolation[] {
  const out: PolicyViolation[] = [];
  const checkPolicy = (address: string, policy: Json | undefined): void => {
    const statements = tf.statements(policy);
    if (statements === null) {
      out.push({
        rule: 'iam-wildcard-action',
        address,
        message: 'policy cannot be read statically; write it as JSON or an aws_iam_policy_document so it can be checked',
      });
      return;
    }
    for (const s of statements) {
      const wild = s.effect === 'Allow' ? s.actions.filter((a) => a.includes('*')) : [];
      if (wild.length > 0) {
        out.push({ rule: 'iam-wildcard-action', address, message: `allows wildcard actions ${wild.join(', ')}; list the actions needed` });
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
      out.push({ rule: 'iam-full-access', address, message: `attaches the AWS-managed ${arn}; grant only the actions needed` });
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
      out.push({
        rule: 'imdsv1',
        address,
        message: 'instances allow IMDSv1; set aws:autoscaling:launchconfiguration DisableIMDSv1 = true',
      });
    }
    for (const s of all.filter((x) => x.namespace === ENV_NS)) {
      if (SECRET_NAME.test(s.name) || SECRET_REFERENCE.test(s.value) || URL_WITH_PASSWORD.test(s.value)) {
        out.push({
          rule: 'plain-secret',
          address,
          message: `environment variable ${s.name} carries a secret in plain text; pass it through aws:elasticbeanstalk:application:environmentsecrets`,
        });
      }
    }
    const stack = env.solution_stack_name;
    if (typeof stack === 'string' && !/^\$\{data\.aws_elastic_beanstalk_solution_stack\.[^.}]+\.name\}$/.test(stack)) {
      out.push({
        rule: 'hardcoded-solution-stack',
        address,
        message: `solution_stack_name is hard-coded ("${stack}"); look it up with the aws_elastic_beanstalk_solution_stack data source`,
      });
    }
  }
  for (const [address, body] of tf.resources('aws_launch_template')) {
    const tokens = asObject(asArray(body.metadata_options)[0] ?? asObject(body.metadata_options)).http_tokens;
    if (tokens !== 'required') {
      out.push({ rule: 'imdsv1', address, message: 'metadata_options.http_tokens must be "required" (IMDSv2 only)' });
    }
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
