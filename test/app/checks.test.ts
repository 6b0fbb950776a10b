import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { REPO_ROOT } from '../../app/paths';

// `npm test` runs `npm run typecheck` and `npm run lint` before jest. These tests prove both scripts fail when they
// should: the project's own package.json, tsconfigs and ESLint config in a temp directory, with tiny probe files
// in every source directory instead of the real sources (so each run takes seconds, and nothing is written into the repository).

jest.setTimeout(180_000);

const COPIED = ['package.json', 'tsconfig.json', 'test/e2e/tsconfig.json', 'eslint.config.mjs'];
/** Every directory the checks must cover; test/e2e has its own tsconfig (DOM types for page.evaluate callbacks). */
const DIRS = ['app', 'stacks', 'service', 'bench', 'test', 'test/e2e', 'docs'];

const CLEAN = 'export function double(n: number): number {\n  return n * 2;\n}\n';
const TYPE_ERROR = "export const port: number = 'eighty';\n";
// Valid TypeScript, so only the type-aware lint can catch it: a rejected save() would go unnoticed.
const FLOATING_PROMISE =
  'function save(): Promise<void> {\n  return Promise.resolve();\n}\n\nexport function run(): void {\n  save();\n}\n';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'relay-checks-'));
  for (const file of COPIED) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    copyFileSync(join(REPO_ROOT, file), join(dir, file));
  }
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes `probe.ts` into every directory: `source(d)` for directory d. */
function probes(source: (d: string) => string): void {
  for (const d of DIRS) {
    mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, d, 'probe.ts'), source(d));
  }
}

function npmRun(script: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, npm_config_update_notifier: 'false', FORCE_COLOR: '0' };
    const child = spawn('npm', ['run', '--silent', script], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

it('passes typecheck and lint on clean code, DOM types in test/e2e included', async () => {
  // GIVEN clean probes; the e2e one uses the DOM, as page.evaluate callbacks do
  probes((d) => (d === 'test/e2e' ? `${CLEAN}export const title = (): string => document.title;\n` : CLEAN));

  // WHEN / THEN both checks pass
  const typecheck = await npmRun('typecheck');
  expect({ code: typecheck.code, output: typecheck.output }).toEqual({ code: 0, output: '' });
  const lint = await npmRun('lint');
  expect({ code: lint.code, output: lint.output }).toEqual({ code: 0, output: '' });
});

it('fails typecheck on a type error in any source directory, and on DOM use in server code', async () => {
  // GIVEN a type error everywhere but test/e2e, and app/ touching the DOM
  probes((d) => (d === 'test/e2e' ? CLEAN : d === 'app' ? 'export const title = (): string => document.title;\n' : TYPE_ERROR));

  // WHEN
  const { code, output } = await npmRun('typecheck');

  // THEN
  expect(code).not.toBe(0);
  expect(output).toContain("app/probe.ts(1,36): error TS2584: Cannot find name 'document'.");
  for (const d of ['stacks', 'service', 'bench', 'test']) {
    expect(output).toContain(`${d}/probe.ts(1,14): error TS2322: Type 'string' is not assignable to type 'number'.`);
  }
});

it('fails typecheck on a type error in test/e2e', async () => {
  // GIVEN only the e2e probe is wrong (it has its own tsconfig)
  probes((d) => (d === 'test/e2e' ? TYPE_ERROR : CLEAN));

  // WHEN
  const { code, output } = await npmRun('typecheck');

  // THEN
  expect(code).not.toBe(0);
  expect(output).toContain("test/e2e/probe.ts(1,14): error TS2322: Type 'string' is not assignable to type 'number'.");
});

it('fails lint on a floating promise in any source directory', async () => {
  // GIVEN code that type-checks but drops a promise, in every directory
  probes(() => FLOATING_PROMISE);

  // WHEN
  const { code, output } = await npmRun('lint');

  // THEN each file is named with the type-aware rule that caught it
  expect(code).not.toBe(0);
  for (const d of DIRS) {
    const file = escapeRegExp(join(dir, d, 'probe.ts'));
    expect(output).toMatch(new RegExp(`${file}\\n\\s+6:3\\s+error\\s+Promises must be awaited.*@typescript-eslint/no-floating-promises\\n`));
  }
});

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
