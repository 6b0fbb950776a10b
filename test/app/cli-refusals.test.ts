import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeLedger, type LedgerRelease } from '../../app/ledger';
import type { Project } from '../helpers/project';
import { expectRefused, fixtureRelease, makeWorkspace, writeRawLedger } from './ledger-fixtures';

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
