/**
 * Offline comparison of two `cdktf.out` folders: per stack, the Terraform blocks added, removed and changed,
 * with the changed attribute paths. Sensitive values are masked here, before any renderer sees them.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Attribute names whose values are never printed. */
const SENSITIVE_NAME = /password|passwd|secret|token|private_?key|credential|api_?key/i;
const MASK = '(sensitive)';
const MAX_VALUE_CHARS = 160;

export class SynthDiffError extends Error {
  readonly code = 'synth_diff_input';
  constructor(message: string) {
    super(message);
    this.name = 'SynthDiffError';
  }
}

/** Parsed `stacks/<name>/cdk.tf.json` documents by stack name. */
export type SynthTree = ReadonlyMap<string, unknown>;

export interface AttributeChange {
  /** Path inside the block, e.g. `version_label`, `setting[3].value`, `tags.Name`. */
  readonly path: string;
  readonly kind: 'added' | 'removed' | 'changed';
  /** Display values (JSON, shortened; `(sensitive)` when masked); absent on the side where the path does not exist. */
  readonly before?: string;
  readonly after?: string;
}

export interface BlockChange {
  /** Terraform address, e.g. `aws_s3_object.releases_abc`, `data.aws_vpc.default`, `output.url`, `provider.aws`, `terraform`. */
  readonly address: string;
  readonly attributes: readonly AttributeChange[];
}

export interface StackDiff {
  readonly stack: string;
  /** `added`/`removed`: the whole stack exists on one side only. */
  readonly status: 'added' | 'removed' | 'changed' | 'unchanged';
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly changed: readonly BlockChange[];
}

export interface SynthDiff {
  readonly equal: boolean;
  readonly stacks: readonly StackDiff[];
}

/** Reads every `stacks/<name>/cdk.tf.json` of a cdktf.out folder (or of a folder holding `cdktf.out`). */
export function loadSynthTree(dir: string): SynthTree {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new SynthDiffError(`${dir}: no such folder; pass a cdktf.out folder written by \`npm run synth\``);
  }
  const root = existsSync(join(dir, 'stacks')) ? dir : join(dir, 'cdktf.out');
  const stacksDir = join(root, 'stacks');
  if (!existsSync(stacksDir)) {
    throw new SynthDiffError(`${dir}: has no stacks/ folder; pass a cdktf.out folder written by \`npm run synth\``);
  }
  const tree = new Map<string, unknown>();
  for (const name of readdirSync(stacksDir).sort()) {
    const file = join(stacksDir, name, 'cdk.tf.json');
    if (!existsSync(file)) continue;
    try {
      tree.set(name, JSON.parse(readFileSync(file, 'utf8')));
    } catch (err) {
      throw new SynthDiffError(`${file}: not valid JSON (${(err as Error).message}); synthesize again with \`npm run synth\``);
    }
  }
  if (tree.size === 0) throw new SynthDiffError(`${dir}: no stacks/<name>/cdk.tf.json files; synthesize first with \`npm run synth\``);
  return tree;
}

/** Compares two synthesized trees; pure, and the result holds no sensitive value. */
export function diffSynth(base: SynthTree, head: SynthTree): SynthDiff {
  const names = [...new Set([...base.keys(), ...head.keys()])].sort();
  const stacks = names.map((name): StackDiff => {
    const before = base.has(name) ? blocksOf(base.get(name)) : new Map<string, Block>();
    const after = head.has(name) ? blocksOf(head.get(name)) : new Map<string, Block>();
    const added = [...after.keys()].filter((a) => !before.has(a)).sort();
    const removed = [...before.keys()].filter((a) => !after.has(a)).sort();
    const changed: BlockChange[] = [];
    for (const address of [...before.keys()].filter((a) => after.has(a)).sort()) {
      const b = before.get(address) as Block;
      const h = after.get(address) as Block;
      const attributes: AttributeChange[] = [];
      compare(b.body, h.body, '', b.sensitive || h.sensitive, attributes);
      if (attributes.length > 0) changed.push({ address, attributes });
    }
    const status = !base.has(name) ? 'added' : !head.has(name) ? 'removed' : added.length + removed.length + changed.length > 0 ? 'changed' : 'unchanged';
    return { stack: name, status, added, removed, changed };
  });
  return { equal: stacks.every((s) => s.status === 'unchanged'), stacks };
}

