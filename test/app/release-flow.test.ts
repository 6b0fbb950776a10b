/**
 * The release flow as an ops engineer runs it, in a temporary git repository (a copy of the project): releases of two
 * commits promoted and rolled back across dev, staging and prod; then a fresh `git clone` with no dist/ must
 * synthesize every declared zip (rebuilt from its commit with a real `npm ci`) and verify it, or refuse before writing
 * anything. Plus the guards that need git (dirty trees, no repository, no git), and two branches that both released
 * to dev, merged.
 *
 * Rebuilds are slow (a real `npm ci` each): the flow is arranged so that only one commit ever needs one in the clone.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLedger, type Ledger } from '../../app/ledger';
import { REPO_ROOT } from '../../app/paths';
import { exampleConfig, makeProject, runCommand, runNpm, type CommandResult, type Project } from '../helpers/project';

// Builds, two rebuilds with a real `npm ci` each and several synths: many minutes on a loaded machine.
jest.setTimeout(1_200_000);

const ENVS = ['dev', 'staging', 'prod'];
const GIT_ENV = { GIT_AUTHOR_NAME: 'Ops Person', GIT_AUTHOR_EMAIL: 'ops@example.invalid', GIT_COMMITTER_NAME: 'Ops Person', GIT_COMMITTER_EMAIL: 'ops@example.invalid' };

let project: Project;
let labelA: string;
let labelB: string;
let clone: string;

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, ...GIT_ENV } });
}

function ops(cwd: string, ...args: string[]): Promise<CommandResult> {
  return runNpm(cwd, 'ops', args, { env: GIT_ENV, timeoutMs: 900_000 });
}

async function ok(cwd: string, ...args: string[]): Promise<string> {
  const r = await ops(cwd, ...args);
  if (r.code !== 0) throw new Error(`npm run ops -- ${args.join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

function ledgerBytes(root: string): (Buffer | undefined)[] {
  return ENVS.map((e) => join(root, 'releases', `${e}.json`)).map((f) => (existsSync(f) ? readFileSync(f) : undefined));
}

/** A refused command: exit 1, the message on stderr, and every ledger byte-identical. */
async function refused(cwd: string, args: string[], message: RegExp): Promise<void> {
  const before = ledgerBytes(cwd);
  const r = await ops(cwd, ...args);
  expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 1, stdout: '' });
  expect(r.stderr).toMatch(message);
  expect(ledgerBytes(cwd)).toEqual(before);
}

function setVersion(root: string, version: string): void {
  const file = join(root, 'package.json');
  const pkg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  writeFileSync(file, `${JSON.stringify({ ...pkg, version }, null, 2)}\n`);
}

