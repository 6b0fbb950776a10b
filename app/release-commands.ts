/**
 * The ledger-changing ops commands: release, promote, rollback, prune, mark-deployed, resolve, rebuild and list.
 * Each one reads and validates everything it needs, checks its guards, and only then writes one ledger atomically:
 * a refused command leaves every ledger byte-identical.
 */
import { relative } from 'node:path';
import { buildArtifact } from './artifact';
import { loadConfig, type AppConfig, type EnvironmentConfig } from './config';
import { isFirstEnvironment, previousEnvironment } from './config-releases';
import { git, gitUserName, headCommit, uncommittedChanges } from './git';
import { ledgerPath, LEDGER_VERSION, parseLedger, readLedger, writeLedger, type Activation, type Ledger, type LedgerRelease } from './ledger';
import { displayPath, REPO_ROOT } from './paths';
import { rebuildCacheDir, rebuildKey, rebuildReleases } from './rebuild';
import { CodedError } from './coded-error';

/** A refused command: bad input or a state the command cannot act on. */
export class CliError extends CodedError<string> {}

export interface CommandContext {
  readonly configFile: string;
  readonly ledgerDir: string;
  readonly artifactsDir: string;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
  readonly now: Date;
  /** The git checkout releases are built from. @default REPO_ROOT */
  readonly repoRoot?: string;
}

/** `--force --reason "…"`: overrides a guard; the reason is recorded in the ledger's history. */
export interface Override {
  readonly force?: boolean;
  readonly reason?: string;
}

/** How many previously active releases pruning always keeps. */
export const KEEP_PREVIOUSLY_ACTIVE = 2;

export async function release(envName: string, opts: Override & { allowDirty?: boolean }, ctx: CommandContext): Promise<void> {
  const config = loadConfig(ctx.configFile);
  const env = environment(config, envName, ctx);
  checkOverride(opts);
  const ledger = readLedger(ctx.ledgerDir, env.name);
  const repoRoot = ctx.repoRoot ?? REPO_ROOT;
  const commit = headCommit(repoRoot);
  const changes = uncommittedChanges(repoRoot, [ctx.ledgerDir]);
  const dirty = changes.length > 0;
  if (dirty && !opts.allowDirty) {
    const shown = changes.slice(0, 10).map((c) => `  ${c}`).join('\n') + (changes.length > 10 ? `\n  … and ${changes.length - 10} more` : '');
    throw new CliError(
      'dirty_tree',
      `refusing to release ${env.name}: the working tree has uncommitted changes, so commit ${commit.slice(0, 12)} cannot rebuild what would be released:\n${shown}\n` +
        'Commit (or stash) them and run the command again; or pass --allow-dirty to record the release as dirty (it can then never leave ' +
        `${config.promotionOrder[0]}).`,
    );
  }
  if (dirty && !isFirstEnvironment(config.promotionOrder, env.name)) {
    throw new CliError(
      'dirty_release',
      `refusing to release uncommitted changes to ${env.name}: a dirty release never goes past ${config.promotionOrder[0]}, the first environment of the promotion order; commit, then release to ${config.promotionOrder[0]}`,
    );
  }
  const previous = previousEnvironment(config.promotionOrder, env.name);
  let forced = false;
  if (previous !== undefined) {
    forced = guard(
      opts,
      'skips_promotion_order',
      `refusing to release a new build straight to ${env.name}: releases start in ${config.promotionOrder[0]} and are promoted ` +
        `(${config.promotionOrder.join(' → ')}). Run \`npm run ops -- release ${config.promotionOrder[0]}\` and promote it, ` +
        `or override with --force --reason "<why>" (recorded in ${shownLedger(ctx, env.name)})`,
    );
  }

  const artifact = await buildArtifact({ outDir: ctx.artifactsDir, commit });
  const file = shownLedger(ctx, env.name);
  const existing = ledger?.releases.find((r) => r.label === artifact.label && r.sha256 === artifact.sha256);
  if (ledger && existing && ledger.active === artifact.label) {
    ctx.out(`${env.name}: ${artifact.label} is already the active release in ${file}; nothing changed.\n`);
    return;
  }
  const entry: LedgerRelease = existing ?? {
    label: artifact.label,
    sha256: artifact.sha256,
    md5: artifact.md5,
    created: ctx.now.toISOString(),
    commit,
    ...(dirty ? { dirty: true as const } : {}),
  };
  const releases = existing ? [...(ledger?.releases ?? [])] : [...(ledger?.releases ?? []), entry];
  const why = opts.reason ?? (existing ? 'release (already retained)' : `release of ${commit.slice(0, 12)}${dirty ? ' with uncommitted changes' : ''}`);
  const next = activate(ledger, env.name, releases, entry.label, activation(ctx, repoRoot, entry.label, why, forced));
  const { kept, pruned } = pruneLedger(next, env.retainReleases);
  writeLedger(ctx.ledgerDir, kept);
  ctx.out(
    existing
      ? `${env.name}: ${artifact.label} was already retained; it is now the active release (was ${ledger?.active}).\n`
      : `${env.name}: released ${artifact.label}${dirty ? ' (dirty)' : ''} (now active${ledger ? `, was ${ledger.active}` : ''}).\n`,
  );
  reportPruned(env, pruned, ctx);
  ctx.out(`Wrote ${file}; commit it and deploy to roll it out.\n`);
}

