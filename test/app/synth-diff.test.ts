import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../app/cli';
import { diffSynth, loadSynthTree, renderMarkdown, renderText } from '../../app/synth-diff';
import { REPO_ROOT } from '../../app/paths';
import { runNpm } from '../helpers/project';

const SECRET = 'hunter2-SUPER-SECRET-value';
const SECRET2 = 'second-SECRET-do-not-print';

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'relay-synth-diff-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** A hand-made cdktf.out folder: stack name → cdk.tf.json document. */
function writeOut(name: string, stacks: Record<string, unknown>): string {
  const dir = join(root, name);
  for (const [stack, doc] of Object.entries(stacks)) {
    mkdirSync(join(dir, 'stacks', stack), { recursive: true });
    writeFileSync(join(dir, 'stacks', stack, 'cdk.tf.json'), JSON.stringify(doc, null, 2));
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'manifest.json'), '{}');
  return dir;
}

function stack(overrides: { label?: string; token?: string; extraBucket?: boolean; cdktfVersion?: string; outputValue?: string } = {}): unknown {
  return {
    '//': { metadata: { version: overrides.cdktfVersion ?? '0.21.0', stackName: 'relay-dev' } },
    terraform: { required_providers: { aws: { source: 'hashicorp/aws', version: '6.0.0' } }, backend: { local: { path: 'terraform.relay-dev.tfstate' } } },
    provider: { aws: [{ region: 'eu-west-1', default_tags: [{ tags: { app: 'relay' } }] }] },
    data: { aws_vpc: { default: { default: true } } },
    resource: {
      aws_elastic_beanstalk_environment: {
        'relay-environment_env_1A2B3C': {
          '//': { metadata: { path: 'relay-dev/relay-environment/env', uniqueId: 'relay-environment_env_1A2B3C' } },
          name: 'relay-dev',
          version_label: overrides.label ?? 'relay-0.1.0-aaaaaaaaaaaa',
          setting: [
            { namespace: 'aws:elasticbeanstalk:application:environment', name: 'PORT', value: '8080' },
            { namespace: 'aws:elasticbeanstalk:application:environment', name: 'RELAY_AUTH_TOKEN', value: overrides.token ?? SECRET },
          ],
        },
      },
      aws_elasticache_replication_group: {
        redis: { replication_group_id: 'relay-dev', auth_token: overrides.token ?? SECRET, transit_encryption_enabled: true },
      },
      ...(overrides.extraBucket ? { aws_s3_bucket: { logs: { bucket: 'relay-dev-logs' } } } : {}),
    },
    output: {
      url: { value: 'http://example' },
      redis_password: { value: overrides.outputValue ?? SECRET2, sensitive: true },
    },
  };
}

