/**
 * Every fenced code block in the README and docs/ runs or is validated, so no snippet fails as written. The rules
 * per info string are in docs/testing.md; test/docs/doc-blocks.ts implements the static ones.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { startProcess } from '../../app/processes';
import { useRedis, useRelays } from '../helpers/fixtures';
import type { RelayProcess } from '../helpers/relay-process';
import {
  blockName,
  checkJson,
  checkShell,
  checkWire,
  classify,
  consoleCommands,
  documentationFiles,
  extractBlocks,
  npmScripts,
  opsCommands,
  protocolErrorCodes,
  type CodeBlock,
} from './doc-blocks';

const REPO_ROOT = resolve(__dirname, '..', '..');
const SNIPPET_TIMEOUT_MS = 30_000;
const SHELL_TIMEOUT_MS = 180_000;
/** Local relay addresses a snippet may use: 8080/8081 as after `npm start` or for `npm run dev`'s first relay, 8082 its second. */
const RELAY_ADDRESS = /\b(?:localhost|127\.0\.0\.1):(8080|8081|8082)\b/g;

const files = documentationFiles(REPO_ROOT);
const blocks = files.flatMap((file) => extractBlocks(file, readFileSync(join(REPO_ROOT, file), 'utf8')));
const scripts = npmScripts(REPO_ROOT);
const errorCodes = protocolErrorCodes(REPO_ROOT);
const needsRelays = blocks.some((b) => b.lang === 'js' || b.lang === 'ts');

const redis = useRedis({ per: 'block' });
const relayFixture = useRelays({ per: 'block' });
let relays: { a: RelayProcess; b: RelayProcess } | undefined;
let commands = new Set<string>();
let scratch: string | undefined;
const copies = new Map<string, string>();

beforeAll(async () => {
  if (scripts.ops.length > 0) {
    const help = await run('npm', ['run', '--silent', scripts.ops[0], '--', '--help'], { cwd: REPO_ROOT, timeoutMs: 60_000 });
    commands = opsCommands(help.output);
    if (commands.size === 0) throw new Error(`\`npm run ${scripts.ops[0]} -- --help\` listed no commands:\n${help.output}`);
  }
  if (needsRelays) {
    // Two relays sharing one Redis, like `npm run dev`, so a snippet can show a message crossing instances.
    const server = await redis.start();
    const [a, b] = await relayFixture.pair({ REDIS_URL: server.url });
    relays = { a, b };
  }
}, 90_000);

afterAll(() => {
  for (const dir of [scratch, ...copies.values()]) if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('documentation snippets', () => {
  it('finds the documentation and its blocks', () => {
    expect(files).toContain(join('docs', 'protocol.md'));
    expect(blocks.filter((b) => b.lang === 'js').length).toBeGreaterThan(0);
  });

  it.each(blocks.map((block) => ({ name: blockName(block), block })))(
    '$name',
    async ({ block }) => {
      const problems = await checkBlock(block);
      if (problems.length > 0) throw new Error(`${blockName(block)}:\n  - ${problems.join('\n  - ')}`);
    },
    SHELL_TIMEOUT_MS + 30_000,
  );

  it('links to files of the repository, and to their headings, resolve', () => {
    const broken: string[] = [];
    for (const file of files) {
      const text = readFileSync(join(REPO_ROOT, file), 'utf8');
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const [path, anchor] = m[1].split('#');
        if (/^[a-z]+:/.test(path)) continue;
        const target = path === '' ? join(REPO_ROOT, file) : join(REPO_ROOT, dirname(file), path);
        if (!existsSync(target)) broken.push(`${file}: ${m[1]} (no such file)`);
        else if (anchor !== undefined && target.endsWith('.md') && !headingAnchors(readFileSync(target, 'utf8')).has(anchor)) {
          broken.push(`${file}: ${m[1]} (no such heading)`);
        }
      }
    }
    expect(broken).toEqual([]);
  });
});

describe('the snippet checks', () => {
  const block = (lang: string, code: string, ...args: string[]): CodeBlock => ({ file: 'x.md', line: 1, lang, args, code });

  it('fails a block without an info string', () => {
    expect(classify(block('', 'npm test'))).toEqual({ problem: expect.stringContaining('no info string') as unknown });
  });

  it('fails a json block that names no schema, and one its schema refuses', () => {
    expect(classify(block('json', '{}'))).toEqual({ problem: expect.stringContaining('which schema') as unknown });
    expect(checkJson(block('json', '{"environments":[{"name":"dev","region":"mars"}]}', 'config')).join('\n')).toMatch(/region/);
  });

  it('fails a wire block with a frame the relay would not accept or send', () => {
    const problems = checkWire(
      block('wire', 'client → {"type":"join","room":"no spaces"}\nserver → {"type":"ack","id":1}\nserver → {"type":"error","code":"nope","message":"m"}'),
      errorCodes,
    );
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/refuses this client frame; show its answer on the next line:\n {4}server → \{"type":"error","code":"invalid_room"/);
    const answered = 'client → {"type":"ping","id":7}\nserver → {"type":"error","code":"bad_frame","message":"\\"id\\" must be a string of at most 64 characters; received a number"}';
    expect(checkWire(block('wire', answered), errorCodes)).toEqual([]);
  });

  it('fails a missing npm script and an unknown ops command', () => {
    const fake = { all: { ops: 'tsx app/cli.ts' }, ops: ['ops'] };
    expect(checkShell('npm run nope', fake, new Set(['release']))).toEqual([expect.stringContaining('no script "nope"')]);
    expect(checkShell('npm run --silent ops -- relase dev', fake, new Set(['release']))).toEqual([expect.stringContaining('no command "relase"')]);
    expect(checkShell('npm run ops -- release dev', fake, new Set(['release']))).toEqual([]);
  });

  it('fails an unclosed fence', () => {
    expect(() => extractBlocks('x.md', 'text\n```js\nconsole.log(1)\n')).toThrow('x.md:2: code fence ``` is never closed');
  });
});

/** The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens. */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  let inFence = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) inFence = !inFence;
    const heading = inFence ? null : /^#{1,6}\s+(.*)$/.exec(line);
    if (heading) anchors.add(heading[1].trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-'));
  }
  return anchors;
}

