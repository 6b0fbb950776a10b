/**
 * Fenced code blocks of the documentation and the static checks the snippet test applies to them. The rules are
 * written down in docs/testing.md ("The documentation is tested too"); keep the two in step.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../app/config';
import { parseLedger } from '../../app/ledger';
import {
  encodeAck,
  encodeError,
  encodeMessage,
  encodePong,
  encodePresence,
  encodePresenceEvent,
  encodePresenceMember,
  encodeResync,
  encodeTokenExpiring,
  encodeWelcome,
  parseClientFrame,
  type ErrorCode,
  type PresenceMember,
} from '../../service/protocol';

/** One fenced block: where it is, its info string split into language and arguments, and its text. */
export interface CodeBlock {
  /** Path relative to the repository root, e.g. `docs/protocol.md`. */
  readonly file: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly lang: string;
  readonly args: readonly string[];
  readonly code: string;
}

/** How the test treats a block; see the table in docs/testing.md. */
export type BlockKind = 'js' | 'ts' | 'json' | 'wire' | 'sh' | 'sh-check-only' | 'console' | 'text';

const JSON_SCHEMAS = ['config', 'environment', 'ledger'] as const;

/** Every fenced block in a Markdown text; an unclosed fence is an error naming its line. */
export function extractBlocks(file: string, text: string): CodeBlock[] {
  const lines = text.split('\n');
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, info] = open;
    const startLine = i + 1;
    const body: string[] = [];
    let closed = false;
    for (i++; i < lines.length; i++) {
      const line = lines[i];
      const trimmed = line.trim();
      if (trimmed.startsWith(fence[0]) && /^(`{3,}|~{3,})$/.test(trimmed) && trimmed.length >= fence.length) {
        closed = true;
        break;
      }
      body.push(line.startsWith(indent) ? line.slice(indent.length) : line.trimStart());
    }
    if (!closed) throw new Error(`${file}:${startLine}: code fence ${fence} is never closed`);
    const [lang = '', ...args] = info.trim().split(/\s+/).filter((w) => w.length > 0);
    blocks.push({ file, line: startLine, lang, args, code: body.join('\n') });
  }
  return blocks;
}

/** The block's kind, or a message saying why its info string is not one the test knows. */
export function classify(block: CodeBlock): BlockKind | { readonly problem: string } {
  const info = [block.lang, ...block.args].join(' ');
  switch (info) {
    case 'js':
    case 'ts':
    case 'wire':
    case 'sh':
    case 'console':
    case 'text':
      return info;
    case 'sh check-only':
      return 'sh-check-only';
  }
  if (block.lang === 'json' && block.args.length === 1 && (JSON_SCHEMAS as readonly string[]).includes(block.args[0])) return 'json';
  const known = '`js`, `ts`, `json config`, `json environment`, `json ledger`, `wire`, `sh`, `sh check-only`, `console` or `text`';
  if (info === '') return { problem: `the block has no info string; tag it ${known} (see docs/testing.md)` };
  if (block.lang === 'json') return { problem: `\`${info}\` does not say which schema validates it; use \`json config\`, \`json environment\` or \`json ledger\`` };
  return { problem: `unknown info string \`${info}\`; use ${known} (see docs/testing.md)` };
}

/** Validates a `json <schema>` block with the code that reads such files; returns the problems found. */
export function checkJson(block: CodeBlock): string[] {
  let value: unknown;
  try {
    value = JSON.parse(block.code);
  } catch (err) {
    return [`not valid JSON: ${(err as Error).message}`];
  }
  const where = `${block.file}:${block.line}`;
  try {
    switch (block.args[0]) {
      case 'config':
        parseConfig(value, where);
        break;
      case 'environment':
        parseConfig({ environments: [value] }, where);
        break;
      case 'ledger': {
        const env = (value as { environment?: unknown } | null)?.environment;
        parseLedger(block.code, `${typeof env === 'string' ? env : 'unnamed'}.json`);
        break;
      }
    }
  } catch (err) {
    return [(err as Error).message];
  }
  return [];
}

/** Error codes as service/protocol.ts declares them (its `ErrorCode` union). */
export function protocolErrorCodes(repoRoot: string): Set<string> {
  const source = readFileSync(join(repoRoot, 'service', 'protocol.ts'), 'utf8');
  const union = /export type ErrorCode =([^;]+);/.exec(source);
  if (!union) throw new Error('service/protocol.ts no longer declares `export type ErrorCode = ...;`; update test/docs/doc-blocks.ts');
  return new Set([...union[1].matchAll(/'([a-z_]+)'/g)].map((m) => m[1]));
}

/**
 * Checks a `wire` block: client frames must parse, server frames must be exactly what protocol.ts's encoder for
 * their type writes (message frames with recovery carry `,"seq":…,"epoch":…` appended, as the backplanes append it).
 */
export function checkWire(block: CodeBlock, errorCodes: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  // A refused client frame is shown with its answer: the next server frame must be exactly that error.
  let refusal: { at: string; error: string } | undefined;
  block.code.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const at = `line ${block.line + 1 + i}`;
    const m = /^(client|server) → (.+)$/.exec(line);
    if (!m) {
      problems.push(`${at}: expected "client → <json>" or "server → <json>", got ${JSON.stringify(line)}`);
      return;
    }
    const [, side, text] = m;
    const pending = refusal;
    refusal = undefined;
    if (pending && (side !== 'server' || normalize(text) !== pending.error)) {
      problems.push(`${pending.at}: the relay refuses this client frame; show its answer on the next line:\n    server → ${pending.error}`);
    }
    if (side === 'client') {
      const parsed = parseClientFrame(text);
      if (!parsed.ok) refusal = { at, error: encodeError(parsed) };
      return;
    }
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      problems.push(`${at}: not valid JSON: ${(err as Error).message}`);
      return;
    }
    const expected = encodeServerFrame(frame, errorCodes);
    if (typeof expected !== 'string') problems.push(`${at}: ${expected.problem}`);
    else if (expected !== JSON.stringify(frame)) problems.push(`${at}: the relay would send\n    ${expected}\n  not\n    ${JSON.stringify(frame)}`);
  });
  if (refusal) problems.push(`${refusal.at}: the relay refuses this client frame; show its answer on the next line:\n    server → ${refusal.error}`);
  return problems;
}

