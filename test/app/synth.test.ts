import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../../app/bundle';

// Everything `npm run synth` reads; node_modules is linked, not copied.
const SYNTH_INPUTS = ['app', 'stacks', 'service', 'releases', 'package.json', 'tsconfig.json', 'cdktf.json', 'relay.config.json'];

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function copyRepo(): string {
  const dir = mkdtempSync(join(tmpdir(), 'relay-synth-'));
  for (const name of SYNTH_INPUTS) {
    if (existsSync(join(REPO_ROOT, name))) cpSync(join(REPO_ROOT, name), join(dir, name), { recursive: true });
  }
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return dir;
}

function synth(cwd: string): Promise<RunResult> {
  return new Promise((resolve) => {
    // No AWS credentials and no terraform on PATH beyond what node needs: synth must not need them.
    const env = { PATH: process.env.PATH ?? '', HOME: cwd, TZ: 'UTC' };
    execFile('npm', ['run', '--silent', 'synth'], { cwd, env, timeout: 180_000 }, (err, stdout, stderr) => {
      // execFile reports the exit status as a numeric `code` on its error.
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => {
      const rel = prefix ? `${prefix}/${e.name}` : e.name;
      return e.isDirectory() ? listFiles(join(dir, e.name), rel) : [rel];
    })
    .sort();
}

describe('npm run synth', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const fresh = () => {
    const d = copyRepo();
    dirs.push(d);
    return d;
  };

  it('writes byte-identical cdktf.out for every environment from two different folders, with no absolute path', async () => {
    const a = fresh();
    const b = fresh();
    const [ra, rb] = await Promise.all([synth(a), synth(b)]);
    // stderr may carry release-ledger warnings; it is shown here only if synth fails.
    expect({ code: ra.code, stderr: ra.stderr }).toMatchObject({ code: 0 });
    expect({ code: rb.code, stderr: rb.stderr }).toMatchObject({ code: 0 });
    const lines = ra.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    ['dev', 'staging', 'prod'].forEach((env, i) => {
      expect(lines[i]).toMatch(new RegExp(`^wrote cdktf\\.out/stacks/relay-${env}/cdk\\.tf\\.json \\(active relay-\\d+\\.\\d+\\.\\d+-[0-9a-f]{12}\\)$`));
    });

    const files = listFiles(join(a, 'cdktf.out'));
    expect(listFiles(join(b, 'cdktf.out'))).toEqual(files);
    for (const env of ['dev', 'staging', 'prod']) expect(files).toContain(`stacks/relay-${env}/cdk.tf.json`);
    expect(files).toContain('manifest.json');
    for (const f of files) {
      const bytesA = readFileSync(join(a, 'cdktf.out', f));
      expect({ file: f, same: bytesA.equals(readFileSync(join(b, 'cdktf.out', f))) }).toEqual({ file: f, same: true });
      for (const root of [a, b, REPO_ROOT]) expect({ file: f, hasAbsolutePath: bytesA.includes(root) }).toEqual({ file: f, hasAbsolutePath: false });
    }

    // The zip each object's relative `source` names sits next to the stack, matching the declared etag.
    const dev = JSON.parse(readFileSync(join(a, 'cdktf.out/stacks/relay-dev/cdk.tf.json'), 'utf8')) as {
      resource: { aws_s3_object: Record<string, { source: string; etag: string }> };
    };
    for (const obj of Object.values(dev.resource.aws_s3_object)) {
      expect(obj.source).toMatch(/^releases\/relay-.*\.zip$/);
      expect(existsSync(join(a, 'cdktf.out/stacks/relay-dev', obj.source))).toBe(true);
    }
  }, 240_000);

  it('removes stale release zips from a stack folder but never its terraform state', async () => {
    const dir = fresh();
    const stackDir = join(dir, 'cdktf.out/stacks/relay-dev');
    mkdirSync(join(stackDir, 'releases'), { recursive: true });
    writeFileSync(join(stackDir, 'releases/relay-0.0.0-000000000000.zip'), 'stale');
    writeFileSync(join(stackDir, 'terraform.relay-dev.tfstate'), '{"version":4}');
    const r = await synth(dir);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    expect(existsSync(join(stackDir, 'releases/relay-0.0.0-000000000000.zip'))).toBe(false);
    expect(readFileSync(join(stackDir, 'terraform.relay-dev.tfstate'), 'utf8')).toBe('{"version":4}');
    expect(readdirSync(join(stackDir, 'releases'))).toHaveLength(1);
  }, 240_000);

  it('fails with the config problems and exit code 1, without a stack trace', async () => {
    const dir = fresh();
    writeFileSync(join(dir, 'relay.config.json'), JSON.stringify({ environments: [{ name: 'dev', region: 'eu-west-1', redis: { topology: 'sharded' } }] }));
    const r = await synth(dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'Invalid relay config in relay.config.json (1 problem); fix these and run synth again:\n' +
        '  - environments[0].redis.topology: received "sharded"; allowed: "single", "replicated" or "cluster"\n',
    );
    expect(existsSync(join(dir, 'cdktf.out'))).toBe(false);
  }, 240_000);
});
