/**
 * The git facts releases are made of: the commit a build comes from, whether the working tree matches it, who is
 * running the command, and whether a recorded commit can still be checked out. Every failure is a GitError that says
 * what is wrong and what to do.
 */
import { execFileSync } from 'node:child_process';
import { isAbsolute, relative } from 'node:path';
import { CodedError } from './coded-error';

export type GitErrorCode = 'git_missing' | 'not_a_git_repository' | 'commit_unreachable' | 'git_failed';

export class GitError extends CodedError<GitErrorCode> {}

/** Runs git in `cwd` and returns its stdout; throws GitError with git's own message on failure. */
export function git(cwd: string, args: readonly string[]): string {
  try {
    return execFileSync('git', [...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string; status?: number };
    if (e.code === 'ENOENT') {
      throw new GitError('git_missing', 'git was not found on PATH; releases record and rebuild git commits, so install git (e.g. `apt-get install git`) and run the command again');
    }
    const stderr = (e.stderr ?? '').trim();
    if (/not a git repository/i.test(stderr)) {
      throw new GitError(
        'not_a_git_repository',
        `${cwd} is not a git repository; releases record the commit they are built from, so run the command in a git checkout of the project (or \`git init\` and commit first)`,
      );
    }
    throw new GitError('git_failed', `git ${args.join(' ')} failed in ${cwd}: ${stderr || e.message}`);
  }
}

/** The full hash of HEAD; throws when there is no git, no repository or no commit yet. */
export function headCommit(repoRoot: string): string {
  const sha = git(repoRoot, ['rev-parse', '--verify', '--quiet', 'HEAD^{commit}']).trim();
  if (!/^[0-9a-f]{40}$/.test(sha)) throw new GitError('git_failed', `${repoRoot} has no commit yet; commit the project first`);
  return sha;
}

/** HEAD's full hash, or undefined when the folder is not a git checkout (or git is missing). */
export function headCommitIfAny(repoRoot: string): string | undefined {
  try {
    return headCommit(repoRoot);
  } catch {
    return undefined;
  }
}

/**
 * Files whose working-tree state differs from HEAD (modified, staged, deleted or untracked and not ignored), as
 * git prints them; `exclude` folders (the ledgers) do not count, since they are not part of the build.
 */
export function uncommittedChanges(repoRoot: string, exclude: readonly string[] = []): string[] {
  const prefixes = exclude
    .map((dir) => relative(repoRoot, dir))
    .filter((rel) => rel !== '' && !rel.startsWith('..') && !isAbsolute(rel))
    .map((rel) => `${rel.split('\\').join('/')}/`);
  return git(repoRoot, ['status', '--porcelain=v1', '--untracked-files=all'])
    .split('\n')
    .filter((line) => line.trim() !== '')
    .filter((line) => !prefixes.some((p) => line.slice(3).replace(/^"|"$/g, '').startsWith(p)));
}

/** Throws unless `commit` names a commit object in the repository. */
export function requireCommit(repoRoot: string, commit: string, label: string): void {
  try {
    git(repoRoot, ['cat-file', '-e', `${commit}^{commit}`]);
  } catch (err) {
    if (err instanceof GitError && err.code !== 'git_failed') throw err;
    throw new GitError(
      'commit_unreachable',
      `${label} was built from commit ${commit}, which this repository does not have (a shallow clone, or a branch that was never pushed); ` +
        'fetch it (`git fetch --unshallow` or `git fetch origin <branch>`) and run the command again',
    );
  }
}

/** Who runs the command, for the ledger's history: GIT_AUTHOR_NAME, else git's user.name, else "unknown". */
export function gitUserName(repoRoot: string, env: NodeJS.ProcessEnv): string {
  const fromEnv = env.GIT_AUTHOR_NAME?.trim();
  if (fromEnv) return fromEnv;
  try {
    return git(repoRoot, ['config', 'user.name']).trim() || 'unknown';
  } catch {
    return 'unknown';
  }
}
