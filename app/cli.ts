/**
 * Ops commands: `npm run ops -- <command>` (release, promote, rollback, list, mark-deployed, diff, synth).
 * `npm run synth` runs the synth command (app/main.ts); `npm run ops` runs app/ops.ts.
 *
 * Every command validates all its input before writing anything, so a refused command leaves the ledger byte-identical.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { localReleaseZip } from '../stacks/release-layout';
import { buildArtifact } from './artifact';
import { loadConfig, type EnvironmentConfig } from './config';
import { ledgerPath, readLedger, writeLedger, type Ledger, type LedgerRelease, LEDGER_VERSION } from './ledger';
import { DEFAULT_ARTIFACTS_DIR, DEFAULT_CONFIG_FILE, DEFAULT_LEDGER_DIR, DEFAULT_SYNTH_OUT_DIR, displayPath, REPO_ROOT } from './paths';
import { addPlatformCommand } from './platform-command';
import { synthesize } from './synth';
import { diffSynth, loadSynthTree, renderMarkdown, renderText } from './synth-diff';

/** A refused command: bad input or a state the command cannot act on. */
export class CliError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'CliError';
    this.code = code;
  }
}

export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Environment variables read for defaults (RELAY_CONFIG, RELAY_LEDGER_DIR, RELAY_ARTIFACTS_DIR, RELAY_SYNTH_OUT). */
  readonly env: NodeJS.ProcessEnv;
  /** Clock for `created` and ages. @default () => new Date() */
  readonly now?: () => Date;
}

interface GlobalOptions {
  readonly config: string;
  readonly ledgerDir: string;
  readonly artifactsDir: string;
}