export function promote(fromName: string, toName: string, opts: Override, ctx: CommandContext): void {
  const config = loadConfig(ctx.configFile);
  const from = environment(config, fromName, ctx);
  const to = environment(config, toName, ctx);
  checkOverride(opts);
  if (from.name === to.name) throw new CliError('same_environment', `cannot promote ${from.name} to itself; name two different environments`);
  const source = requireLedger(from.name, ctx);
  const target = readLedger(ctx.ledgerDir, to.name);
  const entry = source.releases.find((r) => r.label === source.active) as LedgerRelease;

  if (entry.dirty && !isFirstEnvironment(config.promotionOrder, to.name)) {
    throw new CliError(
      'dirty_release',
      `refusing to promote ${entry.label} to ${to.name}: it was built from uncommitted changes (dirty) and never goes past ${config.promotionOrder[0]}; ` +
        `commit the changes, \`npm run ops -- release ${config.promotionOrder[0]}\` and promote that`,
    );
  }
  const previous = previousEnvironment(config.promotionOrder, to.name);
  const previousLedger = previous === undefined ? undefined : readLedger(ctx.ledgerDir, previous);
  let forced = false;
  if (previous !== undefined && !wasActive(previousLedger, entry.label)) {
    forced = guard(
      opts,
      'not_active_before',
      `refusing to promote ${entry.label} to ${to.name}: it has never been active in ${previous}, the environment before ${to.name} ` +
        `in the promotion order (${config.promotionOrder.join(' → ')}). ` +
        (previous === from.name ? '' : `Promote it to ${previous} first (\`npm run ops -- promote ${from.name} ${previous}\`), then from there; `) +
        `override with --force --reason "<why>" (recorded in ${shownLedger(ctx, to.name)})`,
    );
  }
  if (previous !== undefined && to.requireVerification) {
    const v = previousLedger?.verification;
    if (!(v?.label === entry.label && v.passed)) {
      const seen = v === undefined ? 'has no verification' : v.label !== entry.label ? `last verified ${v.label}` : `failed its last verification (${v.gaps} gaps, ${v.duplicates} duplicates, ${v.at})`;
      forced = guard(
        opts,
        'not_verified',
        `refusing to promote ${entry.label} to ${to.name}: ${to.name} requires a passing delivery verification of it in ${previous}, which ${seen}. ` +
          `Run \`npm run ops -- verify ${previous}\` while it runs ${entry.label} (and commit the ledger), or override with --force --reason "<why>"`,
      );
    }
  }

  const shownTarget = shownLedger(ctx, to.name);
  const existing = target?.releases.find((r) => r.label === entry.label);
  if (target && existing && target.active === entry.label) {
    ctx.out(`${to.name}: ${entry.label} is already the active release in ${shownTarget}; nothing changed.\n`);
    return;
  }
  // The target's own deployment state starts over: the zip is in the source environment's bucket, not the target's.
  const copy: LedgerRelease = { label: entry.label, sha256: entry.sha256, md5: entry.md5, created: entry.created, commit: entry.commit, ...(entry.dirty ? { dirty: true as const } : {}) };
  const releases = existing ? [...(target?.releases ?? [])] : [...(target?.releases ?? []), copy];
  const why = opts.reason ?? `promoted from ${from.name}`;
  const next = activate(target, to.name, releases, entry.label, activation(ctx, ctx.repoRoot ?? REPO_ROOT, entry.label, why, forced));
  const { kept, pruned } = pruneLedger(next, to.retainReleases);
  writeLedger(ctx.ledgerDir, kept);
  ctx.out(`${to.name}: promoted ${entry.label} from ${from.name} (now active${target ? `, was ${target.active}` : ''})${forced ? ', guard overridden' : ''}.\n`);
  reportPruned(to, pruned, ctx);
  ctx.out(`Wrote ${shownTarget}; commit it and deploy to roll it out.\n`);
}

