import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Metafile } from 'esbuild';

/** Name of the file beside server.js that carries the notices of the packages bundled into it. */
export const THIRD_PARTY_LICENSES_FILE = 'THIRD-PARTY-LICENSES.txt';

/** One npm package whose code esbuild put into the bundle. */
export interface BundledPackage {
  /** Absolute path of its folder (never written into the notices: they must not depend on the checkout's path). */
  readonly dir: string;
  readonly name: string;
  readonly version: string;
  /** The `license` field of its package.json (an SPDX expression), or `UNKNOWN`. */
  readonly license: string;
  /** Its license and notice files (LICENSE*, LICENCE*, COPYING*, NOTICE*), sorted by name, with their text. */
  readonly files: readonly { readonly name: string; readonly text: string }[];
  /** Where its source lives, from package.json, for a package that ships no license file. */
  readonly repository: string | null;
}

const LICENSE_FILE_RE = /^(licen[cs]e|copying|notice)([.-].*)?$/i;
// The last node_modules segment names the package, so a nested copy is told apart from the top-level one.
const PACKAGE_ROOT_RE = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//;

/**
 * The packages that put code into the bundle's one output file (inputs that tree-shaking dropped entirely do not count),
 * read from their package folders below `workingDir` (esbuild's absWorkingDir), sorted by name and version.
 */
export function bundledPackages(metafile: Metafile, workingDir: string): BundledPackage[] {
  const outputs = Object.values(metafile.outputs);
  if (outputs.length !== 1) throw new Error(`expected a bundle with one output file, got ${Object.keys(metafile.outputs).join(', ') || 'none'}`);
  const { inputs } = outputs[0];
  const roots = new Set<string>();
  for (const [path, input] of Object.entries(inputs)) {
    const root = PACKAGE_ROOT_RE.exec(path)?.[1];
    if (root !== undefined && input.bytesInOutput > 0) roots.add(root);
  }
  return [...roots]
    .map((root) => readPackage(join(workingDir, root)))
    .sort((a, b) => compare(a.name, b.name) || compare(a.version, b.version));
}

function readPackage(dir: string): BundledPackage {
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>;
  const repo = manifest.repository;
  const repository = typeof repo === 'string' ? repo : typeof repo === 'object' && repo !== null && typeof (repo as { url?: unknown }).url === 'string' ? (repo as { url: string }).url : null;
  const files = readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && LICENSE_FILE_RE.test(e.name))
    .map((e) => e.name)
    .sort(compare)
    .map((name) => ({ name, text: readFileSync(join(dir, name), 'utf8').replace(/\r\n/g, '\n').trimEnd() }));
  return {
    dir,
    name: String(manifest.name),
    version: String(manifest.version),
    license: typeof manifest.license === 'string' ? manifest.license : 'UNKNOWN',
    files,
    repository,
  };
}

/**
 * The notices file: every bundled package with its version, declared license and the license and notice texts it
 * ships. The minified bundle keeps no comments, so this is where the copyright and permission notices the licenses
 * ask to accompany copies travel.
 */
export function thirdPartyLicenses(packages: readonly BundledPackage[]): string {
  const rule = '='.repeat(80);
  const parts = [
    `server.js bundles code from the ${packages.length} packages below (minified, without their comments). Each is listed ` +
      'with its version, its declared license and the license and notice files it ships.',
  ];
  for (const p of packages) {
    parts.push(`${rule}\n${p.name} ${p.version} (${p.license})\n${rule}`);
    if (p.files.length === 0) {
      parts.push(`The package ships no license file; its package.json declares ${p.license}${p.repository ? ` and its source is at ${p.repository}` : ''}.`);
    }
    for (const f of p.files) parts.push(`--- ${f.name}\n\n${f.text}`);
  }
  return `${parts.join('\n\n')}\n`;
}

// Code-unit order, not the locale's: the file must not depend on the machine that builds it.
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
