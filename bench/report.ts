import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RELAY_NODE_FLAGS } from '../app/bundle';
import { REPO_ROOT } from '../app/paths';
import type { ArtifactResult } from './artifact-start';
import type { FanoutPoint, FanoutResult, FanoutTargetResult } from './fanout';
import type { IdleResult } from './idle-footprint';
import { manyRoomsChecks, manyRoomsSection, type ManyRoomsResult } from './many-rooms';
import type { BenchEnvironment, LoadSample } from './lib/environment';
import type { SynthResult } from './synth';
import { serverApiSection, type ServerApiBenchResult } from './server-api';
import { presenceSection, type PresenceBenchResult } from './presence';

export interface ReportInput {
  readonly environment: BenchEnvironment;
  readonly command: string;
  readonly quick: boolean;
  readonly startedAt: Date;
  readonly durationSec: number;
  readonly loadBefore: LoadSample;
  readonly loadAfter: LoadSample;
  readonly fanout?: FanoutResult;
  readonly idle?: IdleResult;
  readonly synth?: SynthResult;
  readonly artifact?: ArtifactResult;
  readonly manyRooms?: ManyRoomsResult;
  readonly serverApi?: ServerApiBenchResult;
  readonly presence?: PresenceBenchResult;
}

/** One line of the targets table. */
export interface TargetCheck {
  readonly target: string;
  readonly measured: string;
  /** null: not measured in this run. */
  readonly pass: boolean | null;
}

// Targets from issue 7 (the idle footprint: issue 16). Sizes use SI units (1 KB = 1000 bytes): the stricter reading.
export const TARGETS = {
  fanoutRatio: 0.9,
  fanoutRecoveryRatio: 0.75,
  halfSaturationP99Ms: 50,
  idleBytesPerConnection: 7_000,
  synthRatio: 3,
  zipBytes: 300_000,
  startMs: 500,
} as const;

/** Hand-written profiling notes, kept next to the harness and included in every report. */
const FINDINGS_FILE = join(REPO_ROOT, 'bench', 'findings.md');