export function rollback(envName: string, label: string | undefined, opts: Override, ctx: CommandContext): void {
  const config = loadConfig(ctx.configFile);
  const env = environment(config, envName, ctx);
  const ledger = requireLedger(env.name, ctx);
  const file = shownLedger(ctx, env.name);
  let target: LedgerRelease;
  if (label !== undefined) {
    target = findRelease(ledger, label, file);
    if (target.label === ledger.active) {
      ctx.out(`${env.name}: ${label} is already the active release in ${file}; nothing changed.\n`);
      return;
    }
  } else {
    const previous = previouslyActive(ledger)[0];
    if (previous === undefined) {
      throw new CliError(
        'nothing_previous',
        `cannot roll back ${env.name}: no release retained in ${file} was active before ${ledger.active}; ` +
          `name one instead (\`npm run ops -- rollback ${env.name} <label>\`, see \`npm run ops -- list ${env.name}\`)`,
      );
    }
    target = previous;
  }
  const why = opts.reason ?? `rollback from ${ledger.active}`;
  writeLedger(ctx.ledgerDir, activate(ledger, env.name, ledger.releases, target.label, activation(ctx, ctx.repoRoot ?? REPO_ROOT, target.label, why, false)));
  ctx.out(`${env.name}: active release ${ledger.active} -> ${target.label}.\nWrote ${file}; commit it and deploy to roll it out.\n`);
}

export function prune(envName: string, labels: readonly string[], ctx: CommandContext): void {
  const config = loadConfig(ctx.configFile);
  const env = environment(config, envName, ctx);
  const ledger = requireLedger(env.name, ctx);
  const file = shownLedger(ctx, env.name);
  let result: { kept: Ledger; pruned: LedgerRelease[] };
  if (labels.length === 0) {
    result = pruneLedger(ledger, env.retainReleases);
  } else {
    const protectedLabels = protectedReleases(ledger);
    const drop = new Set(labels.map((l) => findRelease(ledger, l, file).label));
    const refused = [...drop].filter((l) => protectedLabels.has(l));
    if (refused.length > 0) {
      throw new CliError(
        'protected_release',
        `refusing to prune ${refused.join(', ')} from ${env.name}: pruning never removes the active release or the last ${KEEP_PREVIOUSLY_ACTIVE} previously active ones ` +
          `(${[...protectedLabels].join(', ')}), so a rollback always has somewhere to go. Release or roll back first.`,
      );
    }
    result = { kept: { ...ledger, releases: ledger.releases.filter((r) => !drop.has(r.label)) }, pruned: ledger.releases.filter((r) => drop.has(r.label)) };
  }
  if (result.pruned.length === 0) {
    ctx.out(`${env.name}: nothing to prune in ${file} (${ledger.releases.length} retained, keeping the newest ${env.retainReleases} and the last ${KEEP_PREVIOUSLY_ACTIVE} previously active).\n`);
    return;
  }
  writeLedger(ctx.ledgerDir, result.kept);
  reportPruned(env, result.pruned, ctx);
  ctx.out(`Wrote ${file}; commit it and deploy: the pruned application versions leave the stack.\n`);
}

