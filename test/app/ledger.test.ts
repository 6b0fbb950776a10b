import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LedgerError, parseLedger, readLedger, serializeLedger, writeLedger, type Ledger } from '../../app/ledger';
import { ReleaseZipMismatchError, resolveReleases, type ArtifactRef } from '../../app/releases';
import type { Project } from '../helpers/project';
import { fixtureRelease, makeWorkspace, strayFiles, writeRawLedger } from './ledger-fixtures';

let ws: Project;
beforeEach(() => {
  ws = makeWorkspace();
});
afterEach(() => ws.cleanup());

function ledgerOf(env: string, releases: Ledger['releases'], active = releases[releases.length - 1].label): Ledger {
  return { version: 1, environment: env, active, releases };
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
      version: 1,
      environment: 'dev',
      active: a.label,
      releases: [
        { label: a.label, sha256: a.sha256, md5: a.md5, created: a.created, commit: a.commit, deployed: true },
        { label: b.label, sha256: b.sha256, md5: b.md5, created: b.created, commit: b.commit },
      ],
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
      version: 2,
      environment: 'dev',
      active: a.label,
      releases: [{ ...a, md5: 'ABC', created: 'yesterday', commit: 'HEAD', label: 'v1', extra: 1 }],
    };
    const err = parseError(JSON.stringify(raw));
    expect(err.problems).toEqual([
      'version: expected 1 (the only ledger format this tool reads), got 2',
      'releases[0].label: expected a label like "relay-1.2.3-0123456789ab" (relay-<semver>-<12 hex>), got "v1"',
      'releases[0].md5: expected 32 lowercase hex characters, got "ABC"',
      'releases[0].created: expected an ISO-8601 UTC time like "2026-01-31T12:00:00.000Z", got "yesterday"',
      'releases[0].commit: expected a git commit (7-40 lowercase hex) or "unknown", got "HEAD"',
      'releases[0]: unknown field "extra"; allowed fields: label, sha256, md5, created, commit, deployed',
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

describe('resolveReleases', () => {
  const current = (): ArtifactRef => {
    const r = fixtureRelease(ws.artifactsDir, 9);
    return { label: r.label, sha256: r.sha256, md5: r.md5, zipPath: join(ws.artifactsDir, `${r.label}.zip`) };
  };

  it('tracks the current build when there is no ledger', () => {
    const cur = current();
    expect(resolveReleases('dev', cur, ws.ledgerDir, ws.artifactsDir)).toEqual({ releases: [cur], active: cur, warnings: [] });
  });

  it('declares every retained release, sets zipPath only for zips on this machine, and takes active from the ledger', () => {
    const a = fixtureRelease(ws.artifactsDir, 1, { writeZip: false, deployed: true });
    const b = fixtureRelease(ws.artifactsDir, 2);
    writeLedger(ws.ledgerDir, ledgerOf('dev', [a, b], a.label));
    const resolved = resolveReleases('dev', current(), ws.ledgerDir, ws.artifactsDir);
    expect(resolved.releases).toEqual([
      { label: a.label, sha256: a.sha256, md5: a.md5 },
      { label: b.label, sha256: b.sha256, md5: b.md5, zipPath: join(ws.artifactsDir, `${b.label}.zip`) },
    ]);
    expect(resolved.active).toBe(resolved.releases[0]);
    // Deployed before: its zip is in the bucket, so a missing local copy is no problem.
    expect(resolved.warnings).toEqual([]);
  });

  it('warns when the active zip is missing and it was never deployed, saying what to run', () => {
    const a = fixtureRelease(ws.artifactsDir, 1, { writeZip: false });
    writeLedger(ws.ledgerDir, ledgerOf('dev', [a]));
    const resolved = resolveReleases('dev', current(), ws.ledgerDir, ws.artifactsDir);
    expect(resolved.warnings).toHaveLength(1);
    expect(resolved.warnings[0]).toMatch(new RegExp(`^dev: the active release ${a.label} has no zip in .*artifacts and .*dev\\.json does not mark it deployed`));
    expect(resolved.warnings[0]).toMatch(/`git checkout a{40} && npm run synth`/);
    expect(resolved.warnings[0]).toMatch(/`npm run ops -- mark-deployed dev`/);
  });

  it('does not warn about a missing zip of a release that is not active', () => {
    const a = fixtureRelease(ws.artifactsDir, 1, { writeZip: false });
    const b = fixtureRelease(ws.artifactsDir, 2);
    writeLedger(ws.ledgerDir, ledgerOf('dev', [a, b]));
    expect(resolveReleases('dev', current(), ws.ledgerDir, ws.artifactsDir).warnings).toEqual([]);
  });

  it('throws the validation error for a broken ledger instead of ignoring it', () => {
    writeRawLedger(ws.ledgerDir, 'dev', { version: 1, environment: 'dev', active: 'x', releases: 'none' });
    expect(() => resolveReleases('dev', current(), ws.ledgerDir, ws.artifactsDir)).toThrow(
      /dev\.json: releases: expected a list of releases, got "none"/,
    );
  });

  it('throws when a local zip does not hold the recorded bytes', () => {
    const a = fixtureRelease(ws.artifactsDir, 1);
    writeLedger(ws.ledgerDir, ledgerOf('dev', [a]));
    writeFileSync(join(ws.artifactsDir, `${a.label}.zip`), 'tampered');
    expect(() => resolveReleases('dev', current(), ws.ledgerDir, ws.artifactsDir)).toThrow(ReleaseZipMismatchError);
    expect(() => resolveReleases('dev', current(), ws.ledgerDir, ws.artifactsDir)).toThrow(
      new RegExp(`${a.label}\\.zip: sha256 is [0-9a-f]{64} but .*dev\\.json records ${a.sha256} for ${a.label}`),
    );
  });
});
