// `npm run bench`: runs the benchmarks against a fresh bundle of the relay and writes BENCHMARKS.md.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { bundleService, RELAY_NODE_FLAGS } from '../app/bundle';
import { signHs256Token } from '../service/auth';
import { REPO_ROOT } from '../app/paths';
import { runArtifact, type ArtifactResult } from './artifact-start';
import { runFanout, type FanoutResult, type FanoutTargetSpec } from './fanout';
import { runIdleFootprint, type IdleResult } from './idle-footprint';
import { runManyRooms, type ManyRoomsResult } from './many-rooms';
import { defaultPinning } from './lib/cpu-pinning';
import { killAllNow, stopAllProcesses } from '../app/processes';
import { captureEnvironment, type LoadSample, sampleLoad } from './lib/environment';
import { renderReport } from './report';
import { runSynth, type SynthResult } from './synth';
import { runServerApiBench, WARMUP_MS, type ServerApiBenchResult } from './server-api';
import { runPresenceBench, type PresenceBenchResult } from './presence';

/** Every benchmark client connects from 127.0.0.1 and stands for a different user: no per-address limits. */
const BENCH_TOKEN_SECRET = 'bench-token-secret-0123456789';
const LOOPBACK_CLIENTS_ENV: Record<string, string> = { RELAY_MAX_CONNECTIONS_PER_ADDRESS: '0', RELAY_CONNECT_RATE_PER_ADDRESS: '0' };

/** The relay with its per-connection limits lifted (the benchmark's publisher is trusted) and message recovery off. */
export const RELAY_BENCH_ENV: Record<string, string> = {
  ...LOOPBACK_CLIENTS_ENV,
  RELAY_RATE_LIMIT: '1000000',
  RELAY_RATE_BURST: '1000000',
  RELAY_HISTORY_SIZE: '0',
  LOG_LEVEL: 'info',
};

/** Message recovery on, at the relay's default history size. */
const DEFAULT_RECOVERY_ENV: Record<string, string> = { RELAY_HISTORY_SIZE: '1000' };

const BENCHMARKS = ['fanout', 'many', 'idle', 'synth', 'artifact', 'api', 'presence'] as const;
type BenchName = (typeof BENCHMARKS)[number];

interface CliOptions {
  only: Set<BenchName>;
  quick: boolean;
  out: string;
  /** Environment of the relay-recovery target; null: no such target. */
  recoveryEnv: Record<string, string> | null;
  cpuProfDir: string | null;
  /** Generator and servers on separate CPUs during the fan-out. */
  pin: boolean;
}

const USAGE = `usage: npm run bench -- [--only fanout,many,idle,synth,artifact,api,presence] [--quick] [--out FILE] [--recovery-env KEY=VALUE[,KEY=VALUE] | --no-recovery] [--no-pin] [--cpu-prof DIR]
  --only          run only these benchmarks (default: all; many = the many-rooms workload)
  --quick         tiny configuration (seconds, for trying the harness; numbers are not meaningful)
  --out           report file (default: BENCHMARKS.md at the repository root)
  --recovery-env  environment of the fan-out's relay-recovery target (default ${Object.entries(DEFAULT_RECOVERY_ENV).map(([k, v]) => `${k}=${v}`).join(',')})
  --no-recovery   no relay-recovery target
  --no-pin        let the fan-out's load generator and servers share every CPU (default: generator on CPU 0, servers on the rest)
  --cpu-prof      run every relay and floor process with node --cpu-prof, profiles in DIR (summarise: tsx bench/profile-summary.ts)`;

