import { randomBytes } from 'node:crypto';
import * as z from 'zod';
import { ConfigError, apiKeys, int, isExactOrigin, isReadableFile, isRedisUrl, list, matching, oneOf, type ConfigProblem } from './config-fields';
import type { LogLevel, ServiceConfig } from './config-types';
import { ApiKeys } from './http/api-keys';
import { parseCidr } from './http/client-address';
import { REDACTED, redactUrl } from './redact';

export { ConfigError, type ConfigProblem } from './config-fields';
export type { LogLevel, ServiceConfig } from './config-types';

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const PREFIX_RE = /^[A-Za-z0-9:_.-]{1,64}$/;
const INSTANCE_ID_RE = /^[A-Za-z0-9:_.-]{1,128}$/;

const schema = z.object({
  PORT: int(8080, 0, 65535).meta({ description: 'TCP port the relay listens on; `0` picks a free port.' }),
  HOST: z.string().optional().default('0.0.0.0').meta({ description: 'Address the relay binds to.', allowed: 'an IP address or host name' }),
  LOG_LEVEL: oneOf(LOG_LEVELS, 'info').meta({ description: 'Level of the JSON log lines written to stdout (pino).' }),
  REDIS_URL: z
    .string()
    .optional()
    .refine((v) => v === undefined || isRedisUrl(v), {
      message: 'expected a redis:// or rediss:// URL such as redis://127.0.0.1:6379 (unset = in-memory backplane)',
    })
    .meta({
      description:
        'Redis to use as the backplane; `rediss://` for TLS. May carry a password (`rediss://:password@host:6379`). With `REDIS_MODE=cluster`: one seed node or the configuration endpoint.',
      allowed: 'a `redis://` or `rediss://` URL',
      unset: 'a single instance with the in-memory backplane',
    }),
  REDIS_MODE: oneOf(['standalone', 'cluster'] as const, 'standalone').meta({ description: '`standalone`: one node, or a replication group with cluster mode disabled; `cluster`: cluster mode enabled, each room on the shard that owns its slot (sharded pub/sub). `cluster` requires `REDIS_URL`.' }),
  REDIS_AUTH_TOKEN: z
    .string()
    .optional()
    .meta({
      description:
        'Redis AUTH password, used only when `REDIS_URL` carries none. Never logged.',
      allowed: 'any string',
      unset: 'no AUTH',
    }),
  REDIS_TLS_CA_FILE: z
    .string()
    .optional()
    .refine((v) => v === undefined || isReadableFile(v), { message: 'expected the path of an existing, readable PEM file' })
    .meta({
      description:
        'PEM file with the CA that signs the Redis server certificate (`rediss://` only).',
      allowed: 'the path of an existing, readable file',
      unset: 'the system\'s CAs',
    }),
  RELAY_CHANNEL_PREFIX: matching(PREFIX_RE, 'expected 1-64 characters of A-Z a-z 0-9 : _ . - (default relay)')
    .transform((v) => v ?? 'relay')
    .meta({
      description:
        'Start of every Redis channel and key name, so two apps sharing one Redis never see each other\'s messages. The stacks set `<app>-<env>`.',
      allowed: '1-64 characters of `A-Z a-z 0-9 : _ . -`',
    }),
  RELAY_INSTANCE_ID: matching(
    INSTANCE_ID_RE,
    'expected 1-128 characters of A-Z a-z 0-9 : _ . - and no spaces (default relay-<16 random hex>)',
  )
    .meta({
      description:
        'Tags what this instance publishes, so it drops its own messages when Redis echoes them back; also in every log line, every welcome frame and `/healthz`.',
      allowed: '1-128 characters of `A-Z a-z 0-9 : _ . -`',
      unset: '`relay-<16 random hex>`: random, so it says nothing about the host',
    }),
  RELAY_MAX_PAYLOAD_BYTES: int(65536, 256, 16 * 1024 * 1024).meta({ description: 'Largest inbound frame in bytes (a bigger one closes the socket with 1009), and largest outgoing message frame (a bigger one is refused with `too_large`).' }),
  RELAY_RATE_LIMIT: int(100, 1, 1_000_000).meta({ description: 'Frames per second refilled into each connection\'s token bucket; every inbound frame costs one token.' }),
  RELAY_RATE_BURST: int(200, 1, 1_000_000).meta({ description: 'Size of each connection\'s token bucket: the burst it may send at once.' }),
  RELAY_RATE_LIMIT_MAX_REJECTS: int(200, 1, 1_000_000).meta({ description: 'Rate-limited frames tolerated within 10 s; one more closes the socket with 1008.' }),
  RELAY_MAX_ROOMS: int(100, 1, 100_000).meta({ description: 'Rooms one connection may be in; a join beyond it gets `too_many_rooms`.' }),
  RELAY_ROOM_CREATE_BUDGET: int(100, 1, 1_000_000).meta({ description: 'Different rooms one connection may join or publish to per `RELAY_ROOM_CREATE_INTERVAL_MS` (rooms it is in are free); one more gets `room_budget` and nothing is stored. Bounds the rooms, and so the history memory, one client can create, see docs/redis-backplane.md "Sizing".' }),
  RELAY_ROOM_CREATE_INTERVAL_MS: int(60_000, 1000, 86_400_000).meta({ description: 'The interval of `RELAY_ROOM_CREATE_BUDGET`.' }),
  RELAY_SEND_BUFFER_BYTES: int(1_048_576, 1024, 1024 * 1024 * 1024).meta({ description: 'Bytes queued for one socket before it is closed as a slow consumer (1013).' }),
  RELAY_PING_INTERVAL_MS: int(25_000, 50, 3_600_000).meta({ description: 'WebSocket ping period; a socket that sent no pong since the previous ping is terminated.' }),
  RELAY_ALLOWED_ORIGINS: list(
    isExactOrigin,
    'expected a comma-separated list of exact origins such as https://app.example.com (scheme://host[:port], no path)',
    'not an origin',
    '; unset allows every origin',
  )
    .meta({
      description:
        'Origins allowed to open a WebSocket. With a list, an upgrade without an `Origin` header is refused too (403).',
      allowed: 'comma-separated exact origins (`scheme://host[:port]`), e.g. `https://app.example.com`',
      unset: 'every origin',
    }),
  RELAY_TOKEN_SECRET: z
    .string()
    .optional()
    .refine((v) => v === undefined || v.length >= 16, {
      message: 'expected a secret of at least 16 characters (unset = no token required)',
    })
    .meta({
      description:
        'HS256 secret. When set, clients must connect to `/ws?token=<JWT>` with a token signed with it; `exp` and `nbf` are honoured.',
      allowed: 'at least 16 characters',
      unset: 'no token required',
    }),
  RELAY_TOKEN_AUDIENCE: list((e) => e.length <= 256, 'expected a comma-separated list of audience names (unset = aud not checked)').meta({
    description: 'Accepted `aud` values: a token must name one of them (as a string or in its list). Needs `RELAY_TOKEN_SECRET`.',
    allowed: 'a comma-separated list of names',
    unset: '`aud` is not checked',
  }),
  RELAY_TOKEN_ISSUER: list((e) => e.length <= 256, 'expected a comma-separated list of issuer names (unset = iss not checked)').meta({
    description: 'Accepted `iss` values: a token\'s `iss` must be one of them. Needs `RELAY_TOKEN_SECRET`.',
    allowed: 'a comma-separated list of names',
    unset: '`iss` is not checked',
  }),
  RELAY_TOKEN_EXPIRY_NOTICE_MS: int(60_000, 0, 3_600_000).meta({
    description:
      'How long before a token\'s `exp` its connection gets a `token_expiring` frame; at most half the token\'s remaining life at connect or refresh, so a short-lived token is still warned in time. Needs `RELAY_TOKEN_SECRET`.',
  }),
  RELAY_TOKEN_EXPIRY_GRACE_MS: int(10_000, 0, 30_000).meta({
    description:
      'How long after a token\'s `exp` a connection that sent no valid `refresh` stays open; then it is closed with 4001 (token expired). Needs `RELAY_TOKEN_SECRET`.',
  }),
  RELAY_DEFAULT_ROOM_ACCESS: oneOf(['all', 'none'] as const, 'all').meta({
    description:
      'What a token without a `rooms` claim may do: `all` rooms (join and publish) and broadcasts, or `none` (a `forbidden` error for every join and publish). Set `none` in shared environments. Needs `RELAY_TOKEN_SECRET`.',
  }),
  RELAY_METRICS_PORT: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      const n = /^\d+$/.test(v) ? Number(v) : Number.NaN;
      if (!Number.isSafeInteger(n) || n > 65535) {
        ctx.addIssue({ code: 'custom', message: 'expected an integer from 0 to 65535 (default PORT + 1000, or 0 when PORT is 0)' });
        return z.NEVER;
      }
      return n;
    })
    .meta({
      description: 'Port of the internal server: `/metrics` (Prometheus) and `/healthz/detail`. Admit it only from inside the VPC; the load balancer does not route to it.',
      allowed: 'an integer from 0 to 65535, other than `PORT`',
      unset: '`PORT` + 1000 (`0` when `PORT` is `0`)',
    }),
  RELAY_METRICS_HOST: z.string().optional().meta({
    description: 'Address the internal server binds to.',
    allowed: 'an IP address or host name',
    unset: 'the value of `HOST`',
  }),
  RELAY_MAX_CONNECTIONS: int(10_000, 1, 1_000_000).meta({
    description: 'WebSocket connections (upgrades in progress included) this instance accepts; beyond it upgrades get 503 `full` and `/healthz` answers 503 until the count is back to 90 %.',
  }),
  RELAY_MAX_CONNECTIONS_PER_ADDRESS: int(256, 0, 1_000_000).meta({
    description: 'Connections one client address (an IPv6 client: its /64) may hold on this instance; beyond it upgrades get 429 `too_many_connections`. `0`: no limit.',
  }),
  RELAY_CONNECT_RATE_PER_ADDRESS: int(10, 0, 1_000_000).meta({
    description: 'New connections per second one client address earns (token bucket); past its burst an upgrade gets 429 `connect_rate_limited` with `Retry-After`. `0`: no limit.',
  }),
  RELAY_CONNECT_BURST_PER_ADDRESS: int(50, 1, 1_000_000).meta({
    description: 'New connections one client address may open at once before `RELAY_CONNECT_RATE_PER_ADDRESS` applies.',
  }),
  RELAY_TRUSTED_PROXY: list(
    (e) => parseCidr(e) !== null,
    'expected a comma-separated list of IP addresses or CIDR blocks of the load balancer, such as 10.0.0.0/16 (unset = trust no proxy)',
  ).meta({
    description: 'The load balancer\'s addresses. Only from these peers is `X-Forwarded-For` read, and its right-most address that is not itself one of these is the client the per-address limits count.',
    allowed: 'a comma-separated list of IP addresses or CIDR blocks',
    unset: 'no proxy is trusted: the peer address is the client',
  }),
  RELAY_HEADERS_TIMEOUT_MS: int(10_000, 1000, 300_000).meta({
    description: 'Time a client has to send a request\'s headers (WebSocket upgrades included); then 408 and the socket is closed.',
  }),
  RELAY_REQUEST_TIMEOUT_MS: int(15_000, 1000, 300_000).meta({
    description: 'Time for a whole HTTP request, and for the checks of an upgrade; at least `RELAY_HEADERS_TIMEOUT_MS`.',
  }),
  RELAY_DRAIN_WINDOW_MS: int(5000, 0, 600_000).meta({ description: 'On SIGTERM or SIGINT, clients are closed with 1001 in batches spread over this window.' }),
  RELAY_SHUTDOWN_TIMEOUT_MS: int(15_000, 1, 3_600_000).meta({ description: 'Hard shutdown deadline: past it the process exits 1. Must be more than `RELAY_DRAIN_WINDOW_MS`.' }),
  RELAY_BACKPLANE_GRACE_MS: int(60_000, 0, 3_600_000).meta({
    description:
      'How long the backplane may be unreachable before the load balancer\'s check (`/healthz/lb`) answers 503; long enough to ride out an ElastiCache failover. An instance whose backplane never came up answers 503 at once. `/healthz` stays strict.',
  }),
  RELAY_DEREGISTRATION_SILENCE_MS: int(0, 0, 600_000).meta({
    description:
      'Once the load balancer\'s health checks (`/healthz/lb`) have been seen, this long without one means the target was deregistered: the relay drains its clients with 1001 while the load balancer still carries them. `0`: off (no load balancer). The stacks set it from the health check interval.',
  }),
  RELAY_EMF_FILE: z.string().optional().meta({
    description: 'File the relay appends a CloudWatch embedded-metric-format line to every `RELAY_EMF_INTERVAL_MS` (connections, deliveries/s, backplane state, publish latency); at 1 MiB it is renamed to `<file>.1` (replacing the previous one). The stacks stream it to CloudWatch Logs.',
    allowed: 'a file path the relay may append to',
    unset: 'no metrics file',
  }),
  RELAY_EMF_INTERVAL_MS: int(60_000, 1000, 3_600_000).meta({ description: 'Period of the embedded-metric-format lines.' }),
  RELAY_HISTORY_SIZE: int(1000, 0, 1_000_000).meta({ description: 'Messages kept per room for message recovery; `0` turns recovery off (no `seq`/`epoch`, nothing stored in Redis).' }),
  RELAY_HISTORY_TTL_SECONDS: int(300, 1, 7 * 24 * 3600).meta({ description: 'A room\'s history and epoch are dropped after this long without a publish or join.' }),
  RELAY_HISTORY_REPLAY_MAX: int(1000, 1, 1_000_000).meta({ description: 'Most messages one join may replay; a larger gap is answered `recovered: false`.' }),
  RELAY_HISTORY_MAX_BYTES: int(1024 * 1024, 1024, 1024 * 1024 * 1024).meta({
    description:
      'Bytes of history kept per room, beside the count `RELAY_HISTORY_SIZE`: the oldest messages are dropped beyond it (a `since` older than what is kept is answered `recovered: false`). At least `RELAY_MAX_PAYLOAD_BYTES`. Bounds Redis memory, see docs/redis-backplane.md "Sizing".',
  }),
  RELAY_HISTORY_MEMORY_MAX_BYTES: int(256 * 1024 * 1024, 1024 * 1024, 64 * 1024 * 1024 * 1024).meta({
    description:
      'In-memory backplane only (no `REDIS_URL`): bytes of every room\'s history together. Beyond it the least recently used rooms\' histories are dropped; such a room starts a new epoch, so a client resuming it gets `recovered: false`, never a partial replay. At least `RELAY_HISTORY_MAX_BYTES`.',
  }),
  RELAY_REPLAY_BUDGET_BYTES: int(64 * 1024 * 1024, 1024, 1024 * 1024 * 1024).meta({
    description: 'Replay bytes one connection may be sent per minute; a join whose gap does not fit what is left is answered `recovered: false` with `reason: "budget"` (nothing is replayed).',
  }),
  RELAY_PRESENCE: oneOf(['on', 'off'] as const, 'on').meta({
    description:
      'Presence: `presence` frames list a room\'s members on every instance, `join` with `presence: true` sends `joined`/`left` events and `GET /api/rooms/<room>?members=1` lists them. A room costs nothing until one of these asks for it; from then until nobody watched or asked for 2 × `RELAY_PRESENCE_TTL_MS`, its members are recorded in the backplane (one Redis script call per join and leave, about 150 bytes per member, refreshed every `RELAY_PRESENCE_TTL_MS`/5 per room). `off`: nothing is recorded and all three are refused with `presence_disabled`.',
  }),
  RELAY_PRESENCE_TTL_MS: int(30_000, 500, 600_000).meta({
    description: 'A member of an instance that stopped (killed, lost) is gone from presence, with one `left` event, within this long. Instances refresh their members of rooms whose presence was asked for every fifth of it; a room nobody watched or asked about for twice this long stops being recorded.',
  }),
  RELAY_PRESENCE_LIST_MAX: int(100, 1, 1000).meta({
    description: 'Most members listed in one `presence` reply; its `count` is always the exact number of members.',
  }),
  RELAY_API_KEY: apiKeys().meta({
    description:
      'Bearer key of the server API (`/api/publish`, `/api/disconnect`, `/api/rooms/<room>`, see docs/protocol.md "Server API"). Two keys separated by a comma are both accepted, for a rotation: add the new key, deploy, move the callers, remove the old key. Never logged; the stacks set it from Secrets Manager.',
    allowed: 'one or two keys of 32-512 characters without commas or spaces, comma-separated',
    unset: 'the server API is off: `/api/*` answers 404',
  }),
  RELAY_API_IDEMPOTENCY_WINDOW_MS: int(300_000, 1000, 86_400_000).meta({
    description: 'How long the server API remembers an `idempotencyKey`: the same key again within it gets the first response and delivers nothing.',
  }),
  RELAY_API_RATE_LIMIT: int(2000, 1, 1_000_000).meta({
    description: 'Server API requests per second one instance accepts (token bucket, bursts of as many); beyond it 429 `rate_limited`.',
  }),
});

