/**
 * The bootstrap stack's props from the config: the state buckets the deployed environments' S3 backends name, and a
 * deploy role (plus a read-only plan role when reviewed) per deployed environment. Synthesized as `relay-bootstrap`
 * whenever the config has a `pipeline` block; applied once by hand (see docs/pipeline.md), never by the workflow.
 */
import type { BootstrapEnvironment, BootstrapStackProps } from '../stacks/bootstrap-stack';
import { defaultStateKey } from '../stacks/relay-stack';
import type { AppConfig } from './config';
import { resolvePipeline } from './config-pipeline';

/** Stack id of the bootstrap stack, beside the environments' `relay-<env>`. */
export const BOOTSTRAP_STACK_ID = 'relay-bootstrap';

/** Props of relay-bootstrap; undefined without a `pipeline` block. Environments with a local backend get no role. */
export function bootstrapStackProps(config: AppConfig): BootstrapStackProps | undefined {
  const pipeline = resolvePipeline(config);
  if (pipeline === undefined) return undefined;
  const environments: BootstrapEnvironment[] = [];
  for (const name of pipeline.environments) {
    const env = config.environments.find((e) => e.name === name);
    if (env?.backend.type !== 's3') continue;
    environments.push({
      name,
      stateBucket: env.backend.bucket,
      stateKey: env.backend.key ?? defaultStateKey(config.app, name),
      reviewed: pipeline.reviewed.includes(name),
    });
  }
  return {
    app: config.app,
    region: pipeline.region,
    repository: pipeline.repository,
    stateBuckets: [...new Set(environments.map((e) => e.stateBucket))],
    environments,
  };
}
