import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildArtifact } from './artifact';
import { REPO_ROOT } from './bundle';
import { ConfigError, loadConfig } from './config';
import { resolveReleases } from './releases';

// `npm run synth` runs this file compiled to .build/synth-main.js (faster than tsx); REPO_ROOT (app/bundle.ts)
// resolves to the parent of the file's folder, which is the repository root from both app/ and .build/.
const OUT_DIR = 'cdktf.out';

async function main(): Promise<void> {
  const config = loadConfig();
  // The bundle is built by esbuild's own process: start it first so it overlaps loading cdktf and the provider classes.
  const building = buildArtifact({ reuse: true });
  // Handled where it is awaited below; this only keeps an early failure from counting as unhandled meanwhile.
  building.catch(() => undefined);
  const { App } = await import('cdktf');
  const { RelayStack } = await import('../stacks/relay-stack');
  const { releaseSourcePath } = await import('../stacks/artifact-store');
  const artifact = await building;
  // Relative outdir: cdktf records it in manifest.json, and no absolute path may appear there.
  process.chdir(REPO_ROOT);
  const app = new App({ outdir: OUT_DIR });
  const written: { stack: string; active: string; declared: string[]; zips: { label: string; zipPath: string }[] }[] = [];
  for (const env of config.environments) {
    const releases = resolveReleases(env.name, artifact, join(REPO_ROOT, 'releases'));
    for (const warning of releases.warnings) process.stderr.write(`warning: ${warning}\n`);
    const id = `relay-${env.name}`;
    new RelayStack(app, id, { config, env, releases });
    const declared = releases.releases.map((r) => r.label);
    const zips = releases.releases.flatMap((r) => (r.zipPath && existsSync(r.zipPath) ? [{ label: r.label, zipPath: r.zipPath }] : []));
    written.push({ stack: id, active: releases.active.label, declared, zips });
  }
  app.synth();
  for (const { stack, active, declared, zips } of written) {
    const dir = join(REPO_ROOT, OUT_DIR, 'stacks', stack);
    // Only stale zips go: the stack folder also holds terraform's local state, which must never be touched.
    pruneZips(join(dir, 'releases'), new Set(declared.map((label) => `${label}.zip`)));
    for (const zip of zips) {
      const dest = join(dir, releaseSourcePath(zip.label));
      mkdirSync(join(dest, '..'), { recursive: true });
      copyFileSync(zip.zipPath, dest);
    }
    process.stdout.write(`wrote ${OUT_DIR}/stacks/${stack}/cdk.tf.json (active ${active})\n`);
  }
}

function pruneZips(dir: string, keep: ReadonlySet<string>): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    if (name.endsWith('.zip') && !keep.has(name)) rmSync(join(dir, name), { force: true });
  }
}

main().catch((err: unknown) => {
  // Errors with a stable code (bad config, bad ledger, mismatched zip) are the user's to fix: the message says how.
  if (err instanceof ConfigError || (err instanceof Error && typeof (err as { code?: unknown }).code === 'string')) {
    process.stderr.write(`${err.message}\n`);
  } else {
    process.stderr.write(`synth failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
  process.exitCode = 1;
});