/** Runs one command; resolves to the process exit code (0 ok, 1 refused or failed, 2 `diff` found differences). */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode = 0;
  const now = io.now ?? (() => new Date());
  const program = new Command('ops')
    .description('Release ledger and synth tools for relay-stack (run as `npm run ops -- <command>`).')
    .option('--config <file>', 'environment config file', io.env.RELAY_CONFIG ?? DEFAULT_CONFIG_FILE)
    .option('--ledger-dir <dir>', 'folder of the release ledgers <env>.json', io.env.RELAY_LEDGER_DIR ?? DEFAULT_LEDGER_DIR)
    .option('--artifacts-dir <dir>', 'folder of the built zips <label>.zip', io.env.RELAY_ARTIFACTS_DIR ?? DEFAULT_ARTIFACTS_DIR)
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ showGlobalOptions: true })
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr, outputError: (text, write) => write(text) });

  const globals = (cmd: Command): GlobalOptions => cmd.optsWithGlobals<GlobalOptions>();

  program
    .command('release')
    .description('build the current source, add it to <env>\'s ledger, make it active and prune to the newest N (retainReleases)')
    .argument('<env>', 'environment name from the config')
    .action(async (env: string, _opts: unknown, cmd: Command) => {
      await release(env, globals(cmd), io, now());
    });

  program
    .command('promote')
    .description('make the release active in <from> active in <to> (same label, same bytes)')
    .argument('<from>', 'environment to take the active release from')
    .argument('<to>', 'environment to make it active in')
    .action(async (from: string, to: string, _opts: unknown, cmd: Command) => {
      await promote(from, to, globals(cmd), io);
    });

  program
    .command('rollback')
    .description('make the retained release just older than the active one (or the named one) active')
    .argument('<env>', 'environment name from the config')
    .argument('[label]', 'retained release to make active')
    .action((env: string, label: string | undefined, _opts: unknown, cmd: Command) => {
      rollback(env, label, globals(cmd), io);
    });

  program
    .command('list')
    .description('show the retained releases of <env>, oldest first, marking the active one with *')
    .argument('<env>', 'environment name from the config')
    .action((env: string, _opts: unknown, cmd: Command) => {
      list(env, globals(cmd), io, now());
    });

  program
    .command('mark-deployed')
    .description('record that <env>\'s active (or the named) release was deployed, so synth needs no local zip for it')
    .argument('<env>', 'environment name from the config')
    .argument('[label]', 'retained release that was deployed')
    .action((env: string, label: string | undefined, _opts: unknown, cmd: Command) => {
      markDeployed(env, label, globals(cmd), io);
    });

  program
    .command('diff')
    .description('compare two cdktf.out folders offline; exit 0 when equal, 2 when different, 1 on error')
    .argument('<base-dir>', 'cdktf.out of the base (e.g. the target branch)')
    .argument('<head-dir>', 'cdktf.out of the head (e.g. the pull request)')
    .option('--markdown', 'print Markdown for a pull-request comment or job summary')
    .action((baseDir: string, headDir: string, opts: { markdown?: boolean }) => {
      const diff = diffSynth(loadSynthTree(baseDir), loadSynthTree(headDir));
      io.stdout(opts.markdown ? renderMarkdown(diff) : renderText(diff));
      exitCode = diff.equal ? 0 : 2;
    });

  program
    .command('synth')
    .description('synthesize every environment into <out>, checked by the security policy; exit 1 on a violation that is not waived')
    .option('--out <dir>', 'output folder (manifest.json, stacks/<stack>/)', io.env.RELAY_SYNTH_OUT ?? DEFAULT_SYNTH_OUT_DIR)
    .action(async (opts: { out: string }, cmd: Command) => {
      const { config, ledgerDir, artifactsDir } = globals(cmd);
      await synthesize({ configFile: config, ledgerDir, artifactsDir, outDir: opts.out }, io);
    });

  addPlatformCommand(program, (cmd) => globals(cmd).config, io.stdout);

  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    // Errors with a stable code (bad config, bad ledger, a policy violation, a refusal) say what to do; anything else is a bug.
    const known = err instanceof Error && typeof (err as { code?: unknown }).code === 'string';
    io.stderr(known ? `${err.message}\n` : `unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

async function release(envName: string, opts: GlobalOptions, io: CliIo, now: Date): Promise<void> {
  const env = environment(envName, opts);
  const ledger = readLedger(opts.ledgerDir, env.name);
  const artifact = await buildArtifact({ outDir: opts.artifactsDir });
  const file = shownLedger(opts, env.name);
  const existing = ledger?.releases.find((r) => r.label === artifact.label);
  if (ledger && existing && ledger.active === artifact.label) {
    io.stdout(`${env.name}: ${artifact.label} is already the active release in ${file}; nothing changed.\n`);
    return;
  }
  const entry: LedgerRelease = existing ?? {
    label: artifact.label,
    sha256: artifact.sha256,
    md5: artifact.md5,
    created: now.toISOString(),
    commit: gitCommit(),
  };
  const releases = existing ? [...(ledger?.releases ?? [])] : [...(ledger?.releases ?? []), entry];
  const { kept, pruned } = prune(releases, entry.label, env.retainReleases);
  writeLedger(opts.ledgerDir, { version: LEDGER_VERSION, environment: env.name, active: entry.label, releases: kept });
  io.stdout(
    existing
      ? `${env.name}: ${artifact.label} was already retained; it is now the active release (was ${ledger?.active}).\n`
      : `${env.name}: released ${artifact.label} (now active${ledger ? `, was ${ledger.active}` : ''}).\n`,
  );
  reportPruned(env, pruned, io);
  io.stdout(`Wrote ${file}; commit it and deploy to roll it out.\n`);
}

async function promote(fromName: string, toName: string, opts: GlobalOptions, io: CliIo): Promise<void> {
  const from = environment(fromName, opts);
  const to = environment(toName, opts);
  if (from.name === to.name) throw new CliError('same_environment', `cannot promote ${from.name} to itself; name two different environments`);
  const source = requireLedger(from.name, opts);
  const target = readLedger(opts.ledgerDir, to.name);
  const entry = source.releases.find((r) => r.label === source.active) as LedgerRelease;
  const shownSource = shownLedger(opts, from.name);

  const zipPath = localReleaseZip(opts.artifactsDir, entry.label);
  if (existsSync(zipPath)) {
    const actual = sha256Of(zipPath);
    if (actual !== entry.sha256) {
      throw new CliError(
        'zip_mismatch',
        `refusing to promote ${entry.label}: ${displayPath(zipPath)} has sha256 ${actual} but ${shownSource} records ${entry.sha256}. ` +
          `The local zip is not the released bytes: delete it and run the command again to rebuild it from source.`,
      );
    }
  } else {
    // Builds are reproducible: the current source may give exactly the recorded bytes, which is as good as the original zip.
    const rebuilt = await buildArtifact({ outDir: opts.artifactsDir });
    if (rebuilt.sha256 !== entry.sha256) {
      throw new CliError(
        'zip_unavailable',
        `refusing to promote ${entry.label}: its zip is not in ${displayPath(opts.artifactsDir)} and the current source builds ${rebuilt.label} instead. ` +
          `Rebuild it from its commit (\`git checkout ${entry.commit} && npm run ops -- promote ${from.name} ${to.name}\`), then return to your branch.`,
      );
    }
  }

  const shownTarget = shownLedger(opts, to.name);
  const existing = target?.releases.find((r) => r.label === entry.label);
  if (target && existing && target.active === entry.label) {
    io.stdout(`${to.name}: ${entry.label} is already the active release in ${shownTarget}; nothing changed.\n`);
    return;
  }
  // The target's own deployment state starts over: the zip is in the source environment's bucket, not the target's.
  const copy: LedgerRelease = { label: entry.label, sha256: entry.sha256, md5: entry.md5, created: entry.created, commit: entry.commit };
  const releases = existing ? [...(target?.releases ?? [])] : [...(target?.releases ?? []), copy];
  const { kept, pruned } = prune(releases, entry.label, to.retainReleases);
  writeLedger(opts.ledgerDir, { version: LEDGER_VERSION, environment: to.name, active: entry.label, releases: kept });
  io.stdout(`${to.name}: promoted ${entry.label} from ${from.name} (now active${target ? `, was ${target.active}` : ''}).\n`);
  reportPruned(to, pruned, io);
  io.stdout(`Wrote ${shownTarget}; commit it and deploy to roll it out.\n`);
}

