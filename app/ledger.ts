/**
 * The release ledger file `releases/<env>.json`: format, validation and atomic reads and writes.
 *
 * Users commit these files, so every problem is reported with the file, the field (or the line, for broken JSON and
 * merge conflicts) and what to do. Format 1 ledgers still load; the next write migrates them to the current format.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { ENVIRONMENT_NAME_PATTERN } from './config-releases';
import { displayPath } from './paths';

/** Format version written into every ledger; bump it (and migrate) when the shape changes. */
export const LEDGER_VERSION = 2;

/** Formats this tool reads: 1 (no activation history) is migrated on read and written as LEDGER_VERSION. */
const READABLE_VERSIONS = [1, LEDGER_VERSION] as const;

/**
 * `relay-<semver>-<short commit>-<first 12 hex of the zip's sha256>`; releases built before labels carried the commit
 * read `relay-<semver>-<12 hex>`. Group 1 is the version, group 2 the hash prefix.
 */
export const LABEL_PATTERN = /^relay-(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)-([0-9a-f]{12})$/;

/** Elastic Beanstalk's limit on a version label. */
export const MAX_LABEL_LENGTH = 100;

/** Activations kept in a ledger's history, newest last; older ones are dropped on write. */
export const HISTORY_LIMIT = 50;

export type LedgerErrorCode = 'ledger_corrupt' | 'ledger_conflict' | 'ledger_invalid' | 'ledger_unreadable';

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

const isoTime = (what: string) =>
  z
    .string({ error: (iss) => `expected ${what} as an ISO-8601 UTC time string, got ${show(iss.input)}` })
    .refine(isIsoUtc, { error: (iss) => `expected an ISO-8601 UTC time like "2026-01-31T12:00:00.000Z", got ${show(iss.input)}` });

const labelSchema = z
  .string({ error: (iss) => `expected a label string, got ${show(iss.input)}` })
  .regex(LABEL_PATTERN, { error: (iss) => `expected a label like "relay-1.2.3-0123abc-0123456789ab" (relay-<semver>-<short commit>-<12 hex>), got ${show(iss.input)}` })
  .max(MAX_LABEL_LENGTH, { error: (iss) => `expected a label of at most ${MAX_LABEL_LENGTH} characters (Elastic Beanstalk's limit), got ${typeof iss.input === "string" ? iss.input.length : 0}` });

const releaseSchema = z.strictObject({
  label: labelSchema,
  sha256: hex(64),
  md5: hex(32),
  created: isoTime('the build time'),
  commit: z
    .string({ error: (iss) => `expected a git commit string, got ${show(iss.input)}` })
    .regex(/^(?:[0-9a-f]{7,40}|unknown)$/, { error: (iss) => `expected a git commit (7-40 lowercase hex) or "unknown", got ${show(iss.input)}` }),
  dirty: z.literal(true, { error: (iss) => `expected true (or no field) for a build of uncommitted changes, got ${show(iss.input)}` }).optional(),
  deployed: z.boolean({ error: (iss) => `expected true or false, got ${show(iss.input)}` }).optional(),
});

const activationSchema = z.strictObject({
  label: labelSchema,
  at: isoTime('the activation time'),
  by: z.string({ error: (iss) => `expected who activated it (git user.name), got ${show(iss.input)}` }).min(1, { error: 'expected a non-empty name' }),
  why: z.string({ error: (iss) => `expected why it was activated, got ${show(iss.input)}` }).min(1, { error: 'expected a non-empty reason' }),
  forced: z.literal(true, { error: (iss) => `expected true (or no field) for a guard overridden with --force, got ${show(iss.input)}` }).optional(),
});

const verificationSchema = z.strictObject({
  label: labelSchema,
  at: isoTime('the verification time'),
  passed: z.boolean({ error: (iss) => `expected true or false, got ${show(iss.input)}` }),
  gaps: z.int({ error: (iss) => `expected a count, got ${show(iss.input)}` }).min(0),
  duplicates: z.int({ error: (iss) => `expected a count, got ${show(iss.input)}` }).min(0),
  reordered: z.int({ error: (iss) => `expected a count, got ${show(iss.input)}` }).min(0),
  p99Ms: z.number({ error: (iss) => `expected milliseconds, got ${show(iss.input)}` }).min(0).nullable(),
  clients: z.int({ error: (iss) => `expected a count, got ${show(iss.input)}` }).min(0),
  instances: z.int({ error: (iss) => `expected a count, got ${show(iss.input)}` }).min(0),
});

