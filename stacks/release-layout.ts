/**
 * Where a release's zip lives: in the artifact bucket, beside the synthesized stack, and on the machine that built it.
 * The stacks, synth and the ops CLI all name zips through these functions, so the three places cannot drift apart.
 */
import { join } from 'node:path';

/** Key prefix of every application version in the artifact bucket; the instances may read below it and nowhere else. */
export const RELEASE_KEY_PREFIX = 'versions/';

/** Folder inside a stack's output folder that synth copies the declared zips into. */
export const RELEASE_SOURCE_DIR = 'releases';

/** File name of a release's zip, the same in all three places. */
export function releaseZipName(label: string): string {
  return `${label}.zip`;
}

/** S3 key of a release's zip in the artifact bucket: `versions/<label>.zip`. */
export function releaseS3Key(label: string): string {
  return `${RELEASE_KEY_PREFIX}${releaseZipName(label)}`;
}

/** The zip's path relative to the stack's output folder (terraform runs there, so the path stays relative). */
export function releaseSourcePath(label: string): string {
  return `${RELEASE_SOURCE_DIR}/${releaseZipName(label)}`;
}

/** The zip as built on this machine: `<artifactsDir>/<label>.zip` (dist/artifacts in a checkout). */
export function localReleaseZip(artifactsDir: string, label: string): string {
  return join(artifactsDir, releaseZipName(label));
}