function ledger(root: string, env: string): Ledger {
  const l = readLedger(join(root, 'releases'), env);
  if (!l) throw new Error(`no ${env} ledger in ${root}`);
  return l;
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function md5(file: string): string {
  return createHash('md5').update(readFileSync(file)).digest('hex');
}

beforeAll(() => {
  // No relays run here: prod's verification guard is tested in verify.test.ts and cli-refusals.test.ts.
  const config = exampleConfig();
  project = makeProject({ code: true, config: { ...config, environments: config.environments.map((e) => ({ ...e, requireVerification: false })) } });
  // The node_modules link is not a folder, so the project's `node_modules/` pattern would not ignore it.
  writeFileSync(join(project.root, '.gitignore'), 'node_modules\ndist/\ncdktf.out/\n.build/\n');
  git(project.root, 'init', '--quiet', '--initial-branch=main');
  git(project.root, 'add', '--all');
  git(project.root, 'commit', '--quiet', '--message', 'the project');
});
afterAll(() => {
  project.cleanup();
  if (clone) rmSync(clone, { recursive: true, force: true });
});

describe('release, promote, rollback', () => {
  it('releases two commits and moves them through dev, staging and prod, guarded by the promotion order', async () => {
    const root = project.root;
    expect(await ok(root, 'release', 'dev')).toMatch(/^dev: released relay-0\.1\.0-[0-9a-f]{7}-[0-9a-f]{12} \(now active\)\.\n/);
    labelA = ledger(root, 'dev').active;
    const commitA = git(root, 'rev-parse', 'HEAD').trim();
    expect(labelA).toBe(`relay-0.1.0-${commitA.slice(0, 7)}-${ledger(root, 'dev').releases[0].sha256.slice(0, 12)}`);
    expect(ledger(root, 'dev').releases[0]).toMatchObject({ commit: commitA });
    expect(ledger(root, 'dev').releases[0].dirty).toBeUndefined();
    expect(ledger(root, 'dev').history).toEqual([{ label: labelA, at: expect.any(String) as string, by: 'Ops Person', why: `release of ${commitA.slice(0, 12)}` }]);

    // A new build starts in dev, and nothing skips staging.
    await refused(root, ['release', 'staging'], /^refusing to release a new build straight to staging: releases start in dev and are promoted \(dev → staging → prod\)\./);
    await refused(root, ['promote', 'dev', 'prod'], new RegExp(`^refusing to promote ${labelA} to prod: it has never been active in staging, the environment before prod`));
    await ok(root, 'promote', 'dev', 'staging');
    git(root, 'add', '--all');
    git(root, 'commit', '--quiet', '--message', 'release A to dev and staging');

    setVersion(root, '0.1.0-flow.2');
    git(root, 'commit', '--quiet', '--all', '--message', 'version 0.1.0-flow.2');
    await ok(root, 'release', 'dev');
    labelB = ledger(root, 'dev').active;
    expect(labelB).toMatch(/^relay-0\.1\.0-flow\.2-[0-9a-f]{7}-[0-9a-f]{12}$/);
    await ok(root, 'promote', 'dev', 'staging');
    await ok(root, 'promote', 'staging', 'prod');
    expect(await ok(root, 'rollback', 'staging')).toBe(`staging: active release ${labelB} -> ${labelA}.\nWrote releases/staging.json; commit it and deploy to roll it out.\n`);
    git(root, 'add', '--all');
    git(root, 'commit', '--quiet', '--message', 'release B to prod, staging rolled back');

    expect(ENVS.map((e) => ledger(root, e).active)).toEqual([labelB, labelA, labelB]);
    expect(ledger(root, 'staging').history.map((h) => [h.label, h.why])).toEqual([
      [labelA, 'promoted from dev'],
      [labelB, 'promoted from dev'],
      [labelA, `rollback from ${labelB}`],
    ]);
    // The same bytes everywhere: one sha256 per label across the ledgers.
    const shaOf = (env: string, label: string) => ledger(root, env).releases.find((r) => r.label === label)?.sha256;
    expect(shaOf('prod', labelB)).toBe(shaOf('dev', labelB));
    expect(shaOf('staging', labelA)).toBe(shaOf('dev', labelA));
  });
});

describe('a fresh clone', () => {
  it('synthesizes every declared zip, rebuilt from its commit and verified, and the second synth is fast', async () => {
    clone = mkdtempSync(join(tmpdir(), 'relay-clone-'));
    rmSync(clone, { recursive: true });
    git(tmpdir(), 'clone', '--quiet', project.root, clone);
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(clone, 'node_modules'), 'dir');
    expect(existsSync(join(clone, 'dist'))).toBe(false);

    const synth = await runNpm(clone, 'synth', [], { timeoutMs: 900_000 });
    // The project's dev environment is `insecure`: synth prints that waiver first; the stacks written follow.
    const written = synth.stdout.split('\n').filter((line) => !line.startsWith('relay-dev: waived [https-and-auth]')).join('\n');
    expect({ code: synth.code, stdout: written }).toEqual({
      code: 0,
      stdout: `wrote cdktf.out/stacks/relay-dev/cdk.tf.json (active ${labelB})\nwrote cdktf.out/stacks/relay-staging/cdk.tf.json (active ${labelA})\nwrote cdktf.out/stacks/relay-prod/cdk.tf.json (active ${labelB})\n`,
    });
    // B is the checked-out source (the current build); only A comes from a rebuild of its commit.
    expect(synth.stderr).toMatch(new RegExp(`rebuilt ${labelA} from [0-9a-f]{12}: sha256 verified`));
    expect(synth.stderr).not.toContain(`rebuilt ${labelB}`);

    let objects = 0;
    for (const env of ENVS) {
      const dir = join(clone, 'cdktf.out', 'stacks', `relay-${env}`);
      const doc = JSON.parse(readFileSync(join(dir, 'cdk.tf.json'), 'utf8')) as {
        resource: { aws_s3_object: Record<string, { key: string; source: string; etag: string }>; aws_elastic_beanstalk_application_version: Record<string, { name: string; description: string }> };
      };
      const releases = ledger(clone, env).releases;
      const s3 = Object.values(doc.resource.aws_s3_object);
      expect(s3.map((o) => o.key).sort()).toEqual(releases.map((r) => `versions/${r.label}.zip`).sort());
      for (const obj of s3) {
        const file = join(dir, obj.source);
        const entry = releases.find((r) => obj.key === `versions/${r.label}.zip`);
        expect({ source: obj.source, present: existsSync(file) }).toEqual({ source: obj.source, present: true });
        expect(md5(file)).toBe(obj.etag);
        expect(sha256(file)).toBe(entry?.sha256);
        objects++;
      }
      // A reviewer sees the sha256 in the application version.
      for (const version of Object.values(doc.resource.aws_elastic_beanstalk_application_version)) {
        expect(version.description).toBe(`sha256 ${releases.find((r) => r.label === version.name)?.sha256}`);
      }
    }
    expect(objects).toBe(5);

    const again = await runNpm(clone, 'synth', [], { timeoutMs: 900_000 });
    expect({ code: again.code, stderr: again.stderr }).toEqual({ code: 0, stderr: '' });
  });

  it('rebuilds a label on request and verifies it against the ledger', async () => {
    const r = await ops(clone, 'rebuild', labelA);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${labelA.replace(/\./g, '\\.')}: rebuilt from [0-9a-f]{40}; sha256 [0-9a-f]{64} matches releases/dev\\.json; zip at dist/artifacts/rebuilt/${labelA.replace(/\./g, '\\.')}\\.zip\n$`));
    expect(r.stderr).toMatch(/^rebuilding commit [0-9a-f]{12} in a temporary worktree/);
    // The temporary worktree is gone.
    expect(git(clone, 'worktree', 'list').trim().split('\n')).toHaveLength(1);
  });

  it('refuses to write any stack when a commit does not rebuild the recorded bytes or is missing, naming label, environment, hashes and the fix', async () => {
    // GIVEN the clone's staging ledger says A was built from B's commit, and prod's names a commit nobody has
    rmSync(join(clone, 'dist'), { recursive: true, force: true });
    const commitB = ledger(clone, 'dev').releases.find((r) => r.label === labelB)?.commit as string;
    const staging = join(clone, 'releases', 'staging.json');
    const stagingText = readFileSync(staging, 'utf8');
    const commitA = ledger(clone, 'staging').releases.find((r) => r.label === labelA)?.commit as string;
    writeFileSync(staging, stagingText.split(commitA).join(commitB));
    const dev = join(clone, 'releases', 'dev.json');
    writeFileSync(dev, readFileSync(dev, 'utf8').split(commitA).join('0123456789abcdef0123456789abcdef01234567'));
    const shaA = ledger(clone, 'staging').releases.find((r) => r.label === labelA)?.sha256 as string;
    const shaB = ledger(clone, 'staging').releases.find((r) => r.label === labelB)?.sha256 as string;

    // WHEN it synthesizes
    const r = await runNpm(clone, 'synth', [], { timeoutMs: 900_000 });

    // THEN it fails, naming each problem, and no stack is left to deploy
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('declared release');
    expect(r.stderr).toContain(`${labelA}, declared in dev (releases/dev.json), has no zip here and cannot be rebuilt: ${labelA} was built from commit 0123456789abcdef0123456789abcdef01234567, which this repository does not have`);
    expect(r.stderr).toContain(`${labelA}, declared in staging (releases/staging.json), has no zip here and cannot be rebuilt: ${labelA}: rebuilding commit ${commitB} gave sha256 ${shaB}, but the ledger records ${shaA}.`);
    expect(r.stderr).toContain(`\`npm run ops -- prune staging ${labelA}\``);
    for (const env of ENVS) expect(existsSync(join(clone, 'cdktf.out', 'stacks', `relay-${env}`, 'cdk.tf.json'))).toBe(false);
    expect(existsSync(join(clone, 'cdktf.out', 'manifest.json'))).toBe(false);
    git(clone, 'checkout', '--quiet', '--', 'releases');
  });
});