describe('diffSynth', () => {
  it('reports equal trees as equal (cdktf metadata is not configuration)', () => {
    const base = writeOut('base', { 'relay-dev': stack(), 'relay-prod': stack() });
    const head = writeOut('head', { 'relay-dev': stack({ cdktfVersion: '0.21.1' }), 'relay-prod': stack() });
    const diff = diffSynth(loadSynthTree(base), loadSynthTree(head));
    expect(diff.equal).toBe(true);
    expect(diff.stacks.map((s) => [s.stack, s.status])).toEqual([
      ['relay-dev', 'unchanged'],
      ['relay-prod', 'unchanged'],
    ]);
    expect(renderText(diff)).toBe('No differences in 2 stacks.\n');
    expect(renderMarkdown(diff)).toBe('## Synth diff\n\nNo differences in 2 stacks.\n');
  });

  it('lists a changed attribute with its path and values', () => {
    const base = writeOut('base', { 'relay-dev': stack(), 'relay-prod': stack() });
    const head = writeOut('head', { 'relay-dev': stack({ label: 'relay-0.1.0-bbbbbbbbbbbb' }), 'relay-prod': stack() });
    const diff = diffSynth(loadSynthTree(base), loadSynthTree(head));
    expect(diff.equal).toBe(false);
    expect(diff.stacks[0]).toEqual({
      stack: 'relay-dev',
      status: 'changed',
      added: [],
      removed: [],
      changed: [
        {
          address: 'aws_elastic_beanstalk_environment.relay-environment_env_1A2B3C',
          attributes: [{ path: 'version_label', kind: 'changed', before: '"relay-0.1.0-aaaaaaaaaaaa"', after: '"relay-0.1.0-bbbbbbbbbbbb"' }],
        },
      ],
    });
    expect(diff.stacks[1].status).toBe('unchanged');
    expect(renderText(diff)).toBe(
      [
        'relay-dev: 0 added, 0 removed, 1 changed',
        '  ~ aws_elastic_beanstalk_environment.relay-environment_env_1A2B3C',
        '      version_label: "relay-0.1.0-aaaaaaaaaaaa" → "relay-0.1.0-bbbbbbbbbbbb"',
        'relay-prod: unchanged',
        '',
      ].join('\n'),
    );
  });

  it('lists added and removed resources, and whole stacks added or removed', () => {
    const base = writeOut('base', { 'relay-dev': stack(), 'relay-old': stack() });
    const head = writeOut('head', { 'relay-dev': stack({ extraBucket: true }), 'relay-new': stack() });
    const diff = diffSynth(loadSynthTree(base), loadSynthTree(head));
    const byName = Object.fromEntries(diff.stacks.map((s) => [s.stack, s]));
    expect(byName['relay-dev'].added).toEqual(['aws_s3_bucket.logs']);
    expect(byName['relay-dev'].removed).toEqual([]);
    expect(byName['relay-new'].status).toBe('added');
    expect(byName['relay-new'].added).toEqual([
      'aws_elastic_beanstalk_environment.relay-environment_env_1A2B3C',
      'aws_elasticache_replication_group.redis',
      'data.aws_vpc.default',
      'output.redis_password',
      'output.url',
      'provider.aws',
      'terraform',
    ]);
    expect(byName['relay-old'].status).toBe('removed');
    expect(byName['relay-old'].removed).toHaveLength(7);

    const reversed = diffSynth(loadSynthTree(head), loadSynthTree(base));
    expect(reversed.stacks.find((s) => s.stack === 'relay-dev')?.removed).toEqual(['aws_s3_bucket.logs']);
    expect(renderText(reversed)).toMatch(/^relay-dev: 0 added, 1 removed, 0 changed\n {2}- aws_s3_bucket\.logs\n/);
  });

  it('reports provider, terraform and output block changes with nested paths', () => {
    const headDoc = stack() as Record<string, Record<string, unknown>>;
    headDoc.terraform = { required_providers: { aws: { source: 'hashicorp/aws', version: '6.1.0' } }, backend: { local: { path: 'terraform.relay-dev.tfstate' } } };
    headDoc.provider = { aws: [{ region: 'eu-central-1', default_tags: [{ tags: { app: 'relay', team: 'ops' } }] }] };
    headDoc.output = { ...headDoc.output, url: { value: 'https://example' } };
    const diff = diffSynth(loadSynthTree(writeOut('base', { 'relay-dev': stack() })), loadSynthTree(writeOut('head', { 'relay-dev': headDoc })));
    expect(diff.stacks[0].changed).toEqual([
      { address: 'output.url', attributes: [{ path: 'value', kind: 'changed', before: '"http://example"', after: '"https://example"' }] },
      {
        address: 'provider.aws',
        attributes: [
          { path: '[0].default_tags[0].tags.team', kind: 'added', after: '"ops"' },
          { path: '[0].region', kind: 'changed', before: '"eu-west-1"', after: '"eu-central-1"' },
        ],
      },
      { address: 'terraform', attributes: [{ path: 'required_providers.aws.version', kind: 'changed', before: '"6.0.0"', after: '"6.1.0"' }] },
    ]);
  });

  it('never prints sensitive values: secret attributes, secret-named settings and sensitive outputs', () => {
    const base = writeOut('base', { 'relay-dev': stack() });
    const head = writeOut('head', { 'relay-dev': stack({ token: 'rotated-SECRET-token', outputValue: 'rotated-SECRET-output' }) });
    const diff = diffSynth(loadSynthTree(base), loadSynthTree(head));
    const text = renderText(diff);
    const markdown = renderMarkdown(diff);
    const all = `${text}\n${markdown}\n${JSON.stringify(diff)}`;
    for (const secret of [SECRET, SECRET2, 'rotated-SECRET-token', 'rotated-SECRET-output']) expect(all).not.toContain(secret);
    expect(diff.stacks[0].changed).toEqual([
      {
        address: 'aws_elastic_beanstalk_environment.relay-environment_env_1A2B3C',
        attributes: [{ path: 'setting[1].value', kind: 'changed', before: '(sensitive)', after: '(sensitive)' }],
      },
      { address: 'aws_elasticache_replication_group.redis', attributes: [{ path: 'auth_token', kind: 'changed', before: '(sensitive)', after: '(sensitive)' }] },
      { address: 'output.redis_password', attributes: [{ path: 'value', kind: 'changed', before: '(sensitive)', after: '(sensitive)' }] },
    ]);
    expect(text).toContain('      auth_token: (sensitive) → (sensitive)');
  });

  it('masks an added object that holds a secret, and still shows its non-secret siblings', () => {
    const headDoc = stack() as { resource: Record<string, Record<string, Record<string, unknown>>> };
    headDoc.resource.aws_secretsmanager_secret_version = { token: { secret_string: SECRET } };
    const env = headDoc.resource.aws_elastic_beanstalk_environment['relay-environment_env_1A2B3C'];
    env.setting = [...(env.setting as unknown[]), { namespace: 'aws:elasticbeanstalk:application:environment', name: 'DB_PASSWORD', value: SECRET2 }];
    const baseDoc = stack() as { resource: Record<string, unknown> };
    baseDoc.resource.aws_secretsmanager_secret_version = { token: { secret_string: SECRET, version_stages: ['AWSCURRENT'] } };
    const diff = diffSynth(loadSynthTree(writeOut('base', { s: baseDoc })), loadSynthTree(writeOut('head', { s: headDoc })));
    expect(diff.stacks[0].changed).toEqual([
      {
        address: 'aws_elastic_beanstalk_environment.relay-environment_env_1A2B3C',
        attributes: [{ path: 'setting[2]', kind: 'added', after: '(sensitive)' }],
      },
      { address: 'aws_secretsmanager_secret_version.token', attributes: [{ path: 'version_stages', kind: 'removed', before: '["AWSCURRENT"]' }] },
    ]);
    const printed = `${renderText(diff)}${renderMarkdown(diff)}${JSON.stringify(diff)}`;
    expect(printed).not.toContain(SECRET);
    expect(printed).not.toContain(SECRET2);
  });

  it('renders Markdown with a summary table and per-stack details', () => {
    const base = writeOut('base', { 'relay-dev': stack(), 'relay-prod': stack() });
    const head = writeOut('head', { 'relay-dev': stack({ label: 'relay-0.1.0-bbbbbbbbbbbb', extraBucket: true }), 'relay-prod': stack() });
    expect(renderMarkdown(diffSynth(loadSynthTree(base), loadSynthTree(head)))).toBe(
      [
        '## Synth diff',
        '',
        '| Stack | Status | Added | Removed | Changed |',
        '| --- | --- | ---: | ---: | ---: |',
        '| `relay-dev` | changed | 1 | 0 | 1 |',
        '| `relay-prod` | unchanged | 0 | 0 | 0 |',
        '',
        '### `relay-dev`',
        '',
        '- added `aws_s3_bucket.logs`',
        '- changed `aws_elastic_beanstalk_environment.relay-environment_env_1A2B3C`',
        '  - `version_label`: `"relay-0.1.0-aaaaaaaaaaaa"` → `"relay-0.1.0-bbbbbbbbbbbb"`',
        '',
      ].join('\n'),
    );
  });
});

