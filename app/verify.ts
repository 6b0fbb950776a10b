/**
 * Delivery verification (`npm run ops -- verify`): canary clients spread over the relay instances join one room and
 * publish numbered messages; every client counts, per publisher, each message it should have had and did not (gap),
 * had twice (duplicate) or had out of order (reordered), plus the `recovered:true` rate of its rejoins and the
 * delivery latency. A message counts as expected once its publisher got the ack, and every client had joined before
 * the first publish, so each acknowledged message must reach every client exactly once.
 */
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

export interface VerifyOptions {
  /** WebSocket URLs (`ws://host:port/ws`); clients are spread over them round-robin. */
  readonly urls: readonly string[];
  /** Publishing time after every client joined. */
  readonly durationMs: number;
  readonly clients: number;
  /** Messages per second, over all clients. */
  readonly rate: number;
  /** Runs while the canary publishes (e.g. a deploy); publishing goes on until it resolves and `durationMs` passed. */
  readonly during?: () => Promise<void>;
  /** Time to wait for the last messages after publishing stops. @default 5000 */
  readonly settleMs?: number;
  /** Gives up joining after this long. @default 20000 */
  readonly connectTimeoutMs?: number;
  /**
   * Instances the clients must cover (`--instances`); the run fails when fewer were reached. Without it, discovery
   * stops once several connections in a row reached no new instance.
   */
  readonly expectedInstances?: number;
  /** Gives up discovering instances after this long and reports how many it saw. @default 30000 */
  readonly discoveryTimeoutMs?: number;
}

/** What discovery found: the instances behind the URLs, and why it stopped. */
export interface InstanceDiscovery {
  readonly instances: readonly string[];
  readonly expected: number | null;
  /** Connections opened to find them. */
  readonly probes: number;
  /** Whether every expected instance was seen (without an expectation: whether discovery settled before its timeout). */
  readonly complete: boolean;
  readonly note: string;
}

export interface ClientReport {
  readonly client: number;
  readonly instanceIds: readonly string[];
  readonly received: number;
  readonly gaps: number;
  readonly duplicates: number;
  readonly reordered: number;
  readonly reconnects: number;
  readonly recovered: number;
}

export interface VerifyReport {
  readonly room: string;
  readonly passed: boolean;
  readonly published: number;
  readonly acknowledged: number;
  readonly gaps: number;
  readonly duplicates: number;
  readonly reordered: number;
  /** `seq` numbers that jumped by more than one, or repeated, within an epoch (when the relay numbers messages). */
  readonly seqAnomalies: number;
  readonly reconnects: number;
  /** Share of rejoins answered `recovered: true`; null without rejoins. */
  readonly recoveredRate: number | null;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly instances: readonly string[];
  readonly discovery: InstanceDiscovery;
  readonly clients: readonly ClientReport[];
}

interface Position {
  seq: string;
  epoch: string;
}

interface Frame {
  type?: string;
  id?: string;
  instanceId?: string;
  data?: unknown;
  seq?: string;
  epoch?: string;
  recovered?: boolean;
  position?: Position;
  room?: string;
  code?: string;
  message?: string;
}

interface Payload {
  v: string;
  c: number;
  n: number;
  t: number;
}

class CanaryClient {
  ws?: WebSocket;
  readonly instanceIds = new Set<string>();
  readonly seen = new Map<string, number>();
  readonly lastFrom = new Map<number, number>();
  duplicates = 0;
  reordered = 0;
  seqAnomalies = 0;
  reconnects = 0;
  recovered = 0;
  received = 0;
  joined = false;
  stopped = false;
  last?: Position;
  nextId = 0;
  urlIndex: number;
  /** The instance this client should sit on; a first connection that lands elsewhere is retried (behind a load balancer). */
  target?: string;
  placementTries = 0;
  readonly acks = new Map<string, (frame: Frame) => void>();

