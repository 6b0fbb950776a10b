import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../app/cli';
import type { LedgerRelease } from '../../app/ledger';

/** A temp workspace with a ledger folder, an artifacts folder and a config file; `cleanup` removes it all. */
export interface Workspace {
  readonly root: string;
  readonly ledgerDir: string;
  readonly artifactsDir: string;
  readonly configFile: string;
  cleanup(): void;
}

export function makeWorkspace(retain: { dev?: number; staging?: number; prod?: number } = {}): Workspace {
  const root = mkdtempSync(join(tmpdir(), 'relay-ledger-'));
  const ledgerDir = join(root, 'releases');
  const artifactsDir = join(root, 'artifacts');
  mkdirSync(ledgerDir);
  mkdirSync(artifactsDir);
  const configFile = join(root, 'relay.config.json');
  const env = (name: string, retainReleases: number) => ({ name, region: 'eu-west-1', retainReleases });
  writeFileSync(
    configFile,
    JSON.stringify({ app: 'relay', environments: [env('dev', retain.dev ?? 3), env('staging', retain.staging ?? 5), env('prod', retain.prod ?? 5)] }),
  );
  return { root, ledgerDir, artifactsDir, configFile, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/**
 * A release whose "zip" is `fixture <n>` bytes: the label, sha256 and md5 are consistent, so the ledger validates
 * and promote's byte check passes. `writeZip: false` leaves the zip absent (built on another machine).
 */
export function fixtureRelease(artifactsDir: string, n: number, opts: { writeZip?: boolean; deployed?: boolean } = {}): LedgerRelease {
  const bytes = Buffer.from(`fixture ${n}`);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const md5 = createHash('md5').update(bytes).digest('hex');
  const label = `relay-0.0.${n}-${sha256.slice(0, 12)}`;
  if (opts.writeZip ?? true) writeFileSync(join(artifactsDir, `${label}.zip`), bytes);
  const created = new Date(Date.UTC(2026, 0, n, 12, 0, 0)).toISOString();
  return { label, sha256, md5, created, commit: 'a'.repeat(40), ...(opts.deployed ? { deployed: true } : {}) };
}

export function writeRawLedger(ledgerDir: string, env: string, value: unknown): string {
  const file = join(ledgerDir, `${env}.json`);
  writeFileSync(file, typeof value === 'string' ? value : `${JSON.stringify(value, null, 2)}\n`);
  return file;
}

export function readBytes(file: string): Buffer {
  return readFileSync(file);
}

/** Names in a folder other than the ledgers themselves: temp files an interrupted write would leave. */
export function strayFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => !/^[a-z][a-z0-9-]*\.json$/.test(n));
}

export interface CliResult {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** Fixed clock for `created` and ages in CLI tests. */
export const CLI_NOW = new Date(Date.UTC(2026, 0, 10, 12, 0, 0));

/** Runs the CLI in-process against the workspace (config, ledgers and zips all in temp folders). */
export async function runRelay(ws: Workspace, ...args: string[]): Promise<CliResult> {
  let out = '';
  let err = '';
  const code = await runCli(args, {
    stdout: (t) => (out += t),
    stderr: (t) => (err += t),
    env: { RELAY_CONFIG: ws.configFile, RELAY_LEDGER_DIR: ws.ledgerDir, RELAY_ARTIFACTS_DIR: ws.artifactsDir },
    now: () => CLI_NOW,
  });
  return { code, out, err };
}

/** Asserts a refused command: exit 1, nothing on stdout, the message, and every ledger byte-identical (or still absent). */
export async function expectRefused(ws: Workspace, args: string[], message: RegExp | string): Promise<void> {
  const files = ['dev', 'staging', 'prod'].map((e) => join(ws.ledgerDir, `${e}.json`));
  const before = files.map((f) => (existsSync(f) ? readFileSync(f) : undefined));
  const result = await runRelay(ws, ...args);
  expect(result.code).toBe(1);
  expect(result.out).toBe('');
  if (typeof message === 'string') expect(result.err).toBe(`${message}\n`);
  else expect(result.err).toMatch(message);
  files.forEach((f, i) => {
    const was = before[i];
    if (was === undefined) expect(existsSync(f)).toBe(false);
    else expect(readFileSync(f).equals(was)).toBe(true);
  });
  expect(strayFiles(ws.ledgerDir)).toEqual([]);
}
