/**
 * A user's first customisations must not break the suite. In a copy of the repository: a fourth environment `qa` in
 * relay.config.json, and committed ledgers with several real releases across environments, built with the ops CLI
 * there. Then the app and stacks suites run inside the copy and must all pass, and the copy's own synth declares
 * exactly what its ledgers say.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readLedger } from '../../app/ledger';
import { exampleConfig, makeProject, runCommand, runNpm, type Project } from '../helpers/project';

// Three builds, a synth, and the app and stacks suites inside the copy: minutes on a loaded machine.
jest.setTimeout(900_000);

/** Suites not run inside the copy: this one (it would recurse) and the type-check/lint probe, which reads no project file. */
const NOT_RUN_INSIDE = ['test/app/user-project.test.ts', 'test/app/checks.test.ts', 'test/app/release-flow.test.ts'];

let project: Project;
beforeAll(() => {
  project = makeProject({ code: 'all' });
});
afterAll(() => project.cleanup());

async function ops(...args: string[]): Promise<string> {
  const r = await runNpm(project.root, 'ops', args);
  if (r.code !== 0) throw new Error(`npm run ops -- ${args.join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

function git(...args: string[]): string {
  return execFileSync('git', ['-c', 'user.name=Relay Test', '-c', 'user.email=relay-test@example.invalid', ...args], { cwd: project.root, encoding: 'utf8' });
}

function setVersion(version: string): void {
  const file = join(project.root, 'package.json');
  const pkg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  writeFileSync(file, `${JSON.stringify({ ...pkg, version }, null, 2)}\n`);
}

it('passes the app and stacks suites in a copy with a qa environment and committed ledgers of several releases', async () => {
  // GIVEN the repository as a user has it: four environments, and ledgers they committed
  const config = exampleConfig();
  // Like the shipped dev environment, qa has no domain yet: without HTTPS and token auth it must say why.
  config.environments.push({ name: 'qa', region: 'eu-central-1', redis: { topology: 'replicated', replicas: 1 }, retainReleases: 2, insecure: { reason: 'internal QA, no domain yet' } });
  // qa stands outside the promotion order: releases go to it from dev directly.
  project.writeConfig({ ...config, promotionOrder: ['dev', 'staging', 'prod'] });
  for (const name of readdirSync(project.ledgerDir).filter((f) => f.endsWith('.json'))) rmSync(join(project.ledgerDir, name));
  git('init', '--quiet');
  git('add', '--all');
  git('commit', '--quiet', '--message', 'a user checkout with a qa environment');

  const original = (JSON.parse(readFileSync(join(project.root, 'package.json'), 'utf8')) as { version: string }).version;
  // Three builds (the version is part of the zip); the other environments get theirs by promotion, as in real use.
  await ops('release', 'dev');
  await ops('promote', 'dev', 'staging');
  setVersion(`${original}-user.1`);
  git('commit', '--quiet', '--all', '--message', 'version user.1');
  await ops('release', 'dev');
  await ops('promote', 'dev', 'qa');
  setVersion(`${original}-user.2`);
  git('commit', '--quiet', '--all', '--message', 'version user.2');
  await ops('release', 'dev');
  await ops('promote', 'dev', 'qa');
  await ops('rollback', 'dev');
  await ops('mark-deployed', 'staging');
  setVersion(original);
  git('add', '--all');
  git('commit', '--quiet', '--message', 'version back');
  git('commit', '--quiet', '--allow-empty', '--message', 'releases: dev, staging and qa');

  const dev = readLedger(project.ledgerDir, 'dev');
  const qa = readLedger(project.ledgerDir, 'qa');
  expect(dev?.releases).toHaveLength(3);
  expect(dev?.active).toBe(dev?.releases[1].label);
  expect(qa?.releases).toHaveLength(2);
  expect(readLedger(project.ledgerDir, 'staging')?.releases[0].deployed).toBe(true);
  expect(git('status', '--porcelain')).toBe('');

  // WHEN the copy synthesizes THEN every environment is there, each running its ledger's active release
  const synth = await runNpm(project.root, 'synth');
  expect({ code: synth.code, stderr: synth.stderr }).toEqual({ code: 0, stderr: '' });
  expect(synth.stdout).toContain(`wrote cdktf.out/stacks/relay-dev/cdk.tf.json (active ${dev?.active})\n`);
  expect(synth.stdout).toContain(`wrote cdktf.out/stacks/relay-qa/cdk.tf.json (active ${qa?.active})\n`);
  expect(synth.stdout.trim().split('\n').filter((line) => line.startsWith('wrote '))).toHaveLength(4);
  expect(synth.stdout).toContain('relay-qa: waived [https-and-auth]');

  // WHEN the app and stacks suites run inside the copy
  const env: Record<string, string> = { CI: '1' };
  const jest = await runCommand(
    join(project.root, 'node_modules', '.bin', 'jest'),
    ['--maxWorkers=1', '--ci', 'test/app', 'test/stacks', '--testPathIgnorePatterns', ...NOT_RUN_INSIDE.map((f) => f.replace(/\./g, '\\.'))],
    { cwd: project.root, env, baseEnv: withoutJestWorker(process.env), timeoutMs: 840_000 },
  );

  // THEN they all pass
  const summary = /^Tests: .*$/m.exec(jest.stderr)?.[0] ?? '(no summary)';
  if (jest.code !== 0) throw new Error(`jest inside the copy exited ${jest.code} (${summary}):\n${jest.stderr.slice(-20_000)}`);
  expect(summary).toMatch(/^Tests: +\d+ passed, \d+ total$/);
  expect(jest.stderr).not.toMatch(/^FAIL /m);
});

// The outer jest's worker id would make the inner one believe it is a worker of another run.
function withoutJestWorker(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env };
  delete copy.JEST_WORKER_ID;
  return copy;
}
