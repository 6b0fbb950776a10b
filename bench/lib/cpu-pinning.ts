import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';

/**
 * Which CPUs the load generator and the servers may use. On a small machine the generator would otherwise take CPU
 * from the servers, which both lowers and flattens the measured difference between two servers.
 */
export interface CpuPinning {
  /** taskset CPU list for the benchmark process (the load generator), e.g. "0". */
  readonly generator: string;
  /** taskset CPU list for relays and Redis, e.g. "1" or "1-3". */
  readonly servers: string;
}

let tasksetPresent: boolean | null = null;

function hasTaskset(): boolean {
  if (tasksetPresent === null) {
    try {
      execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
      tasksetPresent = true;
    } catch {
      tasksetPresent = false;
    }
  }
  return tasksetPresent;
}

/** The generator on CPU 0, servers on the rest; null on a single CPU or without taskset (util-linux). */
export function defaultPinning(): CpuPinning | null {
  const n = cpus().length;
  if (n < 2 || !hasTaskset()) return null;
  return { generator: '0', servers: n === 2 ? '1' : `1-${n - 1}` };
}

/** Command and arguments that run `command` on the given CPUs (taskset execs it: the pid is the command's own). */
export function pinned(cpuList: string | undefined, command: string, args: readonly string[]): [string, string[]] {
  return cpuList === undefined ? [command, [...args]] : ['taskset', ['-c', cpuList, command, ...args]];
}

/** Restricts every thread of this process to `cpuList`; returns a function that restores the previous affinity. */
export function pinSelf(cpuList: string): () => void {
  const before = /:\s*([0-9a-f]+)\s*$/i.exec(execFileSync('taskset', ['-p', String(process.pid)], { encoding: 'utf8' }))?.[1];
  execFileSync('taskset', ['-a', '-p', '-c', cpuList, String(process.pid)], { stdio: 'ignore' });
  return () => {
    if (before) execFileSync('taskset', ['-a', '-p', before, String(process.pid)], { stdio: 'ignore' });
  };
}
