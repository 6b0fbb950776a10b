/**
 * Synth: config in, the artifact built, one stack per environment, the security policy applied, Terraform out.
 *
 * cdktf writes into a staging folder inside the output folder; the policy reads every stack's cdk.tf.json there, and
 * only a compliant (or explicitly waived) result is moved into place, with manifest.json last. A failed synth — bad
 * config, bad ledger, a policy violation — withdraws the previous manifest.json and cdk.tf.json files, so
 * `cdktf deploy --skip-synth` cannot pick up output that no longer matches the source. Terraform's local state and the
 * release zips beside each stack are never touched.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { RelayStackProps } from '../stacks/relay-stack';
import { RELEASE_SOURCE_DIR, releaseSourcePath, releaseZipName } from '../stacks/release-layout';
import { buildArtifact } from './artifact';
import { BOOTSTRAP_STACK_ID, bootstrapStackProps } from './bootstrap';
import { loadConfig, type AppConfig, type EnvironmentConfig } from './config';
import { infraStackProps } from './config-relay';
import { assertSharedState } from './config-pipeline';
import { displayPath, REPO_ROOT } from './paths';
import { checkTerraformPolicy, formatViolation, judgePolicy, type PolicyViolation } from './policy';
import { resolveAllReleases, type ResolvedReleases } from './releases';

/** What synth reads and where it writes; every path absolute or relative to the working directory. */
export interface SynthOptions {
  /** The environment config (relay.config.json). */
  readonly configFile: string;
  /** Folder of the release ledgers `<env>.json`. */
  readonly ledgerDir: string;
  /** Folder of the built zips: the current build is written here, and retained releases are looked up here. */
  readonly artifactsDir: string;
  /** Output folder (cdktf.out): manifest.json and stacks/<stack>/. */
  readonly outDir: string;
  /**
   * The git checkout whose commits the ledgers record (missing zips are rebuilt from them).
   * @default the repository this program runs from
   */
  readonly repoRoot?: string;
}

/** A stack folder of an environment no longer configured that holds terraform state: synth will not delete it. */
export class OrphanedStateError extends Error {
  readonly code = 'orphaned_state';
  constructor(folders: readonly { dir: string; files: readonly string[] }[], configFile: string) {
    super(
      folders
        .map(
          ({ dir, files }) =>
            `${displayPath(dir)} is the stack folder of an environment ${displayPath(configFile)} no longer configures, and it holds terraform state (${files.join(', ')}).`,
        )
        .join('\n') +
        '\nSynth removes the folders of removed environments, but never state: the resources it tracks may still exist. Either destroy them first ' +
        `(add the environment back to ${displayPath(configFile)}, \`npm run synth\`, \`npx cdktf-cli@0.21.0 destroy relay-<env>\`, then remove it again), ` +
        'or move the state out of cdktf.out (e.g. `mv cdktf.out/stacks/relay-<env> ../relay-<env>-state`) to import or destroy it later; then run synth again.',
    );
    this.name = 'OrphanedStateError';
  }
}

export interface SynthIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

/** The synth stopped by the policy; `message` lists each violation with its rule, stack, resource and fix. */
export class PolicyViolationError extends Error {
  readonly code = 'policy_violation';
  constructor(message: string) {
    super(message);
    this.name = 'PolicyViolationError';
  }
}

const MANIFEST = 'manifest.json';
const STACK_FILE = 'cdk.tf.json';

interface PlannedStack {
  readonly id: string;
  /** Absent for relay-bootstrap, which is no environment. */
  readonly env?: EnvironmentConfig;
  readonly releases?: ResolvedReleases;
}

/**
 * Synthesizes every environment into `opts.outDir`. Resolves when the output is in place; rejects with the error to
 * show (ConfigError, LedgerError, PolicyViolationError, …) after withdrawing the previous output.
 */
