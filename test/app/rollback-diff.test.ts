import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from '@jest/globals';
import { readLedger } from '../../app/ledger';
import { diffSynth, loadSynthTree } from '../../app/synth-diff';
import { makeProject, runNpm, type Project } from '../helpers/project';

// Two builds, two synths and a rollback in a checkout of its own: minutes on a loaded machine.
jest.setTimeout(600_000);

let project: Project;
beforeAll(() => {
  project = makeProject({ code: true });
  // Releases record the commit they are built from: the checkout is a git repository with its source committed.
  writeFileSync(join(project.root, '.gitignore'), 'node_modules\ndist/\ncdktf.out/\n.build/\n');
  git('init', '--quiet');
  git('add', '--all');
  git('commit', '--quiet', '--message', 'a checkout');
});

function git(...args: string[]): string {
  return execFileSync('git', ['-c', 'user.name=Relay Test', '-c', 'user.email=relay-test@example.invalid', ...args], { cwd: project.root, encoding: 'utf8' });
}
afterAll(() => project.cleanup());

/** `npm run <script> -- <args>` in the checkout, which must succeed; resolves to its stdout. */
async function ok(script: string, args: string[] = []): Promise<string> {
  const result = await runNpm(project.root, script, args);
  if (result.code !== 0) throw new Error(`npm run ${script} ${args.join(' ')} exited ${result.code}:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

async function synthInto(name: string): Promise<string> {
  await ok('synth');
  const out = join(project.root, name);
  cpSync(project.outDir, out, { recursive: true });
  return out;
}

it('a rollback changes exactly one attribute, the environment version label, in exactly one stack', async () => {
  // GIVEN two releases of dev (the version bump changes the zip and its label)
  await ok('ops', ['release', 'dev']);
  const pkgFile = join(project.root, 'package.json');
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { version: string };
  writeFileSync(pkgFile, JSON.stringify({ ...pkg, version: `${pkg.version}-rb` }, null, 2));
  git('commit', '--quiet', '--all', '--message', 'version bump');
  await ok('ops', ['release', 'dev']);
  const ledger = readLedger(project.ledgerDir, 'dev');
  expect(ledger?.releases).toHaveLength(2);
  const [older, newer] = ledger?.releases ?? [];
  expect(ledger?.active).toBe(newer.label);

  // WHEN dev is synthesized, rolled back and synthesized again
  const before = await synthInto('out-before');
  expect(await ok('ops', ['rollback', 'dev'])).toContain(`dev: active release ${newer.label} -> ${older.label}.`);
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
  const cli = await runNpm(project.root, 'ops', ['diff', before, after]);
  expect(cli.code).toBe(2);
  expect(cli.stdout).toMatch(new RegExp(`\\n {6}version_label: "[^"]*${newer.sha256.slice(0, 12)}[^"]*" → "[^"]*${older.sha256.slice(0, 12)}[^"]*"\\n`));
});