/**
 * Reads and validates the relay's environment. Empty strings count as unset.
 * @throws ConfigError listing every invalid variable at once.
 */
export function loadServiceConfig(env: NodeJS.ProcessEnv | Record<string, string | undefined>): ServiceConfig {
  const input: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const v = env[key];
    if (v !== undefined && v.trim() !== '') input[key] = v.trim();
  }
  const parsed = schema.safeParse(input);
  const problems: ConfigProblem[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const variable = String(issue.path[0]);
      problems.push({ variable, value: shownValue(variable, input[variable]), allowed: issue.message });
    }
  }
  const v = parsed.success ? parsed.data : undefined;
  // Cross-variable rules are checked whenever both sides are valid on their own, so one run reports everything.
  const drainParsed = schema.shape.RELAY_DRAIN_WINDOW_MS.safeParse(input.RELAY_DRAIN_WINDOW_MS);
  const deadlineParsed = schema.shape.RELAY_SHUTDOWN_TIMEOUT_MS.safeParse(input.RELAY_SHUTDOWN_TIMEOUT_MS);
  const drain = drainParsed.success ? drainParsed.data : undefined;
  const deadline = deadlineParsed.success ? deadlineParsed.data : undefined;
  if (drain !== undefined && deadline !== undefined && deadline <= drain) {
    problems.push({
      variable: 'RELAY_SHUTDOWN_TIMEOUT_MS',
      value: input.RELAY_SHUTDOWN_TIMEOUT_MS,
      allowed: `expected more than RELAY_DRAIN_WINDOW_MS (${drain} ms) so clients can be drained before the deadline`,
    });
  }
  const headersParsed = schema.shape.RELAY_HEADERS_TIMEOUT_MS.safeParse(input.RELAY_HEADERS_TIMEOUT_MS);
  const requestParsed = schema.shape.RELAY_REQUEST_TIMEOUT_MS.safeParse(input.RELAY_REQUEST_TIMEOUT_MS);
  if (headersParsed.success && requestParsed.success && requestParsed.data < headersParsed.data) {
    problems.push({
      variable: 'RELAY_REQUEST_TIMEOUT_MS',
      value: input.RELAY_REQUEST_TIMEOUT_MS,
      allowed: `expected at least RELAY_HEADERS_TIMEOUT_MS (${headersParsed.data} ms): the headers are part of the request`,
    });
  }
  problems.push(...historyBudgetProblems(input));
  const metrics = metricsPortProblem(input);
  if (metrics) problems.push(metrics);
  if (input.REDIS_MODE === 'cluster' && input.REDIS_URL === undefined) {
    problems.push({ variable: 'REDIS_URL', value: undefined, allowed: 'required when REDIS_MODE=cluster' });
  }
  if (problems.length > 0 || !v) throw new ConfigError(problems);

  return {
    port: v.PORT,
    host: v.HOST,
    logLevel: v.LOG_LEVEL,
    redisUrl: v.REDIS_URL,
    redisMode: v.REDIS_MODE,
    redisAuthToken: v.REDIS_AUTH_TOKEN,
    redisTlsCaFile: v.REDIS_TLS_CA_FILE,
    channelPrefix: v.RELAY_CHANNEL_PREFIX,
    instanceId: v.RELAY_INSTANCE_ID ?? defaultInstanceId(),
    maxPayloadBytes: v.RELAY_MAX_PAYLOAD_BYTES,
    rateLimit: v.RELAY_RATE_LIMIT,
    rateBurst: v.RELAY_RATE_BURST,
    rateLimitMaxRejects: v.RELAY_RATE_LIMIT_MAX_REJECTS,
    maxRooms: v.RELAY_MAX_ROOMS,
    roomCreateBudget: v.RELAY_ROOM_CREATE_BUDGET,
    roomCreateIntervalMs: v.RELAY_ROOM_CREATE_INTERVAL_MS,
    sendBufferBytes: v.RELAY_SEND_BUFFER_BYTES,
    pingIntervalMs: v.RELAY_PING_INTERVAL_MS,
    allowedOrigins: v.RELAY_ALLOWED_ORIGINS,
    tokenSecret: v.RELAY_TOKEN_SECRET,
    tokenAudience: v.RELAY_TOKEN_AUDIENCE ?? undefined,
    tokenIssuer: v.RELAY_TOKEN_ISSUER ?? undefined,
    tokenExpiryNoticeMs: v.RELAY_TOKEN_EXPIRY_NOTICE_MS,
    tokenExpiryGraceMs: v.RELAY_TOKEN_EXPIRY_GRACE_MS,
    defaultRoomAccess: v.RELAY_DEFAULT_ROOM_ACCESS,
    metricsPort: v.RELAY_METRICS_PORT ?? defaultMetricsPort(v.PORT),
    metricsHost: v.RELAY_METRICS_HOST ?? v.HOST,
    maxConnections: v.RELAY_MAX_CONNECTIONS,
    maxConnectionsPerAddress: v.RELAY_MAX_CONNECTIONS_PER_ADDRESS,
    connectRatePerAddress: v.RELAY_CONNECT_RATE_PER_ADDRESS,
    connectBurstPerAddress: v.RELAY_CONNECT_BURST_PER_ADDRESS,
    trustedProxies: v.RELAY_TRUSTED_PROXY,
    headersTimeoutMs: v.RELAY_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: v.RELAY_REQUEST_TIMEOUT_MS,
    drainWindowMs: v.RELAY_DRAIN_WINDOW_MS,
    shutdownTimeoutMs: v.RELAY_SHUTDOWN_TIMEOUT_MS,
    backplaneGraceMs: v.RELAY_BACKPLANE_GRACE_MS,
    deregistrationSilenceMs: v.RELAY_DEREGISTRATION_SILENCE_MS,
    emfFile: v.RELAY_EMF_FILE,
    emfIntervalMs: v.RELAY_EMF_INTERVAL_MS,
    historySize: v.RELAY_HISTORY_SIZE,
    historyTtlSeconds: v.RELAY_HISTORY_TTL_SECONDS,
    historyReplayMax: v.RELAY_HISTORY_REPLAY_MAX,
    historyMaxBytes: v.RELAY_HISTORY_MAX_BYTES,
    historyMemoryMaxBytes: v.RELAY_HISTORY_MEMORY_MAX_BYTES,
    replayBudgetBytes: v.RELAY_REPLAY_BUDGET_BYTES,
    presence: v.RELAY_PRESENCE === 'on',
    presenceTtlMs: v.RELAY_PRESENCE_TTL_MS,
    presenceListMax: v.RELAY_PRESENCE_LIST_MAX,
    apiKeys: v.RELAY_API_KEY === null ? null : new ApiKeys(v.RELAY_API_KEY),
    apiIdempotencyWindowMs: v.RELAY_API_IDEMPOTENCY_WINDOW_MS,
    apiRateLimit: v.RELAY_API_RATE_LIMIT,
  };
}