function rollback(envName: string, label: string | undefined, opts: GlobalOptions, io: CliIo): void {
  const env = environment(envName, opts);
  const ledger = requireLedger(env.name, opts);
  const file = shownLedger(opts, env.name);
  const activeIndex = ledger.releases.findIndex((r) => r.label === ledger.active);
  let target: LedgerRelease;
  if (label !== undefined) {
    target = findRelease(ledger, label, file);
    if (target.label === ledger.active) {
      io.stdout(`${env.name}: ${label} is already the active release in ${file}; nothing changed.\n`);
      return;
    }
  } else {
    if (activeIndex === 0) {
      throw new CliError(
        'nothing_older',
        `cannot roll back ${env.name}: the active release ${ledger.active} is the oldest retained in ${file}; ` +
          `name a newer one instead (\`npm run ops -- rollback ${env.name} <label>\`, see \`npm run ops -- list ${env.name}\`)`,
      );
    }
    target = ledger.releases[activeIndex - 1];
  }
  writeLedger(opts.ledgerDir, { ...ledger, active: target.label });
  io.stdout(`${env.name}: active release ${ledger.active} -> ${target.label}.\nWrote ${file}; commit it and deploy to roll it out.\n`);
}

function list(envName: string, opts: GlobalOptions, io: CliIo, now: Date): void {
  const env = environment(envName, opts);
  const ledger = readLedger(opts.ledgerDir, env.name);
  const file = shownLedger(opts, env.name);
  if (!ledger) {
    io.stdout(`${env.name}: no ledger (${file} does not exist); the environment tracks the current build. Run \`npm run ops -- release ${env.name}\` to start one.\n`);
    return;
  }
  const rows = [
    ['', 'LABEL', 'AGE', 'CREATED', 'COMMIT', 'DEPLOYED'],
    ...ledger.releases.map((r) => [
      r.label === ledger.active ? '*' : '',
      r.label,
      formatAge(now.getTime() - Date.parse(r.created)),
      r.created,
      r.commit.slice(0, 12),
      r.deployed ? 'yes' : 'no',
    ]),
  ];
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const lines = rows.map((row) => row.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd());
  io.stdout(`${lines.join('\n')}\n${ledger.releases.length} retained (keeping the newest ${env.retainReleases}); * = active\n`);
}

