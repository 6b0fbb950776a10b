// Entry point of `npm run synth` and of cdktf.json's "app": compiles app/main.ts with esbuild when its sources
// changed and runs it in this same process (one node start, no npm or tsx in between).
'use strict';
process.env.CHECKPOINT_DISABLE = '1';
const { mkdirSync, readdirSync, renameSync, statSync, writeFileSync } = require('node:fs');
const { dirname, join } = require('node:path');

const root = join(__dirname, '..');
const outfile = join(root, '.build', 'synth-main.js');

// Node 22 keeps the bytecode of every module it compiles (cdktf, the provider modules, zod) in this folder, so a
// synth after the first skips compiling them; Node checks each entry against its source. Node 20 has no such cache.
require('node:module').enableCompileCache?.(join(root, '.build', 'compile-cache'));

/** Newest modification time of the program's own sources and the installed dependency set. */
function newestSource() {
  let newest = statSync(join(root, 'package-lock.json')).mtimeMs;
  for (const dir of ['app', 'stacks']) {
    for (const entry of readdirSync(join(root, dir), { recursive: true })) {
      if (String(entry).endsWith('.ts')) newest = Math.max(newest, statSync(join(root, dir, String(entry))).mtimeMs);
    }
  }
  return newest;
}

function compiledIsCurrent() {
  try {
    return statSync(outfile).mtimeMs >= newestSource();
  } catch {
    return false;
  }
}

if (!compiledIsCurrent()) {
  const { outputFiles } = require('esbuild').buildSync({
    absWorkingDir: root,
    entryPoints: ['app/main.ts'],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    packages: 'external',
    logLevel: 'warning',
    write: false,
  });
  // Write then rename: two synths starting at once (parallel tests, CI jobs) never load half a file.
  const partial = `${outfile}.${process.pid}.partial`;
  mkdirSync(dirname(outfile), { recursive: true });
  writeFileSync(partial, outputFiles[0].contents);
  renameSync(partial, outfile);
}
// main.ts resolves the repository from its own folder (.build/), exactly as when it runs from app/.
require(outfile);