function normalize(json: string): string | undefined {
  try {
    return JSON.stringify(JSON.parse(json));
  } catch {
    return undefined;
  }
}

function encodeServerFrame(frame: Record<string, unknown>, errorCodes: ReadonlySet<string>): string | { problem: string } {
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  switch (frame.type) {
    case 'welcome':
      return encodeWelcome(String(frame.connectionId), String(frame.instanceId));
    case 'ack': {
      const extra: Record<string, unknown> = { ...frame };
      delete extra.type;
      delete extra.id;
      return encodeAck(str(frame.id), extra);
    }
    case 'pong':
      return encodePong(str(frame.id));
    case 'token_expiring':
      if (typeof frame.exp !== 'number' || typeof frame.closeAt !== 'number') return { problem: '"exp" and "closeAt" must be numbers' };
      return encodeTokenExpiring(frame.exp, frame.closeAt);
    case 'resync': {
      const position = frame.position as { seq?: unknown; epoch?: unknown } | undefined;
      if (typeof position?.seq !== 'string' || !/^\d+$/.test(position.seq) || typeof position.epoch !== 'string') {
        return { problem: '"position" must be {"seq": decimal string, "epoch": string}' };
      }
      if (frame.reason !== 'epoch' && frame.reason !== 'lost') return { problem: '"reason" must be "epoch" or "lost"' };
      return encodeResync(String(frame.room), { seq: Number(position.seq), epoch: position.epoch }, frame.reason);
    }
    case 'presence': {
      if (!Array.isArray(frame.members) || typeof frame.count !== 'number') return { problem: '"members" must be an array and "count" a number' };
      return encodePresence(str(frame.id), String(frame.room), frame.members as PresenceMember[], frame.count);
    }
    case 'joined':
    case 'left':
      return encodePresenceEvent(frame.type, String(frame.room), encodePresenceMember(frame.member as PresenceMember));
    case 'error': {
      const code = String(frame.code);
      if (!errorCodes.has(code)) return { problem: `unknown error code ${JSON.stringify(code)}; service/protocol.ts has ${[...errorCodes].join(', ')}` };
      return encodeError({ code: code as ErrorCode, message: String(frame.message), id: str(frame.id) });
    }
    case 'message': {
      const base = encodeMessage(str(frame.room) ?? null, frame.data, String(frame.from)).toString('utf8');
      if (frame.seq === undefined && frame.epoch === undefined) return base;
      if (typeof frame.seq !== 'string' || !/^\d+$/.test(frame.seq) || typeof frame.epoch !== 'string') {
        return { problem: '"seq" must be a decimal string and "epoch" a string' };
      }
      return `${base.slice(0, -1)},"seq":${JSON.stringify(frame.seq)},"epoch":${JSON.stringify(frame.epoch)}}`;
    }
    default:
      return { problem: `unknown server frame type ${JSON.stringify(frame.type)}` };
  }
}

