/**
 * The contract between the Redis backplane (redis-backplane.ts) and its transports (redis.ts for a standalone
 * Redis or a replication group, cluster.ts for Redis Cluster), and the options both take.
 */
import type { Logger } from 'pino';
import type { HistoryOptions, SendCommand } from './history';
import type { RedisConnectionSettings } from './redis-common';

/** Options shared by the standalone and cluster Redis backplanes. */
export interface RedisBackplaneOptions {
  /** `redis://` or `rediss://` URL (TLS for rediss); may carry a password. Cluster: one seed node or the configuration endpoint. */
  url: string;
  /** AUTH token, used only when the URL carries no password. @default none */
  authToken?: string;
  /** PEM file with the CA that signed the server certificate (rediss only). @default the system CAs */
  tlsCaFile?: string;
  /** Prefix of every channel; isolates apps sharing one Redis. */
  channelPrefix: string;
  /** This instance's id; envelopes tagged with it are dropped on receipt. */
  instanceId: string;
  logger: Logger;
  /** Per-room history for message recovery; size 0 keeps the plain publish path. @default off (size 0) */
  history?: HistoryOptions;
}

/** What a transport may ask of the backplane that drives it. */
export interface TransportHost {
  /** Every channel that must be subscribed now; the source of truth after reconnects. */
  wantedChannels(): string[];
  isWanted(channel: string): boolean;
  /** The one listener for every subscribed channel (a stable identity, so repeated subscribes are no-ops). */
  readonly onMessage: (message: Buffer, channel: Buffer) => void;
  /** Runs on each primary (new connection, failover, topology change) before the transport reports ready. */
  prepareNode(send: SendCommand): Promise<void>;
  noteError(err: unknown): void;
  /** Whether publish, commands and subscriptions all work now. */
  setReady(ready: boolean): void;
}

/** How the backplane reaches Redis: standalone (redis.ts) or cluster (cluster.ts). */
export interface RedisTransport {
  readonly kind: 'redis' | 'cluster';
  /** Names the store in errors a publisher sees ("redis", "the redis cluster"). */
  readonly store: string;
  /** The pub/sub publish command the Lua scripts call: PUBLISH, or SPUBLISH for sharded pub/sub. */
  readonly publishCommand: 'PUBLISH' | 'SPUBLISH';
  /** Starts connecting (retrying in the background) and reports through `host`. */
  start(host: TransportHost): void;
  /** One command on the node that owns `key` (the only node, standalone); replies as Buffers. */
  send(key: string, args: Array<string | Buffer>): Promise<unknown>;
  publish(channel: string, message: Buffer): Promise<unknown>;
  /** Subscribes now when connected, else resolves at once (the next resync subscribes it). */
  subscribe(channel: string): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
  /** Closes every connection and timer. Never throws. */
  close(): Promise<void>;
}

/** Builds a transport from the resolved connection settings and the backplane's logger. */
export type TransportFactory = (settings: RedisConnectionSettings, logger: Logger) => RedisTransport;
