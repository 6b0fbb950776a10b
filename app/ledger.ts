/**
 * The release ledger file `releases/<env>.json`: format, validation and atomic reads and writes.
 *
 * Users commit these files, so every problem is reported with the file, the field and what is allowed.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { displayPath } from './paths';

/** Format version written into every ledger; bump it (and migrate) when the shape changes. */
export const LEDGER_VERSION = 1;

/** `relay-<semver>-<first 12 hex of the zip's sha256>`; group 1 is the version, group 2 the hash prefix. */
export const LABEL_PATTERN = /^relay-(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)-([0-9a-f]{12})$/;

export type LedgerErrorCode = 'ledger_corrupt' | 'ledger_invalid' | 'ledger_unreadable';

/** A ledger that cannot be used; `message` names the file and every problem, and says what to do. */
export class LedgerError extends Error {
  readonly code: LedgerErrorCode;
  /** The ledger file as shown to the user (relative to the working directory when inside it). */
  readonly file: string;
  readonly problems: readonly string[];
  constructor(code: LedgerErrorCode, file: string, problems: readonly string[], advice: string) {
    super(problems.map((p) => `${file}: ${p}`).join('\n') + `\n${advice}`);
    this.name = 'LedgerError';
    this.code = code;
    this.file = file;
    this.problems = problems;
  }
}

const hex = (length: number) =>
  z.string({ error: (iss) => `expected a string of ${length} lowercase hex characters, got ${show(iss.input)}` }).regex(
    new RegExp(`^[0-9a-f]{${length}}$`),
    { error: (iss) => `expected ${length} lowercase hex characters, got ${show(iss.input)}` },
  );

const releaseSchema = z.strictObject({
  label: z
    .string({ error: (iss) => `expected a label string, got ${show(iss.input)}` })
    .regex(LABEL_PATTERN, { error: (iss) => `expected a label like "relay-1.2.3-0123456789ab" (relay-<semver>-<12 hex>), got ${show(iss.input)}` }),
  sha256: hex(64),
  md5: hex(32),
  created: z
    .string({ error: (iss) => `expected an ISO-8601 UTC time string, got ${show(iss.input)}` })
    .refine(isIsoUtc, { error: (iss) => `expected an ISO-8601 UTC time like "2026-01-31T12:00:00.000Z", got ${show(iss.input)}` }),
  commit: z
    .string({ error: (iss) => `expected a git commit string, got ${show(iss.input)}` })
    .regex(/^(?:[0-9a-f]{7,40}|unknown)$/, { error: (iss) => `expected a git commit (7-40 lowercase hex) or "unknown", got ${show(iss.input)}` }),
  deployed: z.boolean({ error: (iss) => `expected true or false, got ${show(iss.input)}` }).optional(),
});

const ledgerSchema = z.strictObject({
  version: z.literal(LEDGER_VERSION, { error: (iss) => `expected ${LEDGER_VERSION} (the only ledger format this tool reads), got ${show(iss.input)}` }),
  environment: z.string({ error: (iss) => `expected the environment name, got ${show(iss.input)}` }),
  active: z.string({ error: (iss) => `expected the active release's label, got ${show(iss.input)}` }),
  releases: z
    .array(releaseSchema, { error: (iss) => `expected a list of releases, got ${show(iss.input)}` })
    .min(1, { error: 'expected at least one release (delete the file to track the current build)' }),
});

/** One retained release. */
export interface LedgerRelease {
  /** Version label, `relay-<semver>-<12 hex of sha256>`. */
  readonly label: string;
  /** Hex SHA-256 of the zip. */
  readonly sha256: string;
  /** Hex MD5 of the zip (the S3 object's etag). */
  readonly md5: string;
  /** When the release was built, ISO-8601 UTC. */
  readonly created: string;
  /** Git commit the release was built from, or "unknown". */
  readonly commit: string;
  /**
   * True once the release was deployed to this ledger's environment (set by `npm run ops -- mark-deployed`): its zip is in
   * that environment's bucket, so synth needs no local copy.
   * @default false
   */
  readonly deployed?: boolean;
}

export interface Ledger {
  readonly version: typeof LEDGER_VERSION;
  readonly environment: string;
  /** Label of the release the environment runs; always one of `releases`. */
  readonly active: string;
  /** Retained releases, oldest first. */
  readonly releases: readonly LedgerRelease[];
}