  constructor(
    readonly index: number,
    readonly run: string,
    readonly room: string,
    readonly urls: readonly string[],
    readonly latencies: number[],
  ) {
    this.urlIndex = index % urls.length;
  }

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.urls[this.urlIndex]);
      this.ws = ws;
      const rejoin = this.joined;
      let settled = false;
      let misplaced = false;
      ws.on('message', (raw: Buffer) => {
        const frame = parseFrame(raw);
        if (frame === undefined) return;
        if (frame.type === 'welcome') {
          if (!rejoin && this.target !== undefined && frame.instanceId !== this.target && this.placementTries > 0) {
            // Landed on another instance than the one this client covers: try again before joining.
            this.placementTries--;
            misplaced = true;
            settled = true;
            ws.close();
            reject(new Misplaced());
            return;
          }
          if (frame.instanceId) this.instanceIds.add(frame.instanceId);
          const id = this.request((ack) => {
            if (rejoin) {
              this.reconnects++;
              if (ack.recovered === true) this.recovered++;
            }
            if (ack.position && !this.last) this.last = ack.position;
            if (ack.type !== 'ack') {
              settled = true;
              reject(new Error(`the relay refused the canary's join: ${JSON.stringify(ack)}`));
              ws.close();
              return;
            }
            this.joined = true;
            settled = true;
            resolve();
          });
          ws.send(JSON.stringify({ type: 'join', room: this.room, id, ...(rejoin && this.last ? { since: this.last } : {}) }));
        } else if (frame.type === 'ack' || frame.type === 'error') {
          const done = frame.id === undefined ? undefined : this.acks.get(frame.id);
          if (done && frame.id !== undefined) {
            this.acks.delete(frame.id);
            done(frame);
          }
        } else if (frame.type === 'message' && frame.room === this.room) {
          this.onMessage(frame);
        }
      });
      ws.on('error', (err) => {
        if (!settled) reject(err);
      });
      ws.on('close', (code: number, reason: Buffer) => {
        // A misplaced connection sent nothing; the pending requests belong to the connection that replaced it.
        if (misplaced) return;
        const closed = `the relay closed the connection (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''}) before answering`;
        for (const [id, done] of this.acks) {
          this.acks.delete(id);
          done({ type: 'error', message: closed });
        }
        if (!settled) {
          reject(new Error(`${closed} the join`));
          return;
        }
        if (this.stopped) return;
        // Reconnect to the next URL (a drained instance refuses new connections), bounded by the run's own end.
        this.urlIndex = (this.urlIndex + 1) % this.urls.length;
        void this.reconnect();
      });
    });
  }

  /** First connection: on the target instance if it can be reached within the tries, else wherever it lands. */
  async place(): Promise<void> {
    for (;;) {
      try {
        await this.connect();
        return;
      } catch (err) {
        if (!(err instanceof Misplaced)) throw err;
      }
    }
  }

  private async reconnect(): Promise<void> {
    for (let attempt = 0; attempt < 100 && !this.stopped; attempt++) {
      try {
        await this.connect();
        return;
      } catch {
        this.urlIndex = (this.urlIndex + 1) % this.urls.length;
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 1000)));
      }
    }
  }

  request(done: (frame: Frame) => void): string {
    const id = `${this.index}-${this.nextId++}`;
    this.acks.set(id, done);
    return id;
  }

  /** Publishes message `n`; resolves true once acknowledged. */
  publish(n: number): Promise<boolean> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.resolve(false);
    return new Promise((resolve) => {
      const id = this.request((frame) => resolve(frame.type === 'ack'));
      const data: Payload = { v: this.run, c: this.index, n, t: Date.now() };
      ws.send(JSON.stringify({ type: 'publish', room: this.room, data, id }));
    });
  }

  private onMessage(frame: Frame): void {
    const data = frame.data as Partial<Payload> | undefined;
    if (frame.seq !== undefined && frame.epoch !== undefined) {
      if (this.last && this.last.epoch === frame.epoch && BigInt(frame.seq) !== BigInt(this.last.seq) + 1n) this.seqAnomalies++;
      this.last = { seq: frame.seq, epoch: frame.epoch };
    }
    if (!data || data.v !== this.run || typeof data.c !== 'number' || typeof data.n !== 'number') return;
    const key = `${data.c}:${data.n}`;
    const count = this.seen.get(key) ?? 0;
    this.seen.set(key, count + 1);
    if (count > 0) {
      this.duplicates++;
      return;
    }
    this.received++;
    const previous = this.lastFrom.get(data.c);
    if (previous !== undefined && data.n < previous) this.reordered++;
    else this.lastFrom.set(data.c, data.n);
    if (typeof data.t === 'number') this.latencies.push(Date.now() - data.t);
  }

  close(): void {
    this.stopped = true;
    this.ws?.close();
  }
}

/** A relay frame, or undefined for bytes that are not JSON (ignored, as the relay never sends them). */
function parseFrame(raw: Buffer): Frame | undefined {
  try {
    return JSON.parse(raw.toString('utf8')) as Frame;
  } catch {
    return undefined;
  }
}

class Misplaced extends Error {
  constructor() {
    super('connected to another instance than the one this client covers');
  }
}

