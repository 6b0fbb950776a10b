/**
 * Ops commands: `npm run ops -- <command>` (release, promote, rollback, prune, list, rebuild, resolve, mark-deployed,
 * diff, synth). `npm run synth` runs the synth command (app/main.ts); `npm run ops` runs app/ops.ts. The ledger
 * commands themselves are in release-commands.ts.
 *
 * Every command validates all its input before writing anything, so a refused command leaves the ledger byte-identical.
 */
import { Command, CommanderError, Option } from 'commander';
import { DEFAULT_ARTIFACTS_DIR, DEFAULT_CONFIG_FILE, DEFAULT_LEDGER_DIR, DEFAULT_SYNTH_OUT_DIR } from './paths';
import { addPlatformCommand } from './platform-command';
import { list, markDeployed, promote, prune, rebuild, release, resolve, rollback, type CommandContext, type Override } from './release-commands';
import { synthesize } from './synth';
import { verifyCommand, type VerifyCommandOptions } from './verify-command';
import { diffSynth, loadSynthTree, renderMarkdown, renderText } from './synth-diff';

export { CliError } from './release-commands';

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
  const context = (cmd: Command): CommandContext => {
    const g = globals(cmd);
    return { configFile: g.config, ledgerDir: g.ledgerDir, artifactsDir: g.artifactsDir, out: io.stdout, err: io.stderr, env: io.env, now: now() };
  };
  const forceOptions = (cmd: Command): Command =>
    cmd
      .addOption(new Option('--force', 'override a promotion guard (needs --reason)'))
      .addOption(new Option('--reason <text>', 'why: recorded in the ledger\'s history (required with --force)'));

  forceOptions(
    program
      .command('release')
      .description('build the committed source, add it to <env>\'s ledger, make it active and prune (see prune)')
      .argument('<env>', 'environment name from the config (the first of the promotion order)')
      .option('--allow-dirty', 'release uncommitted changes, recorded as dirty: true (never promoted past the first environment)'),
  ).action(async (env: string, opts: Override & { allowDirty?: boolean }, cmd: Command) => {
    await release(env, opts, context(cmd));
  });

  forceOptions(
    program
      .command('promote')
      .description('make the release active in <from> active in <to> (same label, same bytes); it must have been active in the environment before <to>')
      .argument('<from>', 'environment to take the active release from')
      .argument('<to>', 'environment to make it active in'),
  ).action((from: string, to: string, opts: Override, cmd: Command) => {
    promote(from, to, opts, context(cmd));
  });

  program
    .command('rollback')
    .description('make the previously active release (or the named retained one) active again')
    .argument('<env>', 'environment name from the config')
    .argument('[label]', 'retained release to make active')
    .option('--reason <text>', 'why: recorded in the ledger\'s history')
    .action((env: string, label: string | undefined, opts: Override, cmd: Command) => {
      rollback(env, label, opts, context(cmd));
    });

  program
    .command('prune')
    .description('drop releases beyond retainReleases (or the named ones); never the active one nor the last two previously active')
    .argument('<env>', 'environment name from the config')
    .argument('[labels...]', 'retained releases to drop')
    .action((env: string, labels: string[], _opts: unknown, cmd: Command) => {
      prune(env, labels, context(cmd));
    });

  program
    .command('list')
    .description('show the retained releases of <env> (oldest first, * = active) and its activation history')
    .argument('<env>', 'environment name from the config')
    .action((env: string, _opts: unknown, cmd: Command) => {
      list(env, context(cmd));
    });

  program
    .command('rebuild')
    .description('rebuild a release from its recorded commit in a temporary git worktree (npm ci, build) and verify its sha256')
    .argument('<label>', 'a label retained by any ledger')
    .action(async (label: string, _opts: unknown, cmd: Command) => {
      await rebuild(label, context(cmd));
    });

  program
    .command('resolve')
    .description('combine both sides of a merge-conflicted ledger: every release of either, the most recently activated one active')
    .argument('<env>', 'environment whose ledger has conflict markers')
    .action((env: string, _opts: unknown, cmd: Command) => {
      resolve(env, context(cmd));
    });

  program
    .command('verify')
    .description('run a delivery canary against <env>\'s websocket_url (or --urls) and count gaps, duplicates and reorderings; exit 0 only with none')
    .argument('[env]', 'environment: its websocket_url output is the target, and the result is recorded in its ledger')
    .option('--urls <ws-urls>', 'comma-separated ws:// URLs of the instances, instead of the environment\'s output')
    .option('--duration <time>', 'how long the canary publishes (e.g. 60s, 2m)', '60s')
    .option('--clients <n>', 'canary clients, spread over every instance reached', '4')
    .option('--instances <n>', 'instances the clients must reach (behind a load balancer: keep connecting until all are seen); fewer fails the run')
    .option('--discovery-timeout <time>', 'how long to keep connecting to find the instances', '30s')
    .option('--rate <r>', 'messages per second, over all clients', '20')
    .option('--json <file>', 'also write the report as JSON')
    .option('--during <command>', 'run this shell command (a deploy, a rolling restart) while the canary publishes')
    .option('--out <dir>', 'synthesized stacks (for <env>\'s terraform outputs)', io.env.RELAY_SYNTH_OUT ?? DEFAULT_SYNTH_OUT_DIR)
    .action(async (env: string | undefined, opts: VerifyCommandOptions, cmd: Command) => {
      exitCode = await verifyCommand(env, opts, context(cmd));
    });

  program
    .command('mark-deployed')
    .description('record that <env>\'s active (or the named) release was deployed')
    .argument('<env>', 'environment name from the config')
    .argument('[label]', 'retained release that was deployed')
    .action((env: string, label: string | undefined, _opts: unknown, cmd: Command) => {
      markDeployed(env, label, context(cmd));
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
