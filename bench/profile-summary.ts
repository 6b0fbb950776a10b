// Summarises V8 .cpuprofile files (node --cpu-prof): self time per function, heaviest first.
// usage: tsx bench/profile-summary.ts [--top N] FILE.cpuprofile...
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time (ms) per function across a profile's samples, heaviest first. */
export function selfTimes(profile: Profile): { name: string; ms: number; share: number }[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, number>();
  let all = 0;
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    const us = profile.timeDeltas[i] ?? 0;
    if (!node) return;
    const f = node.callFrame;
    const where = f.url ? `${basename(f.url)}:${f.lineNumber + 1}` : '';
    const name = `${f.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    totals.set(name, (totals.get(name) ?? 0) + us);
    all += us;
  });
  return [...totals.entries()]
    .map(([name, us]) => ({ name, ms: us / 1000, share: all > 0 ? us / all : 0 }))
    .sort((a, b) => b.ms - a.ms);
}

function main(argv: string[]): void {
  let top = 25;
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--top') top = Number(argv[++i]);
    else files.push(argv[i]);
  }
  if (files.length === 0 || !Number.isInteger(top) || top <= 0) {
    process.stderr.write('usage: tsx bench/profile-summary.ts [--top N] FILE.cpuprofile...\n');
    process.exitCode = 2;
    return;
  }
  for (const file of files) {
    const rows = selfTimes(JSON.parse(readFileSync(file, 'utf8')) as Profile);
    process.stdout.write(`\n${file}\n`);
    for (const r of rows.slice(0, top)) process.stdout.write(`${(r.share * 100).toFixed(1).padStart(5)} %  ${r.ms.toFixed(0).padStart(7)} ms  ${r.name}\n`);
  }
}

if (require.main === module) main(process.argv.slice(2));