/** Opens one connection, reads the welcome's instance id and closes. */
function probe(url: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no welcome within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const done = (err: Error | undefined, id?: string) => {
      clearTimeout(timer);
      ws.removeAllListeners('message');
      ws.close();
      if (err) reject(err);
      else resolve(id as string);
    };
    ws.on('message', (raw: Buffer) => {
      const frame = parseFrame(raw);
      if (frame === undefined) return;
      if (frame.type !== 'welcome') return;
      if (typeof frame.instanceId === 'string' && frame.instanceId !== '') done(undefined, frame.instanceId);
      else done(new Error('the welcome frame carries no instanceId'));
    });
    ws.on('error', (err) => done(err));
    ws.on('close', () => done(new Error('closed before the welcome')));
  });
}

/** Most connections discovery opens, whatever else happens. */
const MAX_PROBES = 500;

/**
 * Finds the instances behind the URLs by connecting and reading each welcome's `instanceId`. Behind a load balancer
 * one URL leads to many instances, so it keeps connecting until it has seen `expected` instances or, without an
 * expectation, until several connections in a row (3 per instance seen, at least 6) found nothing new; it stops at
 * `timeoutMs` and says how many it saw. Returns the URL each instance was reached through.
 */
export async function discoverInstances(
  urls: readonly string[],
  expected: number | undefined,
  timeoutMs: number,
): Promise<InstanceDiscovery & { readonly urlOf: ReadonlyMap<string, number> }> {
  const urlOf = new Map<string, number>();
  const deadline = Date.now() + timeoutMs;
  let probes = 0;
  let sinceNew = 0;
  let failures = 0;
  let lastError = '';
  let settled = false;
  while (probes < MAX_PROBES && Date.now() < deadline) {
    if (expected !== undefined && urlOf.size >= expected) break;
    if (expected === undefined && probes >= urls.length && urlOf.size > 0 && sinceNew >= Math.max(6, 3 * urlOf.size)) {
      settled = true;
      break;
    }
    const index = probes % urls.length;
    probes++;
    try {
      const id = await probe(urls[index], Math.max(1, Math.min(5000, deadline - Date.now())));
      if (urlOf.has(id)) sinceNew++;
      else {
        urlOf.set(id, index);
        sinceNew = 0;
      }
    } catch (err) {
      failures++;
      lastError = (err as Error).message;
      if (failures > 2 * urls.length && urlOf.size === 0) await new Promise((r) => setTimeout(r, 200));
    }
  }
  if (urlOf.size === 0) {
    throw new Error(`could not reach any relay instance at ${urls.join(', ')} in ${probes} connections (${lastError || 'no welcome'})`);
  }
  const instances = [...urlOf.keys()].sort();
  const complete = expected !== undefined ? instances.length >= expected : settled;
  const seen = `saw ${instances.length} instance${instances.length === 1 ? '' : 's'} in ${probes} connections`;
  const note =
    expected !== undefined
      ? complete
        ? `${seen}, as expected`
        : `${seen}; expected ${expected} (--instances): the missing ones were not reached within ${timeoutMs / 1000} s`
      : complete
        ? `${seen}; the last ${sinceNew} found no new one`
        : `${seen} before the ${timeoutMs / 1000} s discovery timeout; there may be more`;
  return { instances, expected: expected ?? null, probes, complete, note, urlOf };
}