/** The history byte budgets must hold the largest message, and the memory cap one room's budget. */
function historyBudgetProblems(input: Record<string, string>): ConfigProblem[] {
  const value = <K extends 'RELAY_MAX_PAYLOAD_BYTES' | 'RELAY_HISTORY_MAX_BYTES' | 'RELAY_HISTORY_MEMORY_MAX_BYTES'>(name: K) => {
    const parsed = schema.shape[name].safeParse(input[name]);
    return parsed.success ? parsed.data : undefined;
  };
  const payload = value('RELAY_MAX_PAYLOAD_BYTES');
  const room = value('RELAY_HISTORY_MAX_BYTES');
  const memory = value('RELAY_HISTORY_MEMORY_MAX_BYTES');
  const problems: ConfigProblem[] = [];
  if (payload !== undefined && room !== undefined && room < payload) {
    problems.push({
      variable: 'RELAY_HISTORY_MAX_BYTES',
      value: input.RELAY_HISTORY_MAX_BYTES,
      allowed: `expected at least RELAY_MAX_PAYLOAD_BYTES (${payload}) so a room's history can hold its largest message`,
    });
  }
  if (room !== undefined && memory !== undefined && memory < room) {
    problems.push({
      variable: 'RELAY_HISTORY_MEMORY_MAX_BYTES',
      value: input.RELAY_HISTORY_MEMORY_MAX_BYTES,
      allowed: `expected at least RELAY_HISTORY_MAX_BYTES (${room}) so one room's full history fits`,
    });
  }
  return problems;
}

