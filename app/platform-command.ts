/**
 * `npm run ops -- platform [<name>] [--from <file>]`: picks the newest Amazon Linux 2023 Node.js solution stack
 * (same Node.js major as the config's) and writes it into every environment's `platform` in relay.config.json, so the
 * upgrade is a reviewed config change that shows in the synth diff and goes through the pipeline.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { loadConfig } from './config';
import { PLATFORM_PATTERN } from './config-relay';
import { displayPath } from './paths';

/** A refused platform update: says what was wrong and what to give instead. */
export class PlatformError extends Error {
  readonly code = 'platform_refused';
}

/**
 * Solution stack names from `aws elasticbeanstalk list-available-solution-stacks` output (JSON with `SolutionStacks`),
 * or from text with one name per line.
 */
export function readSolutionStacks(text: string): string[] {
  try {
    const parsed: unknown = JSON.parse(text);
    const list = (parsed as { SolutionStacks?: unknown }).SolutionStacks;
    if (Array.isArray(list)) return list.filter((x): x is string => typeof x === 'string');
  } catch {
    // Not JSON: one name per line.
  }
  return text.split('\n').map((l) => l.trim()).filter(Boolean);
}

/** The newest matching name for Node.js `major`, or undefined. */
export function newestPlatform(names: readonly string[], major: string): string | undefined {
  const version = (name: string): number[] => {
    const m = PLATFORM_PATTERN.exec(name);
    return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [];
  };
  const candidates = names.filter((n) => PLATFORM_PATTERN.exec(n)?.[4] === major);
  candidates.sort((a, b) => {
    const [x, y] = [version(a), version(b)];
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  });
  return candidates.at(-1);
}

/** Rewrites every environment's platform in `configFile` to the newest candidate; returns what it printed. */
export function updatePlatform(configFile: string, candidates: readonly string[]): string {
  const config = loadConfig(configFile);
  const current = [...new Set(config.environments.map((e) => e.platform))];
  const major = PLATFORM_PATTERN.exec(current[0])?.[4] ?? '22';
  const newest = newestPlatform(candidates, major);
  if (!newest) {
    throw new PlatformError(
      `no "64bit Amazon Linux 2023 vX.Y.Z running Node.js ${major}" among the ${candidates.length} names given; pass the output of \`aws elasticbeanstalk list-available-solution-stacks\` with --from, or a name`,
    );
  }
  let text = readFileSync(configFile, 'utf8');
  const explicit = /"platform"\s*:/.test(text);
  for (const old of current) text = text.split(JSON.stringify(old)).join(JSON.stringify(newest));
  if (!explicit) {
    throw new PlatformError(`${displayPath(configFile)} names no "platform"; add "platform": ${JSON.stringify(current[0])} to each environment first`);
  }
  if (current.length === 1 && current[0] === newest) return `${displayPath(configFile)} already runs ${newest}; nothing changed.\n`;
  writeFileSync(configFile, text);
  return `${displayPath(configFile)}: platform ${current.join(', ')} -> ${newest}; run npm run synth and review the diff.\n`;
}

/** Registers the command on the ops CLI. */
export function addPlatformCommand(program: Command, configFile: (cmd: Command) => string, stdout: (text: string) => void): void {
  program
    .command('platform')
    .description('write the newest Amazon Linux 2023 Node.js platform (same major) into every environment\'s "platform"')
    .argument('[name]', 'a solution stack name')
    .option('--from <file>', 'output of `aws elasticbeanstalk list-available-solution-stacks` (JSON), or one name per line')
    .action((name: string | undefined, opts: { from?: string }, cmd: Command) => {
      if (!name && !opts.from) throw new PlatformError('give a solution stack name, or --from <file> with the names to choose from');
      const names = opts.from ? readSolutionStacks(readFileSync(opts.from, 'utf8')) : [name as string];
      stdout(updatePlatform(configFile(cmd), names));
    });
}