describe('guards that need git', () => {
  it('refuses to release uncommitted changes, records --allow-dirty, and never promotes a dirty release past dev', async () => {
    const root = project.root;
    writeFileSync(join(root, 'service', 'public', 'extra.txt'), 'not committed\n');
    await refused(root, ['release', 'dev'], /^refusing to release dev: the working tree has uncommitted changes, so commit [0-9a-f]{12} cannot rebuild what would be released:\n {2}\?\? service\/public\/extra\.txt\n/);
    expect(await ok(root, 'release', 'dev', '--allow-dirty')).toMatch(/^dev: released relay-\S+ \(dirty\) \(now active/);
    const dirty = ledger(root, 'dev');
    expect(dirty.releases.find((r) => r.label === dirty.active)?.dirty).toBe(true);
    await refused(root, ['promote', 'dev', 'staging'], new RegExp(`^refusing to promote ${dirty.active} to staging: it was built from uncommitted changes \\(dirty\\) and never goes past dev`));
    await refused(root, ['promote', 'dev', 'staging', '--force', '--reason', 'please'], /never goes past dev/);
    rmSync(join(root, 'service', 'public', 'extra.txt'));
    git(root, 'checkout', '--quiet', '--', 'releases');
  });

  it('says so when the folder is not a git repository, or git is missing, and changes nothing', async () => {
    const plain = makeProject({ code: true });
    try {
      await refused(plain.root, ['release', 'dev'], /is not a git repository; releases record the commit they are built from/);
    } finally {
      plain.cleanup();
    }
    const bin = mkdtempSync(join(tmpdir(), 'relay-nogit-'));
    try {
      // Only node on PATH (npm itself needs a shell): the ops CLI through tsx, as `npm run ops` starts it.
      symlinkSync(process.execPath, join(bin, 'node'));
      const before = ledgerBytes(project.root);
      const tsx = join(project.root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
      const r = await runCommand(process.execPath, [tsx, 'app/ops.ts', 'release', 'dev'], { cwd: project.root, env: { PATH: bin } });
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 1, stdout: '' });
      expect(r.stderr).toMatch(/^git was not found on PATH; releases record and rebuild git commits, so install git/);
      expect(ledgerBytes(project.root)).toEqual(before);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});

describe('two branches that both released to dev', () => {
  it('merge into a conflicted ledger that synth explains, and `resolve` combines', async () => {
    const root = project.root;
    // On a branch: commit a change that alters the zip (a new demo file), release it to dev, commit the ledger.
    const changeAndRelease = async (name: string): Promise<string> => {
      writeFileSync(join(root, 'service', 'public', `${name}.txt`), `${name}\n`);
      git(root, 'add', '--all');
      git(root, 'commit', '--quiet', '--message', name);
      await ok(root, 'release', 'dev');
      git(root, 'commit', '--quiet', '--all', '--message', `release ${name} to dev`);
      return ledger(root, 'dev').active;
    };
    git(root, 'checkout', '--quiet', '-b', 'feature');
    const feature = await changeAndRelease('feature');
    git(root, 'checkout', '--quiet', 'main');
    const fix = await changeAndRelease('fix');

    let merge = '';
    try {
      git(root, 'merge', '--no-edit', 'feature');
    } catch (err) {
      merge = String((err as { stdout?: string }).stdout);
    }
    expect(merge).toContain('CONFLICT (content): Merge conflict in releases/dev.json');

    const synth = await runNpm(root, 'synth', [], { timeoutMs: 900_000 });
    expect(synth.code).toBe(1);
    expect(synth.stderr).toMatch(/^releases\/dev\.json: line \d+: git merge conflict marker "<<<<<<< HEAD"; two branches changed this ledger\nCombine both sides with `npm run ops -- resolve dev`/);

    // The fix was released after the feature: the most recent activation wins.
    expect(await ok(root, 'resolve', 'dev')).toMatch(new RegExp(`^dev: combined both sides of the merge: 3 releases, active ${fix.replace(/\./g, '\\.')} \\(activated last, .* by Ops Person\\)\\.\n`));
    const merged = ledger(root, 'dev');
    expect(merged.releases.map((r) => r.label).sort()).toEqual([fix, feature, labelB].sort());
    expect(merged.history.slice(-2).map((h) => h.label)).toEqual([feature, fix]);
    git(root, 'add', 'releases/dev.json');
    git(root, 'commit', '--quiet', '--no-edit');

    const after = await runNpm(root, 'synth', [], { timeoutMs: 900_000 });
    expect({ code: after.code, stderr: after.stderr }).toEqual({ code: 0, stderr: '' });
    expect(after.stdout).toContain(`wrote cdktf.out/stacks/relay-dev/cdk.tf.json (active ${fix})`);
    const zips = readdirSync(join(root, 'cdktf.out', 'stacks', 'relay-dev', 'releases')).sort();
    expect(zips).toEqual(merged.releases.map((r) => `${r.label}.zip`).sort());
  });
});
