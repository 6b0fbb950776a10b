import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readLedger, writeLedger, type LedgerRelease } from '../../app/ledger';
import type { Project } from '../helpers/project';
import { CLI_NOW, expectRefused, fixtureRelease, makeWorkspace, runOps, writeRawLedger } from './ledger-fixtures';

// Every refusal: exit 1, the asserted message on stderr, and the ledgers byte-identical (see expectRefused).
jest.setTimeout(120_000);

let ws: Project;
let a: LedgerRelease;
let b: LedgerRelease;
let devFile: string;
beforeEach(() => {
  ws = makeWorkspace({ dev: 3, staging: 5, prod: 2 });
  [a, b] = [1, 2].map((n) => fixtureRelease(ws.artifactsDir, n));
  const history = (...labels: string[]) => labels.map((label, i) => ({ label, at: new Date(Date.UTC(2026, 0, 1, i)).toISOString(), by: 'Seeder', why: 'seeded' }));
  devFile = writeLedger(ws.ledgerDir, { version: 2, environment: 'dev', active: b.label, releases: [a, b], history: history(a.label, b.label) });
  writeLedger(ws.ledgerDir, { version: 2, environment: 'prod', active: a.label, releases: [a], history: history(a.label) });
});
afterEach(() => ws.cleanup());

describe('unknown environment', () => {
  const known = () => `${ws.configFile} defines dev, staging, prod`;
  it.each([
    [['release', 'qa']],
    [['prune', 'qa']],
    [['resolve', 'qa']],
    [['promote', 'qa', 'prod']],
    [['promote', 'dev', 'qa']],
    [['rollback', 'qa']],
    [['list', 'qa']],
    [['mark-deployed', 'qa']],
  ])('refuses %j and lists the configured environments', async (args) => {
    await expectRefused(ws, args, `unknown environment "qa": ${known()}`);
  });
});

describe('unknown label', () => {
  it.each([[['rollback', 'dev', 'relay-9.9.9-000000000000']], [['mark-deployed', 'dev', 'relay-9.9.9-000000000000']], [['prune', 'dev', 'relay-9.9.9-000000000000']]])(
    'refuses %j and lists the retained labels',
    async (args) => {
      await expectRefused(ws, args, `unknown label "relay-9.9.9-000000000000" for dev: ${devFile} retains ${a.label}, ${b.label}`);
    },
  );
});

describe('nothing to act on', () => {
  it('refuses a rollback when no retained release was active before', async () => {
    await expectRefused(
      ws,
      ['rollback', 'prod'],
      `cannot roll back prod: no release retained in ${join(ws.ledgerDir, 'prod.json')} was active before ${a.label}; ` +
        'name one instead (`npm run ops -- rollback prod <label>`, see `npm run ops -- list prod`)',
    );
  });

  it('refuses a rebuild of a label no ledger retains', async () => {
    await expectRefused(ws, ['rebuild', 'relay-9.9.9-000000000000'], `unknown label "relay-9.9.9-000000000000": no ledger in ${ws.ledgerDir} retains it (they retain ${a.label}, ${b.label})`);
  });

  it('refuses to resolve a ledger that is not in a merge conflict', async () => {
    await expectRefused(ws, ['resolve', 'dev'], new RegExp(`is not a git repository|${esc(devFile)} is not in a merge conflict`));
  });

  it.each([[['rollback', 'staging']], [['promote', 'staging', 'prod']], [['mark-deployed', 'staging']]])(
    'refuses %j for an environment without a ledger, creating none',
    async (args) => {
      await expectRefused(
        ws,
        args,
        `staging has no ledger (${join(ws.ledgerDir, 'staging.json')} does not exist) and tracks the current build; run \`npm run ops -- release staging\` first`,
      );
    },
  );

  it('refuses to promote an environment to itself', async () => {
    await expectRefused(ws, ['promote', 'dev', 'dev'], 'cannot promote dev to itself; name two different environments');
  });
});

