/**
 * A TCP load balancer that behaves like an ALB target group, as far as a deploy is concerned
 * (docs/infrastructure.md, "Deploys and scale-in"):
 * - a registered target is health-checked every `intervalMs` on `healthPath`; it takes new connections once
 *   `healthyThreshold` checks in a row passed, and stops taking them after `unhealthyThreshold` failures;
 * - a deregistered target gets no new connections and no more health checks at once; the connections it carries
 *   stay open until `deregistrationDelayMs` has passed, then they are cut (the client sees 1006); deregistration
 *   completes early when the target has no connection left.
 */
import { request } from 'node:http';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export interface TestLoadBalancerOptions {
  readonly healthPath: string;
  readonly intervalMs: number;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
  readonly deregistrationDelayMs: number;
}

type TargetState = 'initial' | 'healthy' | 'unhealthy' | 'draining' | 'unused';

interface Target {
  readonly id: string;
  readonly port: number;
  state: TargetState;
  passes: number;
  fails: number;
  timer?: NodeJS.Timeout;
  readonly conns: Set<Socket>;
}

/** What a deregistration ended with. */
export interface DeregistrationResult {
  /** Connections still open when the delay ran out, and cut. */
  readonly cut: number;
  readonly elapsedMs: number;
}

export class TestLoadBalancer {
  private readonly targets = new Map<string, Target>();
  private server: Server | undefined;
  private next = 0;
  /** Connections refused because no target was healthy. */
  refused = 0;

  constructor(private readonly opts: TestLoadBalancerOptions) {}

  /** Listens on an ephemeral loopback port; resolves with it. */
  async listen(): Promise<number> {
    const server = createServer((client) => this.route(client));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  }

  register(id: string, port: number): void {
    if (this.targets.has(id)) throw new Error(`TestLoadBalancer: target ${id} is already registered`);
    const target: Target = { id, port, state: 'initial', passes: 0, fails: 0, conns: new Set() };
    this.targets.set(id, target);
    this.scheduleCheck(target);
  }

  /** Resolves once the target passed its healthy threshold (bounded by timeoutMs). */
  async waitHealthy(id: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
      if (this.targets.get(id)?.state === 'healthy') return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`TestLoadBalancer: target ${id} not healthy within ${timeoutMs} ms (state ${this.targets.get(id)?.state ?? 'unknown'})`);
  }

  /** Deregisters: no new connections, no health checks; cuts what is left after the delay. */
  async deregister(id: string): Promise<DeregistrationResult> {
    const target = this.targets.get(id);
    if (!target) throw new Error(`TestLoadBalancer: no target ${id}`);
    const started = Date.now();
    target.state = 'draining';
    if (target.timer) clearTimeout(target.timer);
    const deadline = started + this.opts.deregistrationDelayMs;
    for (let i = 0; i < 100_000 && target.conns.size > 0 && Date.now() < deadline; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const cut = target.conns.size;
    for (const socket of target.conns) socket.destroy();
    target.state = 'unused';
    this.targets.delete(id);
    return { cut, elapsedMs: Date.now() - started };
  }

  /** Open client connections per target id. */
  connections(): Record<string, number> {
    return Object.fromEntries([...this.targets.values()].map((t) => [t.id, t.conns.size]));
  }

  async close(): Promise<void> {
    for (const t of this.targets.values()) {
      if (t.timer) clearTimeout(t.timer);
      for (const s of t.conns) s.destroy();
    }
    this.targets.clear();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private route(client: Socket): void {
    const healthy = [...this.targets.values()].filter((t) => t.state === 'healthy');
    if (healthy.length === 0) {
      this.refused++;
      client.destroy();
      return;
    }
    const target = healthy[this.next++ % healthy.length];
    const upstream = connect(target.port, '127.0.0.1');
    target.conns.add(client);
    const end = (): void => {
      target.conns.delete(client);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  }

  private scheduleCheck(target: Target): void {
    target.timer = setTimeout(() => {
      this.check(target).then(
        () => {
          if (target.state !== 'draining' && target.state !== 'unused') this.scheduleCheck(target);
        },
        () => undefined,
      );
    }, this.opts.intervalMs);
  }

  private async check(target: Target): Promise<void> {
    const ok = await new Promise<boolean>((resolve) => {
      const req = request({ host: '127.0.0.1', port: target.port, path: this.opts.healthPath, timeout: 2_000 }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
      req.end();
    });
    if (target.state === 'draining' || target.state === 'unused') return;
    if (ok) {
      target.fails = 0;
      target.passes++;
      if (target.passes >= this.opts.healthyThreshold) target.state = 'healthy';
    } else {
      target.passes = 0;
      target.fails++;
      if (target.fails >= this.opts.unhealthyThreshold) target.state = 'unhealthy';
    }
  }
}
