import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../app/paths';

interface Step {
  readonly uses?: string;
  readonly run?: string;
  readonly if?: string;
  readonly id?: string;
  readonly with?: Record<string, unknown>;
  readonly 'continue-on-error'?: boolean;
}
interface Job {
  readonly if?: string;
  readonly needs?: string | string[];
  readonly environment?: string;
  readonly concurrency?: { group: string; 'cancel-in-progress': boolean };
  readonly permissions?: Record<string, string>;
  readonly steps: Step[];
  readonly env?: Record<string, string>;
}
interface Workflow {
  readonly on: { pull_request: unknown; push: { branches: string[] } };
  readonly jobs: Record<string, Job>;
}

const workflow = parse(readFileSync(join(REPO_ROOT, '.github', 'workflows', 'infra.yml'), 'utf8')) as Workflow;
const runs = (job: Job) => job.steps.map((s) => s.run ?? '').join('\n');
const indexOf = (job: Job, pattern: RegExp) => job.steps.findIndex((s) => pattern.test(s.run ?? s.uses ?? ''));

describe('.github/workflows/infra.yml', () => {
  it('runs on pull requests and on pushes to main', () => {
    expect(workflow.on).toHaveProperty('pull_request');
    expect(workflow.on.push.branches).toEqual(['main']);
  });

  describe('pull requests', () => {
    const job = workflow.jobs['test-and-diff'];

    it('tests, then synthesizes head and base in order', () => {
      expect(job.if).toBe("github.event_name == 'pull_request'");
      expect(job.steps[0]).toEqual({ uses: 'actions/checkout@v4', with: { 'fetch-depth': 0 } });
      expect(job.steps.find((s) => s.uses === 'actions/setup-node@v4')?.with).toEqual({ 'node-version': 20, cache: 'npm' });
      const order = [/apt-get install .*redis-server/, /^npm ci$/, /^npm test$/, /npm run synth\n.*cp -R cdktf\.out "\$RUNNER_TEMP\/head"/s, /git worktree add .*\n.*npm ci\n.*npm run synth/s, /ops -- diff/];
      const positions = order.map((p) => indexOf(job, p));
      expect(positions.every((p) => p >= 0)).toBe(true);
      expect([...positions].sort((x, y) => x - y)).toEqual(positions);
    });

    it('writes the Markdown diff to the job summary, treating exit 2 as success', () => {
      const diff = job.steps[indexOf(job, /ops -- diff/)];
      expect(diff.run).toMatch(/npm run --silent ops -- diff "\$RUNNER_TEMP\/base" "\$RUNNER_TEMP\/head" --markdown >> "\$GITHUB_STEP_SUMMARY"/);
      expect(diff.run).toMatch(/set \+e/);
      expect(diff.run).toMatch(/if \[ "\$code" -ne 0 \] && \[ "\$code" -ne 2 \]; then exit "\$code"; fi/);
    });

    it('runs cdktf diff for every stack only when the OIDC role variable is set', () => {
      expect(job.permissions).toEqual({ contents: 'read', 'id-token': 'write' });
      const aws = job.steps.find((s) => s.uses === 'aws-actions/configure-aws-credentials@v4');
      expect(aws?.if).toBe("vars.AWS_ROLE_ARN != ''");
      expect(aws?.with?.['role-to-assume']).toBe('${{ vars.AWS_ROLE_ARN }}');
      const cdktfDiff = job.steps.find((s) => /cdktf-cli|CDKTF_CLI/.test(s.run ?? '') && /\bdiff\b/.test(s.run ?? ''));
      expect(cdktfDiff?.if).toBe("vars.AWS_ROLE_ARN != ''");
      expect(cdktfDiff?.run).toMatch(/for dir in cdktf\.out\/stacks\/\*\/; do/);
      expect(indexOf(job, /cdktf\.out\/stacks/)).toBeGreaterThan(job.steps.indexOf(aws as Step));
    });
  });

  describe('main', () => {
    const dev = workflow.jobs['deploy-dev'];
    const prod = workflow.jobs['deploy-prod'];

    it('deploys dev automatically and prod after dev behind the prod environment (manual approval)', () => {
      for (const job of [dev, prod]) {
        expect(job.if).toBe("github.event_name == 'push' && github.ref == 'refs/heads/main'");
        expect(job.permissions?.['id-token']).toBe('write');
        expect(runs(job)).toMatch(/npm run synth/);
        expect(runs(job)).toMatch(/deploy "relay-\$DEPLOY_ENV" --skip-synth --auto-approve/);
        expect(job.steps.some((s) => s.uses === 'aws-actions/configure-aws-credentials@v4')).toBe(true);
      }
      expect(dev.env).toEqual({ DEPLOY_ENV: 'dev' });
      expect(dev.needs).toBeUndefined();
      expect(prod.env).toEqual({ DEPLOY_ENV: 'prod' });
      expect(prod.needs).toBe('deploy-dev');
      expect(prod.environment).toBe('prod');
    });

    it('serialises deployments per environment without cancelling one in progress', () => {
      expect(dev.concurrency).toEqual({ group: 'deploy-dev', 'cancel-in-progress': false });
      expect(prod.concurrency).toEqual({ group: 'deploy-prod', 'cancel-in-progress': false });
    });

    it('records the deployed release in the ledger after a deploy', () => {
      const deploy = indexOf(dev, /cdktf|CDKTF_CLI/);
      const mark = indexOf(dev, /ops -- mark-deployed "\$DEPLOY_ENV"/);
      expect(deploy).toBeGreaterThan(-1);
      expect(mark).toBeGreaterThan(deploy);
    });
  });
});