/** The schema of the relay's environment, for the generated reference (docs/generate-configuration.ts). */
export { schema as serviceEnvSchema };

/** Random, not the host name: on EC2 the host name spells the private IP, and the id goes out in every welcome. */
function defaultInstanceId(): string {
  return `relay-${randomBytes(8).toString('hex')}`;
}

/** Beside the public port, so relays on one host with different PORTs never collide (npm run dev, tests with PORT=0). */
function defaultMetricsPort(port: number): number {
  return port === 0 ? 0 : port + 1000;
}

/** RELAY_METRICS_PORT must exist (explicitly when PORT + 1000 is out of range) and differ from PORT. */
function metricsPortProblem(input: Record<string, string>): ConfigProblem | null {
  const port = schema.shape.PORT.safeParse(input.PORT);
  const metrics = schema.shape.RELAY_METRICS_PORT.safeParse(input.RELAY_METRICS_PORT);
  if (!port.success || !metrics.success) return null;
  const value = metrics.data ?? defaultMetricsPort(port.data);
  if (value > 65535) {
    return { variable: 'RELAY_METRICS_PORT', value: undefined, allowed: `required when PORT is above 64535 (PORT is ${port.data})` };
  }
  if (value !== 0 && value === port.data) {
    return { variable: 'RELAY_METRICS_PORT', value: input.RELAY_METRICS_PORT, allowed: `expected a port other than PORT (${port.data})` };
  }
  return null;
}

/** Variables whose values never appear in an error message: they are, or may contain, secrets. */
const SECRET_VARIABLES = new Set(['RELAY_TOKEN_SECRET', 'REDIS_AUTH_TOKEN', 'RELAY_API_KEY']);

function shownValue(variable: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (SECRET_VARIABLES.has(variable)) return REDACTED;
  return variable === 'REDIS_URL' ? redactUrl(value) : value;
}
