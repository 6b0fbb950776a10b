import { Testing } from 'cdktf';
import { checkTerraformPolicy } from '../../app/policy';
import { BootstrapStack, type BootstrapStackProps } from '../../stacks/bootstrap-stack';

type Body = Record<string, unknown>;
interface Statement {
  sid?: string;
  effect: string;
  actions: string[];
  resources?: string[];
  principals?: { type: string; identifiers: string[] }[];
  condition?: { test: string; variable: string; values: string[] }[];
}
interface Synth {
  terraform: { backend: Record<string, Body>; required_providers: Record<string, Body>; required_version: string };
  resource: Record<string, Record<string, Body>>;
  data: Record<string, Record<string, { statement: Statement[] }>>;
  output: Record<string, { value: string; description: string }>;
}

const PROPS: BootstrapStackProps = {
  app: 'relay',
  region: 'eu-west-1',
  repository: 'acme/relay-stack',
  stateBuckets: ['acme-relay-state'],
  environments: [
    { name: 'dev', stateBucket: 'acme-relay-state', stateKey: 'relay/dev/terraform.tfstate' },
    { name: 'staging', stateBucket: 'acme-relay-state', stateKey: 'relay/staging/terraform.tfstate' },
    { name: 'prod', stateBucket: 'acme-relay-state', stateKey: 'relay/prod/terraform.tfstate', reviewed: true },
  ],
};

function synth(props: BootstrapStackProps = PROPS): { doc: unknown; s: Synth } {
  const json = Testing.synth(new BootstrapStack(Testing.app(), 'relay-bootstrap', props));
  return { doc: JSON.parse(json), s: JSON.parse(json) as Synth };
}

