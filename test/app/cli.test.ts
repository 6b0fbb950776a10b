import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readLedger, writeLedger, type Ledger, type LedgerRelease } from '../../app/ledger';
import { REPO_ROOT } from '../../app/paths';
import { runNpm, type Project } from '../helpers/project';
import { CLI_NOW, fixtureRelease, makeWorkspace, runOps, strayFiles } from './ledger-fixtures';

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

/** A ledger whose history activated each release in turn (oldest first), then `active`. */
function seed(env: string, releases: LedgerRelease[], active = releases[releases.length - 1].label): string {
  const history = [...releases.map((r) => r.label), active].map((label, i) => ({ label, at: new Date(Date.UTC(2026, 0, 1, i)).toISOString(), by: 'Seeder', why: 'seeded' }));
  return writeLedger(ws.ledgerDir, { version: 2, environment: env, active, releases, history });
}

describe('ops promote', () => {
  it('copies the active release to the next environment with the same label and bytes, records the activation, then changes nothing the second time', async () => {
    const [a, b] = [1, 2].map((n) => fixtureRelease(ws.artifactsDir, n));
    seed('dev', [{ ...a, deployed: true }, { ...b, deployed: true }]);
    const result = await ops('promote', 'dev', 'staging');
    expect(result).toEqual({
      code: 0,
      out: `staging: promoted ${b.label} from dev (now active).\nWrote ${join(ws.ledgerDir, 'staging.json')}; commit it and deploy to roll it out.\n`,
      err: '',
    });
    // Same bytes, same provenance; deployment to staging is still to happen.
    expect(ledger('staging')).toEqual({
      version: 2,
      environment: 'staging',
      active: b.label,
      releases: [b],
      history: [{ label: b.label, at: NOW.toISOString(), by: 'Relay Tester', why: 'promoted from dev' }],
    });

    const bytes = readFileSync(join(ws.ledgerDir, 'staging.json'));
    expect((await ops('promote', 'dev', 'staging')).out).toBe(`staging: ${b.label} is already the active release in ${join(ws.ledgerDir, 'staging.json')}; nothing changed.\n`);
    expect(readFileSync(join(ws.ledgerDir, 'staging.json')).equals(bytes)).toBe(true);
  });

  it('appends to the target ledger and prunes it to its own retainReleases, keeping the last two previously active', async () => {
    const [a, b, c, d] = [1, 2, 3, 4].map((n) => fixtureRelease(ws.artifactsDir, n));
    seed('staging', [d]);
    // prod requires a passing verification of the release in staging.
    const staged = ledger('staging');
    writeLedger(ws.ledgerDir, { ...staged, verification: { label: d.label, at: NOW.toISOString(), passed: true, gaps: 0, duplicates: 0, reordered: 0, p99Ms: 5, clients: 4, instances: 2 } });
    seed('prod', [a, b, c]);
    // prod retains 2, but c (active) and b, a (previously active) are all protected; only d arrives.
    seed('dev', [d]);
    const result = await ops('promote', 'staging', 'prod');
    expect(result.out).toBe(
      `prod: promoted ${d.label} from staging (now active, was ${c.label}).\n` +
        `prod: pruned ${a.label} (keeping the newest 2 and the last 2 previously active).\n` +
        `Wrote ${join(ws.ledgerDir, 'prod.json')}; commit it and deploy to roll it out.\n`,
    );
    expect(ledger('prod').releases.map((r) => r.label)).toEqual([b.label, c.label, d.label]);
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
    expect(ledger('dev').active).toBe(b.label);
    expect(ledger('dev').history.at(-1)).toEqual({ label: b.label, at: NOW.toISOString(), by: 'Relay Tester', why: `rollback from ${c.label}` });
    expect((await ops('rollback', 'dev', c.label)).out).toBe(`dev: active release ${b.label} -> ${c.label}.\nWrote ${file}; commit it and deploy to roll it out.\n`);
    expect(ledger('dev').active).toBe(c.label);
    const bytes = readFileSync(file);
    expect((await ops('rollback', 'dev', c.label)).out).toBe(`dev: ${c.label} is already the active release in ${file}; nothing changed.\n`);
    expect(readFileSync(file).equals(bytes)).toBe(true);
    expect(strayFiles(ws.ledgerDir)).toEqual([]);
  });
});

describe('ops list', () => {
  it('prints the retained releases with the active marker, age, created time, commit and deployment, then the history', async () => {
    const a = fixtureRelease(ws.artifactsDir, 1, { deployed: true });
    const b = { ...fixtureRelease(ws.artifactsDir, 9), commit: 'unknown', created: new Date(NOW.getTime() - 90 * 60_000).toISOString() };
    seed('dev', [a, b], a.label);
    expect((await ops('rollback', 'dev', b.label, '--reason', 'try the newer build again')).code).toBe(0);
    const result = await ops('list', 'dev');
    expect(result.code).toBe(0);
    expect(result.out).toBe(
      [
        '   LABEL                     AGE  CREATED                   COMMIT        DEPLOYED',
        `   ${a.label}  9d   2026-01-01T12:00:00.000Z  aaaaaaaaaaaa  yes`,
        `*  ${b.label}  1h   2026-01-10T10:30:00.000Z  unknown       no`,
        '2 retained (keeping the newest 3 and the last 2 previously active); * = active',
        '',
        'ACTIVATED                 LABEL                     BY            WHY',
        `2026-01-10T12:00:00.000Z  ${b.label}  Relay Tester  try the newer build again`,
        `2026-01-01T02:00:00.000Z  ${a.label}  Seeder        seeded`,
        `2026-01-01T01:00:00.000Z  ${b.label}  Seeder        seeded`,
        `2026-01-01T00:00:00.000Z  ${a.label}  Seeder        seeded`,
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
    ['prune', 'Usage: ops prune [options] <env> [labels...]'],
    ['rebuild', 'Usage: ops rebuild [options] <label>'],
    ['resolve', 'Usage: ops resolve [options] <env>'],
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
    const refused = await runNpm(REPO_ROOT, 'ops', ['rollback', 'dev', 'relay-9.9.9-000000000000'], { env: ws.env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('unknown label "relay-9.9.9-000000000000" for dev:');
    expect(readFileSync(file).equals(bytes)).toBe(true);
  });

  it('lists every command, synth included, with the options that point it at other files', async () => {
    const help = await runOps(ws, '--help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^Usage: ops \[options\] \[command\]\n/);
    for (const command of ['release', 'promote', 'rollback', 'prune', 'list', 'rebuild', 'resolve', 'mark-deployed', 'diff', 'synth']) expect(help.out).toMatch(new RegExp(`\\n  ${command} `));
    const synth = await runOps(ws, 'synth', '--help');
    for (const option of ['--out <dir>', '--config <file>', '--ledger-dir <dir>', '--artifacts-dir <dir>']) expect(synth.out).toContain(option);
  });
});
