import { copyFileSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { REPO_ROOT } from '../app/paths';
import { startProcess } from '../app/processes';
import { makeProject, type Project } from '../test/helpers/project';
import { median } from './lib/stats';

export interface SynthOptions {
  /** Runs of each command, alternating; medians are reported. @default 5 */
  readonly runs?: number;
  /** One run may take at most this long. @default 180000 */
  readonly timeoutMs?: number;
  readonly log?: (line: string) => void;
}

export interface SynthCommandResult {
  readonly command: string;
  readonly runsMs: number[];
  readonly medianMs: number;
}

export interface SynthResult {
  /** The cdktf.json "app" command: every environment, artifact build included. */
  readonly app: SynthCommandResult;
  /** bench/one-resource-app.ts bundled and run the same way. */
  readonly oneResource: SynthCommandResult;
  /** When the app command is `npm run <script>`: the script's own command without npm, to show npm's share. */
  readonly appWithoutNpm?: SynthCommandResult;
  /** app / oneResource (medians). */
  readonly ratio: number;
}

/** Thrown when a synth command fails; `code` is stable for callers and tests. */
export class SynthBenchError extends Error {
  readonly code = 'synth_failed';
}

/** The "app" command cdktf runs for `cdktf synth`, read from `<root>/cdktf.json`. */
export function cdktfAppCommand(root = REPO_ROOT): string {
  const file = join(root, 'cdktf.json');
  const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
  const app = parsed && typeof parsed === 'object' ? (parsed as { app?: unknown }).app : undefined;
  if (typeof app !== 'string' || app.trim() === '') throw new SynthBenchError(`${file} has no "app" command (a non-empty string is required)`);
  return app;
}

// Bundled with esbuild and run with node, like the project's synth, so only the app's own work differs.
const ONE_RESOURCE_OUT = '.build/bench-one-resource.js';
const ONE_RESOURCE_COMMAND =
  `esbuild bench/one-resource-app.ts --bundle --platform=node --target=node20 --format=cjs --packages=external ` +
  `--log-level=warning --outfile=${ONE_RESOURCE_OUT} && node ${ONE_RESOURCE_OUT}`;

/**
 * Wall time of the project's synth (cdktf.json "app", all environments, artifact build included) against a
 * one-resource cdktf app, alternating runs so background load hits both alike.
 */
export async function runSynth(opts: SynthOptions = {}): Promise<SynthResult> {
  const runs = opts.runs ?? 5;
  const timeoutMs = opts.timeoutMs ?? 180_000;
  const log = opts.log ?? (() => undefined);
  const project = copyRepo();
  const work = project.root;
  const appCommand = cdktfAppCommand(work);
  const direct = npmScriptBody(work, appCommand);
  const appRuns: number[] = [];
  const oneRuns: number[] = [];
  const directRuns: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const startedAt = Date.now();
      const appMs = await timeCommand(work, appCommand, {}, timeoutMs);
      if (!writtenSince(join(work, 'cdktf.out', 'manifest.json'), startedAt)) {
        throw new SynthBenchError(`"${appCommand}" exited 0 but did not write cdktf.out/manifest.json`);
      }
      appRuns.push(appMs);
      const oneStartedAt = Date.now();
      const oneMs = await timeCommand(work, ONE_RESOURCE_COMMAND, { BENCH_SYNTH_OUTDIR: 'one-resource.out' }, timeoutMs);
      if (!writtenSince(join(work, 'one-resource.out', 'manifest.json'), oneStartedAt)) {
        throw new SynthBenchError('the one-resource app exited 0 but did not write one-resource.out/manifest.json');
      }
      oneRuns.push(oneMs);
      const directMs = direct === null ? Number.NaN : await timeCommand(work, direct, {}, timeoutMs);
      if (direct !== null) directRuns.push(directMs);
      log(
        `synth run ${i + 1}/${runs}: app ${appMs.toFixed(0)} ms, one-resource app ${oneMs.toFixed(0)} ms` +
          (direct === null ? '' : `, app without npm ${directMs.toFixed(0)} ms`),
      );
    }
  } finally {
    project.cleanup();
  }
  const app = { command: appCommand, runsMs: appRuns, medianMs: median(appRuns) };
  const oneResource = { command: ONE_RESOURCE_COMMAND, runsMs: oneRuns, medianMs: median(oneRuns) };
  const appWithoutNpm = direct === null ? undefined : { command: direct, runsMs: directRuns, medianMs: median(directRuns) };
  return { app, oneResource, appWithoutNpm, ratio: app.medianMs / oneResource.medianMs };
}

/** The body of `npm run [--silent] <script>` from package.json, or null for any other command. */
function npmScriptBody(root: string, command: string): string | null {
  const m = /^npm run (?:--silent |-s )?([\w:.-]+)$/.exec(command.trim());
  if (!m) return null;
  const pkg: unknown = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const scripts = pkg && typeof pkg === 'object' ? (pkg as { scripts?: Record<string, unknown> }).scripts : undefined;
  const body = scripts?.[m[1]];
  return typeof body === 'string' ? body : null;
}

// A checkout of its own (the sources copied, node_modules linked, the example environments as config and no ledgers):
// the checkout's cdktf.out and dist/ stay untouched, and the user's own config and releases do not change the numbers.
function copyRepo(): Project {
  const project = makeProject({ code: true });
  mkdirSync(join(project.root, 'bench'), { recursive: true });
  copyFileSync(join(REPO_ROOT, 'bench', 'one-resource-app.ts'), join(project.root, 'bench', 'one-resource-app.ts'));
  return project;
}

async function timeCommand(cwd: string, command: string, env: Record<string, string>, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  const binPath = `${join(cwd, 'node_modules', '.bin')}:${process.env.PATH ?? ''}`;
  const proc = startProcess('synth', '/bin/sh', ['-c', command], {
    cwd,
    group: true,
    env: { ...process.env, PATH: binPath, CHECKPOINT_DISABLE: '1', ...env },
  });
  const exit = await proc.waitExit(timeoutMs);
  const ms = performance.now() - t0;
  if (exit === null) {
    await proc.stop();
    throw new SynthBenchError(`"${command}" did not finish within ${timeoutMs} ms; last output:\n${proc.lines.join('\n')}`);
  }
  if (exit.code !== 0) {
    throw new SynthBenchError(`"${command}" exited with ${String(exit.code ?? exit.signal)}; last output:\n${proc.lines.join('\n')}`);
  }
  return ms;
}

function writtenSince(file: string, sinceMs: number): boolean {
  try {
    // Coarse file-system timestamps may round down: one second of slack.
    return statSync(file).mtimeMs >= sinceMs - 1_000;
  } catch {
    return false;
  }
}
