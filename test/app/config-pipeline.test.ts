import { ConfigError, parseConfig } from '../../app/config';
import { bootstrapStackProps } from '../../app/bootstrap';
import { assertSharedState, LocalBackendInCiError, resolvePipeline } from '../../app/config-pipeline';
import { REPO_ROOT } from '../../app/paths';
import { exampleConfig, makeProject, runNpm, type Project } from '../helpers/project';

// Synth builds the artifact: slow on a loaded machine.
jest.setTimeout(240_000);

const s3 = { type: 's3', bucket: 'acme-relay-state' };
const problems = (raw: unknown): string[] => {
  try {
    parseConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
};

describe('pipeline config', () => {
  it('defaults to every environment deployed, prod reviewed, the first environment\'s region', () => {
    const config = parseConfig({ ...exampleConfig(), pipeline: { repository: 'acme/relay' } });
    expect(resolvePipeline(config)).toEqual({ repository: 'acme/relay', environments: ['dev', 'staging', 'prod'], reviewed: ['prod'], region: 'eu-west-1' });
  });

  it('has no pipeline without the block', () => {
    expect(resolvePipeline(parseConfig(exampleConfig()))).toBeUndefined();
  });

  it('fails when the repository is not <owner>/<name>, or a listed environment is unknown, repeated or not deployed', () => {
    expect(problems({ ...exampleConfig(), pipeline: { repository: 'https://github.com/acme/relay', environments: ['dev', 'qa', 'dev'], reviewed: ['prod'] } })).toEqual([
      'pipeline.repository: received "https://github.com/acme/relay"; allowed: a GitHub repository "<owner>/<name>"',
      'pipeline.environments[1]: received "qa"; allowed: the name of a configured environment (dev, staging, prod)',
      'pipeline.environments[2]: received "dev"; allowed: a name listed once',
      'pipeline.reviewed[0]: received "prod"; allowed: one of the deployed environments (dev, qa, dev)',
    ]);
  });
});

describe('bootstrapStackProps', () => {
  it('creates the state bucket the deployed environments name and a role per deployed environment with an S3 backend', () => {
    const environments = exampleConfig().environments.map((e) => (e.name === 'dev' ? e : { ...e, backend: { ...s3, region: 'eu-west-1' } }));
    const props = bootstrapStackProps(parseConfig({ ...exampleConfig(), environments, pipeline: { repository: 'acme/relay' } }));
    expect(props).toEqual({
      app: 'relay',
      region: 'eu-west-1',
      repository: 'acme/relay',
      stateBuckets: ['acme-relay-state'],
      environments: [
        { name: 'staging', stateBucket: 'acme-relay-state', stateKey: 'relay/staging/terraform.tfstate', reviewed: false },
        { name: 'prod', stateBucket: 'acme-relay-state', stateKey: 'relay/prod/terraform.tfstate', reviewed: true },
      ],
    });
  });

  it('fails when a state bucket is in another region than the pipeline\'s, or an environment is named bootstrap', () => {
    const environments = [
      { name: 'bootstrap', region: 'eu-west-1' },
      { name: 'prod', region: 'us-east-1', backend: s3 },
    ];
    expect(problems({ environments, pipeline: { repository: 'acme/relay', region: 'eu-west-1' } })).toEqual([
      'environments[0].name: received "bootstrap"; allowed: a name other than "bootstrap" (the stack relay-bootstrap creates the pipeline\'s state bucket and roles)',
      'environments[1].backend.region: received "us-east-1"; allowed: "eu-west-1", the pipeline\'s region, where relay-bootstrap creates the state bucket (or set pipeline.region)',
    ]);
  });
});

describe('assertSharedState', () => {
  const config = (pipeline?: unknown) =>
    parseConfig({
      ...exampleConfig(),
      environments: exampleConfig().environments.map((e) => (e.name === 'prod' ? { ...e, backend: s3 } : e)),
      ...(pipeline === undefined ? {} : { pipeline }),
    });

  it('allows local backends outside CI', () => {
    expect(() => assertSharedState(config(), {}, 'relay.config.json')).not.toThrow();
    expect(() => assertSharedState(config(), { CI: 'false' }, 'relay.config.json')).not.toThrow();
  });

  it('fails under CI=true naming every deployed environment with a local backend and the fix', () => {
    let error: unknown;
    try {
      assertSharedState(config(), { CI: 'true' }, 'relay.config.json');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(LocalBackendInCiError);
    expect((error as LocalBackendInCiError).code).toBe('local_backend_in_ci');
    expect((error as Error).message).toMatch(/^CI=true: environments "dev", "staging" would keep Terraform state in a local backend/);
    expect((error as Error).message).toContain('In relay.config.json, give each a shared backend: "backend": { "type": "s3", "bucket": "<state bucket>" }');
  });

  it('ignores environments the workflow does not deploy', () => {
    expect(() => assertSharedState(config({ repository: 'acme/relay', environments: ['prod'] }), { CI: 'true' }, 'relay.config.json')).not.toThrow();
  });
});

describe('npm run synth with CI=true', () => {
  const projects: Project[] = [];
  afterAll(() => {
    for (const p of projects) p.cleanup();
  });

  it('fails with a local backend, naming the environments and the fix, and writes nothing', async () => {
    const project = makeProject();
    projects.push(project);
    const result = await runNpm(REPO_ROOT, 'synth', [], { env: { ...project.env, CI: 'true' } });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^CI=true: environments "dev", "staging", "prod" would keep Terraform state in a local backend/);
    expect(result.stderr).toContain('relay.config.json, give each a shared backend');
    expect(result.stdout).not.toMatch(/wrote/);
  });
});