export async function synthesize(opts: SynthOptions, io: SynthIo): Promise<void> {
  const staging = join(opts.outDir, `.staging-${process.pid}`);
  try {
    const planned = await synthesizeInto(staging, opts, io);
    moveIntoPlace(staging, planned, opts.outDir);
    for (const { id, releases } of planned) {
      io.stdout(`wrote ${displayPath(join(opts.outDir, 'stacks', id, STACK_FILE))}${releases ? ` (active ${releases.active.label})` : ''}\n`);
    }
  } catch (err) {
    // Said after the error it follows from: the message is extended rather than printed first.
    if (withdraw(opts.outDir) && err instanceof Error) {
      err.message += `\n${displayPath(opts.outDir)} holds no synthesized stack until synth succeeds (terraform state and release zips are kept).`;
    }
    throw err;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** The props of one environment's stack, from the validated config and its resolved releases. */
export function relayStackProps(config: AppConfig, env: EnvironmentConfig, releases: ResolvedReleases): RelayStackProps {
  return {
    app: config.app,
    environment: env.name,
    region: env.region,
    backend: env.backend,
    vpc: env.vpc,
    loadBalancer: env.loadBalancer,
    instances: env.instances,
    redis: env.redis,
    deploymentPolicy: env.deploymentPolicy,
    maintenanceWindow: env.maintenanceWindow,
    logRetentionDays: env.logRetentionDays,
    retainReleases: env.retainReleases,
    artifactBucket: env.artifactBucket,
    releases: releases.releases,
    activeRelease: releases.active.label,
    ...infraStackProps(env),
  };
}

async function synthesizeInto(staging: string, opts: SynthOptions, io: SynthIo): Promise<PlannedStack[]> {
  const config = loadConfig(opts.configFile);
  assertSharedState(config, process.env, displayPath(opts.configFile));
  const stackIds = [...config.environments.map((e) => `relay-${e.name}`), ...(bootstrapStackProps(config) ? [BOOTSTRAP_STACK_ID] : [])];
  const withState = orphanedStacks(opts.outDir, stackIds).filter((o) => o.files.length > 0);
  if (withState.length > 0) throw new OrphanedStateError(withState, opts.configFile);
  // The bundle is built by esbuild's own process: start it first so it overlaps loading cdktf and the provider classes.
  const building = buildArtifact({ reuse: true, outDir: opts.artifactsDir });
  // Handled where it is awaited below; this only keeps an early failure from counting as unhandled meanwhile.
  building.catch(() => undefined);
  const { App } = await import('cdktf');
  const { RelayStack } = await import('../stacks/relay-stack');
  const artifact = await building;
  const resolved = await resolveAllReleases(
    config.environments.map((e) => e.name),
    artifact,
    { ledgerDir: opts.ledgerDir, artifactsDir: opts.artifactsDir, configFile: opts.configFile, repoRoot: opts.repoRoot ?? REPO_ROOT, log: (line) => io.stderr(`${line}\n`) },
  );

  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  // cdktf records no outdir in what it writes, so the staging folder's name never reaches the output.
  const app = new App({ outdir: staging });
  const planned = config.environments.map((env): PlannedStack => {
    const releases = resolved.get(env.name) as ResolvedReleases;
    const id = `relay-${env.name}`;
    new RelayStack(app, id, relayStackProps(config, env, releases));
    return { id, env, releases };
  });
  const bootstrap = bootstrapStackProps(config);
  if (bootstrap) {
    const { BootstrapStack } = await import('../stacks/bootstrap-stack');
    new BootstrapStack(app, BOOTSTRAP_STACK_ID, bootstrap);
    planned.push({ id: BOOTSTRAP_STACK_ID });
  }
  app.synth();
  checkPolicy(staging, planned, opts.configFile, io);
  return planned;
}

/** Applies the policy to every staged stack; throws when a violation is not waived for its environment. */
function checkPolicy(staging: string, planned: readonly PlannedStack[], configFile: string, io: SynthIo): void {
  const failing: string[] = [];
  for (const { id, env } of planned) {
    const doc: unknown = JSON.parse(readFileSync(join(staging, 'stacks', id, STACK_FILE), 'utf8'));
    const verdict = judgePolicy(checkTerraformPolicy(doc), env?.policyWaivers ?? []);
    for (const v of verdict.waived) io.stdout(`${id}: waived [${v.rule}] ${v.address}: ${v.message} (reason: ${v.reason})\n`);
    for (const w of verdict.unusedWaivers) {
      io.stderr(`warning: ${id}: the waiver of [${w.rule}] matches nothing; remove it from environment "${env?.name ?? id}" in ${displayPath(configFile)}\n`);
    }
    failing.push(...verdict.failing.map((v: PolicyViolation) => formatViolation(id, v)));
  }
  if (failing.length === 0) return;
  throw new PolicyViolationError(
    `Security policy: ${failing.length} violation${failing.length === 1 ? '' : 's'}; nothing was written. Fix each one and run synth again:\n` +
      `${failing.map((f) => `  ${f.replace(/\n/g, '\n  ')}`).join('\n')}\n` +
      `To accept a rule in one environment anyway, waive it there in ${displayPath(configFile)} with the reason a reviewer will read: ` +
      `"policyWaivers": [{ "rule": "<rule id>", "reason": "<why>" }]`,
  );
}

/** Stack folders in `outDir` that are not in `ids`, each with the terraform state files it holds. */
function orphanedStacks(outDir: string, ids: readonly string[]): { dir: string; files: string[] }[] {
  const stacksDir = join(outDir, 'stacks');
  if (!existsSync(stacksDir)) return [];
  return readdirSync(stacksDir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !ids.includes(e.name))
    .map((e) => ({ dir: join(stacksDir, e.name), files: readdirSync(join(stacksDir, e.name)).filter((f) => /^terraform\..*\.tfstate/.test(f)).sort() }));
}

/** Moves the staged stacks into the output folder; manifest.json goes last, so it only ever lists complete stacks. */
function moveIntoPlace(staging: string, planned: readonly PlannedStack[], outDir: string): void {
  rmSync(join(outDir, MANIFEST), { force: true });
  // Environments no longer configured: their folders go (checked for state before anything was built).
  for (const orphan of orphanedStacks(outDir, planned.map((p) => p.id))) rmSync(orphan.dir, { recursive: true, force: true });
  for (const { id, releases } of planned) {
    const dir = join(outDir, 'stacks', id);
    mkdirSync(dir, { recursive: true });
    renameSync(join(staging, 'stacks', id, STACK_FILE), join(dir, STACK_FILE));
    const declared = releases?.releases ?? [];
    // Only stale zips go: the stack folder also holds terraform's local state, which must never be touched.
    pruneZips(join(dir, RELEASE_SOURCE_DIR), new Set(declared.map((r) => releaseZipName(r.label))));
    for (const release of declared) {
      const dest = join(dir, releaseSourcePath(release.label));
      mkdirSync(join(dest, '..'), { recursive: true });
      copyFileSync(release.zipPath, dest);
    }
  }
  renameSync(join(staging, MANIFEST), join(outDir, MANIFEST));
}

/** Removes manifest.json and every stack's cdk.tf.json from a previous synth; true when there was any. */
function withdraw(outDir: string): boolean {
  const files = [join(outDir, MANIFEST)];
  const stacksDir = join(outDir, 'stacks');
  if (existsSync(stacksDir)) {
    for (const name of readdirSync(stacksDir)) files.push(join(stacksDir, name, STACK_FILE));
  }
  const present = files.filter((f) => existsSync(f));
  for (const f of present) rmSync(f, { force: true });
  return present.length > 0;
}

function pruneZips(dir: string, keep: ReadonlySet<string>): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    if (name.endsWith('.zip') && !keep.has(name)) rmSync(join(dir, name), { force: true });
  }
}