export function markDeployed(envName: string, label: string | undefined, ctx: CommandContext): void {
  const env = environment(loadConfig(ctx.configFile), envName, ctx);
  const ledger = requireLedger(env.name, ctx);
  const file = shownLedger(ctx, env.name);
  const target = findRelease(ledger, label ?? ledger.active, file);
  if (target.deployed) {
    ctx.out(`${env.name}: ${target.label} is already marked deployed in ${file}; nothing changed.\n`);
    return;
  }
  const releases = ledger.releases.map((r) => (r.label === target.label ? { ...r, deployed: true } : r));
  writeLedger(ctx.ledgerDir, { ...ledger, releases });
  ctx.out(`${env.name}: marked ${target.label} deployed in ${file}.\n`);
}

/** Rebuilds a release from its recorded commit (always, ignoring caches) and verifies the bytes. */
export async function rebuild(label: string, ctx: CommandContext): Promise<void> {
  const config = loadConfig(ctx.configFile);
  const holders = config.environments
    .map((e) => ({ env: e.name, release: readLedger(ctx.ledgerDir, e.name)?.releases.find((r) => r.label === label) }))
    .filter((h): h is { env: string; release: LedgerRelease } => h.release !== undefined);
  if (holders.length === 0) {
    const all = config.environments.flatMap((e) => readLedger(ctx.ledgerDir, e.name)?.releases.map((r) => r.label) ?? []);
    throw new CliError('unknown_label', `unknown label "${label}": no ledger in ${displayPath(ctx.ledgerDir)} retains it${all.length > 0 ? ` (they retain ${[...new Set(all)].join(', ')})` : ''}`);
  }
  const { release: entry, env } = holders[0];
  const { zips, failures } = await rebuildReleases([entry], {
    repoRoot: ctx.repoRoot ?? REPO_ROOT,
    cacheDir: rebuildCacheDir(ctx.artifactsDir),
    log: (line) => ctx.err(`${line}\n`),
    ignoreCache: true,
  });
  const failure = failures.get(rebuildKey(entry));
  if (failure) throw failure;
  ctx.out(`${label}: rebuilt from ${entry.commit}; sha256 ${entry.sha256} matches ${shownLedger(ctx, env)}; zip at ${displayPath(zips.get(rebuildKey(entry)) as string)}\n`);
}

