/**
 * The deploy pipeline (.github/workflows/): checked by real linters (actionlint, action-validator's schema, shellcheck on
 * every `run:` script), then its security and release properties asserted on the parsed YAML.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../app/paths';
import { CODE_FILES } from '../helpers/project';

interface Step {
  readonly name?: string;
  readonly uses?: string;
  readonly run?: string;
  readonly if?: string;
  readonly id?: string;
  readonly with?: Record<string, unknown>;
  readonly env?: Record<string, string>;
}
interface Job {
  readonly if?: string;
  readonly needs?: string | string[];
  readonly environment?: string;
  readonly concurrency?: { group: string; 'cancel-in-progress': boolean };
  readonly permissions?: Record<string, string>;
  readonly steps?: Step[];
  readonly uses?: string;
  readonly with?: Record<string, string>;
  readonly container?: { image: string };
  readonly strategy?: { matrix: Record<string, unknown> };
  readonly env?: Record<string, string>;
}
interface Workflow {
  readonly on: Record<string, { branches?: string[]; paths?: string[]; inputs?: Record<string, unknown> } | null>;
  readonly permissions: Record<string, string>;
  readonly env?: Record<string, string>;
  readonly jobs: Record<string, Job>;
}

const WORKFLOW_DIR = join(REPO_ROOT, '.github', 'workflows');
const FILES = ['infra.yml', 'terraform-environment.yml'];
const load = (file: string): Workflow => parse(readFileSync(join(WORKFLOW_DIR, file), 'utf8')) as Workflow;
const infra = load('infra.yml');
const called = load('terraform-environment.yml');
const workflows: [string, Workflow][] = [
  ['infra.yml', infra],
  ['terraform-environment.yml', called],
];
const allJobs: [string, Job][] = workflows.flatMap(([file, w]) => Object.entries(w.jobs).map(([id, job]): [string, Job] => [`${file}#${id}`, job]));
const allSteps: [string, Step][] = allJobs.flatMap(([id, job]) => (job.steps ?? []).map((s): [string, Step] => [id, s]));
const runs = allSteps.filter(([, s]) => s.run !== undefined).map(([id, s]): [string, string] => [`${id} / ${s.name ?? s.run?.split('\n')[0]}`, s.run ?? '']);
const node = (script: string, args: string[], cwd: string) => spawnSync(process.execPath, [script, ...args], { cwd, encoding: 'utf8', timeout: 120_000 });
const ACTIONLINT = join(REPO_ROOT, 'node_modules', '@tktco', 'node-actionlint', 'bin', 'node-actionlint.js');
const ACTION_VALIDATOR = join(REPO_ROOT, 'node_modules', '@action-validator', 'cli', 'cli.mjs');

describe('the workflows pass the linters', () => {
  let scratch: string;
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), 'relay-workflow-'));
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('pass actionlint (expressions, contexts, job graph, reusable-workflow inputs and outputs)', () => {
    const result = node(ACTIONLINT, ['.github/workflows/*.yml'], REPO_ROOT);
    expect(result.stdout).toContain(`Checking ${FILES.length} workflow file(s)...`);
    expect({ status: result.status, out: result.stdout.trim().split('\n').at(-1) }).toEqual({ status: 0, out: '✓ All workflow files passed lint checks' });
  });

  it('actionlint rejects a broken workflow (the check is real)', () => {
    mkdirSync(join(scratch, '.github', 'workflows'), { recursive: true });
    const broken = readFileSync(join(WORKFLOW_DIR, 'infra.yml'), 'utf8').replace('needs: deploy-dev', 'needs: deploy-qa');
    writeFileSync(join(scratch, '.github', 'workflows', 'infra.yml'), broken);
    const result = node(ACTIONLINT, ['.github/workflows/*.yml'], scratch);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/deploy-qa/);
  });

  it.each(FILES)('%s passes the workflow schema (action-validator)', (file) => {
    const result = node(ACTION_VALIDATOR, [join(WORKFLOW_DIR, file)], REPO_ROOT);
    // Its one known gap, said on stderr: it does not check `paths` globs (actionlint does).
    const stderr = result.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('WARNING: Glob validation is not yet supported.'));
    expect({ status: result.status, stderr }).toEqual({ status: 0, stderr: [] });
  });

  it('the schema validator rejects an unknown key (the check is real)', () => {
    const file = join(scratch, 'bad.yml');
    writeFileSync(file, readFileSync(join(WORKFLOW_DIR, 'infra.yml'), 'utf8').replace('timeout-minutes: 60', 'timeout-minutes: 60\n    run-on: ubuntu-latest'));
    const result = node(ACTION_VALIDATOR, [file], REPO_ROOT);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/errors/);
  });

  it('every run: script passes shellcheck, as bash with -e like the runner', () => {
    expect(runs.length).toBeGreaterThan(10);
    const problems: string[] = [];
    runs.forEach(([where, script], i) => {
      const file = join(scratch, `run-${i}.sh`);
      writeFileSync(file, `#!/usr/bin/env bash\nset -eo pipefail\n${script}`);
      const result = spawnSync('shellcheck', ['--shell=bash', '--severity=style', file], { encoding: 'utf8' });
      if (result.error) throw result.error;
      if (result.status !== 0) problems.push(`${where}:\n${result.stdout}`);
    });
    expect(problems).toEqual([]);
  });

  it('the scripts in .ci/ pass shellcheck', () => {
    const scripts = ['.ci/run', '.ci/artifact-manifest', '.ci/pr-comment-body'].map((f) => join(REPO_ROOT, f));
    const result = spawnSync('shellcheck', ['--severity=style', ...scripts], { encoding: 'utf8' });
    expect({ status: result.status, out: result.stdout }).toEqual({ status: 0, out: '' });
  });

  it('.ci/run installs shellcheck on a fresh Debian machine', () => {
    expect(readFileSync(join(REPO_ROOT, '.ci', 'run'), 'utf8')).toMatch(/command -v shellcheck .*\|\| need_apt\+=\(shellcheck\)/);
  });
});

describe('security properties', () => {
  it('grants contents: read at the top and in every job, and nothing else by default', () => {
    for (const [, w] of workflows) expect(w.permissions).toEqual({ contents: 'read' });
    for (const [id, job] of allJobs) expect([id, job.permissions?.contents]).toEqual([id, 'read']);
  });

  it('gives id-token: write only to jobs that assume an AWS role', () => {
    const assumes = (job: Job): boolean =>
      (job.steps ?? []).some((s) => s.uses?.startsWith('aws-actions/configure-aws-credentials@')) || job.uses === './.github/workflows/terraform-environment.yml';
    const withToken = allJobs.filter(([, j]) => j.permissions?.['id-token'] === 'write').map(([id]) => id);
    const assuming = allJobs.filter(([, j]) => assumes(j)).map(([id]) => id);
    expect(withToken).toEqual(assuming);
    expect(withToken).toEqual([
      'infra.yml#pr-plan',
      'infra.yml#deploy-dev',
      'infra.yml#deploy-staging',
      'infra.yml#plan-prod',
      'infra.yml#deploy-prod',
      'terraform-environment.yml#terraform',
    ]);
    // The jobs that run pull-request code with npm (tests, synth) never hold a token.
    for (const id of ['test', 'synth']) expect(infra.jobs[id].permissions).toEqual({ contents: 'read' });
    expect(infra.jobs['pr-comment'].permissions).toEqual({ contents: 'read', 'pull-requests': 'write' });
  });

  it('checks out without persisting the GitHub token, everywhere', () => {
    const checkouts = allSteps.filter(([, s]) => s.uses?.startsWith('actions/checkout@'));
    expect(checkouts.length).toBeGreaterThanOrEqual(5);
    for (const [id, s] of checkouts) expect([id, s.with?.['persist-credentials']]).toEqual([id, false]);
  });

  it('passes values to scripts through env:, never as ${{ }} in the script text', () => {
    for (const [where, script] of runs) expect([where, script.includes('${{')]).toEqual([where, false]);
  });

  it('plans pull requests with the repository\'s plan role and deploys with each GitHub environment\'s own role', () => {
    const prCreds = infra.jobs['pr-plan'].steps?.find((s) => s.uses?.startsWith('aws-actions/configure-aws-credentials@'));
    expect(prCreds?.with?.['role-to-assume']).toBe('${{ vars.AWS_PLAN_ROLE_ARN }}');
    // No GitHub environment: the OIDC subject stays repo:<owner>/<repo>:pull_request, the only one the plan role trusts.
    expect(infra.jobs['pr-plan'].environment).toBeUndefined();
    expect(infra.jobs['pr-plan'].if).toContain('github.event.pull_request.head.repo.full_name == github.repository');
    const deployCreds = called.jobs.terraform.steps?.find((s) => s.uses?.startsWith('aws-actions/configure-aws-credentials@'));
    expect(deployCreds?.with?.['role-to-assume']).toBe('${{ vars.AWS_ROLE_ARN }}');
    expect(called.jobs.terraform.environment).toBe("${{ inputs.mode == 'plan' && format('{0}-plan', inputs.environment) || inputs.environment }}");
  });

  it('never pushes, never runs the cdktf CLI, never auto-approves, never marks a ledger from CI', () => {
    for (const [where, script] of runs) {
      expect([where, /\bgit\s+(push|commit)\b/.test(script)]).toEqual([where, false]);
      expect([where, /\bcdktf\b|cdktf-cli/.test(script.replace(/cdktf\.out/g, ''))]).toEqual([where, false]);
      expect([where, /auto-approve|mark-deployed/.test(script)]).toEqual([where, false]);
    }
  });
});

describe('release properties', () => {
  const terraformCommands = runs.flatMap(([where, script]) =>
    script
      .split('\n')
      .filter((l) => /^\s*terraform -chdir="[^"]+" (init|plan|apply)\b/.test(l))
      .map((l): [string, string] => [where, l.trim()]),
  );

  it('runs tests through .ci/run in Debian on every event, and synthesizes only after them', () => {
    expect(infra.on).toHaveProperty('pull_request');
    expect(infra.jobs.test.steps?.map((s) => s.run).filter(Boolean)).toEqual(['bash .ci/run']);
    expect(infra.jobs.test.container?.image).toMatch(/^node:22-bookworm$/);
    expect(infra.jobs.synth.needs).toBe('test');
  });

  it('uses the Node.js major Beanstalk runs (22) wherever it sets one up', () => {
    for (const [, w] of workflows) expect(w.env?.NODE_VERSION).toBe('22');
    const setups = allSteps.filter(([, s]) => s.uses?.startsWith('actions/setup-node@'));
    expect(setups.length).toBeGreaterThanOrEqual(2);
    for (const [, s] of setups) expect(s.with?.['node-version']).toBe('${{ env.NODE_VERSION }}');
    expect(readFileSync(join(REPO_ROOT, 'stacks', 'relay-environment.ts'), 'utf8')).toMatch(/Node\.js 22/);
  });

  it('skips deploys for changes that touch no stack or artifact input, and covers every input', () => {
    const paths = infra.on.push?.paths ?? [];
    expect(infra.on.push?.branches).toEqual(['main']);
    // A folder of CODE_FILES is covered when a file inside it is.
    const covered = (entry: string) => {
      const file = entry.includes('.') ? entry : `${entry}/index.ts`;
      return paths.some((p) => p === file || (p.endsWith('/**') && file.startsWith(p.slice(0, -2))));
    };
    for (const input of [...CODE_FILES, 'releases/dev.json', 'relay.config.json', '.github/workflows/infra.yml', '.github/workflows/terraform-environment.yml', '.ci/run']) {
      expect([input, covered(input)]).toEqual([input, true]);
    }
    for (const docOnly of ['README.md', 'docs/pipeline.md', 'CHANGELOG.md', 'test/app/workflow.test.ts', 'bench/run.ts']) {
      expect([docOnly, covered(docOnly)]).toEqual([docOnly, false]);
    }
  });

  it('synthesizes once on main and uploads cdktf.out with its SHA-256 manifest', () => {
    const steps = infra.jobs.synth.steps ?? [];
    const at = (pred: (s: Step) => boolean) => steps.findIndex(pred);
    const synth = at((s) => s.run === 'npm run synth');
    const manifest = at((s) => s.run === 'bash .ci/artifact-manifest write cdktf.out');
    const upload = at((s) => s.uses?.startsWith('actions/upload-artifact@') === true && s.with?.name === 'cdktf-out');
    expect(synth).toBeGreaterThan(-1);
    expect(manifest).toBeGreaterThan(synth);
    expect(upload).toBeGreaterThan(manifest);
    expect(steps[upload].with?.path).toBe('cdktf.out');
    // Every job that reads the artifact verifies it first.
    for (const job of [infra.jobs['pr-plan'], called.jobs.terraform]) {
      const s = job.steps ?? [];
      const download = s.findIndex((x) => x.uses?.startsWith('actions/download-artifact@') === true && x.with?.name === 'cdktf-out');
      const verify = s.findIndex((x) => x.run === 'bash .ci/artifact-manifest verify cdktf.out');
      const firstTerraform = s.findIndex((x) => /\bterraform\b/.test(x.run ?? ''));
      expect(download).toBeGreaterThan(-1);
      expect(verify).toBeGreaterThan(download);
      expect(firstTerraform).toBeGreaterThan(verify);
    }
  });

  it('deploys in promotion order dev -> staging -> prod, prod planned before its approval-gated apply', () => {
    const deployJobs = Object.entries(infra.jobs).filter(([, j]) => j.uses === './.github/workflows/terraform-environment.yml');
    const needsOf = (j: Job) => (Array.isArray(j.needs) ? j.needs : j.needs === undefined ? [] : [j.needs]);
    // Walk the chain from the job that needs only synth.
    const chain: [string, Job][] = [];
    let next = deployJobs.find(([, j]) => needsOf(j).includes('synth'));
    while (next && chain.length < deployJobs.length) {
      chain.push(next);
      const id = next[0];
      next = deployJobs.find(([, j]) => needsOf(j).includes(id));
    }
    expect(chain.map(([, j]) => [j.with?.environment, j.with?.mode])).toEqual([
      ['dev', 'plan-and-apply'],
      ['staging', 'plan-and-apply'],
      ['prod', 'plan'],
      ['prod', 'apply'],
    ]);
    expect(chain.map(([, j]) => j.with?.environment).filter((e, i, a) => a.indexOf(e) === i)).toEqual(['dev', 'staging', 'prod']);
    expect(chain[0][1].if).toBe("github.event_name != 'pull_request' && github.ref == 'refs/heads/main'");
    expect(chain[3][1].with?.['plan-sha256']).toBe('${{ needs.plan-prod.outputs.plan-sha256 }}');
  });

  it('applies only a saved plan file: planned with -out, or fetched and checked against the reported SHA-256', () => {
    const steps = called.jobs.terraform.steps ?? [];
    const apply = steps.find((s) => /terraform .* apply /.test(s.run ?? ''));
    expect(apply?.run).toBe('terraform -chdir="$STACK_DIR" apply -input=false -lock-timeout=10m -no-color release.tfplan');
    expect(apply?.if).toBe("inputs.mode != 'plan'");
    const plan = steps.find((s) => /terraform .* plan /.test(s.run ?? ''));
    expect(plan?.run).toMatch(/ plan -input=false -lock-timeout=10m -no-color -out=release\.tfplan\n/);
    expect(plan?.run).toContain('>> "$GITHUB_STEP_SUMMARY"');
    const fetch = steps.find((s) => s.if === "inputs.mode == 'apply'");
    expect(fetch?.run).toContain('if [ -z "$EXPECTED_PLAN_SHA256" ] || [ "$actual" != "$EXPECTED_PLAN_SHA256" ]; then');
    expect(called.jobs.terraform.env?.EXPECTED_PLAN_SHA256).toBe('${{ inputs.plan-sha256 }}');
    const indexOf = (s: Step | undefined) => (s ? steps.indexOf(s) : -1);
    expect(indexOf(apply)).toBeGreaterThan(indexOf(plan));
    expect(indexOf(apply)).toBeGreaterThan(indexOf(fetch));
  });

  it('passes -lock-timeout to every terraform init, plan and apply', () => {
    expect(terraformCommands.length).toBeGreaterThanOrEqual(5);
    for (const [where, line] of terraformCommands) expect([where, line]).toEqual([where, expect.stringMatching(/ -lock-timeout=\d+m\b/)]);
  });

  it('reads what an environment runs from the deployment (active_version_label), then leaves a place for ops verify', () => {
    const steps = called.jobs.terraform.steps ?? [];
    const record = steps.findIndex((s) => /output -raw active_version_label/.test(s.run ?? ''));
    const verify = steps.findIndex((s) => /ops -- verify "\$DEPLOY_ENV"/.test(s.run ?? ''));
    const apply = steps.findIndex((s) => /terraform .* apply /.test(s.run ?? ''));
    expect(record).toBeGreaterThan(apply);
    expect(verify).toBeGreaterThan(record);
  });

  it('serialises each environment in one concurrency group that is never cancelled in progress', () => {
    expect(called.jobs.terraform.concurrency).toEqual({ group: 'terraform-${{ inputs.environment }}', 'cancel-in-progress': false });
  });

  it('pins every action to an exact release (or a commit) and terraform to an exact version that has native S3 locking', () => {
    const remote = allSteps.filter(([, s]) => s.uses !== undefined && !s.uses.startsWith('./'));
    expect(remote.length).toBeGreaterThan(10);
    for (const [, s] of remote) expect(s.uses).toMatch(/^[\w.-]+\/[\w.-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$/);
    const terraform = allSteps.filter(([, s]) => s.uses?.startsWith('hashicorp/setup-terraform@'));
    expect(terraform.length).toBe(2);
    for (const [, s] of terraform) {
      const version = String(s.with?.terraform_version);
      expect(version).toMatch(/^\d+\.\d+\.\d+$/);
      const [major, minor] = version.split('.').map(Number);
      expect(major > 1 || minor >= 11).toBe(true);
      expect(s.with?.terraform_wrapper).toBe(false);
    }
  });

  it('keeps ONE pull-request comment, found by its marker and updated in place', () => {
    const script = infra.jobs['pr-comment'].steps?.find((s) => s.run?.includes('gh api'))?.run ?? '';
    expect(script).toContain('startswith("<!-- relay-stack infra -->")');
    expect(script).toMatch(/if \[ -n "\$id" \]; then\n\s+gh api --method PATCH "repos\/\$REPO\/issues\/comments\/\$id"/);
    expect(readFileSync(join(REPO_ROOT, '.ci', 'pr-comment-body'), 'utf8')).toContain("marker='<!-- relay-stack infra -->'");
    expect(infra.jobs['pr-comment'].if).toBe("always() && github.event_name == 'pull_request'");
  });
});

describe('.ci/pr-comment-body', () => {
  let report: string;
  beforeAll(() => {
    report = mkdtempSync(join(tmpdir(), 'relay-report-'));
  });
  afterAll(() => rmSync(report, { recursive: true, force: true }));

  it('puts the diff and every plan in one body under the marker, capped in size, linking to the run', () => {
    writeFileSync(join(report, 'diff.md'), '### relay-dev\n\n- `aws_s3_object.x`: changed\n');
    writeFileSync(join(report, 'plan-dev.txt'), 'Plan: 1 to add, 0 to change, 0 to destroy.\n');
    writeFileSync(join(report, 'plan-prod.txt'), `${'  # aws_elastic_beanstalk_environment.relay will be updated in-place\n'.repeat(5000)}Plan: 0 to add, 1 to change, 0 to destroy.\n`);
    const body = execFileSync('bash', [join(REPO_ROOT, '.ci', 'pr-comment-body'), report, 'https://github.com/acme/relay/actions/runs/42', '20000'], { encoding: 'utf8' });
    expect(body.startsWith('<!-- relay-stack infra -->\n')).toBe(true);
    expect(body).toContain('Full output: [workflow run](https://github.com/acme/relay/actions/runs/42)');
    expect(body).toContain('- `aws_s3_object.x`: changed');
    expect(body).toContain('<summary><b>terraform plan: dev</b></summary>');
    expect(body).toContain('Plan: 1 to add, 0 to change, 0 to destroy.');
    expect(body).toContain('<summary><b>terraform plan: prod</b></summary>');
    expect(body).toMatch(/… cut at \d+ of \d+ characters; the full output is in the workflow run\./);
    expect(body.length).toBeLessThanOrEqual(20000);
  });

  it('says why there is no plan when none was made', () => {
    const empty = mkdtempSync(join(tmpdir(), 'relay-report-'));
    try {
      const body = execFileSync('bash', [join(REPO_ROOT, '.ci', 'pr-comment-body'), empty, 'https://example.invalid/run'], { encoding: 'utf8' });
      expect(body).toContain('No diff: the synth job did not finish.');
      expect(body).toContain('No plan was made: the repository variable `AWS_PLAN_ROLE_ARN` is not set');
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('.ci/artifact-manifest', () => {
  let dir: string;
  const manifest = (mode: string) => spawnSync('bash', [join(REPO_ROOT, '.ci', 'artifact-manifest'), mode, dir], { encoding: 'utf8' });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'relay-out-'));
    mkdirSync(join(dir, 'stacks', 'relay-dev', 'assets'), { recursive: true });
    writeFileSync(join(dir, 'manifest.json'), '{}\n');
    writeFileSync(join(dir, 'stacks', 'relay-dev', 'cdk.tf.json'), '{"resource":{}}\n');
    writeFileSync(join(dir, 'stacks', 'relay-dev', 'assets', 'relay-0.1.0-abc.zip'), 'zip bytes');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('lists every file with its SHA-256 and verifies an untouched folder', () => {
    expect(manifest('write').status).toBe(0);
    const sums = readFileSync(join(dir, 'SHA256SUMS'), 'utf8').trim().split('\n');
    expect(sums.map((l) => l.replace(/^[0-9a-f]{64} {2}/, ''))).toEqual(['./manifest.json', './stacks/relay-dev/assets/relay-0.1.0-abc.zip', './stacks/relay-dev/cdk.tf.json']);
    expect(manifest('verify')).toMatchObject({ status: 0, stdout: `artifact-manifest: every file in ${dir} matches SHA256SUMS\n` });
  });

  it('fails when a file changed, a file was added or the manifest is missing', () => {
    manifest('write');
    writeFileSync(join(dir, 'stacks', 'relay-dev', 'assets', 'relay-0.1.0-abc.zip'), 'other bytes');
    expect(manifest('verify')).toMatchObject({ status: 1, stderr: expect.stringContaining('relay-0.1.0-abc.zip') as unknown });
    manifest('write');
    writeFileSync(join(dir, 'stacks', 'relay-dev', 'extra.tf.json'), '{}');
    expect(manifest('verify')).toMatchObject({ status: 1, stderr: `artifact-manifest: files not in ${dir}/SHA256SUMS:\n./stacks/relay-dev/extra.tf.json\n` });
    rmSync(join(dir, 'SHA256SUMS'));
    expect(manifest('verify')).toMatchObject({ status: 1, stderr: expect.stringContaining('SHA256SUMS is missing') as unknown });
  });
});
