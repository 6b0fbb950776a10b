/** `npm run ops -- platform`: the newest AL2023 Node.js platform of the same major, written into the config. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../app/cli';
import { newestPlatform, readSolutionStacks } from '../../app/platform-command';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'relay-platform-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const OLD = '64bit Amazon Linux 2023 v6.10.0 running Node.js 22';
async function ops(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli([...args, '--config', join(dir, 'relay.config.json')], { stdout: (t) => (out += t), stderr: (t) => (err += t), env: {} });
  return { code, out, err };
}

describe('ops platform', () => {
  it('picks the newest version of the same Node.js major from list-available-solution-stacks output', () => {
    const names = readSolutionStacks(JSON.stringify({ SolutionStacks: [
      '64bit Amazon Linux 2023 v6.9.2 running Node.js 22',
      '64bit Amazon Linux 2023 v6.10.1 running Node.js 22',
      '64bit Amazon Linux 2023 v6.11.0 running Node.js 24',
      '64bit Amazon Linux 2 v5.9.0 running Node.js 18',
    ] }));
    expect(newestPlatform(names, '22')).toBe('64bit Amazon Linux 2023 v6.10.1 running Node.js 22');
  });

  it('writes it into every environment and leaves the rest of the file as it was', async () => {
    const config = `{\n  "environments": [\n    { "name": "dev", "region": "eu-west-1", "platform": "${OLD}", "insecure": { "reason": "x" } }\n  ]\n}\n`;
    writeFileSync(join(dir, 'relay.config.json'), config);
    writeFileSync(join(dir, 'stacks.txt'), '64bit Amazon Linux 2023 v6.10.1 running Node.js 22\n64bit Amazon Linux 2023 v6.9.0 running Node.js 22\n');
    const r = await ops('platform', '--from', join(dir, 'stacks.txt'));
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).toContain('-> 64bit Amazon Linux 2023 v6.10.1 running Node.js 22');
    expect(readFileSync(join(dir, 'relay.config.json'), 'utf8')).toBe(config.replace(OLD, '64bit Amazon Linux 2023 v6.10.1 running Node.js 22'));
  });

  it('refuses when nothing matches, and changes nothing', async () => {
    const config = `{ "environments": [{ "name": "dev", "region": "eu-west-1", "platform": "${OLD}" }] }\n`;
    writeFileSync(join(dir, 'relay.config.json'), config);
    const r = await ops('platform', '64bit Amazon Linux 2 v5.9.0 running Node.js 18');
    expect(r.code).toBe(1);
    expect(r.err).toContain('no "64bit Amazon Linux 2023 vX.Y.Z running Node.js 22" among the 1 names given');
    expect(readFileSync(join(dir, 'relay.config.json'), 'utf8')).toBe(config);
  });
});