describe('corrupt or hand-broken ledger', () => {
  const commands = [[['release', 'dev']], [['promote', 'dev', 'staging']], [['promote', 'prod', 'dev']], [['rollback', 'dev']], [['prune', 'dev']], [['list', 'dev']], [['mark-deployed', 'dev']]];

  it.each(commands)('refuses %j on a merge-conflicted ledger, naming the line and what to run', async (args) => {
    writeRawLedger(ws.ledgerDir, 'dev', `{\n  "version": 2,\n<<<<<<< HEAD\n  "active": "${a.label}",\n=======\n  "active": "${b.label}",\n>>>>>>> other\n}\n`);
    await expectRefused(
      ws,
      args,
      new RegExp(`^${esc(devFile)}: line 3: git merge conflict marker "<<<<<<< HEAD"; two branches changed this ledger\nCombine both sides with \`npm run ops -- resolve dev\``),
    );
  });

  it.each(commands)('refuses %j on invalid JSON, naming the file and how to restore it', async (args) => {
    writeRawLedger(ws.ledgerDir, 'dev', '{ "version": 1, "environment": "dev",\n');
    await expectRefused(
      ws,
      args,
      new RegExp(`^${esc(devFile)}: not valid JSON \\(.+\\)\nFix the file by hand, or restore the committed version with \`git checkout -- ${esc(devFile)}\``),
    );
  });

  it.each(commands)('refuses %j on a bad field, naming the file and the field', async (args) => {
    writeRawLedger(ws.ledgerDir, 'dev', { version: 1, environment: 'dev', active: b.label, releases: [a, { ...b, sha256: 'xyz' }] });
    await expectRefused(ws, args, new RegExp(`^${esc(devFile)}: releases\\[1\\]\\.sha256: expected 64 lowercase hex characters, got "xyz"\n`));
  });

  it('refuses an active label that is not retained', async () => {
    writeRawLedger(ws.ledgerDir, 'dev', { version: 1, environment: 'dev', active: 'relay-9.9.9-000000000000', releases: [a, b] });
    await expectRefused(ws, ['rollback', 'dev'], new RegExp(`^${esc(devFile)}: active: "relay-9\\.9\\.9-000000000000" is not one of the releases \\(${esc(a.label)}, ${esc(b.label)}\\)\n`));
  });
});

describe('bad command line or config', () => {
  it('refuses a missing argument with usage', async () => {
    await expectRefused(ws, ['rollback'], /^error: missing required argument 'env'\n/);
  });

  it('refuses an unknown command', async () => {
    await expectRefused(ws, ['deploy', 'dev'], /^error: unknown command 'deploy'\n/);
  });

  it('refuses a broken config file with its problems', async () => {
    writeFileSync(ws.configFile, JSON.stringify({ environments: [{ name: 'dev', region: 'mars' }] }));
    await expectRefused(ws, ['rollback', 'dev'], /^Invalid relay config in .*relay\.config\.json \(1 problem\).*\n {2}- environments\[0\]\.region/s);
  });
});

function esc(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('promotion guards', () => {
  it('refuses a promotion into prod of a release never active in staging, and promote dev prod skipping staging', async () => {
    await expectRefused(
      ws,
      ['promote', 'dev', 'prod'],
      `refusing to promote ${b.label} to prod: it has never been active in staging, the environment before prod in the promotion order (dev → staging → prod). ` +
        `Promote it to staging first (\`npm run ops -- promote dev staging\`), then from there; override with --force --reason "<why>" (recorded in ${join(ws.ledgerDir, 'prod.json')})`,
    );
  });

  it('refuses --force without a reason', async () => {
    await expectRefused(ws, ['promote', 'dev', 'prod', '--force'], '--force needs --reason "<why>": the reason is recorded in the ledger for whoever reads its history');
  });

  it('records an override with its reason', async () => {
    const r = await runOps(ws, 'promote', 'dev', 'prod', '--force', '--reason', 'hotfix for the outage, staging is down');
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).toContain(`prod: promoted ${b.label} from dev (now active, was ${a.label}), guard overridden.\n`);
    expect(readLedger(ws.ledgerDir, 'prod')?.history.at(-1)).toEqual({
      label: b.label,
      at: CLI_NOW.toISOString(),
      by: 'Relay Tester',
      why: 'hotfix for the outage, staging is down',
      forced: true,
    });
  });

  it('refuses to promote a dirty release past the first environment, even forced', async () => {
    const c = { ...fixtureRelease(ws.artifactsDir, 3), dirty: true as const };
    writeLedger(ws.ledgerDir, { version: 2, environment: 'dev', active: c.label, releases: [a, b, c], history: [] });
    for (const args of [['promote', 'dev', 'staging'], ['promote', 'dev', 'staging', '--force', '--reason', 'x']]) {
      await expectRefused(
        ws,
        args,
        `refusing to promote ${c.label} to staging: it was built from uncommitted changes (dirty) and never goes past dev; commit the changes, \`npm run ops -- release dev\` and promote that`,
      );
    }
  });

  it('follows a configured promotionOrder', async () => {
    const config = JSON.parse(readFileSync(ws.configFile, 'utf8')) as Record<string, unknown>;
    const environments = (config.environments as Record<string, unknown>[]).map((e) => ({ ...e, requireVerification: false }));
    ws.writeConfig({ ...config, environments, promotionOrder: ['dev', 'prod', 'staging'] });
    await expectRefused(ws, ['promote', 'dev', 'staging'], /^refusing to promote .* to staging: it has never been active in prod, the environment before staging in the promotion order \(dev → prod → staging\)\. /);
    expect((await runOps(ws, 'promote', 'dev', 'prod')).code).toBe(0);
    expect((await runOps(ws, 'promote', 'prod', 'staging')).code).toBe(0);
  });
});

