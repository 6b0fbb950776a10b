/**
 * The deploy pipeline's part of relay.config.json: which GitHub repository may assume the CI roles, which environments
 * the workflow deploys, and where the bootstrap stack (`relay-bootstrap`) creates the state bucket and the roles.
 *
 * Also the rule that keeps shared state shared: under `CI=true`, synth refuses a local backend for any environment the
 * workflow deploys (a runner's disk is thrown away after every run, and with it the state).
 */
import { z } from 'zod';

/** The `pipeline` block of relay.config.json. */
export const pipelineSchema = z.strictObject({
  repository: z
    .string({ error: 'a string' })
    .regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})\/[A-Za-z0-9._-]{1,100}$/, { error: 'a GitHub repository "<owner>/<name>"' })
    .meta({ description: 'GitHub repository whose workflow may assume the CI roles (OIDC subjects `repo:<owner>/<name>:…`).', allowed: '`<owner>/<name>`' }),
  environments: z
    .array(z.string({ error: 'an environment name' }), { error: 'a list of environment names' })
    .min(1, { error: 'at least one environment name' })
    .optional()
    .meta({ description: 'Environments the workflow deploys, in promotion order: each needs an S3 backend, gets a deploy role and a GitHub environment of the same name.', allowed: 'names of configured environments', unset: 'every environment' }),
  reviewed: z
    .array(z.string({ error: 'an environment name' }), { error: 'a list of environment names' })
    .optional()
    .meta({
      description: 'Deployed environments whose apply waits for a reviewer: their plan is made first, in the GitHub environment `<env>-plan`, with a read-only role.',
      allowed: 'names among `environments`',
      unset: '`["prod"]` when prod is deployed, else none',
    }),
  region: z
    .string({ error: 'a string' })
    .regex(/^[a-z]{2}(-gov)?-[a-z]+-\d$/, { error: 'an AWS region like "eu-west-1"' })
    .optional()
    .meta({ description: 'Region of the bootstrap stack: the state bucket (IAM roles and the OIDC provider are global).', allowed: 'an AWS region like `eu-west-1`', unset: 'the first environment\'s `region`' }),
});

export type PipelineConfig = z.output<typeof pipelineSchema>;

/** What pipelineProblems and the stacks need of an environment. */
export interface PipelineEnvironment {
  readonly name: string;
  readonly region: string;
  readonly backend: { readonly type: 'local' } | { readonly type: 's3'; readonly bucket: string; readonly key?: string; readonly region?: string };
}

/** The pipeline with every default applied. */
export interface ResolvedPipeline {
  readonly repository: string;
  /** Environments the workflow deploys, in promotion order. */
  readonly environments: readonly string[];
  /** Deployed environments whose apply waits for a reviewer (a plan job with a read-only role comes first). */
  readonly reviewed: readonly string[];
  readonly region: string;
}

/** The pipeline with its defaults; undefined when the config has no `pipeline` block. */
export function resolvePipeline(config: { readonly environments: readonly PipelineEnvironment[]; readonly pipeline?: PipelineConfig }): ResolvedPipeline | undefined {
  const p = config.pipeline;
  if (p === undefined) return undefined;
  const environments = p.environments ?? config.environments.map((e) => e.name);
  return {
    repository: p.repository,
    environments,
    reviewed: p.reviewed ?? environments.filter((e) => e === 'prod'),
    region: p.region ?? config.environments[0].region,
  };
}

/** Environments the workflow deploys: the pipeline's list, or every environment when there is no pipeline block. */
export function deployedEnvironments(config: { readonly environments: readonly PipelineEnvironment[]; readonly pipeline?: PipelineConfig }): string[] {
  return [...(config.pipeline?.environments ?? config.environments.map((e) => e.name))];
}

/** One problem with the pipeline block against the environments: where (a config path), the value and what is allowed. */
export interface PipelineProblem {
  readonly path: (string | number)[];
  readonly input: unknown;
  readonly message: string;
}

/** Cross-checks the pipeline block against the environments (names exist, no repeats, reviewed ⊆ deployed). */
export function pipelineProblems(environments: readonly PipelineEnvironment[], pipeline: PipelineConfig | undefined): PipelineProblem[] {
  if (pipeline === undefined) return [];
  const names = environments.map((e) => e.name);
  const problems: PipelineProblem[] = [];
  const deployed = pipeline.environments ?? names;
  const seen = new Set<string>();
  (pipeline.environments ?? []).forEach((name, i) => {
    if (!names.includes(name)) problems.push({ path: ['pipeline', 'environments', i], input: name, message: `the name of a configured environment (${names.join(', ')})` });
    else if (seen.has(name)) problems.push({ path: ['pipeline', 'environments', i], input: name, message: 'a name listed once' });
    seen.add(name);
  });
  (pipeline.reviewed ?? []).forEach((name, i) => {
    if (!deployed.includes(name)) problems.push({ path: ['pipeline', 'reviewed', i], input: name, message: `one of the deployed environments (${deployed.join(', ')})` });
  });
  const region = pipeline.region ?? environments[0]?.region;
  environments.forEach((e, i) => {
    // The stack id relay-bootstrap is taken by the bootstrap stack.
    if (e.name === 'bootstrap') problems.push({ path: ['environments', i, 'name'], input: e.name, message: 'a name other than "bootstrap" (the stack relay-bootstrap creates the pipeline\'s state bucket and roles)' });
    if (!deployed.includes(e.name) || e.backend.type !== 's3') return;
    const bucketRegion = e.backend.region ?? e.region;
    if (bucketRegion !== region) {
      problems.push({ path: ['environments', i, 'backend', 'region'], input: bucketRegion, message: `"${region}", the pipeline's region, where relay-bootstrap creates the state bucket (or set pipeline.region)` });
    }
  });
  return problems;
}

/** Synth under CI refused a local backend for an environment the workflow deploys. */
export class LocalBackendInCiError extends Error {
  readonly code = 'local_backend_in_ci';
  constructor(configFile: string, environments: readonly string[]) {
    const list = environments.map((e) => `"${e}"`).join(', ');
    super(
      `CI=true: environment${environments.length === 1 ? '' : 's'} ${list} would keep Terraform state in a local backend, which a CI runner throws away after every run ` +
        `(the next deploy would try to create everything again). In ${configFile}, give ${environments.length === 1 ? 'it' : 'each'} a shared backend: ` +
        `"backend": { "type": "s3", "bucket": "<state bucket>" } (create the bucket with the relay-bootstrap stack, see docs/pipeline.md), ` +
        `or leave ${environments.length === 1 ? 'it' : 'them'} out of "pipeline.environments" if the workflow does not deploy ${environments.length === 1 ? 'it' : 'them'}.`,
    );
    this.name = 'LocalBackendInCiError';
  }
}

/**
 * Throws LocalBackendInCiError when `env.CI` is "true" and an environment the workflow deploys has a local backend.
 * Every CI service sets CI=true; a laptop does not, so local experiments keep their local state.
 */
export function assertSharedState(
  config: { readonly environments: readonly PipelineEnvironment[]; readonly pipeline?: PipelineConfig },
  env: NodeJS.ProcessEnv,
  configFile: string,
): void {
  if (env.CI !== 'true') return;
  const deployed = new Set(deployedEnvironments(config));
  const local = config.environments.filter((e) => deployed.has(e.name) && e.backend.type === 'local').map((e) => e.name);
  if (local.length > 0) throw new LocalBackendInCiError(configFile, local);
}
