import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PUBLIC_DIR, REPO_ROOT } from './paths';

/**
 * Node flags the bundled relay runs with: the artifact's Procfile, the benchmarks and the tests all start it this way.
 * `--max-semi-space-size=4`: while thousands of connections open, most of what they allocate lives on, and V8 grows its
 * young generation to its 2 × 16 MiB maximum; those pages stay resident after the burst. Capped at 2 × 4 MiB, an
 * instance with 5,000 idle connections is about 20 MiB smaller, and fan-out throughput measures the same
 * (BENCHMARKS.md).
 */
export const RELAY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];

/** The command line that starts the bundled relay from its folder, as the Procfile and package.json give it. */
export const RELAY_START_COMMAND = ['node', ...RELAY_NODE_FLAGS, 'server.js'].join(' ');

export interface BundleResult {
  /** Absolute path of the bundled entry point. */
  readonly serverJs: string;
  /** Names of the files copied into `<outDir>/public`, sorted. */
  readonly publicFiles: readonly string[];
}

/**
 * Bundles service/main.ts into `<outDir>/server.js` and copies the demo page into `<outDir>/public`.
 * The output depends only on the source: paths in it are relative to the repository root.
 */
export async function bundleService(outDir: string): Promise<BundleResult> {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const serverJs = join(outDir, 'server.js');
  await build({
    absWorkingDir: REPO_ROOT,
    entryPoints: ['service/main.ts'],
    outfile: serverJs,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    minify: true,
    legalComments: 'none',
    // ws falls back to its JS implementations when these optional native addons are absent.
    external: ['bufferutil', 'utf-8-validate'],
    logLevel: 'silent',
  });
  const publicFiles = copyPublic(join(outDir, 'public'));
  return { serverJs, publicFiles };
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
