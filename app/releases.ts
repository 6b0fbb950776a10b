/**
 * Which application versions an environment declares and which one it runs.
 *
 * Placeholder until the release ledger (releases/<env>.json) lands: every environment tracks
 * the current build.
 */

/** What the stacks need to know about one built application bundle. */
export interface ArtifactRef {
  /** Version label, `relay-<package version>-<12 hex of sha256>`. */
  readonly label: string;
  /** Hex SHA-256 of the zip. */
  readonly sha256: string;
  /** Hex MD5 of the zip (the S3 object's etag). */
  readonly md5: string;
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

/** Resolves the releases of one environment; without a ledger the environment tracks `current`. */
export function resolveReleases(_envName: string, current: ArtifactRef, _ledgerDir: string): ResolvedReleases {
  return { releases: [current], active: current, warnings: [] };
}
