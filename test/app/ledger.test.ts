import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LedgerError, parseLedger, readLedger, serializeLedger, writeLedger, type Ledger } from '../../app/ledger';
import { ReleaseUnavailableError, resolveAllReleases, UnknownLedgerError, type ArtifactRef } from '../../app/releases';
import type { Project } from '../helpers/project';
import { fixtureRelease, makeWorkspace, strayFiles, writeRawLedger } from './ledger-fixtures';

let ws: Project;
beforeEach(() => {
  ws = makeWorkspace();
});
afterEach(() => ws.cleanup());

function ledgerOf(env: string, releases: Ledger['releases'], active = releases[releases.length - 1].label): Ledger {
  return { version: 2, environment: env, active, releases, history: [] };
}

function parseError(text: string, file = join(ws.ledgerDir, 'dev.json')): LedgerError {
  try {
    parseLedger(text, file);
  } catch (err) {
    if (err instanceof LedgerError) return err;
    throw err;
  }
  throw new Error('expected parseLedger to throw');
}

describe('ledger file', () => {
  it('round-trips through write and read with stable bytes', () => {
    const a = fixtureRelease(ws.artifactsDir, 1, { deployed: true });
    const b = fixtureRelease(ws.artifactsDir, 2);
    const ledger = ledgerOf('dev', [a, b], a.label);
    const file = writeLedger(ws.ledgerDir, ledger);
    expect(file).toBe(join(ws.ledgerDir, 'dev.json'));
    expect(readLedger(ws.ledgerDir, 'dev')).toEqual(ledger);
    const bytes = readFileSync(file, 'utf8');
    expect(bytes).toBe(serializeLedger(ledger));
    expect(bytes.endsWith('}\n')).toBe(true);
    // Writing what was read gives the same bytes: quiet git diffs.
    writeLedger(ws.ledgerDir, readLedger(ws.ledgerDir, 'dev') as Ledger);
    expect(readFileSync(file, 'utf8')).toBe(bytes);
    expect(JSON.parse(bytes)).toEqual({
      version: 2,
      environment: 'dev',
      active: a.label,
      releases: [
        { label: a.label, sha256: a.sha256, md5: a.md5, created: a.created, commit: a.commit, deployed: true },
        { label: b.label, sha256: b.sha256, md5: b.md5, created: b.created, commit: b.commit },
      ],
      history: [],
    });
  });

  it('reads a missing ledger as undefined (the environment tracks the current build)', () => {
    expect(readLedger(ws.ledgerDir, 'dev')).toBeUndefined();
  });

  it('writes atomically: no temp file is left beside the ledger, and the old file is replaced whole', () => {
    const a = fixtureRelease(ws.artifactsDir, 1);
    const b = fixtureRelease(ws.artifactsDir, 2);
    writeLedger(ws.ledgerDir, ledgerOf('dev', [a]));
    writeLedger(ws.ledgerDir, ledgerOf('dev', [a, b]));
    expect(readdirSync(ws.ledgerDir)).toEqual(['dev.json']);
    expect(strayFiles(ws.ledgerDir)).toEqual([]);
    expect((readLedger(ws.ledgerDir, 'dev') as Ledger).releases).toHaveLength(2);
  });

  it('refuses to write an invalid ledger and leaves the old bytes', () => {
    const a = fixtureRelease(ws.artifactsDir, 1);
    const file = writeLedger(ws.ledgerDir, ledgerOf('dev', [a]));
    const before = readFileSync(file);
    expect(() => writeLedger(ws.ledgerDir, ledgerOf('dev', [a], 'relay-9.9.9-000000000000'))).toThrow(
      /dev\.json: active: "relay-9\.9\.9-000000000000" is not one of the releases/,
    );
    expect(readFileSync(file).equals(before)).toBe(true);
    expect(strayFiles(ws.ledgerDir)).toEqual([]);
  });

  it('fails on corrupt JSON naming the file and how to restore it', () => {
    const err = parseError('{"version": 1, "environment": ');
    expect(err.code).toBe('ledger_corrupt');
    expect(err.message).toMatch(/dev\.json: not valid JSON \(/);
    expect(err.message).toMatch(/restore the committed version with `git checkout -- .*dev\.json`/);
  });

  it('names the file and the field for a bad sha256', () => {
    const a = fixtureRelease(ws.artifactsDir, 1);
    const b = fixtureRelease(ws.artifactsDir, 2);
    const c = { ...fixtureRelease(ws.artifactsDir, 3), sha256: 'xyz' };
    const err = parseError(JSON.stringify(ledgerOf('dev', [a, b, c], a.label)));
    expect(err.code).toBe('ledger_invalid');
    expect(err.problems).toEqual(['releases[2].sha256: expected 64 lowercase hex characters, got "xyz"']);
    expect(err.message).toMatch(/dev\.json: releases\[2\]\.sha256: expected 64 lowercase hex characters, got "xyz"/);
  });

  it('lists every field problem at once', () => {
    const a = fixtureRelease(ws.artifactsDir, 1);
    const raw = {
      version: 3,
      environment: 'dev',
      active: a.label,
      releases: [{ ...a, md5: 'ABC', created: 'yesterday', commit: 'HEAD', label: 'v1', extra: 1 }],
    };
    const err = parseError(JSON.stringify(raw));
    expect(err.problems).toEqual([
      'version: expected 1 or 2 (the ledger formats this tool reads), got 3; a newer tool wrote it: update this checkout',
      'releases[0].label: expected a label like "relay-1.2.3-0123abc-0123456789ab" (relay-<semver>-<short commit>-<12 hex>), got "v1"',
      'releases[0].md5: expected 32 lowercase hex characters, got "ABC"',
      'releases[0].created: expected an ISO-8601 UTC time like "2026-01-31T12:00:00.000Z", got "yesterday"',
      'releases[0].commit: expected a git commit (7-40 lowercase hex) or "unknown", got "HEAD"',
      'releases[0]: unknown field "extra"; allowed fields: label, sha256, md5, created, commit, dirty, deployed',
    ]);
  });

  it('checks the semantics: environment matches the file name, unique labels, active retained, label matches sha256', () => {
    const a = fixtureRelease(ws.artifactsDir, 1);
    const b = fixtureRelease(ws.artifactsDir, 2);
    const wrongHash = { ...b, label: 'relay-0.0.2-000000000000' };
    const err = parseError(JSON.stringify({ version: 1, environment: 'prod', active: 'relay-0.0.9-aaaaaaaaaaaa', releases: [a, a, wrongHash] }));
    expect(err.problems).toEqual([
      'environment: expected "dev" (the file name), got "prod"',
      `releases[1].label: "${a.label}" is already releases[0]; labels must be unique`,
      `releases[2].label: "relay-0.0.2-000000000000" ends in 000000000000 but sha256 starts with ${b.sha256.slice(0, 12)}; the label must end with the first 12 hex of sha256`,
      `active: "relay-0.0.9-aaaaaaaaaaaa" is not one of the releases (${a.label}, relay-0.0.2-000000000000)`,
    ]);
  });

  it('rejects an empty release list and a non-object document', () => {
    expect(parseError(JSON.stringify({ version: 1, environment: 'dev', active: 'x', releases: [] })).problems).toEqual([
      'releases: expected at least one release (delete the file to track the current build)',
    ]);
    expect(parseError('[]').problems).toEqual(['(root): Invalid input: expected object, received array']);
  });
});

describe('ledger formats and broken files', () => {
  it('loads a format 1 ledger, recording its active release as the only activation, and writes format 2', () => {
    const a = fixtureRelease(ws.artifactsDir, 1);
    const b = fixtureRelease(ws.artifactsDir, 2);
    writeRawLedger(ws.ledgerDir, 'dev', { version: 1, environment: 'dev', active: a.label, releases: [a, b] });
    const ledger = readLedger(ws.ledgerDir, 'dev') as Ledger;
    expect(ledger).toEqual({
      version: 2,
      environment: 'dev',
      active: a.label,
      releases: [a, b],
      history: [{ label: a.label, at: a.created, by: 'unknown', why: 'active when the ledger was migrated from format 1' }],
    });
    writeLedger(ws.ledgerDir, ledger);
    expect((JSON.parse(readFileSync(join(ws.ledgerDir, 'dev.json'), 'utf8')) as { version: number }).version).toBe(2);
  });

  it('names the line of a merge conflict marker and says how to resolve it', () => {
    const a = fixtureRelease(ws.artifactsDir, 1);
    const text = `{\n  "version": 2,\n  "environment": "dev",\n<<<<<<< HEAD\n  "active": "${a.label}",\n=======\n  "active": "x",\n>>>>>>> feature\n}\n`;
    const err = parseError(text);
    expect(err.code).toBe('ledger_conflict');
    expect(err.problems).toEqual(['line 4: git merge conflict marker "<<<<<<< HEAD"; two branches changed this ledger']);
    expect(err.message).toContain('Combine both sides with `npm run ops -- resolve dev`');
    expect(err.message).toMatch(/`git checkout --ours -- .*dev\.json` or `git checkout --theirs -- .*dev\.json`/);
  });

  it('gives the line and column of a JSON syntax error', () => {
    const err = parseError('{\n  "version": 2,\n  "environment": "dev"\n  "active": "x"\n}\n');
    expect(err.code).toBe('ledger_corrupt');
    expect(err.problems[0]).toBe("not valid JSON (line 4, column 3: Expected ',' or '}' after property value)");
  });

  it('rejects an environment name the config could not have', () => {
    const a = fixtureRelease(ws.artifactsDir, 1);
    const err = parseError(JSON.stringify(ledgerOf('Prod_1', [a])), join(ws.ledgerDir, 'Prod_1.json'));
    expect(err.problems).toEqual(['environment: expected an environment name matching /^[a-z][a-z0-9-]{0,19}$/, got "Prod_1"']);
  });
});

describe('resolveAllReleases', () => {
  const current = (): ArtifactRef => {
    const r = fixtureRelease(ws.artifactsDir, 9);
    return { label: r.label, sha256: r.sha256, md5: r.md5, zipPath: join(ws.artifactsDir, `${r.label}.zip`) };
  };
  // The workspace is not a git repository: a release whose zip is not here cannot be rebuilt.
  const resolve = (envs = ['dev', 'staging', 'prod'], cur = current()) =>
    resolveAllReleases(envs, cur, { ledgerDir: ws.ledgerDir, artifactsDir: ws.artifactsDir, configFile: ws.configFile, repoRoot: ws.root, log: () => undefined });

  it('tracks the current build when there is no ledger', async () => {
    const cur = current();
    expect((await resolve(['dev'], cur)).get('dev')).toEqual({ releases: [cur], active: cur });
  });

  it('declares every retained release with its verified zip, and takes active from the ledger', async () => {
    const [a, b] = [1, 2].map((n) => fixtureRelease(ws.artifactsDir, n));
    writeLedger(ws.ledgerDir, ledgerOf('dev', [a, b], a.label));
    const dev = (await resolve()).get('dev');
    expect(dev?.releases).toEqual([
      { label: a.label, sha256: a.sha256, md5: a.md5, zipPath: join(ws.artifactsDir, `${a.label}.zip`) },
      { label: b.label, sha256: b.sha256, md5: b.md5, zipPath: join(ws.artifactsDir, `${b.label}.zip`) },
    ]);
    expect(dev?.active).toBe(dev?.releases[0]);
  });

  it('fails for a missing zip that cannot be rebuilt, naming the label, the environment and what to run, even when marked deployed', async () => {
    const a = fixtureRelease(ws.artifactsDir, 1, { writeZip: false, deployed: true });
    const b = fixtureRelease(ws.artifactsDir, 2);
    writeLedger(ws.ledgerDir, ledgerOf('dev', [a, b]));
    const err = await resolve().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ReleaseUnavailableError);
    const message = (err as Error).message;
    expect(message).toMatch(new RegExp(`^1 declared release cannot be uploaded, so nothing was written:\n  - ${a.label}, declared in dev \\(.*dev\\.json\\), has no zip here and cannot be rebuilt: .* is not a git repository`));
    expect(message).toContain('then run synth again');
  });

  it('ignores a local zip whose bytes differ from the ledger (and then needs a rebuild)', async () => {
    const a = fixtureRelease(ws.artifactsDir, 1);
    writeLedger(ws.ledgerDir, ledgerOf('dev', [a]));
    writeFileSync(join(ws.artifactsDir, `${a.label}.zip`), 'tampered');
    await expect(resolve()).rejects.toThrow(new RegExp(`${a.label}, declared in dev`));
  });

  it('refuses a ledger of an environment the config does not have', async () => {
    const a = fixtureRelease(ws.artifactsDir, 1);
    writeLedger(ws.ledgerDir, ledgerOf('qa', [a]));
    const err = await resolve().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownLedgerError);
    expect((err as Error).message).toMatch(/qa\.json: a ledger of an environment .*relay\.config\.json does not configure \(it has dev, staging, prod\)/);
  });

  it('throws the validation error for a broken ledger instead of ignoring it', async () => {
    writeRawLedger(ws.ledgerDir, 'dev', { version: 1, environment: 'dev', active: 'x', releases: 'none' });
    await expect(resolve()).rejects.toThrow(/dev\.json: releases: expected a list of releases, got "none"/);
  });
});
