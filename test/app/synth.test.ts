import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeLedger } from '../../app/ledger';
import { REPO_ROOT } from '../../app/paths';
import { exampleConfig, makeProject, runNpm, type Project } from '../helpers/project';
import { fixtureRelease } from './ledger-fixtures';

// Several synths, each building the artifact once: minutes on a loaded machine.
jest.setTimeout(240_000);

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => {
      const rel = prefix ? `${prefix}/${e.name}` : e.name;
      return e.isDirectory() ? listFiles(join(dir, e.name), rel) : [rel];
    })
    .sort();
}

/** `npm run synth` with no arguments in a checkout: no AWS credentials, no terraform, no RELAY_* variables. */
function synthIn(project: Project, args: string[] = []) {
  return runNpm(project.root, 'synth', args, { baseEnv: { PATH: process.env.PATH ?? '', HOME: project.root, TZ: 'UTC' } });
}

/** Two releases of dev in its ledger, the older active, both zips built on this machine. */
function seedDevLedger(project: Project): string[] {
  const releases = [1, 2].map((n) => fixtureRelease(project.artifactsDir, n));
  writeLedger(project.ledgerDir, { version: 2, environment: 'dev', active: releases[0].label, releases, history: [] });
  return releases.map((r) => r.label);
}

describe('npm run synth', () => {
  const projects: Project[] = [];
  afterAll(() => {
    for (const p of projects) p.cleanup();
  });
  const checkout = (): Project => {
    const p = makeProject({ code: true });
    projects.push(p);
    return p;
  };

  it('writes byte-identical cdktf.out for every environment from two different folders, with no absolute path', async () => {
    // GIVEN two checkouts in different folders with the same config and ledgers
    const [a, b] = [checkout(), checkout()];
    const labels = seedDevLedger(a);
    expect(seedDevLedger(b)).toEqual(labels);

    // WHEN both synthesize
    const [ra, rb] = await Promise.all([synthIn(a), synthIn(b)]);

    // THEN the output is the same bytes, names no folder, and carries every declared zip beside its stack
    expect({ code: ra.code, stderr: ra.stderr }).toEqual({ code: 0, stderr: '' });
    expect({ code: rb.code, stderr: rb.stderr }).toEqual({ code: 0, stderr: '' });
    // dev runs on plain HTTP by its `insecure` reason: synth says so, then lists what it wrote.
    expect(ra.stdout).toContain('relay-dev: waived [https-and-auth]');
    const lines = ra.stdout.trim().split('\n').filter((l) => l.startsWith('wrote '));
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe(`wrote cdktf.out/stacks/relay-dev/cdk.tf.json (active ${labels[0]})`);
    ['staging', 'prod'].forEach((env, i) => {
      expect(lines[i + 1]).toMatch(new RegExp(`^wrote cdktf\\.out/stacks/relay-${env}/cdk\\.tf\\.json \\(active relay-\\d+\\.\\d+\\.\\d+-[0-9a-f]{12}\\)$`));
    });

    const files = listFiles(a.outDir);
    expect(listFiles(b.outDir)).toEqual(files);
    for (const env of ['dev', 'staging', 'prod']) expect(files).toContain(`stacks/relay-${env}/cdk.tf.json`);
    expect(files).toContain('manifest.json');
    expect(files.filter((f) => f.includes('staging-'))).toEqual([]);
    for (const f of files) {
      const bytesA = readFileSync(join(a.outDir, f));
      expect({ file: f, same: bytesA.equals(readFileSync(join(b.outDir, f))) }).toEqual({ file: f, same: true });
      for (const root of [a.root, b.root, REPO_ROOT]) expect({ file: f, hasAbsolutePath: bytesA.includes(root) }).toEqual({ file: f, hasAbsolutePath: false });
    }

    const dev = JSON.parse(readFileSync(join(a.outDir, 'stacks/relay-dev/cdk.tf.json'), 'utf8')) as {
      resource: { aws_s3_object: Record<string, { source: string; etag: string }> };
    };
    const objects = Object.values(dev.resource.aws_s3_object);
    expect(objects.map((o) => o.source)).toEqual(labels.map((l) => `releases/${l}.zip`));
    for (const obj of objects) expect(existsSync(join(a.outDir, 'stacks/relay-dev', obj.source))).toBe(true);
  });

  it('removes stale release zips from a stack folder but never its terraform state', async () => {
    const project = checkout();
    const stackDir = join(project.outDir, 'stacks/relay-dev');
    mkdirSync(join(stackDir, 'releases'), { recursive: true });
    writeFileSync(join(stackDir, 'releases/relay-0.0.0-000000000000.zip'), 'stale');
    writeFileSync(join(stackDir, 'terraform.relay-dev.tfstate'), '{"version":4}');
    const r = await synthIn(project);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    expect(existsSync(join(stackDir, 'releases/relay-0.0.0-000000000000.zip'))).toBe(false);
    expect(readFileSync(join(stackDir, 'terraform.relay-dev.tfstate'), 'utf8')).toBe('{"version":4}');
    expect(readdirSync(join(stackDir, 'releases'))).toHaveLength(1);
  });

  it('removes the stack folder of an environment no longer configured, and refuses while one holds terraform state', async () => {
    // GIVEN a synth of dev, staging and prod
    const project = checkout();
    expect((await synthIn(project)).code).toBe(0);
    const prodDir = join(project.outDir, 'stacks/relay-prod');
    const stagingDir = join(project.outDir, 'stacks/relay-staging');
    writeFileSync(join(prodDir, 'terraform.relay-prod.tfstate'), '{"version":4}');
    const before = readFileSync(join(project.outDir, 'stacks/relay-dev/cdk.tf.json'));
    const stagingBefore = readFileSync(join(stagingDir, 'cdk.tf.json'));

    // WHEN staging and prod leave the config THEN synth refuses: prod's folder holds state, and nothing is written
    project.writeConfig({ app: 'relay', environments: [exampleConfig().environments[0]] });
    const refused = await synthIn(project);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^cdktf\.out\/stacks\/relay-prod is the stack folder of an environment relay\.config\.json no longer configures, and it holds terraform state \(terraform\.relay-prod\.tfstate\)\.\n/,
    );
    expect(refused.stderr).toContain('destroy relay-<env>');
    expect(existsSync(stagingDir)).toBe(true);
    expect(readFileSync(join(prodDir, 'terraform.relay-prod.tfstate'), 'utf8')).toBe('{"version":4}');
    expect(existsSync(join(project.outDir, 'stacks/relay-dev/cdk.tf.json'))).toBe(false);

    // WHEN the state is moved away THEN both folders go, and the diff reports the stacks as removed
    renameSync(prodDir, join(project.root, 'relay-prod-state'));
    const base = join(project.root, 'base');
    mkdirSync(join(base, 'stacks/relay-dev'), { recursive: true });
    writeFileSync(join(base, 'stacks/relay-dev/cdk.tf.json'), before);
    mkdirSync(join(base, 'stacks/relay-staging'), { recursive: true });
    writeFileSync(join(base, 'stacks/relay-staging/cdk.tf.json'), stagingBefore);
    const ok = await synthIn(project);
    expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: '' });
    expect(readdirSync(join(project.outDir, 'stacks'))).toEqual(['relay-dev']);
    const diff = await runNpm(project.root, 'ops', ['diff', base, project.outDir]);
    expect(diff.code).toBe(2);
    expect(diff.stdout).toMatch(/^relay-dev: unchanged\nrelay-staging: 0 added, \d+ removed, 0 changed \(stack removed\)\n/);
  });

  it('fails with the config problems and exit code 1, without a stack trace', async () => {
    const project = checkout();
    project.writeConfig({ environments: [{ name: 'dev', region: 'eu-west-1', redis: { topology: 'sharded' } }] });
    const r = await synthIn(project);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'Invalid relay config in relay.config.json (1 problem); fix these and run synth again:\n' +
        '  - environments[0].redis.topology: received "sharded"; allowed: "single", "replicated" or "cluster"\n',
    );
    expect(existsSync(project.outDir)).toBe(false);
  });

  it('reads and writes only the files it is given, by flags or by RELAY_* variables', async () => {
    // GIVEN a project holding only config, ledgers and zips, with a fourth environment
    const project = makeProject({ config: { app: 'relay', environments: ['dev', 'qa'].map((name) => ({ name, region: 'eu-west-1', insecure: { reason: 'test project' } })) } });
    projects.push(project);
    const labels = seedDevLedger(project);
    const flagsOut = join(project.root, 'by-flags');

    // WHEN the repository's synth runs on it, once with flags and once with variables
    const byFlags = await runNpm(REPO_ROOT, 'synth', [
      '--config', project.configFile, '--ledger-dir', project.ledgerDir, '--artifacts-dir', project.artifactsDir, '--out', flagsOut,
    ]);
    const byEnv = await runNpm(REPO_ROOT, 'synth', [], { env: project.env });

    // THEN both wrote the project's two stacks where they were told, from its ledger, and built into its artifacts folder
    for (const [r, out] of [[byFlags, flagsOut], [byEnv, project.outDir]] as const) {
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
      expect(r.stdout).toContain(`wrote ${join(out, 'stacks/relay-dev/cdk.tf.json')} (active ${labels[0]})\n`);
      expect(r.stdout).toContain(`wrote ${join(out, 'stacks/relay-qa/cdk.tf.json')} (active relay-`);
      expect(readdirSync(join(out, 'stacks')).sort()).toEqual(['relay-dev', 'relay-qa']);
    }
    expect(readFileSync(join(flagsOut, 'stacks/relay-qa/cdk.tf.json')).equals(readFileSync(join(project.outDir, 'stacks/relay-qa/cdk.tf.json')))).toBe(true);
    expect(readdirSync(project.artifactsDir).filter((f) => f.endsWith('.zip'))).toHaveLength(3);
  });
});
