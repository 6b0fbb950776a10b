/**
 * Which application versions an environment declares and which one it runs, from its release ledger
 * (releases/<env>.json, see ledger.ts). Without a ledger the environment tracks the current build.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { ApplicationRelease } from '../stacks/artifact-store';
import { localReleaseZip } from '../stacks/release-layout';
import { ledgerPath, readLedger, type LedgerRelease } from './ledger';
import { displayPath } from './paths';

/** A release the stacks declare, and where its zip is on this machine. */
export interface ArtifactRef extends ApplicationRelease {
  /** Absolute path of the zip when it is present on this machine. */
  readonly zipPath?: string;
}

export interface ResolvedReleases {
  /** Every retained release, oldest first; the stack declares an S3 object and an application version for each. */
  readonly releases: readonly ArtifactRef[];
  /** The release the environment runs; always one of `releases`. */
  readonly active: ArtifactRef;
  /** Messages for the person running synth (e.g. a missing zip and what to run). */
  readonly warnings: readonly string[];
}

/** A local zip whose bytes are not the ones the ledger records: uploading it would deploy something else. */
export class ReleaseZipMismatchError extends Error {
  readonly code = 'release_zip_mismatch';
  constructor(zipPath: string, label: string, expected: string, actual: string, ledger: string) {
    super(
      `${displayPath(zipPath)}: sha256 is ${actual} but ${ledger} records ${expected} for ${label}. ` +
        `The local zip was changed or corrupted: delete it and rebuild it with \`git checkout <its commit> && npm run synth\`.`,
    );
    this.name = 'ReleaseZipMismatchError';
  }
}

/**
 * Resolves the releases of one environment; without a ledger the environment tracks `current`.
 * A ledger that fails validation throws its LedgerError: synth must not silently deploy something else.
 */
export function resolveReleases(
  envName: string,
  current: ArtifactRef,
  ledgerDir: string,
  artifactsDir: string,
): ResolvedReleases {
  const ledger = readLedger(ledgerDir, envName);
  if (ledger === undefined) return { releases: [current], active: current, warnings: [] };
  const shownLedger = displayPath(ledgerPath(ledgerDir, envName));

  const releases = ledger.releases.map((r) => toRef(r, current, artifactsDir, shownLedger));
  const activeIndex = ledger.releases.findIndex((r) => r.label === ledger.active);
  const active = releases[activeIndex];
  const activeEntry = ledger.releases[activeIndex];
  const warnings: string[] = [];
  // A zip already deployed to this environment is in its bucket; only a never-deployed one must come from this machine.
  if (active.zipPath === undefined && activeEntry.deployed !== true) {
    warnings.push(missingZipWarning(envName, activeEntry, artifactsDir, shownLedger));
  }
  return { releases, active, warnings };
}

function toRef(release: LedgerRelease, current: ArtifactRef, artifactsDir: string, shownLedger: string): ArtifactRef {
  const base = { label: release.label, sha256: release.sha256, md5: release.md5 };
  if (current.label === release.label && current.zipPath !== undefined && current.sha256 === release.sha256) {
    return { ...base, zipPath: current.zipPath };
  }
  const zipPath = localReleaseZip(artifactsDir, release.label);
  if (!existsSync(zipPath)) return base;
  const actual = createHash('sha256').update(readFileSync(zipPath)).digest('hex');
  if (actual !== release.sha256) throw new ReleaseZipMismatchError(zipPath, release.label, release.sha256, actual, shownLedger);
  return { ...base, zipPath };
}

function missingZipWarning(envName: string, release: LedgerRelease, artifactsDir: string, shownLedger: string): string {
  const rebuild =
    release.commit === 'unknown'
      ? 'check out the commit it was built from and run `npm run synth` (the same source gives the same bytes)'
      : `run \`git checkout ${release.commit} && npm run synth\` (the same source gives the same bytes), then return to your branch`;
  return (
    `${envName}: the active release ${release.label} has no zip in ${displayPath(artifactsDir)} and ${shownLedger} does not mark it deployed, ` +
    `so a deploy cannot upload it. To rebuild it, ${rebuild}; or make another release active with \`npm run ops -- rollback ${envName} <label>\`. ` +
    `If it is already in the bucket, run \`npm run ops -- mark-deployed ${envName}\`.`
  );
}
