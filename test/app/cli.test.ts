import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readLedger, writeLedger, type Ledger, type LedgerRelease } from '../../app/ledger';
import { REPO_ROOT } from '../../app/paths';
import { runNpm, type Project } from '../helpers/project';
import { CLI_NOW, expectRefused, fixtureRelease, makeWorkspace, runOps, strayFiles } from './ledger-fixtures';

jest.setTimeout(180_000);

let ws: Project;
beforeEach(() => {
  ws = makeWorkspace({ dev: 3, staging: 5, prod: 2 });
});
afterEach(() => ws.cleanup());

const ops = (...args: string[]) => runOps(ws, ...args);
const NOW = CLI_NOW;

function ledger(env: string): Ledger {
  const l = readLedger(ws.ledgerDir, env);
  if (!l) throw new Error(`no ${env} ledger`);
  return l;
}

function seed(env: string, releases: LedgerRelease[], active = releases[releases.length - 1].label): string {
  return writeLedger(ws.ledgerDir, { version: 1, environment: env, active, releases });
}

describe('ops release', () => {
  it('starts a ledger with the current build, and a second release of the same source changes nothing', async () => {
    const first = await ops('release', 'dev');
    expect(first.err).toBe('');
    expect(first.code).toBe(0);
    const dev = ledger('dev');
    expect(dev.releases).toHaveLength(1);
    const [entry] = dev.releases;
    expect(entry.label).toMatch(/^relay-\d+\.\d+\.\d+-[0-9a-f]{12}$/);
    expect(dev.active).toBe(entry.label);
    expect(entry.created).toBe(NOW.toISOString());
    expect(entry.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(entry.deployed).toBeUndefined();
    expect(existsSync(join(ws.artifactsDir, `${entry.label}.zip`))).toBe(true);
    expect(first.out).toBe(`dev: released ${entry.label} (now active).\nWrote ${join(ws.ledgerDir, 'dev.json')}; commit it and deploy to roll it out.\n`);

    const bytes = readFileSync(join(ws.ledgerDir, 'dev.json'));
    const again = await ops('release', 'dev');
    expect(again).toEqual({ code: 0, out: `dev: ${entry.label} is already the active release in ${join(ws.ledgerDir, 'dev.json')}; nothing changed.\n`, err: '' });
    expect(readFileSync(join(ws.ledgerDir, 'dev.json')).equals(bytes)).toBe(true);
  });

  it('keeps the newest N (retainReleases) and says which were pruned', async () => {
    const [a, b, c] = [1, 2, 3].map((n) => fixtureRelease(ws.artifactsDir, n));
    seed('dev', [a, b, c]);
    const result = await ops('release', 'dev');
    expect(result.code).toBe(0);
    const dev = ledger('dev');
    const built = dev.releases[2];
    expect(dev.releases.map((r) => r.label)).toEqual([b.label, c.label, built.label]);
    expect(dev.active).toBe(built.label);
    expect(result.out).toBe(
      `dev: released ${built.label} (now active, was ${c.label}).\n` +
        `dev: pruned ${a.label} (keeping the newest 3).\n` +
        `Wrote ${join(ws.ledgerDir, 'dev.json')}; commit it and deploy to roll it out.\n`,
    );
    expect(strayFiles(ws.ledgerDir)).toEqual([]);
  });

  it('makes an already retained build active without adding it, pruning around it', async () => {
    expect((await ops('release', 'dev')).code).toBe(0);
    const built = ledger('dev').releases[0];
    // Four retained (retainReleases was lowered to 3 since): the re-activated oldest one must survive the prune.
    const [f1, f2, f3] = [1, 2, 3].map((n) => fixtureRelease(ws.artifactsDir, n));
    seed('dev', [built, f1, f2, f3], f3.label);
    const result = await ops('release', 'dev');
    expect(result).toEqual({
      code: 0,
      out:
        `dev: ${built.label} was already retained; it is now the active release (was ${f3.label}).\n` +
        `dev: pruned ${f1.label} (keeping the newest 3).\n` +
        `Wrote ${join(ws.ledgerDir, 'dev.json')}; commit it and deploy to roll it out.\n`,
      err: '',
    });
    expect(ledger('dev')).toEqual({ version: 1, environment: 'dev', active: built.label, releases: [built, f2, f3] });
  });
});

describe('ops promote', () => {
  it('copies the active release to another environment with the same label and bytes, then changes nothing the second time', async () => {
    const [a, b] = [1, 2].map((n) => fixtureRelease(ws.artifactsDir, n));
    seed('dev', [{ ...a, deployed: true }, { ...b, deployed: true }]);
    const result = await ops('promote', 'dev', 'staging');
    expect(result).toEqual({
      code: 0,
      out: `staging: promoted ${b.label} from dev (now active).\nWrote ${join(ws.ledgerDir, 'staging.json')}; commit it and deploy to roll it out.\n`,
      err: '',
    });
    // Same bytes, same provenance; deployment to staging is still to happen.
    expect(ledger('staging')).toEqual({ version: 1, environment: 'staging', active: b.label, releases: [b] });

    const bytes = readFileSync(join(ws.ledgerDir, 'staging.json'));
    expect((await ops('promote', 'dev', 'staging')).out).toBe(`staging: ${b.label} is already the active release in ${join(ws.ledgerDir, 'staging.json')}; nothing changed.\n`);
    expect(readFileSync(join(ws.ledgerDir, 'staging.json')).equals(bytes)).toBe(true);
  });

  it('appends to the target ledger and prunes it to its own retainReleases', async () => {
    const [a, b, c] = [1, 2, 3].map((n) => fixtureRelease(ws.artifactsDir, n));
    seed('dev', [c]);
    seed('prod', [a, b]);
    const result = await ops('promote', 'dev', 'prod');
    expect(result.out).toBe(
      `prod: promoted ${c.label} from dev (now active, was ${b.label}).\n` +
        `prod: pruned ${a.label} (keeping the newest 2).\n` +
        `Wrote ${join(ws.ledgerDir, 'prod.json')}; commit it and deploy to roll it out.\n`,
    );
    expect(ledger('prod').releases.map((r) => r.label)).toEqual([b.label, c.label]);
  });

  it('rebuilds a missing zip from source when the rebuilt bytes are the recorded ones', async () => {
    expect((await ops('release', 'dev')).code).toBe(0);
    const built = ledger('dev').releases[0];
    const zip = join(ws.artifactsDir, `${built.label}.zip`);
    rmSync(zip);
    const result = await ops('promote', 'dev', 'prod');
    expect(result.err).toBe('');
    expect(result.code).toBe(0);
    expect(existsSync(zip)).toBe(true);
    expect(ledger('prod').active).toBe(built.label);
    expect(ledger('prod').releases).toEqual([{ ...built }]);
  });

  it('refuses a local zip whose bytes differ from the recorded sha256', async () => {
    const a = fixtureRelease(ws.artifactsDir, 1);
    seed('dev', [a]);
    seed('prod', [fixtureRelease(ws.artifactsDir, 2)]);
    writeFileSync(join(ws.artifactsDir, `${a.label}.zip`), 'tampered bytes');
    await expectRefused(
      ws,
      ['promote', 'dev', 'prod'],
      new RegExp(
        `^refusing to promote ${a.label}: .*${a.label}\\.zip has sha256 [0-9a-f]{64} but .*dev\\.json records ${a.sha256}\\. ` +
          'The local zip is not the released bytes: delete it and run the command again to rebuild it from source\\.\n$',
      ),
    );
  });

  it('refuses a missing zip that the current source does not rebuild, saying which commit to use', async () => {
    const a = fixtureRelease(ws.artifactsDir, 1, { writeZip: false });
    seed('dev', [a]);
    await expectRefused(
      ws,
      ['promote', 'dev', 'prod'],
      new RegExp(
        `^refusing to promote ${a.label}: its zip is not in .* and the current source builds relay-[0-9.]+-[0-9a-f]{12} instead\\. ` +
          `Rebuild it from its commit \\(\`git checkout a{40} && npm run ops -- promote dev prod\`\\), then return to your branch\\.\n$`,
      ),
    );
  });
});

describe('ops rollback', () => {
  it('makes the previous retained release active, then a named one', async () => {
    const [a, b, c] = [1, 2, 3].map((n) => fixtureRelease(ws.artifactsDir, n));
    const file = seed('dev', [a, b, c]);
    expect(await ops('rollback', 'dev')).toEqual({
      code: 0,
      out: `dev: active release ${c.label} -> ${b.label}.\nWrote ${file}; commit it and deploy to roll it out.\n`,
      err: '',
    });
    expect(ledger('dev')).toEqual({ version: 1, environment: 'dev', active: b.label, releases: [a, b, c] });
    expect((await ops('rollback', 'dev', c.label)).out).toBe(`dev: active release ${b.label} -> ${c.label}.\nWrote ${file}; commit it and deploy to roll it out.\n`);
    expect(ledger('dev').active).toBe(c.label);
    const bytes = readFileSync(file);
    expect((await ops('rollback', 'dev', c.label)).out).toBe(`dev: ${c.label} is already the active release in ${file}; nothing changed.\n`);
    expect(readFileSync(file).equals(bytes)).toBe(true);
    expect(strayFiles(ws.ledgerDir)).toEqual([]);
  });
});

describe('ops list', () => {
  it('prints the retained releases with the active marker, age, created time, commit and deployment', async () => {
    const a = fixtureRelease(ws.artifactsDir, 1, { deployed: true });
    const b = { ...fixtureRelease(ws.artifactsDir, 9), commit: 'unknown', created: new Date(NOW.getTime() - 90 * 60_000).toISOString() };
    seed('dev', [a, b], a.label);
    const result = await ops('list', 'dev');
    expect(result.code).toBe(0);
    expect(result.out).toBe(
      [
        '   LABEL                     AGE  CREATED                   COMMIT        DEPLOYED',
        `*  ${a.label}  9d   2026-01-01T12:00:00.000Z  aaaaaaaaaaaa  yes`,
        `   ${b.label}  1h   2026-01-10T10:30:00.000Z  unknown       no`,
        '2 retained (keeping the newest 3); * = active',
        '',
      ].join('\n'),
    );
  });

  it('says that an environment without a ledger tracks the current build', async () => {
    expect(await ops('list', 'staging')).toEqual({
      code: 0,
      out: `staging: no ledger (${join(ws.ledgerDir, 'staging.json')} does not exist); the environment tracks the current build. Run \`npm run ops -- release staging\` to start one.\n`,
      err: '',
    });
  });
});

describe('ops mark-deployed', () => {
  it('marks the active release deployed (or a named one), once', async () => {
    const [a, b] = [1, 2].map((n) => fixtureRelease(ws.artifactsDir, n));
    const file = seed('dev', [a, b]);
    expect((await ops('mark-deployed', 'dev')).out).toBe(`dev: marked ${b.label} deployed in ${file}.\n`);
    expect((await ops('mark-deployed', 'dev', a.label)).out).toBe(`dev: marked ${a.label} deployed in ${file}.\n`);
    expect(ledger('dev').releases.map((r) => r.deployed)).toEqual([true, true]);
    expect((await ops('mark-deployed', 'dev')).out).toBe(`dev: ${b.label} is already marked deployed in ${file}; nothing changed.\n`);
  });
});

describe('ops --help', () => {
  it.each([
    ['release', 'Usage: ops release [options] <env>'],
    ['promote', 'Usage: ops promote [options] <from> <to>'],
    ['rollback', 'Usage: ops rollback [options] <env> [label]'],
    ['list', 'Usage: ops list [options] <env>'],
    ['mark-deployed', 'Usage: ops mark-deployed [options] <env> [label]'],
    ['diff', 'Usage: ops diff [options] <base-dir> <head-dir>'],
    ['synth', 'Usage: ops synth [options]'],
  ])('explains %s', async (command, usage) => {
    const result = await ops(command, '--help');
    expect(result.code).toBe(0);
    expect(result.out.startsWith(`${usage}\n`)).toBe(true);
  });
});

describe('npm run ops', () => {
  it('rolls back and refuses with exit 1 through the npm script', async () => {
    const [a, b] = [1, 2].map((n) => fixtureRelease(ws.artifactsDir, n));
    const file = seed('dev', [a, b]);
    const ok = await runNpm(REPO_ROOT, 'ops', ['rollback', 'dev'], { env: ws.env });
    expect(ok).toMatchObject({ code: 0, stderr: '' });
    expect(ok.stdout).toContain(`dev: active release ${b.label} -> ${a.label}.`);
    const bytes = readFileSync(file);
    const refused = await runNpm(REPO_ROOT, 'ops', ['rollback', 'dev'], { env: ws.env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`cannot roll back dev: the active release ${a.label} is the oldest retained in`);
    expect(readFileSync(file).equals(bytes)).toBe(true);
  });

  it('lists every command, synth included, with the options that point it at other files', async () => {
    const help = await runOps(ws, '--help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^Usage: ops \[options\] \[command\]\n/);
    for (const command of ['release', 'promote', 'rollback', 'list', 'mark-deployed', 'diff', 'synth']) expect(help.out).toMatch(new RegExp(`\\n  ${command} `));
    const synth = await runOps(ws, 'synth', '--help');
    for (const option of ['--out <dir>', '--config <file>', '--ledger-dir <dir>', '--artifacts-dir <dir>']) expect(synth.out).toContain(option);
  });
});