describe('ops diff command', () => {
  async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const code = await runCli(args, { stdout: (t) => (out += t), stderr: (t) => (err += t), env: {} });
    return { code, out, err };
  }

  it('exits 0 when equal, 2 when different, and accepts a folder holding cdktf.out', async () => {
    const base = writeOut('base', { 'relay-dev': stack() });
    const same = writeOut('same', { 'relay-dev': stack() });
    const head = writeOut(join('checkout', 'cdktf.out'), { 'relay-dev': stack({ label: 'relay-0.1.0-bbbbbbbbbbbb' }) });
    expect(await run(['diff', base, same])).toEqual({ code: 0, out: 'No differences in 1 stack.\n', err: '' });
    const changed = await run(['diff', base, join(root, 'checkout'), '--markdown']);
    expect(changed.code).toBe(2);
    expect(changed.out).toMatch(/^## Synth diff\n/);
    expect(changed.out).toContain('`version_label`');
    expect(changed.out).not.toContain(SECRET);
    expect(head).toContain('cdktf.out');
  });

  it('exits 1 with a message naming the folder when it holds no synth output', async () => {
    const base = writeOut('base', { 'relay-dev': stack() });
    const empty = join(root, 'empty');
    mkdirSync(empty);
    expect(await run(['diff', base, empty])).toEqual({
      code: 1,
      out: '',
      err: `${empty}: has no stacks/ folder; pass a cdktf.out folder written by \`npm run synth\`\n`,
    });
    expect((await run(['diff', base, join(root, 'missing')])).err).toBe(
      `${join(root, 'missing')}: no such folder; pass a cdktf.out folder written by \`npm run synth\`\n`,
    );
    writeFileSync(join(base, 'stacks', 'relay-dev', 'cdk.tf.json'), '{ broken');
    const broken = await run(['diff', base, base]);
    expect(broken.code).toBe(1);
    expect(broken.err).toMatch(/relay-dev\/cdk\.tf\.json: not valid JSON \(.*\); synthesize again with `npm run synth`\n$/);
  });

  it('exits 1 on a missing argument, with usage', async () => {
    const result = await run(['diff', root]);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/error: missing required argument 'head-dir'/);
  });

  it('works through `npm run ops --` with exit code 2 for a difference', async () => {
    const base = writeOut('base', { 'relay-dev': stack() });
    const head = writeOut('head', { 'relay-dev': stack({ label: 'relay-0.1.0-bbbbbbbbbbbb' }) });
    const { code, stdout: out } = await runNpm(REPO_ROOT, 'ops', ['diff', base, head]);
    expect(code).toBe(2);
    expect(out).toContain('version_label: "relay-0.1.0-aaaaaaaaaaaa" → "relay-0.1.0-bbbbbbbbbbbb"');
    expect(out).not.toContain(SECRET);
  });
});