/** Plain text for a terminal. */
export function renderText(diff: SynthDiff): string {
  if (diff.equal) return `No differences in ${diff.stacks.length} stack${diff.stacks.length === 1 ? '' : 's'}.\n`;
  const lines: string[] = [];
  for (const s of diff.stacks) {
    if (s.status === 'unchanged') {
      lines.push(`${s.stack}: unchanged`);
      continue;
    }
    const note = s.status === 'changed' ? '' : ` (stack ${s.status})`;
    lines.push(`${s.stack}: ${s.added.length} added, ${s.removed.length} removed, ${s.changed.length} changed${note}`);
    for (const a of s.added) lines.push(`  + ${a}`);
    for (const r of s.removed) lines.push(`  - ${r}`);
    for (const c of s.changed) {
      lines.push(`  ~ ${c.address}`);
      for (const attr of c.attributes) lines.push(`      ${attr.path}: ${describeChange(attr)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Markdown for a pull-request comment or job summary: a summary table, then details per changed stack. */
export function renderMarkdown(diff: SynthDiff): string {
  const lines = ['## Synth diff', ''];
  if (diff.equal) {
    lines.push(`No differences in ${diff.stacks.length} stack${diff.stacks.length === 1 ? '' : 's'}.`);
    return `${lines.join('\n')}\n`;
  }
  lines.push('| Stack | Status | Added | Removed | Changed |', '| --- | --- | ---: | ---: | ---: |');
  for (const s of diff.stacks) lines.push(`| ${code(s.stack)} | ${s.status} | ${s.added.length} | ${s.removed.length} | ${s.changed.length} |`);
  for (const s of diff.stacks.filter((x) => x.status !== 'unchanged')) {
    lines.push('', `### ${code(s.stack)}`, '');
    for (const a of s.added) lines.push(`- added ${code(a)}`);
    for (const r of s.removed) lines.push(`- removed ${code(r)}`);
    for (const c of s.changed) {
      lines.push(`- changed ${code(c.address)}`);
      for (const attr of c.attributes) lines.push(`  - ${code(attr.path)}: ${describeChange(attr, code)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

interface Block {
  readonly body: unknown;
  /** Every value in the block is sensitive (an output or variable declared `sensitive`). */
  readonly sensitive: boolean;
}

// Terraform JSON's block kinds: two-level (type, name), one-level (name) and single blocks.
function blocksOf(doc: unknown): Map<string, Block> {
  const blocks = new Map<string, Block>();
  if (!isRecord(doc)) return blocks;
  for (const [kind, value] of Object.entries(doc)) {
    if (kind === '//') continue; // cdktf metadata (construct paths, versions), not Terraform configuration
    if ((kind === 'resource' || kind === 'data') && isRecord(value)) {
      for (const [type, byName] of Object.entries(value)) {
        if (!isRecord(byName)) continue;
        for (const [name, body] of Object.entries(byName)) {
          blocks.set(`${kind === 'data' ? 'data.' : ''}${type}.${name}`, { body: stripMetadata(body), sensitive: false });
        }
      }
    } else if ((kind === 'output' || kind === 'variable' || kind === 'module' || kind === 'provider') && isRecord(value)) {
      for (const [name, body] of Object.entries(value)) {
        const sensitive = isRecord(body) && body.sensitive === true;
        blocks.set(`${kind}.${name}`, { body: stripMetadata(body), sensitive });
      }
    } else {
      blocks.set(kind, { body: stripMetadata(value), sensitive: false });
    }
  }
  return blocks;
}

function stripMetadata(value: unknown): unknown {
  if (!isRecord(value)) return value;
  const rest = { ...value };
  delete rest['//'];
  return rest;
}

function compare(before: unknown, after: unknown, path: string, sensitive: boolean, out: AttributeChange[]): void {
  if (isRecord(before) && isRecord(after)) {
    // `{name: "AUTH_TOKEN", value: …}` pairs (Beanstalk settings, tags lists) carry the sensitive name beside the value.
    const pairSensitive = (obj: Record<string, unknown>) =>
      [obj.name, obj.key, obj.option_name].some((n) => typeof n === 'string' && SENSITIVE_NAME.test(n));
    const inner = sensitive || pairSensitive(before) || pairSensitive(after);
    for (const key of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) {
      if (key === '//') continue;
      const childPath = path ? `${path}${formatKey(key)}` : formatKey(key).replace(/^\./, '');
      const childSensitive = sensitive || SENSITIVE_NAME.test(key) || (inner && key === 'value');
      compareChild(before, after, key, childPath, childSensitive, out);
    }
    return;
  }
  if (Array.isArray(before) && Array.isArray(after)) {
    const length = Math.max(before.length, after.length);
    for (let i = 0; i < length; i++) {
      const childPath = `${path}[${i}]`;
      if (i >= before.length) out.push({ path: childPath, kind: 'added', after: display(after[i], sensitive) });
      else if (i >= after.length) out.push({ path: childPath, kind: 'removed', before: display(before[i], sensitive) });
      else compare(before[i], after[i], childPath, sensitive, out);
    }
    return;
  }
  if (!deepEqual(before, after)) {
    out.push({ path: path || '(value)', kind: 'changed', before: display(before, sensitive), after: display(after, sensitive) });
  }
}

function compareChild(
  before: Record<string, unknown>,
  after: Record<string, unknown>,
  key: string,
  path: string,
  sensitive: boolean,
  out: AttributeChange[],
): void {
  const inBefore = Object.prototype.hasOwnProperty.call(before, key);
  const inAfter = Object.prototype.hasOwnProperty.call(after, key);
  if (!inBefore) out.push({ path, kind: 'added', after: display(after[key], sensitive) });
  else if (!inAfter) out.push({ path, kind: 'removed', before: display(before[key], sensitive) });
  else compare(before[key], after[key], path, sensitive, out);
}

function describeChange(attr: AttributeChange, wrap: (s: string) => string = (s) => s): string {
  if (attr.kind === 'added') return `added ${wrap(attr.after ?? '')}`;
  if (attr.kind === 'removed') return `removed (was ${wrap(attr.before ?? '')})`;
  return `${wrap(attr.before ?? '')} → ${wrap(attr.after ?? '')}`;
}

// Values are shown only when not sensitive anywhere inside: a masked name deep in an object masks the whole object.
function display(value: unknown, sensitive: boolean): string {
  if (sensitive || containsSensitiveName(value)) return MASK;
  const text = JSON.stringify(value) ?? 'null';
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS - 3)}...` : text;
}

function containsSensitiveName(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(containsSensitiveName);
  if (!isRecord(value)) return false;
  return Object.entries(value).some(
    ([k, v]) => SENSITIVE_NAME.test(k) || (typeof v === 'string' && (k === 'name' || k === 'key') && SENSITIVE_NAME.test(v)) || containsSensitiveName(v),
  );
}

function formatKey(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

function code(text: string): string {
  const safe = text.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
  return safe.includes('`') ? `\`\` ${safe} \`\`` : `\`${safe}\``;
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (!isRecord(value)) return value;
  return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical(value[k])]));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