const ledgerSchema = z.strictObject({
  version: z.union(READABLE_VERSIONS.map((v) => z.literal(v)), {
    error: (iss) => `expected ${READABLE_VERSIONS.join(' or ')} (the ledger formats this tool reads), got ${show(iss.input)}; a newer tool wrote it: update this checkout`,
  }),
  environment: z
    .string({ error: (iss) => `expected the environment name, got ${show(iss.input)}` })
    .regex(ENVIRONMENT_NAME_PATTERN, { error: (iss) => `expected an environment name matching ${String(ENVIRONMENT_NAME_PATTERN)}, got ${show(iss.input)}` }),
  active: z.string({ error: (iss) => `expected the active release's label, got ${show(iss.input)}` }),
  releases: z
    .array(releaseSchema, { error: (iss) => `expected a list of releases, got ${show(iss.input)}` })
    .min(1, { error: 'expected at least one release (delete the file to track the current build)' }),
  history: z.array(activationSchema, { error: (iss) => `expected a list of activations, got ${show(iss.input)}` }).optional(),
  verification: verificationSchema.optional(),
});

/** One retained release. */
export interface LedgerRelease {
  /** Version label, `relay-<semver>-<short commit>-<12 hex of sha256>`. */
  readonly label: string;
  /** Hex SHA-256 of the zip. */
  readonly sha256: string;
  /** Hex MD5 of the zip (the S3 object's etag). */
  readonly md5: string;
  /** When the release was built, ISO-8601 UTC. */
  readonly created: string;
  /** Git commit the release was built from (HEAD, for a dirty build), or "unknown" (format 1 ledgers only). */
  readonly commit: string;
  /**
   * True when built from a working tree with uncommitted changes (`release --allow-dirty`): the commit cannot rebuild
   * it, and it is never promoted past the first environment.
   * @default false
   */
  readonly dirty?: true;
  /**
   * True once the release was deployed to this ledger's environment (set by `npm run ops -- mark-deployed`).
   * @default false
   */
  readonly deployed?: boolean;
}

/** One activation: a release made active by release, promote or rollback (or a format 1 ledger's active one). */
export interface Activation {
  readonly label: string;
  /** ISO-8601 UTC. */
  readonly at: string;
  /** git's user.name of whoever ran the command. */
  readonly by: string;
  /** The command and, for a forced one, the reason given. */
  readonly why: string;
  /** A guard was overridden with --force. */
  readonly forced?: true;
}

/** The last delivery verification (`ops verify`) of the active release in this environment. */
export interface Verification {
  readonly label: string;
  readonly at: string;
  /** Zero gaps and zero duplicates. */
  readonly passed: boolean;
  readonly gaps: number;
  readonly duplicates: number;
  readonly reordered: number;
  /** Delivery latency p99 in milliseconds; null when nothing was delivered. */
  readonly p99Ms: number | null;
  readonly clients: number;
  readonly instances: number;
}

export interface Ledger {
  readonly version: typeof LEDGER_VERSION;
  readonly environment: string;
  /** Label of the release the environment runs; always one of `releases`. */
  readonly active: string;
  /** Retained releases, oldest first. */
  readonly releases: readonly LedgerRelease[];
  /** Activations, oldest first (at most HISTORY_LIMIT). */
  readonly history: readonly Activation[];
  /** The last verification of a release in this environment, if any. */
  readonly verification?: Verification;
}

/** Path of an environment's ledger in `ledgerDir`. */
export function ledgerPath(ledgerDir: string, envName: string): string {
  return join(ledgerDir, `${envName}.json`);
}

