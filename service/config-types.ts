/** The shape of the relay's settings (service/config.ts reads and checks them). */
import type { ApiKeys } from './http/api-keys';
import type { DefaultRoomAccess } from './permissions';

/** The relay's settings, read once from the environment at start-up. */
export interface ServiceConfig {
  /** TCP port; 0 picks a free one. @default 8080 */
  readonly port: number;
  /** Interface to bind. @default '0.0.0.0' */
  readonly host: string;
  /** pino level. @default 'info' */
  readonly logLevel: LogLevel;
  /** Redis URL; unset means a single instance with the in-memory backplane. */
  readonly redisUrl?: string;
  /** @default 'standalone' */
  readonly redisMode: 'standalone' | 'cluster';
  /** AUTH token used when the URL carries no password. */
  readonly redisAuthToken?: string;
  /** CA bundle (PEM) for `rediss://`. */
  readonly redisTlsCaFile?: string;
  /** Prefix of every Redis channel. @default 'relay' */
  readonly channelPrefix: string;
  /** Tags this instance's publishes and is shown to clients; random so it reveals nothing about the host. @default 'relay-<16 hex>' */
  readonly instanceId: string;
  /** Largest inbound frame and largest outgoing message frame, in bytes. @default 65536 */
  readonly maxPayloadBytes: number;
  /** Token bucket refill, frames per second. @default 100 */
  readonly rateLimit: number;
  /** Token bucket size. @default 200 */
  readonly rateBurst: number;
  /** Rate-limited frames tolerated within 10 s before the socket is closed with 1008. @default 200 */
  readonly rateLimitMaxRejects: number;
  /** Rooms one connection may join. @default 100 */
  readonly maxRooms: number;
  /** RELAY_ROOM_CREATE_BUDGET: different rooms one connection may join or publish to per interval. @default 100 */
  readonly roomCreateBudget: number;
  /** RELAY_ROOM_CREATE_INTERVAL_MS: the interval of roomCreateBudget. @default 60000 */
  readonly roomCreateIntervalMs: number;
  /** Bytes queued on one socket before it is closed as a slow consumer (1013). @default 1048576 */
  readonly sendBufferBytes: number;
  /** ws ping period; a socket that did not pong since the previous ping is terminated. @default 25000 */
  readonly pingIntervalMs: number;
  /** Exact origins allowed to connect; null allows every origin. @default null */
  readonly allowedOrigins: readonly string[] | null;
  /** HS256 secret; when set, `?token=` is required on /ws. */
  readonly tokenSecret?: string;
  /** RELAY_TOKEN_AUDIENCE: accepted `aud` values; when set, a token must name one of them. */
  readonly tokenAudience?: readonly string[];
  /** RELAY_TOKEN_ISSUER: accepted `iss` values; when set, a token's `iss` must be one of them. */
  readonly tokenIssuer?: readonly string[];
  /** RELAY_TOKEN_EXPIRY_NOTICE_MS: how long before a token's `exp` its connection gets `token_expiring` (at most half the token's remaining life). @default 60000 */
  readonly tokenExpiryNoticeMs: number;
  /** RELAY_TOKEN_EXPIRY_GRACE_MS: how long after `exp` a connection without a valid `refresh` is closed with 4001. @default 10000 */
  readonly tokenExpiryGraceMs: number;
  /** RELAY_DEFAULT_ROOM_ACCESS: what a token without a `rooms` claim may do. @default 'all' */
  readonly defaultRoomAccess: DefaultRoomAccess;
  /** RELAY_METRICS_PORT: port of the internal server (/metrics, /healthz/detail). @default PORT + 1000 (0 when PORT is 0) */
  readonly metricsPort: number;
  /** RELAY_METRICS_HOST: interface the internal server binds. @default HOST */
  readonly metricsHost: string;
  /** RELAY_MAX_CONNECTIONS: WebSocket connections this instance accepts (beyond: 503, /healthz 503 "full"). @default 10000 */
  readonly maxConnections: number;
  /** RELAY_MAX_CONNECTIONS_PER_ADDRESS: connections one client address may hold on this instance; 0 = no limit. @default 256 */
  readonly maxConnectionsPerAddress: number;
  /** RELAY_CONNECT_RATE_PER_ADDRESS: new connections per second one address earns; 0 = no limit. @default 10 */
  readonly connectRatePerAddress: number;
  /** RELAY_CONNECT_BURST_PER_ADDRESS: new connections one address may open at once before the rate applies. @default 50 */
  readonly connectBurstPerAddress: number;
  /** RELAY_TRUSTED_PROXY: CIDR blocks of the load balancer, whose X-Forwarded-For is believed; null trusts none. @default null */
  readonly trustedProxies: readonly string[] | null;
  /** RELAY_HEADERS_TIMEOUT_MS: time a client has to send a request's headers (else 408 and close). @default 10000 */
  readonly headersTimeoutMs: number;
  /** RELAY_REQUEST_TIMEOUT_MS: time for a whole request, and idle time allowed on a socket before it is upgraded. @default 15000 */
  readonly requestTimeoutMs: number;
  /** Window over which clients are closed on SIGTERM. @default 5000 */
  readonly drainWindowMs: number;
  /** Hard deadline for shutdown; must exceed the drain window. @default 15000 */
  readonly shutdownTimeoutMs: number;
  /** RELAY_BACKPLANE_GRACE_MS: how long the backplane may be unreachable before the load balancer check turns 503. @default 60000 */
  readonly backplaneGraceMs: number;
  /** RELAY_DEREGISTRATION_SILENCE_MS: silence of the load balancer's checks after which the relay drains; 0 = off. @default 0 */
  readonly deregistrationSilenceMs: number;
  /** RELAY_EMF_FILE: file the CloudWatch embedded-metric-format lines are appended to; unset = none written. */
  readonly emfFile?: string;
  /** RELAY_EMF_INTERVAL_MS: period of the embedded-metric-format lines. @default 60000 */
  readonly emfIntervalMs: number;
  /**
   * RELAY_HISTORY_SIZE: messages kept per room for recovery (join with `since`); 0 turns recovery off, and with it
   * seq/epoch in message frames and the cost of keeping history. @default 1000
   */
  readonly historySize: number;
  /** RELAY_HISTORY_TTL_SECONDS: a room's history (and epoch) is dropped after this long without a publish or join. @default 300 */
  readonly historyTtlSeconds: number;
  /** RELAY_HISTORY_REPLAY_MAX: the most messages one join may replay; a larger gap is answered recovered:false. @default 1000 */
  readonly historyReplayMax: number;
  /** RELAY_HISTORY_MAX_BYTES: bytes of history kept per room, beside the count; the oldest messages go first. @default 1 MiB */
  readonly historyMaxBytes: number;
  /** RELAY_HISTORY_MEMORY_MAX_BYTES: in-memory backplane only, bytes of every room's history together. @default 256 MiB */
  readonly historyMemoryMaxBytes: number;
  /** RELAY_REPLAY_BUDGET_BYTES: replay bytes one connection may be sent per minute; a join over it gets recovered:false. @default 64 MiB */
  readonly replayBudgetBytes: number;
  /** RELAY_PRESENCE: whether members are recorded for `presence` frames and joined/left events. @default true (on) */
  readonly presence: boolean;
  /** RELAY_PRESENCE_TTL_MS: a member of an instance that died is gone from presence (with its `left`) within this long. @default 30000 */
  readonly presenceTtlMs: number;
  /** RELAY_PRESENCE_LIST_MAX: most members listed in one `presence` reply; its `count` stays exact. @default 100 */
  readonly presenceListMax: number;
  /** RELAY_API_KEY: the server API's bearer keys (one, or two during a rotation), as digests; null turns the API off (404). @default null */
  readonly apiKeys: ApiKeys | null;
  /** RELAY_API_IDEMPOTENCY_WINDOW_MS: how long an `idempotencyKey` of the server API is remembered. @default 300000 */
  readonly apiIdempotencyWindowMs: number;
  /** RELAY_API_RATE_LIMIT: server API requests per second one instance accepts (bursts of as many). @default 2000 */
  readonly apiRateLimit: number;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
