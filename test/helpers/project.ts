/**
 * Throwaway projects for tests that synthesize, release or read config: their own relay.config.json, releases/ and
 * dist/artifacts/ in a temp folder, never the repository's own (a user's first customisation must not break the
 * suite). With `code`, the folder is also a checkout: the repository's sources copied and node_modules linked, so
 * `npm run synth` and `npm run ops` run there with no arguments.
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { REPO_ROOT } from '../../app/paths';

/** The environments the repository ships with: dev (single Redis), staging (replicated), prod (cluster). */
export function exampleConfig(): { app: string; environments: Record<string, unknown>[] } {
  return {
    app: 'relay',
    environments: [
      { name: 'dev', region: 'eu-west-1', instances: { min: 2, max: 2 }, redis: { topology: 'single' }, retainReleases: 3, insecure: { reason: 'sandbox without a domain' } },
      { name: 'staging', region: 'eu-west-1', redis: { topology: 'replicated', replicas: 1 }, retainReleases: 5, https: { domain: 'relay-staging.example.com', hostedZone: 'example.com' } },
      { name: 'prod', region: 'eu-west-1', instances: { types: ['c7g.large'], min: 3, max: 12 }, redis: { topology: 'cluster', shards: 2, replicas: 1 }, retainReleases: 10, https: { domain: 'relay.example.com', hostedZone: 'example.com' } },
    ],
  };
}

/** What synth and the ops CLI need to build and run; `all` copies every file git knows and does not ignore. */
export const CODE_FILES = ['app', 'stacks', 'service', 'package.json', 'package-lock.json', 'tsconfig.json', 'cdktf.json'] as const;

export interface ProjectOptions {
  /**
   * Config written to relay.config.json (any JSON value; invalid ones are for tests of the errors).
   * @default exampleConfig()
   */
  readonly config?: unknown;
  /**
   * Copy the repository's code into the project: `true` for CODE_FILES, `'all'` for every tracked or new file.
   * @default false (the project holds only config, ledgers and zips; run the repository's code on it with `env`)
   */
  readonly code?: boolean | 'all';
}

export interface Project {
  readonly root: string;
  readonly configFile: string;
  readonly ledgerDir: string;
  readonly artifactsDir: string;
  readonly outDir: string;
  /** RELAY_* variables that point synth and the ops CLI at this project's files. */
  readonly env: Readonly<Record<string, string>>;
  /** Replaces relay.config.json. */
  writeConfig(config: unknown): void;
  /** Removes the whole folder. */
  cleanup(): void;
}

export function makeProject(opts: ProjectOptions = {}): Project {
  const root = mkdtempSync(join(tmpdir(), 'relay-project-'));
  const configFile = join(root, 'relay.config.json');
  const ledgerDir = join(root, 'releases');
  const artifactsDir = join(root, 'dist', 'artifacts');
  const outDir = join(root, 'cdktf.out');
  if (opts.code) copyCode(root, opts.code === 'all' ? trackedFiles() : CODE_FILES);
  mkdirSync(ledgerDir, { recursive: true });
  mkdirSync(artifactsDir, { recursive: true });
  const writeConfig = (config: unknown): void => writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`);
  writeConfig(opts.config ?? exampleConfig());
  return {
    root,
    configFile,
    ledgerDir,
    artifactsDir,
    outDir,
    env: { RELAY_CONFIG: configFile, RELAY_LEDGER_DIR: ledgerDir, RELAY_ARTIFACTS_DIR: artifactsDir, RELAY_SYNTH_OUT: outDir },
    writeConfig,
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}

/** Files of the repository that git tracks or would add (new, not ignored), relative to its root. */
function trackedFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO_ROOT, encoding: 'utf8' });
  // A deleted but still tracked file is listed too; copy only what is there.
  return out.split('\0').filter((f) => f !== '' && !f.startsWith('node_modules/'));
}

function copyCode(root: string, entries: readonly string[]): void {
  for (const entry of entries) {
    mkdirSync(dirname(join(root, entry)), { recursive: true });
    try {
      cpSync(join(REPO_ROOT, entry), join(root, entry), { recursive: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
}

/** Variables that point synth and the ops CLI elsewhere: removed from every command the tests run. */
const PATH_VARIABLES = ['RELAY_CONFIG', 'RELAY_LEDGER_DIR', 'RELAY_ARTIFACTS_DIR', 'RELAY_SYNTH_OUT'];

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a command to its end and captures its output. The environment is this process's without the RELAY_* path
 * variables (a developer's own must not leak in), plus `env`; `baseEnv` replaces this process's environment.
 */
export function runCommand(
  command: string,
  args: readonly string[],
  opts: { cwd: string; env?: Readonly<Record<string, string>>; baseEnv?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<CommandResult> {
  const env: NodeJS.ProcessEnv = { ...(opts.baseEnv ?? process.env) };
  for (const name of PATH_VARIABLES) delete env[name];
  Object.assign(env, opts.env);
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { cwd: opts.cwd, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: opts.timeoutMs ?? 180_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** `npm run --silent <script> -- <args>` in `cwd`, with runCommand's environment. */
export function runNpm(
  cwd: string,
  script: string,
  args: readonly string[] = [],
  opts: { env?: Readonly<Record<string, string>>; baseEnv?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return runCommand('npm', ['run', '--silent', script, ...(args.length > 0 ? ['--', ...args] : [])], { cwd, ...opts });
}