/** Checks every target of the issue against the measured values. */
export function checkTargets(input: Omit<ReportInput, 'environment' | 'command' | 'quick' | 'startedAt' | 'durationSec' | 'loadBefore' | 'loadAfter'>): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const { fanout, idle, synth, artifact } = input;
  const relay = fanout?.targets.find((t) => t.name === 'relay');
  const floor = fanout?.targets.find((t) => t.name === 'floor');
  const recovery = fanout?.targets.find((t) => t.name === 'relay-recovery');
  const ratioCheck = (t: FanoutTargetResult | undefined, min: number, label: string): void => {
    if (!t || !floor || floor.saturationDeliveriesPerSec <= 0) {
      checks.push({ target: label, measured: 'not measured', pass: null });
      return;
    }
    const ratio = t.saturationDeliveriesPerSec / floor.saturationDeliveriesPerSec;
    // A side that kept up at every rate has an unknown saturation: only a verdict that holds whatever it is counts.
    const undecided =
      (t.saturationIsLowerBound && floor.saturationIsLowerBound) ||
      (floor.saturationIsLowerBound && ratio >= min) ||
      (t.saturationIsLowerBound && ratio < min);
    const bound = t.saturationIsLowerBound || floor.saturationIsLowerBound ? ' (a side kept up at every rate tried: its saturation is higher)' : '';
    checks.push({
      target: label,
      measured: `${fmtInt(t.saturationDeliveriesPerSec)} vs ${fmtInt(floor.saturationDeliveriesPerSec)} deliveries/s = ${ratio.toFixed(2)} × floor${bound}`,
      pass: undecided ? null : ratio >= min,
    });
  };
  ratioCheck(relay, TARGETS.fanoutRatio, `fan-out saturation ≥ ${TARGETS.fanoutRatio} × floor`);
  const half = relay?.halfSaturation;
  checks.push(
    half
      ? { target: `p99 at half saturation ≤ ${TARGETS.halfSaturationP99Ms} ms`, measured: `${fmtMs(half.p99Ms)} at ${half.rate} msg/s`, pass: half.p99Ms <= TARGETS.halfSaturationP99Ms }
      : { target: `p99 at half saturation ≤ ${TARGETS.halfSaturationP99Ms} ms`, measured: 'not measured', pass: null },
  );
  if (recovery) ratioCheck(recovery, TARGETS.fanoutRecoveryRatio, `with message recovery ≥ ${TARGETS.fanoutRecoveryRatio} × floor`);
  else checks.push({ target: `with message recovery ≥ ${TARGETS.fanoutRecoveryRatio} × floor`, measured: 'not measured (no relay-recovery target in this run)', pass: null });
  if (fanout && relay) {
    const crashes = relay.points.reduce((a, p) => a + p.crashes, 0);
    const overload = relay.points.filter((p) => !p.keptUp);
    const floorCrashes = floor ? floor.points.reduce((a, p) => a + p.crashes, 0) : 0;
    checks.push({
      target: 'under overload the relay sheds instead of crashing',
      measured:
        overload.length === 0
          ? 'no overload step was reached'
          : `${overload.length} overloaded point(s): relay exits ${crashes}, subscribers closed ${overload.reduce((a, p) => a + p.closedSubscribers, 0)}; floor exits ${floorCrashes}`,
      pass: overload.length === 0 ? null : crashes === 0,
    });
  }
  for (const [name, label] of [['relay', 'idle footprint'], ['relay-tokens', 'idle footprint with tokens (claims kept, expiry scheduled)']] as const) {
    const relayIdle = idle?.targets.find((t) => t.name === name);
    checks.push(
      relayIdle
        ? {
            target: `${label} ≤ ${TARGETS.idleBytesPerConnection / 1000} KB/connection`,
            measured: `${fmtInt(relayIdle.bytesPerConnection)} B (${(relayIdle.bytesPerConnection / 1000).toFixed(2)} KB, ${(relayIdle.bytesPerConnection / 1024).toFixed(2)} KiB)`,
            pass: relayIdle.bytesPerConnection <= TARGETS.idleBytesPerConnection,
          }
        : { target: `${label} ≤ ${TARGETS.idleBytesPerConnection / 1000} KB/connection`, measured: 'not measured', pass: null },
    );
  }
  checks.push(
    synth
      ? { target: `synth ≤ ${TARGETS.synthRatio} × one-resource app`, measured: `${fmtMs(synth.app.medianMs)} vs ${fmtMs(synth.oneResource.medianMs)} = ${synth.ratio.toFixed(2)} ×`, pass: synth.ratio <= TARGETS.synthRatio }
      : { target: `synth ≤ ${TARGETS.synthRatio} × one-resource app`, measured: 'not measured', pass: null },
  );
  if (artifact) {
    checks.push({ target: `artifact zip ≤ ${TARGETS.zipBytes / 1000} KB`, measured: `${fmtInt(artifact.zipBytes)} B (${(artifact.zipBytes / 1000).toFixed(1)} KB)`, pass: artifact.zipBytes <= TARGETS.zipBytes });
    const withRedis = artifact.startup.find((s) => s.mode === 'redis');
    const memory = artifact.startup.find((s) => s.mode === 'memory');
    checks.push({
      target: `start to healthy ≤ ${TARGETS.startMs} ms`,
      measured: `${withRedis ? fmtMs(withRedis.medianMs) : '?'} with Redis (${memory ? fmtMs(memory.medianMs) : '?'} in-memory)`,
      pass: withRedis ? withRedis.medianMs <= TARGETS.startMs : null,
    });
  } else {
    checks.push({ target: `artifact zip ≤ ${TARGETS.zipBytes / 1000} KB`, measured: 'not measured', pass: null });
    checks.push({ target: `start to healthy ≤ ${TARGETS.startMs} ms`, measured: 'not measured', pass: null });
  }
  return checks;
}