/** Combines both sides of a merge-conflicted ledger: every release of either, the most recently activated one active. */
export function resolve(envName: string, ctx: CommandContext): void {
  const env = environment(loadConfig(ctx.configFile), envName, ctx);
  const file = ledgerPath(ctx.ledgerDir, env.name);
  const top = git(ctx.ledgerDir, ['rev-parse', '--show-toplevel']).trim();
  const rel = relative(top, file).split('\\').join('/');
  const side = (stage: 2 | 3): Ledger => {
    let text: string;
    try {
      text = git(top, ['show', `:${stage}:${rel}`]);
    } catch {
      throw new CliError('not_conflicted', `${displayPath(file)} is not in a merge conflict (git has no "${stage === 2 ? 'ours' : 'theirs'}" version of it); nothing to resolve`);
    }
    return parseLedger(text, file);
  };
  const ours = side(2);
  const theirs = side(3);
  const byLabel = new Map<string, LedgerRelease>();
  for (const r of [...ours.releases, ...theirs.releases]) {
    const seen = byLabel.get(r.label);
    if (seen && seen.sha256 !== r.sha256) {
      throw new CliError('ledger_disagree', `cannot combine ${displayPath(file)}: both sides retain ${r.label} with different sha256 (${seen.sha256}, ${r.sha256}); fix one side by hand`);
    }
    byLabel.set(r.label, { ...seen, ...r, ...(seen?.deployed || r.deployed ? { deployed: true } : {}) });
  }
  const key = (h: Activation) => `${h.at}\0${h.label}\0${h.by}\0${h.why}`;
  const history = [...new Map([...ours.history, ...theirs.history].map((h) => [key(h), h])).values()].sort((a, b) => a.at.localeCompare(b.at) || a.label.localeCompare(b.label));
  const latest = history.at(-1);
  const active = latest && byLabel.has(latest.label) ? latest.label : ours.active;
  const releases = [...byLabel.values()].sort((a, b) => a.created.localeCompare(b.created) || a.label.localeCompare(b.label));
  const verification = [ours.verification, theirs.verification].filter((v) => v?.label === active).sort((a, b) => (b?.at ?? '').localeCompare(a?.at ?? ''))[0];
  const merged: Ledger = { version: LEDGER_VERSION, environment: env.name, active, releases, history, ...(verification ? { verification } : {}) };
  const { kept, pruned } = pruneLedger(merged, env.retainReleases);
  writeLedger(ctx.ledgerDir, kept);
  ctx.out(`${env.name}: combined both sides of the merge: ${kept.releases.length} releases, active ${active}${latest ? ` (activated last, ${latest.at} by ${latest.by})` : ''}.\n`);
  reportPruned(env, pruned, ctx);
  ctx.out(`Wrote ${displayPath(file)}; \`git add\` it and commit the merge.\n`);
}

export function list(envName: string, ctx: CommandContext): void {
  const env = environment(loadConfig(ctx.configFile), envName, ctx);
  const ledger = readLedger(ctx.ledgerDir, env.name);
  const file = shownLedger(ctx, env.name);
  if (!ledger) {
    ctx.out(`${env.name}: no ledger (${file} does not exist); the environment tracks the current build. Run \`npm run ops -- release ${env.name}\` to start one.\n`);
    return;
  }
  const releases = table([
    ['', 'LABEL', 'AGE', 'CREATED', 'COMMIT', 'DEPLOYED'],
    ...ledger.releases.map((r) => [
      r.label === ledger.active ? '*' : '',
      r.label,
      formatAge(ctx.now.getTime() - Date.parse(r.created)),
      r.created,
      `${r.commit.slice(0, 12)}${r.dirty ? ' (dirty)' : ''}`,
      r.deployed ? 'yes' : 'no',
    ]),
  ]);
  const history = table([['ACTIVATED', 'LABEL', 'BY', 'WHY'], ...[...ledger.history].reverse().map((h) => [h.at, h.label, h.by, `${h.forced ? 'forced: ' : ''}${h.why}`])]);
  const v = ledger.verification;
  const verified = v
    ? `last verification: ${v.label} at ${v.at}: ${v.passed ? 'passed' : 'FAILED'} (${v.gaps} gaps, ${v.duplicates} duplicates, p99 ${v.p99Ms === null ? '-' : `${v.p99Ms} ms`})\n`
    : '';
  ctx.out(
    `${releases}${ledger.releases.length} retained (keeping the newest ${env.retainReleases} and the last ${KEEP_PREVIOUSLY_ACTIVE} previously active); * = active\n\n` +
      `${history}${verified}`,
  );
}

/** Labels pruning never removes: the active release and the last KEEP_PREVIOUSLY_ACTIVE previously active ones. */
export function protectedReleases(ledger: Ledger): Set<string> {
  return new Set([ledger.active, ...previouslyActive(ledger).slice(0, KEEP_PREVIOUSLY_ACTIVE).map((r) => r.label)]);
}

