/**
 * Where the project's files live. Every default is resolved from the repository root, never from the caller's working
 * directory; synth and the ops CLI take each of them as an explicit option too (see app/synth.ts and app/cli.ts).
 */
import { isAbsolute, join, relative, resolve } from 'node:path';

/**
 * Repository root: the parent of this file's folder. That is the root both when the file runs from app/ (tsx, jest)
 * and when `npm run synth` runs it bundled into .build/synth-main.js.
 */
export const REPO_ROOT = resolve(__dirname, '..');

/** The environment config synth and the ops CLI read unless given another (`--config`, RELAY_CONFIG). */
export const DEFAULT_CONFIG_FILE = join(REPO_ROOT, 'relay.config.json');

/** Folder of the committed release ledgers `<env>.json` (`--ledger-dir`, RELAY_LEDGER_DIR). */
export const DEFAULT_LEDGER_DIR = join(REPO_ROOT, 'releases');

/** Folder of the zips built on this machine, `<label>.zip` (`--artifacts-dir`, RELAY_ARTIFACTS_DIR). */
export const DEFAULT_ARTIFACTS_DIR = join(REPO_ROOT, 'dist', 'artifacts');

/** Where synth writes the Terraform, one folder per stack (`--out`, RELAY_SYNTH_OUT). */
export const DEFAULT_SYNTH_OUT_DIR = join(REPO_ROOT, 'cdktf.out');

/** Scratch builds: the compiled synth program, the relay bundles tests and benchmarks start. Never committed. */
export const BUILD_DIR = join(REPO_ROOT, '.build');

/** The demo page and its script; they ship next to server.js as `public/`. */
export const PUBLIC_DIR = join(REPO_ROOT, 'service', 'public');

/** A path as shown in messages: relative to the working directory when inside it, so messages read `releases/dev.json`. */
export function displayPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file;
}
