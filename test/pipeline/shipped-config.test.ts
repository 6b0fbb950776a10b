/**
 * The repository as shipped: relay.config.json and the workflow agree on what CI deploys, and a fresh clone
 * synthesized under CI=true keeps every deployed environment's state in S3. (Not under test/app: a user's copy with
 * its own config runs those suites, and its config need not be the shipped one.)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseConfig } from '../../app/config';
import { resolvePipeline } from '../../app/config-pipeline';
import { REPO_ROOT } from '../../app/paths';
import { makeProject, runNpm, type Project } from '../helpers/project';

// Synth builds the artifact: slow on a loaded machine.
jest.setTimeout(240_000);

const shipped = (): Record<string, unknown> => JSON.parse(readFileSync(join(REPO_ROOT, 'relay.config.json'), 'utf8')) as Record<string, unknown>;

describe('the shipped relay.config.json', () => {
  const projects: Project[] = [];
  afterAll(() => {
    for (const p of projects) p.cleanup();
  });

  it('deploys dev, staging and prod through the pipeline, prod reviewed, each with an S3 backend', () => {
    const config = parseConfig(shipped());
    const pipeline = resolvePipeline(config);
    expect(pipeline).toMatchObject({ environments: ['dev', 'staging', 'prod'], reviewed: ['prod'] });
    for (const name of pipeline?.environments ?? []) {
      expect(config.environments.find((e) => e.name === name)?.backend.type).toBe('s3');
    }
  });

  it('is what the workflow deploys: the same environments in the same order, the reviewed one planned before its apply', () => {
    const pipeline = resolvePipeline(parseConfig(shipped()));
    const infra = parse(readFileSync(join(REPO_ROOT, '.github', 'workflows', 'infra.yml'), 'utf8')) as {
      jobs: Record<string, { uses?: string; with?: { environment?: string; mode?: string }; strategy?: { matrix: { environment?: string[] } } }>;
    };
    // Pull requests plan every deployed environment.
    expect(infra.jobs['pr-plan'].strategy?.matrix.environment).toEqual(pipeline?.environments);
    const runs = Object.values(infra.jobs).filter((j) => j.uses === './.github/workflows/terraform-environment.yml').map((j) => j.with);
    expect([...new Set(runs.map((r) => r?.environment))]).toEqual(pipeline?.environments);
    for (const env of pipeline?.environments ?? []) {
      const modes = runs.filter((r) => r?.environment === env).map((r) => r?.mode);
      expect([env, modes]).toEqual([env, pipeline?.reviewed.includes(env) ? ['plan', 'apply'] : ['plan-and-apply']]);
    }
  });

  it('synthesizes under CI=true with an encrypted, natively locked S3 backend for every deployed environment', async () => {
    const project = makeProject({ config: shipped() });
    projects.push(project);
    const result = await runNpm(REPO_ROOT, 'synth', [], { env: { ...project.env, CI: 'true' } });
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    // The bootstrap stack comes last; its state is local by design and the workflow never deploys it.
    expect(result.stdout.trim().split('\n').at(-1)).toBe(`wrote ${join(project.outDir, 'stacks', 'relay-bootstrap', 'cdk.tf.json')}`);
    const bootstrap = JSON.parse(readFileSync(join(project.outDir, 'stacks', 'relay-bootstrap', 'cdk.tf.json'), 'utf8')) as { terraform: { backend: unknown } };
    expect(bootstrap.terraform.backend).toEqual({ local: { path: 'terraform.relay-bootstrap.tfstate' } });
    for (const env of ['dev', 'staging', 'prod']) {
      const doc = JSON.parse(readFileSync(join(project.outDir, 'stacks', `relay-${env}`, 'cdk.tf.json'), 'utf8')) as { terraform: { backend: unknown } };
      expect(doc.terraform.backend).toEqual({
        s3: { bucket: 'relay-stack-terraform-state', key: `relay/${env}/terraform.tfstate`, region: 'eu-west-1', encrypt: true, use_lockfile: true },
      });
    }
  });
});
