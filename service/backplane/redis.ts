/**
 * The standalone transport of the Redis backplane: a standalone Redis or a replication group with cluster mode
 * disabled (ElastiCache primary endpoint). Publishes on one connection and subscribes on another, so a slow
 * subscriber never delays publishes; asks ROLE every second and follows a failover to the new primary.
 * Everything else (channels, envelopes, history, state) is the shared backplane in redis-backplane.ts.
 */
import { RedisClient } from '@redis/client';
import type { Logger } from 'pino';
import { TransportBackplane } from './redis-backplane';
import type { RedisBackplaneOptions, RedisTransport, TransportHost } from './transport';
import { BUFFER_REPLIES } from './history';
import { COMMAND_TIMEOUT_MS, describeError, socketOptions, withTimeout, type RedisConnectionSettings } from './redis-common';

export type { RedisBackplaneOptions } from './transport';

/** How often the publisher connection asks ROLE, to notice a primary demoted without a dropped connection. */
export const ROLE_CHECK_INTERVAL_MS = 1000;
/** After this long down on a node reached by following a failover, go back to the configured endpoint. */
const REDIRECT_GIVE_UP_MS = 5000;
/** Connections to try in one failover episode before waiting for the next ROLE tick. */
const MAX_FAILOVER_HOPS = 4;

/**
 * The bare node-redis client: pub/sub, sendCommand and connection handling, without the ~1,000 generated command
 * methods createClient() attaches (building those costs a few hundred ms of start-up and memory we never use).
 */
type Client = RedisClient<NoExtensions, NoExtensions, NoExtensions, 3, NoExtensions>;
/** No modules, functions, scripts or type mapping: what createClient() defaults to. */
type NoExtensions = Record<string, never>;
interface Address {
  readonly host: string;
  readonly port: number;
}

/**
 * The Redis backplane over a standalone Redis or a replication group (kind 'redis'); see TransportBackplane for
 * start-up and subscription behaviour.
 */
export class RedisBackplane extends TransportBackplane {
  constructor(opts: RedisBackplaneOptions) {
    super(opts, (settings, logger) => new StandaloneTransport(settings, logger));
  }
}