function markDeployed(envName: string, label: string | undefined, opts: GlobalOptions, io: CliIo): void {
  const env = environment(envName, opts);
  const ledger = requireLedger(env.name, opts);
  const file = shownLedger(opts, env.name);
  const target = findRelease(ledger, label ?? ledger.active, file);
  if (target.deployed) {
    io.stdout(`${env.name}: ${target.label} is already marked deployed in ${file}; nothing changed.\n`);
    return;
  }
  const releases = ledger.releases.map((r) => (r.label === target.label ? { ...r, deployed: true } : r));
  writeLedger(opts.ledgerDir, { ...ledger, releases });
  io.stdout(`${env.name}: marked ${target.label} deployed in ${file}.\n`);
}

function environment(name: string, opts: GlobalOptions): EnvironmentConfig {
  const config = loadConfig(opts.config);
  const env = config.environments.find((e) => e.name === name);
  if (!env) {
    throw new CliError(
      'unknown_environment',
      `unknown environment "${name}": ${displayPath(opts.config)} defines ${config.environments.map((e) => e.name).join(', ')}`,
    );
  }
  return env;
}

function requireLedger(envName: string, opts: GlobalOptions): Ledger {
  const ledger = readLedger(opts.ledgerDir, envName);
  if (!ledger) {
    throw new CliError(
      'no_ledger',
      `${envName} has no ledger (${shownLedger(opts, envName)} does not exist) and tracks the current build; ` +
        `run \`npm run ops -- release ${envName}\` first`,
    );
  }
  return ledger;
}

function findRelease(ledger: Ledger, label: string, file: string): LedgerRelease {
  const found = ledger.releases.find((r) => r.label === label);
  if (!found) {
    throw new CliError(
      'unknown_label',
      `unknown label "${label}" for ${ledger.environment}: ${file} retains ${ledger.releases.map((r) => r.label).join(', ')}`,
    );
  }
  return found;
}

/** Keeps the newest `keep` releases (the list is oldest first) and never drops the active one. */
export function prune(releases: readonly LedgerRelease[], active: string, keep: number): { kept: LedgerRelease[]; pruned: LedgerRelease[] } {
  const kept = [...releases];
  const pruned: LedgerRelease[] = [];
  while (kept.length > keep) {
    const oldest = kept.findIndex((r) => r.label !== active);
    if (oldest < 0) break;
    pruned.push(...kept.splice(oldest, 1));
  }
  return { kept, pruned };
}

function reportPruned(env: EnvironmentConfig, pruned: readonly LedgerRelease[], io: CliIo): void {
  if (pruned.length === 0) return;
  io.stdout(`${env.name}: pruned ${pruned.map((r) => r.label).join(', ')} (keeping the newest ${env.retainReleases}).\n`);
}

function shownLedger(opts: GlobalOptions, envName: string): string {
  return displayPath(ledgerPath(opts.ledgerDir, envName));
}

function sha256Of(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

// The commit is provenance only: outside a git checkout the release is still valid.
function gitCommit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return /^[0-9a-f]{40}$/.test(sha) ? sha : 'unknown';
  } catch {
    return 'unknown';
  }
}

function formatAge(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 1) return 'now';
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h`;
  return `${Math.floor(hours / 24)}d`;
}

/** Runs the CLI as this process: its streams and environment, and its exit code. */
export function runCliProcess(argv: readonly string[]): void {
  void runCli(argv, {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    env: process.env,
  }).then((code) => {
    process.exitCode = code;
  });
}