async function checkBlock(block: CodeBlock): Promise<string[]> {
  const kind = classify(block);
  if (typeof kind !== 'string') return [kind.problem];
  switch (kind) {
    case 'text':
      return block.code.split('\n').some((l) => l.startsWith('$ ')) ? ['a `text` block holds `$ ` command lines; tag it `console`'] : [];
    case 'json':
      return checkJson(block);
    case 'wire':
      return checkWire(block, errorCodes);
    case 'console':
      return checkShell(consoleCommands(block.code), scripts, commands);
    case 'sh-check-only':
      return checkShell(block.code, scripts, commands);
    case 'sh': {
      const problems = checkShell(block.code, scripts, commands);
      if (problems.length > 0) return problems;
      const result = await run('bash', ['-e', '-c', block.code], { cwd: projectCopy(block.file), timeoutMs: SHELL_TIMEOUT_MS });
      return result.code === 0 ? [] : [`exited ${result.code ?? result.signal} in a copy of the project:\n${result.output}`];
    }
    case 'js':
    case 'ts':
      return runSnippet(block, kind);
  }
}

async function runSnippet(block: CodeBlock, kind: 'js' | 'ts'): Promise<string[]> {
  if (!relays) return ['no relays were started'];
  const ports: Record<string, number> = { '8080': relays.a.port, '8081': relays.a.port, '8082': relays.b.port };
  const code = block.code.replace(RELAY_ADDRESS, (_m, port: string) => `127.0.0.1:${ports[port]}`);
  const dir = scratchDir();
  const file = join(dir, `snippet-${block.file.replace(/[^a-z0-9]+/gi, '-')}-${block.line}.${kind === 'js' ? 'mjs' : 'mts'}`);
  writeFileSync(file, code);
  const args = kind === 'js' ? [file] : ['--import', 'tsx', file];
  const result = await run(process.execPath, args, { cwd: dir, timeoutMs: SNIPPET_TIMEOUT_MS });
  return result.code === 0 ? [] : [`exited ${result.code ?? result.signal}:\n${result.output}`];
}

/** A folder that looks like the repository root (links to its entries), where snippets' relative imports resolve. */
function scratchDir(): string {
  if (scratch) return scratch;
  const dir = mkdtempSync(join(tmpdir(), 'relay-doc-snippets-'));
  for (const entry of readdirSync(REPO_ROOT)) {
    if (entry !== '.git') symlinkSync(join(REPO_ROOT, entry), join(dir, entry));
  }
  scratch = dir;
  return dir;
}

/** A copy of the project's files (tracked and untracked, not ignored) with node_modules linked; one per page. */
function projectCopy(page: string): string {
  const existing = copies.get(page);
  if (existing) return existing;
  const dir = mkdtempSync(join(tmpdir(), 'relay-doc-copy-'));
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO_ROOT, encoding: 'utf8' });
  for (const path of listed.split('\0')) {
    if (path === '' || !existsSync(join(REPO_ROOT, path))) continue;
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    copyFileSync(join(REPO_ROOT, path), join(dir, path));
  }
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  copies.set(page, dir);
  return dir;
}

/** Runs a command to completion in its own process group (killed after `timeoutMs`); output is stdout and stderr. */
async function run(
  command: string,
  args: readonly string[],
  opts: { cwd: string; timeoutMs: number },
): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
  const env = { ...process.env };
  // The ops CLI reads these; the user's own must not redirect what a snippet does.
  for (const name of ['RELAY_CONFIG', 'RELAY_LEDGER_DIR', 'RELAY_ARTIFACTS_DIR']) delete env[name];
  const proc = startProcess(`docs snippet (${command})`, command, args, { cwd: opts.cwd, env, group: true, keepLines: 400 });
  const info = await proc.waitExit(opts.timeoutMs);
  if (info === null) {
    await proc.stop();
    return { code: null, signal: 'SIGKILL', output: `${proc.lines.join('\n')}\n(stopped after ${opts.timeoutMs} ms)` };
  }
  if (info.error) throw info.error;
  return { code: info.code, signal: info.signal, output: proc.lines.join('\n') };
}