/** A publisher + subscriber connection pair to the primary; replaced as a whole on failover. */
export class StandaloneTransport implements RedisTransport {
  readonly kind = 'redis' as const;
  readonly store = 'redis';
  readonly publishCommand = 'PUBLISH' as const;
  readonly #settings: RedisConnectionSettings;
  readonly #configured: Address;
  readonly #logger: Logger;
  #host: TransportHost | undefined;
  #pub: Client | undefined;
  #sub: Client | undefined;
  /** Bumped whenever the connection pair is replaced, so events from a discarded pair are ignored. */
  #generation = 0;
  #target: Address;
  #subSynced = false;
  #roleOk = false;
  /** Generation whose ROLE check is in flight, so one check runs per connection pair. */
  #roleCheckFor = -1;
  #roleUnsupported = false;
  /** Generation whose primary ran prepareNode (scripts loaded before the first publish, see loadScripts). */
  #preparedFor = -1;
  #failoverHops = 0;
  #downSince = 0;
  #ready = false;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(settings: RedisConnectionSettings, logger: Logger) {
    this.#settings = settings;
    this.#configured = { host: settings.endpoint.host, port: settings.endpoint.port };
    this.#target = this.#configured;
    this.#logger = logger;
  }

  start(host: TransportHost): void {
    if (this.#host !== undefined || this.#closed) return;
    this.#host = host;
    this.#connect(this.#configured);
    this.#timer = setInterval(() => this.#tick(), ROLE_CHECK_INTERVAL_MS);
    this.#timer.unref();
  }

  send(_key: string, args: Array<string | Buffer>): Promise<unknown> {
    const pub = this.#pub;
    if (pub === undefined) return Promise.reject(new Error('not connected'));
    return pub.sendCommand(args, BUFFER_REPLIES);
  }

  publish(channel: string, message: Buffer): Promise<unknown> {
    const pub = this.#pub;
    if (pub === undefined) return Promise.reject(new Error('not connected'));
    return pub.sendCommand(['PUBLISH', channel, message]);
  }

  async subscribe(channel: string): Promise<void> {
    const sub = this.#sub;
    const host = this.#host;
    if (sub === undefined || host === undefined || !sub.isReady) return;
    await sub.subscribe(channel, host.onMessage, true);
  }

  async unsubscribe(channel: string): Promise<void> {
    const sub = this.#sub;
    const host = this.#host;
    if (sub === undefined || host === undefined || !sub.isReady) return;
    await sub.unsubscribe(channel, host.onMessage, true);
  }

  close(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#closed = true;
    this.#generation++;
    const clients = [this.#pub, this.#sub];
    this.#pub = undefined;
    this.#sub = undefined;
    return Promise.all(clients.map((client) => closeClient(client))).then(() => undefined);
  }

  /** Replaces the connection pair with a new one to `target`; node-redis retries each connection until it succeeds. */
  #connect(target: Address): void {
    const old = [this.#pub, this.#sub];
    const generation = ++this.#generation;
    this.#target = target;
    this.#subSynced = false;
    this.#roleOk = false;
    for (const client of old) client?.destroy();

    const options = {
      socket: socketOptions(this.#settings, target.host, target.port),
      username: this.#settings.endpoint.username,
      password: this.#settings.endpoint.password,
      // Commands must fail fast while offline instead of queueing behind a dead connection.
      disableOfflineQueue: true,
      // Every command is bounded by withTimeout; node-redis's own per-command timer would cost a timer and an
      // AbortSignal per publish on the hot path.
      commandOptions: { timeout: 0 },
    };
    const pub: Client = new RedisClient(options);
    const sub: Client = new RedisClient(options);
    this.#pub = pub;
    this.#sub = sub;
    const current = () => generation === this.#generation;

    for (const client of [pub, sub]) {
      client.on('error', (err: unknown) => {
        if (!current()) return;
        this.#host?.noteError(err);
        this.#recompute();
      });
      client.on('reconnecting', () => {
        if (!current()) return;
        if (client === sub) this.#subSynced = false;
        if (client === pub) {
          this.#roleOk = false;
          // A reconnect may reach a restarted server with an empty script cache.
          this.#preparedFor = -1;
        }
        this.#recompute();
      });
      client.on('end', () => {
        if (current()) this.#recompute();
      });
      // Errors are reported through 'error'; connect() only rejects when the client is destroyed.
      client.connect().catch(() => undefined);
    }
    pub.on('ready', () => {
      if (current()) void this.#checkRole(generation);
    });
    sub.on('ready', () => {
      if (current()) void this.#syncSubscriptions(generation);
    });
    this.#recompute();
  }

  /** Makes the subscriber's channels match `#channels`; node-redis resubscribes on its own, this covers what it missed. */
  async #syncSubscriptions(generation: number): Promise<void> {
    const sub = this.#sub;
    const host = this.#host;
    if (sub === undefined || host === undefined) return;
    try {
      await withTimeout(sub.subscribe(host.wantedChannels(), host.onMessage, true), COMMAND_TIMEOUT_MS, () => new Error('SUBSCRIBE timed out'));
      const stale = [...sub.getPubSubListeners('CHANNELS').keys()].filter((channel) => !host.isWanted(channel));
      if (stale.length > 0) {
        await withTimeout(sub.unsubscribe(stale, host.onMessage, true), COMMAND_TIMEOUT_MS, () => new Error('UNSUBSCRIBE timed out'));
      }
      if (generation !== this.#generation || !sub.isReady) return;
      this.#subSynced = true;
      this.#recompute();
    } catch (err) {
      if (generation !== this.#generation) return;
      host.noteError(err);
      // Retried by the next 'ready' or the periodic tick.
    }
  }

  /** ROLE on the publisher: only a primary may take our publishes, or instances on the old primary never hear them. */
  async #checkRole(generation: number): Promise<void> {
    const pub = this.#pub;
    const host = this.#host;
    if (pub === undefined || host === undefined || this.#roleCheckFor === generation) return;
    this.#roleCheckFor = generation;
    try {
      // Before the first publish on this connection pair; see loadScripts for why.
      if (this.#preparedFor !== generation) {
        await host.prepareNode((a) => pub.sendCommand(a, BUFFER_REPLIES));
        if (generation !== this.#generation) return;
        this.#preparedFor = generation;
      }
      if (this.#roleUnsupported) {
        this.#roleOk = true;
        this.#recompute();
        return;
      }
      const reply = await withTimeout(pub.sendCommand(['ROLE']), COMMAND_TIMEOUT_MS, () => new Error(`no reply within ${COMMAND_TIMEOUT_MS} ms`));
      if (generation !== this.#generation) return;
      const role = parseRole(reply);
      if (role.role === 'master') {
        this.#failoverHops = 0;
        this.#roleOk = true;
        this.#recompute();
        return;
      }
      this.#roleOk = false;
      host.noteError(
        new Error(`redis node ${this.#target.host}:${this.#target.port} is a ${role.role}, not the primary (failover); reconnecting`),
      );
      this.#recompute();
      this.#followFailover(role.master);
    } catch (err) {
      if (generation !== this.#generation) return;
      if (/unknown command/i.test(describeError(err))) {
        // Some managed Redis flavours hide ROLE; without it we cannot detect demotion, so trust the endpoint.
        this.#roleUnsupported = true;
        this.#logger.warn({ error: describeError(err) }, 'ROLE is not available; failover detection disabled');
        this.#roleOk = true;
        this.#recompute();
        return;
      }
      // A node that cannot answer ROLE in time is hung (or the link is): report down until a check succeeds.
      host.noteError(new Error(`redis did not answer ROLE (${describeError(err)})`));
      this.#roleOk = false;
      this.#recompute();
    } finally {
      if (this.#roleCheckFor === generation) this.#roleCheckFor = -1;
    }
  }

  /**
   * First reconnect to the configured endpoint (a DNS primary endpoint moves to the new primary), then, if that
   * node is still a replica, to the primary it names.
   */
  #followFailover(reportedMaster: Address | undefined): void {
    this.#failoverHops++;
    if (this.#failoverHops > MAX_FAILOVER_HOPS) {
      this.#failoverHops = 0;
      return; // the next tick starts a fresh episode from the configured endpoint
    }
    const atConfigured = sameAddress(this.#target, this.#configured);
    const next = this.#failoverHops === 1 || reportedMaster === undefined || !atConfigured ? this.#configured : reportedMaster;
    this.#logger.warn({ from: this.#target, to: next }, 'redis node is not the primary; reconnecting');
    this.#connect(next);
  }

  #tick(): void {
    if (this.#closed) return;
    if (this.#ready) {
      void this.#checkRole(this.#generation);
      return;
    }
    const pub = this.#pub;
    if (pub?.isReady === true && !this.#roleOk) void this.#checkRole(this.#generation);
    if (this.#sub?.isReady === true && !this.#subSynced) void this.#syncSubscriptions(this.#generation);
    if (
      !sameAddress(this.#target, this.#configured) &&
      this.#downSince > 0 &&
      Date.now() - this.#downSince > REDIRECT_GIVE_UP_MS
    ) {
      // The node we followed is gone; the configured endpoint is the only stable name we have.
      this.#failoverHops = 0;
      this.#connect(this.#configured);
    }
  }

  #recompute(): void {
    if (this.#closed) return;
    this.#ready = this.#pub?.isReady === true && this.#sub?.isReady === true && this.#subSynced && this.#roleOk;
    if (this.#ready) this.#downSince = 0;
    else if (this.#downSince === 0) this.#downSince = Date.now();
    this.#host?.setReady(this.#ready);
  }
}

function sameAddress(a: Address, b: Address): boolean {
  return a.host === b.host && a.port === b.port;
}

/** ROLE replies: ['master', offset, replicas] or ['slave', host, port, state, offset]. */
function parseRole(reply: unknown): { role: string; master?: Address } {
  if (!Array.isArray(reply) || reply.length === 0) return { role: 'unknown' };
  const role = String(reply[0]);
  if (role === 'slave' && reply.length >= 3) {
    return { role: 'replica', master: { host: String(reply[1]), port: Number(reply[2]) } };
  }
  return { role };
}

/** Graceful QUIT with a bound; a dead connection is destroyed instead. Never throws. */
async function closeClient(client: Client | undefined): Promise<void> {
  if (client === undefined) return;
  try {
    if (client.isReady) {
      await withTimeout(client.close(), COMMAND_TIMEOUT_MS, () => new Error('close timed out'));
    } else {
      client.destroy();
    }
  } catch {
    client.destroy();
  }
}