describe('verification guard', () => {
  const verification = (label: string, passed: boolean) => ({ label, at: CLI_NOW.toISOString(), passed, gaps: passed ? 0 : 3, duplicates: 0, reordered: 0, p99Ms: 12, clients: 4, instances: 2 });
  const staging = (v?: ReturnType<typeof verification>) =>
    writeLedger(ws.ledgerDir, { version: 2, environment: 'staging', active: b.label, releases: [b], history: [{ label: b.label, at: CLI_NOW.toISOString(), by: 'Seeder', why: 'seeded' }], ...(v ? { verification: v } : {}) });

  it('refuses a promotion into prod without a passing verification of the release in staging', async () => {
    staging();
    await expectRefused(
      ws,
      ['promote', 'staging', 'prod'],
      `refusing to promote ${b.label} to prod: prod requires a passing delivery verification of it in staging, which has no verification. ` +
        `Run \`npm run ops -- verify staging\` while it runs ${b.label} (and commit the ledger), or override with --force --reason "<why>"`,
    );
    staging(verification(b.label, false));
    await expectRefused(ws, ['promote', 'staging', 'prod'], /which failed its last verification \(3 gaps, 0 duplicates, /);
    staging(verification(a.label, true));
    await expectRefused(ws, ['promote', 'staging', 'prod'], new RegExp(`which last verified ${esc(a.label)}\\. `));
  });

  it('promotes once the release passed in staging', async () => {
    staging(verification(b.label, true));
    const r = await runOps(ws, 'promote', 'staging', 'prod');
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(readLedger(ws.ledgerDir, 'prod')?.active).toBe(b.label);
  });
});

describe('pruning', () => {
  it('never removes the active release nor the last two previously active ones', async () => {
    const [c, d] = [3, 4].map((n) => fixtureRelease(ws.artifactsDir, n));
    const history = [a, b, c, d].map((r, i) => ({ label: r.label, at: new Date(Date.UTC(2026, 0, 1, i)).toISOString(), by: 'Seeder', why: 'seeded' }));
    writeLedger(ws.ledgerDir, { version: 2, environment: 'dev', active: d.label, releases: [a, b, c, d], history });
    await expectRefused(
      ws,
      ['prune', 'dev', c.label, d.label],
      `refusing to prune ${c.label}, ${d.label} from dev: pruning never removes the active release or the last 2 previously active ones (${d.label}, ${c.label}, ${b.label}), so a rollback always has somewhere to go. Release or roll back first.`,
    );
    const r = await runOps(ws, 'prune', 'dev', a.label);
    expect(r.out).toBe(`dev: pruned ${a.label} (keeping the newest 3 and the last 2 previously active).\nWrote ${devFile}; commit it and deploy: the pruned application versions leave the stack.\n`);
  });
});
