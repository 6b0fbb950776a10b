/**
 * `npm run ops -- verify (<env> | --urls <ws-url>[,…])`: runs the delivery canary (verify.ts), prints the table,
 * writes the JSON report, and records the result in the environment's ledger for the active release, where `promote`
 * into an environment with `requireVerification` looks for it.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadConfig } from './config';
import { readLedger, writeLedger } from './ledger';
import { displayPath, REPO_ROOT } from './paths';
import { CliError, type CommandContext } from './release-commands';
import { renderVerifyReport, verifyDelivery, type VerifyReport } from './verify';

export interface VerifyCommandOptions {
  readonly urls?: string;
  readonly duration: string;
  readonly clients: string;
  readonly rate: string;
  readonly json?: string;
  readonly during?: string;
  readonly instances?: string;
  readonly discoveryTimeout: string;
  /** Folder of the synthesized stacks, for `<env>`'s terraform outputs. */
  readonly out: string;
}

/** Runs the canary; resolves to the exit code (0 only with zero gaps and duplicates, and a successful --during). */
export async function verifyCommand(envName: string | undefined, opts: VerifyCommandOptions, ctx: CommandContext): Promise<number> {
  const durationMs = parseDuration(opts.duration, '--duration');
  const clients = positiveInt(opts.clients, '--clients');
  const rate = positiveNumber(opts.rate, '--rate');
  const expectedInstances = opts.instances === undefined ? undefined : positiveInt(opts.instances, '--instances');
  const discoveryTimeoutMs = parseDuration(opts.discoveryTimeout ?? '30s', '--discovery-timeout');
  if (envName === undefined && opts.urls === undefined) throw new CliError('verify_target', 'verify needs an environment (`verify <env>`) or `--urls ws://host:port/ws[,…]`');
  const config = loadConfig(ctx.configFile);
  if (envName !== undefined && !config.environments.some((e) => e.name === envName)) {
    throw new CliError('unknown_environment', `unknown environment "${envName}": ${displayPath(ctx.configFile)} defines ${config.environments.map((e) => e.name).join(', ')}`);
  }
  const urls = opts.urls !== undefined ? parseUrls(opts.urls) : [websocketUrl(envName as string, opts.out)];
  let duringError: Error | undefined;
  const report = await verifyDelivery({
    urls,
    durationMs,
    clients,
    rate,
    expectedInstances,
    discoveryTimeoutMs,
    during:
      opts.during === undefined
        ? undefined
        : () =>
            runShell(opts.during as string, ctx).catch((err: Error) => {
              duringError = err;
            }),
  });
  ctx.out(renderVerifyReport(report));
  if (opts.json) {
    mkdirSync(dirname(opts.json), { recursive: true });
    writeFileSync(opts.json, `${JSON.stringify({ urls, durationMs, rate, ...report }, null, 2)}\n`);
    ctx.out(`Wrote ${displayPath(opts.json)}.\n`);
  }
  if (envName !== undefined) record(envName, report, ctx);
  if (duringError) {
    ctx.err(`the --during command failed: ${duringError.message}\n`);
    return 1;
  }
  return report.passed ? 0 : 1;
}

function record(envName: string, report: VerifyReport, ctx: CommandContext): void {
  const ledger = readLedger(ctx.ledgerDir, envName);
  if (!ledger) {
    ctx.out(`${envName} has no ledger; the result is not recorded.\n`);
    return;
  }
  const verification = {
    label: ledger.active,
    at: ctx.now.toISOString(),
    passed: report.passed,
    gaps: report.gaps,
    duplicates: report.duplicates,
    reordered: report.reordered,
    p99Ms: report.p99Ms,
    clients: report.clients.length,
    instances: report.instances.length,
  };
  writeLedger(ctx.ledgerDir, { ...ledger, verification });
  ctx.out(`${envName}: recorded the verification of ${ledger.active} (${report.passed ? 'passed' : 'failed'}) in ${displayPath(join(ctx.ledgerDir, `${envName}.json`))}; commit it.\n`);
}

/** `<env>`'s `websocket_url` output, read with terraform from its synthesized stack folder. */
function websocketUrl(envName: string, outDir: string): string {
  const dir = join(outDir, 'stacks', `relay-${envName}`);
  try {
    return execFileSync('terraform', [`-chdir=${dir}`, 'output', '-raw', 'websocket_url'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO_ROOT }).trim();
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    const why = e.code === 'ENOENT' ? 'terraform is not on PATH' : (e.stderr ?? e.message).trim().split('\n')[0];
    throw new CliError(
      'no_websocket_url',
      `cannot read the websocket_url output of relay-${envName} (${why}); deploy it first (npm run synth, then terraform apply in ${displayPath(dir)}), or pass --urls`,
    );
  }
}

function runShell(command: string, ctx: CommandContext): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'], env: ctx.env });
    child.stdout.on('data', (d: Buffer) => ctx.err(d.toString()));
    child.stderr.on('data', (d: Buffer) => ctx.err(d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`\`${command}\` exited ${code}`))));
  });
}

export function parseDuration(text: string, flag = '--duration'): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) throw new CliError('bad_duration', `${flag}: expected a time like 60s, 2m or 500ms, got "${text}"`);
  const value = Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000);
  if (value <= 0 || value > 3_600_000) throw new CliError('bad_duration', `${flag}: expected more than 0 and at most 1 hour, got "${text}"`);
  return value;
}

function parseUrls(text: string): string[] {
  const urls = text.split(',').map((u) => u.trim()).filter((u) => u !== '');
  for (const u of urls) {
    let ok: boolean;
    try {
      ok = ['ws:', 'wss:'].includes(new URL(u).protocol);
    } catch {
      ok = false;
    }
    if (!ok) throw new CliError('bad_url', `--urls: "${u}" is not a ws:// or wss:// URL (e.g. ws://127.0.0.1:8081/ws)`);
  }
  if (urls.length === 0) throw new CliError('bad_url', '--urls: expected at least one ws:// or wss:// URL');
  return urls;
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new CliError('bad_number', `${flag}: expected an integer from 1 to 1000, got "${text}"`);
  return n;
}

function positiveNumber(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || n > 10_000) throw new CliError('bad_number', `${flag}: expected a number of messages per second above 0 and at most 10000, got "${text}"`);
  return n;
}