/** Validates ledger text; `file` is the ledger's path (its name must be `<environment>.json`). */
export function parseLedger(text: string, file: string): Ledger {
  const shown = displayPath(file);
  const conflict = conflictMarkerLine(text);
  if (conflict !== undefined) {
    const env = basename(file, '.json');
    throw new LedgerError(
      'ledger_conflict',
      shown,
      [`line ${conflict.line}: git merge conflict marker ${JSON.stringify(conflict.text)}; two branches changed this ledger`],
      `Combine both sides with \`npm run ops -- resolve ${env}\` (keeps every release of both, makes the most recently activated one active), ` +
        `or take one side with \`git checkout --ours -- ${shown}\` or \`git checkout --theirs -- ${shown}\`; then commit the result.`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new LedgerError('ledger_corrupt', shown, [`not valid JSON (${describeJsonError(text, err as Error)})`], restoreAdvice(shown));
  }
  const result = ledgerSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${formatPath(issue.path) || '(root)'}: ${describeIssue(issue)}`);
    throw new LedgerError('ledger_invalid', shown, problems, restoreAdvice(shown));
  }
  const parsed = result.data;
  const problems = semanticProblems(parsed, basename(file, '.json'));
  if (problems.length > 0) throw new LedgerError('ledger_invalid', shown, problems, restoreAdvice(shown));
  return migrate(parsed);
}

/** A format 1 ledger has no history: its active release is recorded as the only activation known. */
function migrate(parsed: z.output<typeof ledgerSchema>): Ledger {
  const { version, history, verification, ...rest } = parsed;
  const releases = rest.releases.map((r) => ({ ...r }));
  if (version === LEDGER_VERSION) {
    return { ...rest, version: LEDGER_VERSION, releases, history: history ?? [], ...(verification ? { verification } : {}) };
  }
  const active = releases.find((r) => r.label === rest.active) as LedgerRelease;
  return {
    ...rest,
    version: LEDGER_VERSION,
    releases,
    history: [{ label: active.label, at: active.created, by: 'unknown', why: 'active when the ledger was migrated from format 1' }],
  };
}

/** The first line that starts with a git conflict marker, if any. */
function conflictMarkerLine(text: string): { line: number; text: string } | undefined {
  const lines = text.split(/\r?\n/);
  const index = lines.findIndex((l) => /^(?:<{7}|={7}|>{7}|\|{7})(?: |$)/.test(l));
  return index < 0 ? undefined : { line: index + 1, text: lines[index].length > 60 ? `${lines[index].slice(0, 57)}...` : lines[index] };
}

/** JSON.parse's message with the line and column of the position it names (Node versions differ in whether they say it). */
export function describeJsonError(text: string, err: Error): string {
  const position = /position (\d+)/.exec(err.message);
  const reason = err.message.replace(/ in JSON at position \d+.*$/, '').replace(/ \(line \d+ column \d+\)$/, '');
  if (!position) return `line ${text.split('\n').length}: ${reason === 'Unexpected end of JSON input' ? 'unexpected end of the file' : reason}`;
  const before = text.slice(0, Number(position[1]));
  const line = before.split('\n').length;
  const column = Number(position[1]) - before.lastIndexOf('\n');
  return `line ${line}, column ${column}: ${reason}`;
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
    version: LEDGER_VERSION,
    environment: ledger.environment,
    active: ledger.active,
    releases: ledger.releases.map((r) => ({
      label: r.label,
      sha256: r.sha256,
      md5: r.md5,
      created: r.created,
      commit: r.commit,
      ...(r.dirty ? { dirty: true } : {}),
      ...(r.deployed ? { deployed: true } : {}),
    })),
    history: ledger.history.slice(-HISTORY_LIMIT).map((h) => ({ label: h.label, at: h.at, by: h.by, why: h.why, ...(h.forced ? { forced: true } : {}) })),
    ...(ledger.verification ? { verification: { ...ledger.verification } } : {}),
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
  const shapes: Record<string, object> = { releases: releaseSchema.shape, history: activationSchema.shape, verification: verificationSchema.shape };
  const allowed = Object.keys(issue.path.length === 0 ? ledgerSchema.shape : (shapes[String(issue.path[0])] ?? {}));
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