const roleKey = (s: Synth, name: string): string => {
  const entry = Object.entries(s.resource.aws_iam_role).find(([, r]) => r.name === name);
  if (!entry) throw new Error(`no role ${name}`);
  return entry[0];
};
/** The trust statement of a role: its aws_iam_policy_document, found through the assume_role_policy reference. */
const trustOf = (s: Synth, name: string): Statement[] => {
  const ref = /^\$\{data\.aws_iam_policy_document\.([^.]+)\.json\}$/.exec(String(s.resource.aws_iam_role[roleKey(s, name)].assume_role_policy));
  return s.data.aws_iam_policy_document[ref?.[1] ?? ''].statement;
};
const subjectOf = (s: Synth, name: string) => trustOf(s, name)[0].condition?.find((c) => c.variable === 'token.actions.githubusercontent.com:sub')?.values;
const managedOf = (s: Synth, name: string): string[] =>
  Object.values(s.resource.aws_iam_role_policy_attachment)
    .filter((a) => a.role === `\${aws_iam_role.${roleKey(s, name)}.name}`)
    .map((a) => String(a.policy_arn).replace(/^arn:\$\{[^}]+\}:iam::aws:policy\//, ''))
    .sort();
const inlineOf = (s: Synth, name: string): Statement[] =>
  Object.values(s.resource.aws_iam_role_policy)
    .filter((p) => p.role === `\${aws_iam_role.${roleKey(s, name)}.id}`)
    .flatMap((p) => s.data.aws_iam_policy_document[/aws_iam_policy_document\.([^.]+)\.json/.exec(String(p.policy))?.[1] ?? ''].statement);

describe('BootstrapStack', () => {
  it('keeps its own state local, relative, and pins terraform and the provider like the environments', () => {
    const { s } = synth();
    expect(s.terraform.backend).toEqual({ local: { path: 'terraform.relay-bootstrap.tfstate' } });
    expect(s.terraform.required_providers).toEqual({ aws: { source: 'hashicorp/aws', version: '6.25.0' } });
    expect(s.terraform.required_version).toBe('>= 1.10.0');
  });

  it('creates the state bucket versioned, encrypted, public access blocked, owner-enforced, TLS-only and protected from destroy', () => {
    const { s } = synth();
    const [[key, bucket]] = Object.entries(s.resource.aws_s3_bucket);
    expect(bucket).toMatchObject({ bucket: 'acme-relay-state', lifecycle: { prevent_destroy: true } });
    const ref = `\${aws_s3_bucket.${key}.id}`;
    expect(Object.values(s.resource.aws_s3_bucket_versioning)).toEqual([expect.objectContaining({ bucket: ref, versioning_configuration: { status: 'Enabled' } })]);
    expect(Object.values(s.resource.aws_s3_bucket_server_side_encryption_configuration)[0]).toMatchObject({
      bucket: ref,
      rule: [{ apply_server_side_encryption_by_default: { sse_algorithm: 'AES256' } }],
    });
    expect(Object.values(s.resource.aws_s3_bucket_public_access_block)[0]).toMatchObject({
      bucket: ref,
      block_public_acls: true,
      block_public_policy: true,
      ignore_public_acls: true,
      restrict_public_buckets: true,
    });
    expect(Object.values(s.resource.aws_s3_bucket_ownership_controls)[0]).toMatchObject({ rule: { object_ownership: 'BucketOwnerEnforced' } });
    const tls = s.data.aws_iam_policy_document['state-tls-only-policy'].statement[0];
    expect(tls).toMatchObject({ effect: 'Deny', actions: ['s3:*'], condition: [{ test: 'Bool', variable: 'aws:SecureTransport', values: ['false'] }] });
  });

  it('passes the security policy every environment stack passes', () => {
    expect(checkTerraformPolicy(synth().doc)).toEqual([]);
  });

  it('creates GitHub\'s OIDC provider for the sts.amazonaws.com audience', () => {
    const { s } = synth();
    expect(Object.values(s.resource.aws_iam_openid_connect_provider)).toEqual([
      expect.objectContaining({ url: 'https://token.actions.githubusercontent.com', client_id_list: ['sts.amazonaws.com'] }),
    ]);
  });

  it('trusts the plan role only for the repository\'s pull requests, read-only plus the state lock files', () => {
    const { s } = synth();
    const [trust] = trustOf(s, 'relay-ci-plan');
    expect(trust).toMatchObject({
      effect: 'Allow',
      actions: ['sts:AssumeRoleWithWebIdentity'],
      principals: [{ type: 'Federated', identifiers: ['${aws_iam_openid_connect_provider.github-oidc.arn}'] }],
    });
    expect(trust.condition).toEqual([
      { test: 'StringEquals', variable: 'token.actions.githubusercontent.com:aud', values: ['sts.amazonaws.com'] },
      { test: 'StringEquals', variable: 'token.actions.githubusercontent.com:sub', values: ['repo:acme/relay-stack:pull_request'] },
    ]);
    expect(managedOf(s, 'relay-ci-plan')).toEqual(['ReadOnlyAccess']);
    const writes = inlineOf(s, 'relay-ci-plan').filter((st) => st.actions.some((a) => /Put|Delete/.test(a)));
    expect(writes).toHaveLength(1);
    expect(writes[0].resources).toEqual(['dev', 'staging', 'prod'].map((e) => `arn:\${data.aws_partition.partition.partition}:s3:::acme-relay-state/relay/${e}/terraform.tfstate.tflock`));
  });

  it('trusts each deploy role only for its own GitHub environment and scopes its state to its own key', () => {
    const { s } = synth();
    for (const env of ['dev', 'staging', 'prod']) {
      expect(subjectOf(s, `relay-ci-deploy-${env}`)).toEqual([`repo:acme/relay-stack:environment:${env}`]);
      expect(managedOf(s, `relay-ci-deploy-${env}`)).toEqual(['AdministratorAccess-AWSElasticBeanstalk']);
      const inline = inlineOf(s, `relay-ci-deploy-${env}`);
      expect(inline.find((st) => st.sid === 'ReadWriteStateAndLock')?.resources).toEqual([
        `arn:\${data.aws_partition.partition.partition}:s3:::acme-relay-state/relay/${env}/terraform.tfstate`,
        `arn:\${data.aws_partition.partition.partition}:s3:::acme-relay-state/relay/${env}/terraform.tfstate.tflock`,
      ]);
      // Roles it may create or pass are its own environment's only.
      expect(inline.find((st) => st.sid === 'EnvironmentRoles')?.resources).toEqual([
        `arn:\${data.aws_partition.partition.partition}:iam::\${data.aws_caller_identity.account.account_id}:role/relay-${env}-*`,
        `arn:\${data.aws_partition.partition.partition}:iam::\${data.aws_caller_identity.account.account_id}:instance-profile/relay-${env}-*`,
      ]);
      for (const st of inline) expect(st.actions.filter((a) => a.includes('*'))).toEqual([]);
    }
  });

  it('gives a reviewed environment a read-only plan role trusted only for its <env>-plan GitHub environment', () => {
    const { s } = synth();
    expect(subjectOf(s, 'relay-ci-plan-prod')).toEqual(['repo:acme/relay-stack:environment:prod-plan']);
    expect(managedOf(s, 'relay-ci-plan-prod')).toEqual(['ReadOnlyAccess']);
    // Its only other write: the saved plan, under plans/<state key>/, which prod's deploy role reads after approval.
    const prefix = 'arn:${data.aws_partition.partition.partition}:s3:::acme-relay-state/plans/relay/prod/terraform.tfstate/*';
    expect(inlineOf(s, 'relay-ci-plan-prod').find((st) => st.sid === 'StorePlanFile')).toMatchObject({ actions: ['s3:PutObject'], resources: [prefix] });
    expect(inlineOf(s, 'relay-ci-deploy-prod').find((st) => st.sid === 'ReadApprovedPlanFile')).toMatchObject({ actions: ['s3:GetObject'], resources: [prefix] });
    expect(Object.values(s.resource.aws_iam_role).map((r) => r.name).sort()).toEqual([
      'relay-ci-deploy-dev',
      'relay-ci-deploy-prod',
      'relay-ci-deploy-staging',
      'relay-ci-plan',
      'relay-ci-plan-prod',
    ]);
  });

  it('outputs the ARNs to set as GitHub variables', () => {
    const { s } = synth();
    expect(Object.keys(s.output).sort()).toEqual(['deploy_role_arn_dev', 'deploy_role_arn_prod', 'deploy_role_arn_staging', 'plan_role_arn', 'plan_role_arn_prod', 'state_bucket']);
    expect(s.output.plan_role_arn.description).toBe('Repository variable AWS_PLAN_ROLE_ARN (pull-request plans)');
    expect(s.output.deploy_role_arn_prod.description).toBe('Variable AWS_ROLE_ARN of the GitHub environment prod');
  });
});
