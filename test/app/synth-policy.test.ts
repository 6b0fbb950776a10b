/**
 * `npm run synth` applies the security policy to what it writes: a weakened stack fails synth with the rule, the
 * stack and resource, and the fix, and leaves no output a deploy could pick up; only a per-environment waiver with a
 * reason lets it through, and the waiver is printed.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../app/paths';
import { POLICY_FIXES } from '../../app/policy';
import { makeProject, runNpm, type Project } from '../helpers/project';

jest.setTimeout(300_000);

const WAIVER_REASON = 'the monitoring agent on these instances still needs IMDSv1 (ticket OPS-12)';
const environment = (name: string, waived = false) => ({
  name,
  region: 'eu-west-1',
  https: { certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/01234567-89ab-cdef-0123-456789abcdef' },
  ...(waived ? { policyWaivers: [{ rule: 'imdsv1', reason: WAIVER_REASON }] } : {}),
});

let project: Project;
beforeAll(() => {
  project = makeProject({ code: true, config: { app: 'relay', environments: [environment('dev'), environment('staging')] } });
});
afterAll(() => project.cleanup());

const synth = () => runNpm(project.root, 'synth');
const stackFile = (stack: string) => join(project.outDir, 'stacks', stack, 'cdk.tf.json');
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const violationOf = (stack: string) =>
  new RegExp(
    `\\n  ${stack}: \\[imdsv1\\] aws_elastic_beanstalk_environment\\.[\\w-]+: instances allow IMDSv1 \\(aws:autoscaling:launchconfiguration DisableIMDSv1 is not true\\)\\n` +
      `    fix: ${escape(POLICY_FIXES.imdsv1)}\\n`,
  );

it('fails on a violation naming rule, stack, resource and fix, withdraws the old output, and passes only with a waiver', async () => {
  // GIVEN a compliant synth, with terraform state beside the dev stack
  const first = await synth();
  expect({ code: first.code, stderr: first.stderr }).toEqual({ code: 0, stderr: '' });
  const state = join(project.outDir, 'stacks/relay-dev/terraform.relay-dev.tfstate');
  writeFileSync(state, '{"version":4}');
  const zips = readdirSync(join(project.outDir, 'stacks/relay-dev/releases'));
  expect(zips).toHaveLength(1);

  // WHEN a construct change lets the instances use IMDSv1
  const construct = join(project.root, 'stacks/relay-environment.ts');
  const source = readFileSync(construct, 'utf8');
  const weakened = source.replace("s('aws:autoscaling:launchconfiguration', 'DisableIMDSv1', true)", "s('aws:autoscaling:launchconfiguration', 'DisableIMDSv1', false)");
  expect(weakened).not.toBe(source);
  writeFileSync(construct, weakened);
  const failed = await synth();

  // THEN synth exits 1 naming both stacks' violations and their fix, and no synthesized stack is left to deploy
  expect(failed.code).toBe(1);
  expect(failed.stdout).toBe('');
  expect(failed.stderr).toMatch(/^Security policy: 2 violations; nothing was written\. Fix each one and run synth again:\n/);
  expect(failed.stderr).toMatch(violationOf('relay-dev'));
  expect(failed.stderr).toMatch(violationOf('relay-staging'));
  expect(failed.stderr).toContain(`"policyWaivers": [{ "rule": "<rule id>", "reason": "<why>" }]`);
  expect(failed.stderr).toMatch(/" \}\]\ncdktf\.out holds no synthesized stack until synth succeeds \(terraform state and release zips are kept\)\.\n$/);
  expect(existsSync(join(project.outDir, 'manifest.json'))).toBe(false);
  expect(existsSync(stackFile('relay-dev'))).toBe(false);
  expect(existsSync(stackFile('relay-staging'))).toBe(false);
  expect(readFileSync(state, 'utf8')).toBe('{"version":4}');
  expect(readdirSync(join(project.outDir, 'stacks/relay-dev/releases'))).toEqual(zips);
  expect(readdirSync(project.outDir).filter((f) => f.startsWith('.staging'))).toEqual([]);

  // WHEN only dev waives the rule THEN staging still fails, alone
  project.writeConfig({ app: 'relay', environments: [environment('dev', true), environment('staging')] });
  const partly = await synth();
  expect(partly.code).toBe(1);
  expect(partly.stderr).toMatch(/^Security policy: 1 violation; /);
  expect(partly.stderr).toMatch(violationOf('relay-staging'));
  expect(partly.stderr).not.toMatch(violationOf('relay-dev'));
  expect(existsSync(join(project.outDir, 'manifest.json'))).toBe(false);

  // WHEN both environments waive it THEN synth passes and prints each waiver with its reason
  project.writeConfig({ app: 'relay', environments: [environment('dev', true), environment('staging', true)] });
  const waived = await synth();
  expect({ code: waived.code, stderr: waived.stderr }).toEqual({ code: 0, stderr: '' });
  for (const stack of ['relay-dev', 'relay-staging']) {
    expect(waived.stdout).toMatch(
      new RegExp(`^${stack}: waived \\[imdsv1\\] aws_elastic_beanstalk_environment\\.[\\w-]+: instances allow IMDSv1 .*\\(reason: ${escape(WAIVER_REASON)}\\)$`, 'm'),
    );
    expect(waived.stdout).toMatch(new RegExp(`^wrote cdktf\\.out/stacks/${stack}/cdk\\.tf\\.json \\(active relay-`, 'm'));
    expect(existsSync(stackFile(stack))).toBe(true);
  }
  expect(existsSync(join(project.outDir, 'manifest.json'))).toBe(true);
  expect(readFileSync(state, 'utf8')).toBe('{"version":4}');
});

it('warns about a waiver that matches nothing, and refuses a waiver of an unknown rule or without a reason', async () => {
  // GIVEN the stacks as shipped (compliant) and a stale waiver
  writeFileSync(join(project.root, 'stacks/relay-environment.ts'), readFileSync(join(REPO_ROOT, 'stacks/relay-environment.ts')));
  project.writeConfig({ app: 'relay', environments: [environment('dev', true)] });
  const stale = await synth();
  expect(stale.code).toBe(0);
  expect(stale.stderr).toBe('warning: relay-dev: the waiver of [imdsv1] matches nothing; remove it from environment "dev" in relay.config.json\n');

  // WHEN the waivers are malformed THEN synth refuses the config, listing both problems
  project.writeConfig({ app: 'relay', environments: [{ ...environment('dev'), policyWaivers: [{ rule: 'no-such-rule', reason: 'x' }, { rule: 'imdsv1', reason: '' }] }] });
  const refused = await synth();
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/^Invalid relay config in relay\.config\.json \(2 problems\); fix these and run synth again:\n/);
  expect(refused.stderr).toContain('  - environments[0].policyWaivers[0].rule: received "no-such-rule"; allowed: one of the policy rule ids: s3-public-access-block, ');
  expect(refused.stderr).toContain('  - environments[0].policyWaivers[1].reason: received ""; allowed: a non-empty reason saying why this environment may break the rule\n');
});