/** Retained releases that were active before the current one, most recent first, each once. */
export function previouslyActive(ledger: Ledger): LedgerRelease[] {
  const out: LedgerRelease[] = [];
  for (const h of [...ledger.history].reverse()) {
    const r = ledger.releases.find((x) => x.label === h.label);
    if (r && r.label !== ledger.active && !out.includes(r)) out.push(r);
  }
  return out;
}

/** Keeps the newest `keep` releases (the list is oldest first) plus every protected one. */
export function pruneLedger(ledger: Ledger, keep: number): { kept: Ledger; pruned: LedgerRelease[] } {
  const protectedLabels = protectedReleases(ledger);
  const releases = [...ledger.releases];
  const pruned: LedgerRelease[] = [];
  while (releases.length > keep) {
    const oldest = releases.findIndex((r) => !protectedLabels.has(r.label));
    if (oldest < 0) break;
    pruned.push(...releases.splice(oldest, 1));
  }
  return { kept: { ...ledger, releases }, pruned };
}

function wasActive(ledger: Ledger | undefined, label: string): boolean {
  return ledger !== undefined && (ledger.active === label || ledger.history.some((h) => h.label === label));
}

function activate(ledger: Ledger | undefined, envName: string, releases: readonly LedgerRelease[], label: string, entry: Activation): Ledger {
  return {
    version: LEDGER_VERSION,
    environment: envName,
    active: label,
    releases,
    history: [...(ledger?.history ?? []), entry],
    ...(ledger?.verification ? { verification: ledger.verification } : {}),
  };
}

function activation(ctx: CommandContext, repoRoot: string, label: string, why: string, forced: boolean): Activation {
  return { label, at: ctx.now.toISOString(), by: gitUserName(repoRoot, ctx.env), why, ...(forced ? { forced: true as const } : {}) };
}

function checkOverride(opts: Override): void {
  if (opts.force && !opts.reason?.trim()) {
    throw new CliError('reason_required', '--force needs --reason "<why>": the reason is recorded in the ledger for whoever reads its history');
  }
}

/** Throws `message` unless forced; true when a guard was overridden. */
function guard(opts: Override, code: string, message: string): boolean {
  if (!opts.force) throw new CliError(code, message);
  return true;
}

function environment(config: AppConfig, name: string, ctx: CommandContext): EnvironmentConfig {
  const env = config.environments.find((e) => e.name === name);
  if (!env) {
    throw new CliError('unknown_environment', `unknown environment "${name}": ${displayPath(ctx.configFile)} defines ${config.environments.map((e) => e.name).join(', ')}`);
  }
  return env;
}

function requireLedger(envName: string, ctx: CommandContext): Ledger {
  const ledger = readLedger(ctx.ledgerDir, envName);
  if (!ledger) {
    throw new CliError(
      'no_ledger',
      `${envName} has no ledger (${shownLedger(ctx, envName)} does not exist) and tracks the current build; run \`npm run ops -- release ${envName}\` first`,
    );
  }
  return ledger;
}

function findRelease(ledger: Ledger, label: string, file: string): LedgerRelease {
  const found = ledger.releases.find((r) => r.label === label);
  if (!found) {
    throw new CliError('unknown_label', `unknown label "${label}" for ${ledger.environment}: ${file} retains ${ledger.releases.map((r) => r.label).join(', ')}`);
  }
  return found;
}

function reportPruned(env: EnvironmentConfig, pruned: readonly LedgerRelease[], ctx: CommandContext): void {
  if (pruned.length === 0) return;
  ctx.out(`${env.name}: pruned ${pruned.map((r) => r.label).join(', ')} (keeping the newest ${env.retainReleases} and the last ${KEEP_PREVIOUSLY_ACTIVE} previously active).\n`);
}

function shownLedger(ctx: CommandContext, envName: string): string {
  return displayPath(ledgerPath(ctx.ledgerDir, envName));
}

function table(rows: readonly string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  return rows.map((row) => row.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd()).join('\n') + '\n';
}

function formatAge(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 1) return 'now';
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h`;
  return `${Math.floor(hours / 24)}d`;
}