/** BENCHMARKS.md: machine, date, command, targets, then one section per benchmark. */
export function renderReport(input: ReportInput): string {
  const { environment: env } = input;
  const out: string[] = [];
  out.push('# Benchmarks', '');
  out.push('Generated by `npm run bench` (bench/run.ts); regenerate rather than edit. Method: docs/benchmarks.md; harness: bench/; smoke test: test/bench/.', '');
  if (input.quick) out.push('> **Quick run** (`--quick`): tiny configuration for trying the harness; these numbers are not meaningful.', '');
  out.push('| | |', '|---|---|');
  out.push(`| date | ${input.startedAt.toISOString().replace('T', ' ').slice(0, 16)} UTC (took ${Math.round(input.durationSec)} s) |`);
  out.push(`| machine | ${env.cpuModel}, ${env.cores} cores, ${(env.memoryBytes / 1024 ** 3).toFixed(1)} GiB memory |`);
  out.push(`| software | Node ${env.node}, redis-server ${env.redis} |`);
  out.push(`| commit | ${env.commit}${env.dirty ? ' (with uncommitted changes)' : ''} |`);
  out.push(`| command | \`${input.command}\` |`);
  out.push(`| load average (1/5/15 min) | before ${fmtLoad(input.loadBefore)}, after ${fmtLoad(input.loadAfter)} |`);
  out.push('');
  out.push('## Targets (issues 7 and 16)', '');
  out.push('| target | measured | result |', '|---|---|---|');
  for (const c of [...checkTargets(input), ...manyRoomsChecks(input.manyRooms)]) out.push(`| ${c.target} | ${c.measured} | ${c.pass === null ? '—' : c.pass ? 'pass' : '**fail**'} |`);
  out.push('');
  if (input.fanout) out.push(...fanoutSection(input.fanout));
  if (input.manyRooms) out.push(...manyRoomsSection(input.manyRooms));
  if (input.idle) out.push(...idleSection(input.idle));
  if (input.synth) out.push(...synthSection(input.synth));
  if (input.artifact) out.push(...artifactSection(input.artifact));
  if (input.serverApi) out.push(...serverApiSection(input.serverApi));
  if (input.presence) out.push(...presenceSection(input.presence));
  if (existsSync(FINDINGS_FILE)) out.push(readFileSync(FINDINGS_FILE, 'utf8').trim(), '');
  return `${out.join('\n')}\n`;
}