function parseArgs(argv: readonly string[]): CliOptions {
  const opts: CliOptions = { only: new Set(BENCHMARKS), quick: false, out: join(REPO_ROOT, 'BENCHMARKS.md'), recoveryEnv: { ...DEFAULT_RECOVERY_ENV }, cpuProfDir: null, pin: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${arg} needs a value`);
      return v;
    };
    if (arg === '--quick') opts.quick = true;
    else if (arg === '--only') {
      const names = value().split(',').map((s) => s.trim());
      const bad = names.filter((n) => !(BENCHMARKS as readonly string[]).includes(n));
      if (bad.length > 0) throw new UsageError(`--only: unknown benchmark ${bad.join(', ')}; allowed: ${BENCHMARKS.join(', ')}`);
      opts.only = new Set(names as BenchName[]);
    } else if (arg === '--out') opts.out = value();
    else if (arg === '--recovery-env') {
      const env: Record<string, string> = {};
      for (const pair of value().split(',')) {
        const eq = pair.indexOf('=');
        if (eq <= 0) throw new UsageError(`--recovery-env: "${pair}" is not KEY=VALUE`);
        env[pair.slice(0, eq)] = pair.slice(eq + 1);
      }
      opts.recoveryEnv = env;
    } else if (arg === '--no-recovery') opts.recoveryEnv = null;
    else if (arg === '--no-pin') opts.pin = false;
    else if (arg === '--cpu-prof') opts.cpuProfDir = resolve(value());
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else throw new UsageError(`unknown argument ${String(arg)}`);
  }
  return opts;
}

class UsageError extends Error {
  readonly code = 'bad_usage';
}


async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.cpuProfDir) {
    mkdirSync(opts.cpuProfDir, { recursive: true });
    process.env.BENCH_CPU_PROF_DIR = opts.cpuProfDir;
  }
  const log = (line: string): void => {
    process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`);
  };
  const t0 = Date.now();
  const loadBefore: LoadSample = sampleLoad();
  log(`bundling the relay (app/bundle.ts) into .build/bench-relay`);
  const bundle = await bundleService(join(REPO_ROOT, '.build', 'bench-relay'));
  const floorScript = join(REPO_ROOT, 'bench', 'floor-relay.js');
  const relayTarget = (name: string, env: Record<string, string>): FanoutTargetSpec => ({
    name,
    script: bundle.serverJs,
    cwd: join(REPO_ROOT, '.build', 'bench-relay'),
    nodeFlags: RELAY_NODE_FLAGS,
    env: { ...RELAY_BENCH_ENV, RELAY_CHANNEL_PREFIX: `bench-${name.replace(/[^A-Za-z0-9]/g, '')}`, ...env },
  });
  const floorTarget: FanoutTargetSpec = { name: 'floor', script: floorScript, env: { RELAY_CHANNEL_PREFIX: 'bench-floor' } };

  let fanout: FanoutResult | undefined;
  let idle: IdleResult | undefined;
  let manyRooms: ManyRoomsResult | undefined;
  let synth: SynthResult | undefined;
  let artifact: ArtifactResult | undefined;
  let serverApi: ServerApiBenchResult | undefined;
  let presence: PresenceBenchResult | undefined;

  if (opts.only.has('fanout')) {
    const pinning = opts.pin ? defaultPinning() : null;
    log(`fan-out: relay vs floor, interleaved; ${pinning ? `generator on CPU ${pinning.generator}, servers on CPU ${pinning.servers}` : 'no CPU pinning'}`);
    const targets = [relayTarget('relay', {}), floorTarget];
    // Only a relay that knows the variable has recovery to measure.
    const hasRecovery = readFileSync(bundle.serverJs, 'utf8').includes('RELAY_HISTORY_SIZE');
    if (opts.recoveryEnv && hasRecovery) targets.splice(1, 0, relayTarget('relay-recovery', opts.recoveryEnv));
    else if (opts.recoveryEnv) log('the relay has no RELAY_HISTORY_SIZE: no relay-recovery target');
    fanout = await runFanout(
      opts.quick
        ? { targets, subscribers: 20, rates: [100, 200], repeats: 1, bisectSteps: 0, warmupMs: 200, measureMs: 500, pinning, log }
        : { targets, subscribers: 200, rates: [250, 500, 1000, 2000, 4000, 8000], repeats: 3, bisectSteps: 3, pinning, log },
    );
  }
  if (opts.only.has('many')) {
    const pinning = opts.pin ? defaultPinning() : null;
    log('many rooms: relay (recovery on, protocol 2) vs floor, interleaved');
    // Recovery on at its default history size, as deployed; RELAY_BENCH_ENV lifts the per-connection limits.
    const relay = { ...relayTarget('relay-recovery', {}), env: { ...RELAY_BENCH_ENV, RELAY_CHANNEL_PREFIX: 'bench-many', RELAY_HISTORY_SIZE: '1000' }, wsQuery: 'protocol=2' };
    manyRooms = await runManyRooms(
      opts.quick
        ? { targets: [relay, floorTarget], rooms: 50, membersPerRoom: 4, rates: [200, 400], bisectSteps: 0, repeats: 1, warmupMs: 200, measureMs: 1000, heartbeatRunMs: 0, pinning, log }
        : { targets: [relay, floorTarget], rooms: 2000, membersPerRoom: 4, rates: [1000, 2000, 4000, 6000, 8000, 10000, 12000, 14000, 16000], bisectSteps: 2, repeats: 2, warmupMs: 500, measureMs: 2000, heartbeatRunMs: 30_000, pinning, log },
    );
  }
  if (opts.only.has('idle')) {
    log('idle footprint');
    idle = await runIdleFootprint({
      targets: [
        { name: 'relay', script: bundle.serverJs, cwd: join(REPO_ROOT, '.build', 'bench-relay'), nodeFlags: RELAY_NODE_FLAGS, env: { ...LOOPBACK_CLIENTS_ENV, LOG_LEVEL: 'info' } },
        // Token auth on: every connection keeps its token's claims and waits in the expiry schedule (exp in 1 h).
        {
          name: 'relay-tokens',
          script: bundle.serverJs,
          cwd: join(REPO_ROOT, '.build', 'bench-relay'),
          nodeFlags: RELAY_NODE_FLAGS,
          env: { ...LOOPBACK_CLIENTS_ENV, LOG_LEVEL: 'info', RELAY_TOKEN_SECRET: BENCH_TOKEN_SECRET },
          wsQuery: `token=${signHs256Token({ sub: 'bench', exp: Math.floor(Date.now() / 1000) + 3600, rooms: { 'room-*': ['join', 'publish'] } }, BENCH_TOKEN_SECRET)}`,
        },
        { name: 'floor', script: floorScript, env: {} },
      ],
      connections: opts.quick ? 200 : 5000,
      rooms: 100,
      runs: opts.quick ? 1 : 3,
      samples: opts.quick ? 2 : 5,
      sampleIntervalMs: opts.quick ? 200 : 500,
      settleMs: opts.quick ? 200 : 12_000,
      log,
    });
  }
  if (opts.only.has('synth')) {
    log('synth: cdktf.json app vs a one-resource app');
    synth = await runSynth({ runs: opts.quick ? 1 : 5, log });
  }
  if (opts.only.has('artifact')) {
    log('artifact: zip size and start to healthy');
    artifact = await runArtifact({ runs: opts.quick ? 1 : 5, log });
  }
  if (opts.only.has('api')) {
    serverApi = await runServerApiBench({
      target: relayTarget('api', DEFAULT_RECOVERY_ENV),
      members: opts.quick ? 20 : 200,
      rate: opts.quick ? 100 : 1000,
      durationMs: opts.quick ? 2000 : 30_000,
      warmupMs: opts.quick ? 1000 : WARMUP_MS,
      pinning: opts.pin ? defaultPinning() : null,
      log,
    });
  }

  if (opts.only.has('presence')) {
    presence = await runPresenceBench({ target: relayTarget('presence', {}), members: opts.quick ? 200 : 10_000, requests: opts.quick ? 100 : 1000, log });
  }

  const loadAfter = sampleLoad();
  const report = renderReport({
    environment: captureEnvironment(opts.out),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    quick: opts.quick,
    startedAt: new Date(t0),
    durationSec: (Date.now() - t0) / 1000,
    loadBefore,
    loadAfter,
    fanout,
    idle,
    synth,
    artifact,
    manyRooms,
    serverApi,
    presence,
  });
  writeFileSync(opts.out, report);
  const jsonDir = join(REPO_ROOT, '.build', 'bench');
  mkdirSync(jsonDir, { recursive: true });
  writeFileSync(join(jsonDir, 'results.json'), JSON.stringify({ fanout, manyRooms, idle, synth, artifact, serverApi, presence }, null, 2));
  log(`wrote ${opts.out} and .build/bench/results.json in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    process.stderr.write(`\n${sig}: stopping every benchmark process\n`);
    killAllNow();
    process.exit(130);
  });
}

main().then(
  () => stopAllProcesses(),
  async (err: unknown) => {
    await stopAllProcesses();
    if (err instanceof UsageError) process.stderr.write(`${err.message}\n${USAGE}\n`);
    else process.stderr.write(`benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
