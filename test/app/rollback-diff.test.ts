import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from '@jest/globals';
import { REPO_ROOT } from '../../app/bundle';
import { readLedger } from '../../app/ledger';
import { diffSynth, loadSynthTree } from '../../app/synth-diff';

// Two builds, two synths and a rollback in a temp copy of the repository: minutes on a loaded machine.
jest.setTimeout(600_000);

const COPIED = ['app', 'stacks', 'service', 'package.json', 'tsconfig.json', 'relay.config.json', 'cdktf.json'];

let copy: string;
beforeAll(() => {
  copy = mkdtempSync(join(tmpdir(), 'relay-rollback-'));
  for (const entry of COPIED) cpSync(join(REPO_ROOT, entry), join(copy, entry), { recursive: true });
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(copy, 'node_modules'), 'dir');
});
afterAll(() => rmSync(copy, { recursive: true, force: true }));

function run(command: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const env = { ...process.env };
  for (const name of ['RELAY_CONFIG', 'RELAY_LEDGER_DIR', 'RELAY_ARTIFACTS_DIR']) delete env[name];
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: copy, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

async function ok(command: string, args: string[]): Promise<string> {
  const result = await run(command, args);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code}:\n${result.out}\n${result.err}`);
  return result.out;
}

async function synthInto(name: string): Promise<string> {
  await ok('npm', ['run', '--silent', 'synth']);
  const out = join(copy, name);
  cpSync(join(copy, 'cdktf.out'), out, { recursive: true });
  return out;
}

it('a rollback changes exactly one attribute, the environment version label, in exactly one stack', async () => {
  // GIVEN two releases of dev (the version bump changes the zip and its label)
  await ok('npm', ['run', '--silent', 'relay', '--', 'release', 'dev']);
  const pkgFile = join(copy, 'package.json');
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { version: string };
  writeFileSync(pkgFile, JSON.stringify({ ...pkg, version: `${pkg.version}-rollbacktest` }, null, 2));
  await ok('npm', ['run', '--silent', 'relay', '--', 'release', 'dev']);
  const ledger = readLedger(join(copy, 'releases'), 'dev');
  expect(ledger?.releases).toHaveLength(2);
  const [older, newer] = ledger?.releases ?? [];
  expect(ledger?.active).toBe(newer.label);

  // WHEN dev is synthesized, rolled back and synthesized again
  const before = await synthInto('out-before');
  expect(await ok('npm', ['run', '--silent', 'relay', '--', 'rollback', 'dev'])).toContain(`dev: active release ${newer.label} -> ${older.label}.`);
  const after = await synthInto('out-after');

  // THEN the diff is the environment's version_label and nothing else
  const diff = diffSynth(loadSynthTree(before), loadSynthTree(after));
  const changedStacks = diff.stacks.filter((s) => s.status !== 'unchanged');
  expect(changedStacks.map((s) => s.stack)).toEqual(['relay-dev']);
  const [dev] = changedStacks;
  expect(dev.added).toEqual([]);
  expect(dev.removed).toEqual([]);
  expect(dev.changed).toHaveLength(1);
  expect(dev.changed[0].address).toMatch(/^aws_elastic_beanstalk_environment\./);
  // The stack points version_label at the application version resource, whose id carries the label's hash.
  expect(dev.changed[0].attributes).toEqual([
    {
      path: 'version_label',
      kind: 'changed',
      before: expect.stringContaining(newer.sha256.slice(0, 12)),
      after: expect.stringContaining(older.sha256.slice(0, 12)),
    },
  ]);

  // AND the CLI reports it with exit code 2
  const cli = await run('npm', ['run', '--silent', 'relay', '--', 'diff', before, after]);
  expect(cli.code).toBe(2);
  expect(cli.out).toMatch(new RegExp(`\\n {6}version_label: "[^"]*${newer.sha256.slice(0, 12)}[^"]*" → "[^"]*${older.sha256.slice(0, 12)}[^"]*"\\n`));
});