/** Runs the canary and reports what every client saw. */
export async function verifyDelivery(opts: VerifyOptions): Promise<VerifyReport> {
  if (opts.urls.length === 0) throw new Error('verify needs at least one URL');
  const run = randomBytes(6).toString('hex');
  const room = `verify-${run}`;
  const latencies: number[] = [];
  const discovery = await discoverInstances(opts.urls, opts.expectedInstances, opts.discoveryTimeoutMs ?? 30_000);
  const clients = Array.from({ length: opts.clients }, (_, i) => {
    const client = new CanaryClient(i, run, room, opts.urls, latencies);
    // Client i covers instance i mod n, through the URL that reached it.
    const target = discovery.instances[i % discovery.instances.length];
    client.target = target;
    client.urlIndex = discovery.urlOf.get(target) ?? client.urlIndex;
    client.placementTries = 8 * discovery.instances.length;
    return client;
  });
  const acknowledged = new Set<string>();
  let published = 0;
  try {
    const connectTimeout = opts.connectTimeoutMs ?? 20_000;
    await withTimeout(Promise.all(clients.map((c) => c.place())), connectTimeout, `the canary clients did not all join within ${connectTimeout / 1000} s`);
    const started = Date.now();
    let duringDone = opts.during === undefined;
    const during = opts.during?.().finally(() => {
      duringDone = true;
    });
    during?.catch(() => undefined);
    const interval = 1000 / Math.max(opts.rate, 0.001);
    const sent: Promise<void>[] = [];
    for (let n = 0; !duringDone || Date.now() - started < opts.durationMs; n++) {
      const publisher = clients[n % clients.length];
      const seq = Math.floor(n / clients.length);
      published++;
      sent.push(publisher.publish(seq).then((ok) => void (ok && acknowledged.add(`${publisher.index}:${seq}`))));
      const wait = started + (n + 1) * interval - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    await Promise.all(sent);
    if (during) await during;
    // Wait until every client has every acknowledged message, or the settle time passed.
    const settleUntil = Date.now() + (opts.settleMs ?? 5000);
    while (Date.now() < settleUntil && clients.some((c) => [...acknowledged].some((k) => !c.seen.has(k)))) {
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    for (const c of clients) c.close();
  }
  const reports = clients.map((c): ClientReport => ({
    client: c.index,
    instanceIds: [...c.instanceIds].sort(),
    received: c.received,
    gaps: [...acknowledged].filter((k) => !c.seen.has(k)).length,
    duplicates: c.duplicates,
    reordered: c.reordered,
    reconnects: c.reconnects,
    recovered: c.recovered,
  }));
  const sum = (f: (r: ClientReport) => number) => reports.reduce((s, r) => s + f(r), 0);
  const reconnects = sum((r) => r.reconnects);
  const sorted = [...latencies].sort((a, b) => a - b);
  const pct = (p: number) => (sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]);
  const gaps = sum((r) => r.gaps);
  const duplicates = sum((r) => r.duplicates);
  return {
    room,
    passed: gaps === 0 && duplicates === 0 && acknowledged.size > 0 && (discovery.expected === null || discovery.complete),
    published,
    acknowledged: acknowledged.size,
    gaps,
    duplicates,
    reordered: sum((r) => r.reordered),
    seqAnomalies: clients.reduce((s, c) => s + c.seqAnomalies, 0),
    reconnects,
    recoveredRate: reconnects === 0 ? null : sum((r) => r.recovered) / reconnects,
    p50Ms: pct(50),
    p99Ms: pct(99),
    instances: [...new Set(reports.flatMap((r) => r.instanceIds))].sort(),
    discovery: { instances: discovery.instances, expected: discovery.expected, probes: discovery.probes, complete: discovery.complete, note: discovery.note },
    clients: reports,
  };
}

/** The report as a table for a terminal. */
export function renderVerifyReport(report: VerifyReport): string {
  const rows = [
    ['CLIENT', 'INSTANCES', 'RECEIVED', 'GAPS', 'DUPLICATES', 'REORDERED', 'RECONNECTS', 'RECOVERED'],
    ...report.clients.map((c) => [String(c.client), c.instanceIds.join(','), String(c.received), String(c.gaps), String(c.duplicates), String(c.reordered), String(c.reconnects), String(c.recovered)]),
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const table = rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
  const ms = (v: number | null) => (v === null ? '-' : `${v} ms`);
  const uncovered = report.discovery.instances.filter((id) => !report.clients.some((c) => c.instanceIds.includes(id)));
  return (
    `${table}\n` +
    `instances: ${report.discovery.note}` +
    (uncovered.length > 0 ? `; no client sat on ${uncovered.join(', ')} (use --clients ${report.discovery.instances.length} or more)` : '') +
    '\n' +
    `${report.acknowledged} of ${report.published} messages acknowledged over ${report.instances.length} instance${report.instances.length === 1 ? '' : 's'}; ` +
    `${report.gaps} gaps, ${report.duplicates} duplicates, ${report.reordered} reordered, ${report.seqAnomalies} seq anomalies; ` +
    `recovered ${report.recoveredRate === null ? '-' : `${Math.round(report.recoveredRate * 100)} %`} of ${report.reconnects} rejoins; ` +
    `delivery p50 ${ms(report.p50Ms)}, p99 ${ms(report.p99Ms)}\n` +
    `${report.passed ? 'PASSED' : 'FAILED'}: ${report.passed ? 'every acknowledged message reached every client exactly once' : failure(report)}\n`
  );
}

function failure(report: VerifyReport): string {
  if (report.gaps > 0 || report.duplicates > 0) return 'messages were lost or duplicated';
  if (report.acknowledged === 0) return 'no message was acknowledged';
  return `not every expected instance was reached (${report.discovery.note})`;
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
