/**
 * Dependencies point one way: app/ may use stacks/ and service/ code, stacks/ uses neither app/ nor service/, and
 * service/ (what runs on the instances) uses neither app/ nor stacks/. Every import, export-from, require() and
 * import() of every source file is read with the TypeScript parser, not matched by a pattern.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import * as ts from 'typescript';
import { REPO_ROOT } from '../../app/paths';

/** Folder → the top-level folders its files must not import from. */
const FORBIDDEN: Readonly<Record<string, readonly string[]>> = {
  stacks: ['app', 'service'],
  service: ['app', 'stacks'],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(ts|js|mjs|cjs)$/.test(e.name))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

/** Every module a file names in import/export-from/require()/import(). */
function importsOf(file: string): string[] {
  return ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles.map((f) => f.fileName);
}

/** `<file> imports <specifier> (<folder>/)` for every import that crosses a forbidden boundary under `root`. */
function forbiddenImports(root: string): string[] {
  const found: string[] = [];
  for (const [folder, banned] of Object.entries(FORBIDDEN)) {
    for (const file of sourceFiles(join(root, folder))) {
      for (const specifier of importsOf(file)) {
        if (!specifier.startsWith('.')) continue;
        const target = relative(root, resolve(dirname(file), specifier)).split(sep)[0];
        if (banned.includes(target)) found.push(`${relative(root, file)} imports ${specifier} (${target}/)`);
      }
    }
  }
  return found;
}

describe('dependency direction', () => {
  it('holds in this repository: stacks/ imports nothing from app/ or service/, service/ nothing from app/ or stacks/', () => {
    expect(sourceFiles(join(REPO_ROOT, 'stacks')).length).toBeGreaterThan(5);
    expect(sourceFiles(join(REPO_ROOT, 'service')).length).toBeGreaterThan(5);
    expect(forbiddenImports(REPO_ROOT)).toEqual([]);
  });

  it('fails on every kind of import across a boundary, and allows app/ to use stacks/', () => {
    // GIVEN a tree with one forbidden import of each form, and the allowed direction
    const root = mkdtempSync(join(tmpdir(), 'relay-architecture-'));
    try {
      const write = (file: string, text: string) => {
        mkdirSync(dirname(join(root, file)), { recursive: true });
        writeFileSync(join(root, file), text);
      };
      write('app/config.ts', 'export const x = 1;\n');
      write('app/main.ts', "import { RelayStack } from '../stacks/relay-stack';\nexport const y = RelayStack;\n");
      write('stacks/relay-stack.ts', "import type { AppConfig } from '../app/config';\nexport class RelayStack {}\nexport type C = AppConfig;\n");
      write('stacks/lazy.ts', "export const load = () => import('../app/config');\n");
      write('stacks/ok.ts', "import { Construct } from 'constructs';\nimport { RelayStack } from './relay-stack';\nexport { Construct, RelayStack };\n");
      write('service/backplane/redis.ts', "export { x } from '../../app/config';\n");
      write('service/old.js', "const s = require('../stacks/relay-stack');\nmodule.exports = s;\n");

      // WHEN / THEN each crossing is named with its file and specifier
      expect(forbiddenImports(root)).toEqual([
        'stacks/lazy.ts imports ../app/config (app/)',
        'stacks/relay-stack.ts imports ../app/config (app/)',
        'service/backplane/redis.ts imports ../../app/config (app/)',
        'service/old.js imports ../stacks/relay-stack (stacks/)',
      ]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