/**
 * The package.json scripts, and the names of those that run the ops CLI: `ops` (the name the docs use) first, then
 * any other script that runs the CLI's entry file.
 */
export function npmScripts(repoRoot: string): { all: Record<string, string>; ops: string[] } {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
  const all = pkg.scripts ?? {};
  const entry = all.ops?.match(/\bapp\/[\w-]+\.ts\b/)?.[0] ?? 'app/cli.ts';
  const others = Object.keys(all).filter((name) => name !== 'ops' && all[name].includes(entry));
  return { all, ops: [...('ops' in all ? ['ops'] : []), ...others] };
}

/** The commands the ops CLI lists in its --help (commander's "Commands:" section). */
export function opsCommands(helpText: string): Set<string> {
  const commands = new Set<string>();
  const lines = helpText.split('\n');
  const start = lines.findIndex((l) => l.trim() === 'Commands:');
  if (start < 0) return commands;
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === '') break;
    const m = /^ {2}([a-z][a-z-]*)\b/.exec(line);
    if (m) commands.add(m[1]);
  }
  return commands;
}

/**
 * Static checks of shell commands: bash accepts the syntax, every `npm run <script>` exists, and every
 * `npm run <ops script> -- <command>` names a command of the ops CLI.
 */
export function checkShell(
  script: string,
  scripts: { all: Record<string, string>; ops: readonly string[] },
  commands: ReadonlySet<string>,
): string[] {
  const problems: string[] = [];
  const syntax = spawnSync('bash', ['-n'], { input: script, encoding: 'utf8' });
  if (syntax.status !== 0) problems.push(`bash -n: ${syntax.stderr.trim()}`);
  for (const m of script.matchAll(/\bnpm\s+run((?:\s+--?[a-z][\w-]*)*)\s+([\w:.-]+)([^\n;&|]*)/g)) {
    const [, , name, rest] = m;
    if (!(name in scripts.all)) {
      problems.push(`\`npm run ${name}\`: package.json has no script "${name}" (it has ${Object.keys(scripts.all).join(', ')})`);
      continue;
    }
    if (!scripts.ops.includes(name)) continue;
    const args = /^\s+--\s+(.*)$/.exec(rest)?.[1].trim().split(/\s+/) ?? [];
    const command = args.find((a) => !a.startsWith('-'));
    if (command !== undefined && !commands.has(command)) {
      problems.push(`\`npm run ${name} -- ${command}\`: the ops CLI has no command "${command}" (it has ${[...commands].join(', ')})`);
    }
  }
  return problems;
}

/** The commands of a `console` block: its lines that start with `$ `. */
export function consoleCommands(code: string): string {
  return code
    .split('\n')
    .filter((l) => l.startsWith('$ '))
    .map((l) => l.slice(2))
    .join('\n');
}

/** A readable name for a block in test titles. */
export function blockName(block: CodeBlock): string {
  return `${block.file}:${block.line} ${[block.lang, ...block.args].join(' ') || '(no tag)'}`;
}

/** The Markdown files whose blocks are tested: the README, the changelog, the ledger folder's note and docs/. */
export function documentationFiles(repoRoot: string): string[] {
  const docs = readdirSync(join(repoRoot, 'docs')).filter((f) => f.endsWith('.md')).sort();
  return ['README.md', 'CHANGELOG.md', join('releases', 'README.md'), ...docs.map((f) => join('docs', f))];
}
