import { build, type BuildOptions } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bundledPackages, THIRD_PARTY_LICENSES_FILE, thirdPartyLicenses } from './bundle-licenses';
import { PUBLIC_DIR, REPO_ROOT } from './paths';

/**
 * Node flags the bundled relay runs with: the artifact's Procfile, the benchmarks and the tests all start it this way.
 * `--max-semi-space-size=16`: a young generation of 2 × 16 MiB (V8's own default, written down so a node upgrade does
 * not change it) lets a busy instance scavenge a quarter as often as with 2 × 4 MiB; each scavenge copies what is in
 * flight at that moment, so with the smaller one the many-rooms workload spent far more of its CPU collecting
 * (bench/findings.md). `--expose-gc`: V8 keeps a young generation it grew during a burst resident until a
 * memory-reducing collection, which an idle process never runs; service/memory-reducer.ts runs one when the instance
 * goes idle, so idle connections do not pay for the larger young generation.
 */
export const RELAY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=16', '--expose-gc'];

/** The command line that starts the bundled relay from its folder, as the Procfile and package.json give it. */
export const RELAY_START_COMMAND = ['node', ...RELAY_NODE_FLAGS, 'server.js'].join(' ');

/** How esbuild bundles the relay (the output file aside). */
export const RELAY_BUNDLE_OPTIONS = {
  absWorkingDir: REPO_ROOT,
  entryPoints: ['service/main.ts'],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minify: true,
  // None of the bundled packages has a legal comment in its source; their license files ship as THIRD-PARTY-LICENSES.txt.
  legalComments: 'none',
  // ws falls back to its JS implementations when these optional native addons are absent.
  external: ['bufferutil', 'utf-8-validate'],
  logLevel: 'silent',
} as const satisfies BuildOptions;

export interface BundleResult {
  /** Absolute path of the bundled entry point. */
  readonly serverJs: string;
  /** Absolute path of the notices of the packages bundled into server.js (THIRD-PARTY-LICENSES.txt beside it). */
  readonly licensesTxt: string;
  /** Names of the files copied into `<outDir>/public`, sorted. */
  readonly publicFiles: readonly string[];
}

/**
 * Bundles service/main.ts into `<outDir>/server.js`, writes the notices of the packages in it beside it and copies the
 * demo page into `<outDir>/public`. The output depends only on the source: paths in it are relative to the repository
 * root.
 */
export async function bundleService(outDir: string): Promise<BundleResult> {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const serverJs = join(outDir, 'server.js');
  const { metafile } = await build({ ...RELAY_BUNDLE_OPTIONS, outfile: serverJs, metafile: true });
  const licensesTxt = join(outDir, THIRD_PARTY_LICENSES_FILE);
  writeFileSync(licensesTxt, thirdPartyLicenses(bundledPackages(metafile, REPO_ROOT)));
  const publicFiles = copyPublic(join(outDir, 'public'));
  return { serverJs, licensesTxt, publicFiles };
}

function copyPublic(dest: string): string[] {
  let names: string[];
  try {
    names = readdirSync(PUBLIC_DIR, { withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
  if (names.length === 0) return [];
  mkdirSync(dest, { recursive: true });
  for (const name of names) copyFileSync(join(PUBLIC_DIR, name), join(dest, name));
  return names;
}