function fanoutSection(f: FanoutResult): string[] {
  const out = ['## 1. Fan-out', ''];
  out.push(
    `One redis-server, ${f.instances} instances of each target, ${f.subscribers} subscribers in one room spread evenly over the instances, ` +
      `one publisher on the first instance, ${f.payloadBytes}-byte payloads. Each point is the median of ${f.repeats} run(s) of ` +
      `${f.warmupMs} ms warm-up + ${f.measureMs} ms measured; runs of the targets at the same rate are interleaved. A point keeps up when ` +
      'delivered/expected ≥ 0.95, p99 ≤ 500 ms, the publisher reached 95 % of the rate and no process exited. Rates double until one ' +
      'falls behind, then the gap is bisected. Saturation = the highest rate that kept up. The relay runs with RELAY_RATE_LIMIT and ' +
      'RELAY_RATE_BURST at 1,000,000 (the publisher is trusted) and LOG_LEVEL=info; `relay` has message recovery off ' +
      '(RELAY_HISTORY_SIZE=0), `relay-recovery` on (RELAY_HISTORY_SIZE=1000, the default); both run with the Procfile\'s node ' +
      `flags (${RELAY_NODE_FLAGS.join(' ')}); everything else at its defaults.`,
    '',
  );
  out.push(
    f.pinning
      ? `CPU pinning (taskset): the load generator runs on CPU ${f.pinning.generator}, every relay instance and Redis on CPU ` +
          `${f.pinning.servers}, so the generator never takes CPU from the servers and the saturation is the servers' own.`
      : 'No CPU pinning: the load generator and the servers share every CPU.',
    '',
  );
  out.push(
    '| target | saturation (msg/s) | deliveries/s at saturation | server CPU s / 100k deliveries at half saturation | half-saturation p50 / p99 / max |',
    '|---|---|---|---|---|',
  );
  for (const t of f.targets) {
    const h = t.halfSaturation;
    out.push(
      `| ${t.name} | ${t.saturationRate}${t.saturationIsLowerBound ? '+' : ''} | ${fmtInt(t.saturationDeliveriesPerSec)} | ` +
        `${h && Number.isFinite(h.serverCpuPer100k) ? h.serverCpuPer100k.toFixed(2) : '—'} | ` +
        `${h ? `${fmtMs(h.p50Ms)} / ${fmtMs(h.p99Ms)} / ${fmtMs(h.maxMs)} at ${h.rate} msg/s` : '—'} |`,
    );
  }
  const floor = f.targets.find((t) => t.name === 'floor');
  if (floor && floor.saturationDeliveriesPerSec > 0) {
    out.push('');
    for (const t of f.targets.filter((x) => x !== floor)) {
      const cpu = t.halfSaturation && floor.halfSaturation ? floor.halfSaturation.serverCpuPer100k / t.halfSaturation.serverCpuPer100k : Number.NaN;
      out.push(
        `- ${t.name}/floor: saturation throughput **${(t.saturationDeliveriesPerSec / floor.saturationDeliveriesPerSec).toFixed(2)}**` +
          (Number.isFinite(cpu) ? `; CPU efficiency (floor's CPU per delivery ÷ ${t.name}'s, at half saturation) ${cpu.toFixed(2)}` : '') +
          '.',
      );
    }
  }
  out.push('');
  for (const t of f.targets) {
    out.push(`### ${t.name}`, '');
    out.push(
      '| rate (msg/s) | published/s | deliveries/s | delivered | p50 | p99 | max | server CPU s / 100k deliveries | cores: relays / redis / generator | machine busy | kept up |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const p of t.points) out.push(pointRow(p));
    if (t.halfSaturation) out.push(pointRow(t.halfSaturation, ' (half saturation)'));
    out.push('');
  }
  const maxClient = Math.max(0, ...f.targets.flatMap((t) => t.points.map((p) => p.clientCores)));
  out.push(
    '**Is the load generator the bottleneck?** It runs in one process (one clock for send and receive timestamps) and is kept cheap: ' +
      'the publisher is a `ws` client with permessage-deflate off; each subscriber is a minimal WebSocket reader on a plain TCP ' +
      'socket (bench/lib/raw-subscriber.ts) that walks the frames inside each received chunk in place, counts them and reads only ' +
      'the 13 timestamp digits at the start of the payload (no JSON.parse, no Buffer, event or stream object per message); ' +
      'latencies go into a fixed log-bucket histogram. Most of what remains is the kernel: one read per frame, because the ' +
      'servers write every frame separately (the "kernel" share in the generator column). ' +
      `Its CPU is measured in every run (the "generator" column): at most ${maxClient.toFixed(2)} of a core in this run` +
      (maxClient < 0.9 ? ', so it always had headroom on its own CPU' : ': **close to a full core, so the generator may have limited the highest rates**') +
      '. ' +
      (f.pinning
        ? 'With pinning it cannot slow the servers down by taking their CPU either.'
        : 'Without pinning it takes CPU from the servers, the same for every target, which compresses the ratio towards 1; the CPU-efficiency ratio above does not have that bias.'),
    '',
  );
  return out;
}

function pointRow(p: FanoutPoint, suffix = ''): string {
  const issues = [p.crashes > 0 ? `${p.crashes} exit(s)` : '', p.closedSubscribers > 0 ? `${p.closedSubscribers} closed` : '', p.lost > 0 ? `${fmtInt(p.lost)} lost` : '']
    .filter(Boolean)
    .join(', ');
  return (
    `| ${p.rate}${suffix} | ${fmtInt(p.publishedPerSec)} | ${fmtInt(p.deliveriesPerSec)} | ${(p.deliveredRatio * 100).toFixed(1)} % | ` +
    `${fmtMs(p.p50Ms)} | ${fmtMs(p.p99Ms)} | ${fmtMs(p.maxMs)} | ${Number.isFinite(p.serverCpuPer100k) ? p.serverCpuPer100k.toFixed(2) : '—'} | ` +
    `${p.relayCores.toFixed(2)} / ${p.redisCores.toFixed(2)} / ${p.clientCores.toFixed(2)} (${(p.clientSystemShare * 100).toFixed(0)} % kernel) | ${(p.machineBusy * 100).toFixed(0)} % | ` +
    `${p.keptUp ? 'yes' : 'no'}${issues ? ` (${issues})` : ''} |`
  );
}

function idleSection(r: IdleResult): string[] {
  const out = ['## 2. Idle footprint', ''];
  out.push(
    `One instance with Redis, the relay started with its Procfile's node flags (${RELAY_NODE_FLAGS.join(' ')}) and the floor with none. ` +
      `Each target is measured ${r.targets[0]?.runs.length ?? 0} time(s), each on a fresh instance, alternating with the other target; ` +
      'the table gives medians over those runs. ' +
      'RSS (VmRSS from /proc/<pid>/status) is the median of several samples taken after 12 s without traffic, before and after the ' +
      'connections open (each joins one room; one warm-up connection first so lazily loaded code is not charged to the sockets). ' +
      'The harness forces no collection: the relay gives its young generation back by itself once idle (service/memory-reducer.ts), ' +
      'the floor keeps what it grew, and garbage left by the handshakes in the old generation counts for both: an upper bound. The second-half ' +
      'column divides the growth from half to all connections by the connections added then; the young generation grows ' +
      'mostly in the first half, so it is closer to the live cost. The target is judged on the first column.',
    '',
  );
  out.push(
    '| target | connections | rooms | RSS before | RSS after | per connection | per connection, each run | per connection, second half only | closed while idle |',
    '|---|---|---|---|---|---|---|---|---|',
  );
  for (const t of r.targets) {
    out.push(
      `| ${t.name} | ${t.connections} | ${t.rooms} | ${mib(t.baselineRssBytes)} | ${mib(t.loadedRssBytes)} | ` +
        `${fmtInt(t.bytesPerConnection)} B | ${t.runs.map((run) => fmtInt(run.bytesPerConnection)).join(', ')} B | ` +
        `${fmtInt(t.marginalBytesPerConnection)} B | ${t.closedWhileIdle} |`,
    );
  }
  out.push('');
  return out;
}

function synthSection(s: SynthResult): string[] {
  return [
    '## 3. Synth',
    '',
    'Wall time from spawning the command to its exit, runs of the two commands alternating; medians.',
    '',
    '| command | runs (ms) | median |',
    '|---|---|---|',
    `| cdktf.json app: \`${s.app.command}\` (all environments, artifact build included) | ${s.app.runsMs.map((v) => v.toFixed(0)).join(', ')} | ${fmtMs(s.app.medianMs)} |`,
    `| one-resource app (bench/one-resource-app.ts, deep import): \`${s.oneResource.command}\` | ${s.oneResource.runsMs.map((v) => v.toFixed(0)).join(', ')} | ${fmtMs(s.oneResource.medianMs)} |`,
    ...(s.appWithoutNpm
      ? [`| for comparison, the app's npm script run without npm: \`${s.appWithoutNpm.command}\` | ${s.appWithoutNpm.runsMs.map((v) => v.toFixed(0)).join(', ')} | ${fmtMs(s.appWithoutNpm.medianMs)} |`]
      : []),
    '',
    `Ratio: **${s.ratio.toFixed(2)} ×**.`,
    '',
  ];
}

function artifactSection(a: ArtifactResult): string[] {
  const out = [
    '## 4. Artifact',
    '',
    `\`${a.label}.zip\`: ${fmtInt(a.zipBytes)} bytes, ${fmtInt(a.unzippedBytes)} bytes unzipped (${a.entries.join(', ')}), ` +
      `built by buildArtifact() in ${fmtMs(a.buildMs)}. ` +
      'Start time: from spawning the Procfile\'s `web` command in the unzipped folder to the first 200 from /healthz (polled every 5 ms).',
    '',
    '| backplane | runs (ms) | median |',
    '|---|---|---|',
  ];
  for (const s of a.startup) out.push(`| ${s.mode === 'redis' ? 'Redis (REDIS_URL set, as deployed)' : 'in-memory (no REDIS_URL)'} | ${s.runsMs.map((v) => v.toFixed(0)).join(', ')} | ${fmtMs(s.medianMs)} |`);
  out.push('');
  return out;
}

function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—';
}

function fmtMs(n: number): string {
  if (!Number.isFinite(n)) return '—';
  return n >= 100 ? `${Math.round(n)} ms` : `${n.toFixed(1)} ms`;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function fmtLoad(s: LoadSample): string {
  return s.loadavg.map((v) => v.toFixed(2)).join(' / ');
}
