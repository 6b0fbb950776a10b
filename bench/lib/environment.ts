import { execFileSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { isAbsolute, relative } from 'node:path';
import { REPO_ROOT } from '../../app/paths';

/** What the numbers were measured on. */
export interface BenchEnvironment {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryBytes: number;
  readonly node: string;
  readonly redis: string;
  readonly commit: string;
  /** True when the working tree had uncommitted changes to tracked files (other than the report being written). */
  readonly dirty: boolean;
}

/** Load averages (1, 5, 15 min) at one moment: how busy the machine was with other work. */
export interface LoadSample {
  readonly at: string;
  readonly loadavg: readonly [number, number, number];
}

/** `reportFile`: the report this run writes; an earlier version of it is not a change to what was measured. */
export function captureEnvironment(reportFile?: string): BenchEnvironment {
  const list = cpus();
  return {
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    memoryBytes: totalmem(),
    node: process.version,
    redis: run('redis-server', ['--version']).replace(/^Redis server /, '').split(' ')[0] ?? 'unknown',
    commit: run('git', ['rev-parse', '--short', 'HEAD']),
    dirty: run('git', ['status', '--porcelain', '--untracked-files=no', '--', '.', ...excludePathspec(reportFile)]) !== '',
  };
}

/** A git pathspec leaving out `file` when it lies inside the repository. */
function excludePathspec(file: string | undefined): string[] {
  if (file === undefined) return [];
  const rel = relative(REPO_ROOT, file);
  return rel.startsWith('..') || isAbsolute(rel) ? [] : [`:(exclude)${rel}`];
}

export function sampleLoad(): LoadSample {
  const [a = 0, b = 0, c = 0] = loadavg();
  return { at: new Date().toISOString(), loadavg: [a, b, c] };
}

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}