/** Path of an environment's ledger in `ledgerDir`. */
export function ledgerPath(ledgerDir: string, envName: string): string {
  return join(ledgerDir, `${envName}.json`);
}

/** Validates ledger text; `file` is the ledger's path (its name must be `<environment>.json`). */
export function parseLedger(text: string, file: string): Ledger {
  const shown = displayPath(file);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new LedgerError('ledger_corrupt', shown, [`not valid JSON (${(err as Error).message})`], restoreAdvice(shown));
  }
  const result = ledgerSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${formatPath(issue.path) || '(root)'}: ${describeIssue(issue)}`);
    throw new LedgerError('ledger_invalid', shown, problems, restoreAdvice(shown));
  }
  const ledger = result.data;
  const problems = semanticProblems(ledger, basename(file, '.json'));
  if (problems.length > 0) throw new LedgerError('ledger_invalid', shown, problems, restoreAdvice(shown));
  return ledger;
}

/** Reads an environment's ledger; `undefined` when the file does not exist (the environment tracks the current build). */
export function readLedger(ledgerDir: string, envName: string): Ledger | undefined {
  const file = ledgerPath(ledgerDir, envName);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    const shown = displayPath(file);
    throw new LedgerError('ledger_unreadable', shown, [`cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})`], 'Check its permissions and run the command again.');
  }
  return parseLedger(text, file);
}

/** The bytes written for a ledger: stable key order, two-space indent, trailing newline (quiet git diffs). */
export function serializeLedger(ledger: Ledger): string {
  const ordered = {
    version: ledger.version,
    environment: ledger.environment,
    active: ledger.active,
    releases: ledger.releases.map((r) => ({
      label: r.label,
      sha256: r.sha256,
      md5: r.md5,
      created: r.created,
      commit: r.commit,
      ...(r.deployed ? { deployed: true } : {}),
    })),
  };
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

/**
 * Validates and writes a ledger atomically: a temp file in the same folder, fsync, rename over the old file.
 * A crash leaves either the old or the new ledger, never half of one; an invalid ledger is never written.
 */
export function writeLedger(ledgerDir: string, ledger: Ledger): string {
  const file = ledgerPath(ledgerDir, ledger.environment);
  const text = serializeLedger(ledger);
  parseLedger(text, file);
  mkdirSync(ledgerDir, { recursive: true });
  const temp = join(dirname(file), `.${basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    const fd = openSync(temp, 'w', 0o644);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, file);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
  syncDir(dirname(file));
  return file;
}

function semanticProblems(ledger: z.output<typeof ledgerSchema>, fileEnv: string): string[] {
  const problems: string[] = [];
  if (ledger.environment !== fileEnv) {
    problems.push(`environment: expected ${show(fileEnv)} (the file name), got ${show(ledger.environment)}`);
  }
  const seen = new Map<string, number>();
  ledger.releases.forEach((r, i) => {
    const first = seen.get(r.label);
    if (first !== undefined) problems.push(`releases[${i}].label: ${show(r.label)} is already releases[${first}]; labels must be unique`);
    else seen.set(r.label, i);
    const prefix = LABEL_PATTERN.exec(r.label)?.[2];
    if (prefix !== undefined && prefix !== r.sha256.slice(0, 12)) {
      problems.push(`releases[${i}].label: ${show(r.label)} ends in ${prefix} but sha256 starts with ${r.sha256.slice(0, 12)}; the label must end with the first 12 hex of sha256`);
    }
  });
  if (!seen.has(ledger.active)) {
    problems.push(`active: ${show(ledger.active)} is not one of the releases (${[...seen.keys()].join(', ')})`);
  }
  return problems;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code !== 'unrecognized_keys') return issue.message;
  const allowed = Object.keys(issue.path.length === 0 ? ledgerSchema.shape : releaseSchema.shape);
  return `unknown field${issue.keys.length === 1 ? '' : 's'} ${issue.keys.map((k) => show(k)).join(', ')}; allowed fields: ${allowed.join(', ')}`;
}

function restoreAdvice(shown: string): string {
  return `Fix the file by hand, or restore the committed version with \`git checkout -- ${shown}\` (see \`git log -p -- ${shown}\`).`;
}

function isIsoUtc(value: string): boolean {
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?Z$/.test(value) && !Number.isNaN(Date.parse(value));
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, key) => (typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key)), '');
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

// The rename is durable only once the folder entry is on disk; some platforms cannot open folders, which is fine.
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // best effort
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
