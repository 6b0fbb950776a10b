import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../../app/cli';
import type { LedgerRelease } from '../../app/ledger';
import { localReleaseZip } from '../../stacks/release-layout';
import { makeProject, type Project } from '../helpers/project';

/** A project of three environments (dev, staging, prod) that differ only in how many releases they retain. */
export function makeWorkspace(retain: { dev?: number; staging?: number; prod?: number } = {}): Project {
  const env = (name: string, retainReleases: number) => ({ name, region: 'eu-west-1', retainReleases });
  return makeProject({ config: { app: 'relay', environments: [env('dev', retain.dev ?? 3), env('staging', retain.staging ?? 5), env('prod', retain.prod ?? 5)] } });
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
  if (opts.writeZip ?? true) writeFileSync(localReleaseZip(artifactsDir, label), bytes);
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

/** Runs the ops CLI in-process against the project (config, ledgers and zips all in temp folders). */
export async function runOps(ws: Project, ...args: string[]): Promise<CliResult> {
  let out = '';
  let err = '';
  const code = await runCli(args, {
    stdout: (t) => (out += t),
    stderr: (t) => (err += t),
    env: { ...ws.env, GIT_AUTHOR_NAME: 'Relay Tester' },
    now: () => CLI_NOW,
  });
  return { code, out, err };
}

/** Asserts a refused command: exit 1, nothing on stdout, the message, and every ledger byte-identical (or still absent). */
export async function expectRefused(ws: Project, args: string[], message: RegExp | string): Promise<void> {
  const files = ['dev', 'staging', 'prod'].map((e) => join(ws.ledgerDir, `${e}.json`));
  const before = files.map((f) => (existsSync(f) ? readFileSync(f) : undefined));
  const result = await runOps(ws, ...args);
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
