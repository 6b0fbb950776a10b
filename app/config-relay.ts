/**
 * The per-environment settings of relay.config.json that shape the Beanstalk environment beyond its size: the relay's
 * own settings (validated with the relay's own env rules from service/config.ts), HTTPS, the platform pin, scaling,
 * Spot, alarms and the Redis engine. app/config.ts spreads `infraEnvironmentFields` into each environment and passes
 * the result through `withInfraRules`.
 */
import { z } from 'zod';
import type { RelayStackProps } from '../stacks/relay-stack';
import { serviceEnvSchema } from '../service/config';

/** The AL2023 Node.js 22 platform used when an environment names none; `npm run ops -- platform` moves it on. */
export const DEFAULT_PLATFORM = '64bit Amazon Linux 2023 v6.10.0 running Node.js 22';
/** Solution stack names this project runs on: Amazon Linux 2023, Node.js. */
export const PLATFORM_PATTERN = /^64bit Amazon Linux 2023 v(\d+)\.(\d+)\.(\d+) running Node\.js (\d+)$/;

type EnvVar = keyof typeof serviceEnvSchema.shape;

/** A config number or string checked by the relay's own rule for `variable`, so synth refuses what the relay would. */
function relayRule<T extends z.ZodType>(base: T, variable: EnvVar) {
  return base.superRefine((value, ctx) => {
    const text = Array.isArray(value) ? value.join(',') : String(value);
    const parsed = serviceEnvSchema.shape[variable].safeParse(text);
    if (!parsed.success) ctx.addIssue({ code: 'custom', input: value, message: `${parsed.error.issues[0]?.message ?? 'invalid'} (the relay's ${variable})` });
  });
}

const relayInt = (variable: EnvVar, description: string) =>
  relayRule(z.int({ error: 'an integer' }), variable).optional().meta({ description: `${description} Sets \`${variable}\`.`, unset: 'the relay\'s default' });

/** `generate`, `off` or `{ "secretArn" }`: a secret the stack makes, none, or yours. */
function secretSettingSchema(description: string) {
  return z.union(
    [
      z.literal('generate'),
      z.strictObject({
        secretArn: z
          .string()
          .regex(/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/, { error: 'a Secrets Manager secret ARN' })
          .meta({ description }),
      }),
      z.literal('off'),
    ],
    { error: '"generate", "off" or { "secretArn": "<Secrets Manager ARN>" }' },
  );
}

const tokenAuthSchema = secretSettingSchema('An existing secret whose value (at least 16 characters) is the HS256 token secret.')
  .default('generate')
  .meta({
    description:
      'Token auth (`RELAY_TOKEN_SECRET`, passed through `environmentsecrets`): `generate` makes a random secret in Secrets Manager, `{ "secretArn" }` uses yours, `off` needs `insecure`.',
  });

const apiKeySchema = secretSettingSchema('An existing secret whose value is the key, or two comma-separated keys during a rotation.')
  .default('off')
  .meta({
    description:
      'Key of the relay\'s server API (`RELAY_API_KEY`, passed through `environmentsecrets`, never a plain variable): `generate` makes a random 48-character key in Secrets Manager, `{ "secretArn" }` uses yours, `off` leaves `/api` answering 404. Rotation: [operations.md](operations.md#rotating-the-server-api-key).',
  });

const relaySettingsSchema = z.strictObject({
  tokenAuth: tokenAuthSchema,
  apiKey: apiKeySchema,
  allowedOrigins: relayRule(z.array(z.string(), { error: 'a list of origins' }).min(1, { error: 'at least one origin' }), 'RELAY_ALLOWED_ORIGINS')
    .optional()
    .meta({ description: 'Origins allowed to open a WebSocket. Sets `RELAY_ALLOWED_ORIGINS`.', unset: 'every origin' }),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { error: 'a pino level' }).default('info').meta({ description: 'Sets `LOG_LEVEL`.' }),
  rateLimit: relayInt('RELAY_RATE_LIMIT', 'Frames per second per connection.'),
  rateBurst: relayInt('RELAY_RATE_BURST', 'Burst of frames per connection.'),
  maxConnections: relayInt('RELAY_MAX_CONNECTIONS', 'Connections one instance accepts.'),
  historySize: relayInt('RELAY_HISTORY_SIZE', 'Messages kept per room for recovery.'),
  historyTtlSeconds: relayInt('RELAY_HISTORY_TTL_SECONDS', 'Seconds a quiet room keeps its history.'),
  defaultRoomAccess: z
    .enum(['all', 'none'], { error: '"all" or "none"' })
    .optional()
    .meta({
      description: 'What a token without a `rooms` claim may join and publish to. Sets `RELAY_DEFAULT_ROOM_ACCESS`.',
      unset: '`none` with token auth on (tokens must name their rooms), the relay\'s default `all` with `tokenAuth: "off"`',
    }),
  drainWindowMs: relayRule(z.int({ error: 'an integer' }), 'RELAY_DRAIN_WINDOW_MS')
    .default(20_000)
    .meta({ description: 'Window over which an instance leaving the load balancer closes its clients with 1001. Sets `RELAY_DRAIN_WINDOW_MS`; the deregistration delay follows it.' }),
  backplaneGraceMs: relayRule(z.int({ error: 'an integer' }), 'RELAY_BACKPLANE_GRACE_MS')
    .default(60_000)
    .meta({ description: 'Backplane outage the load balancer check rides out before it turns 503. Sets `RELAY_BACKPLANE_GRACE_MS`.' }),
});

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;

export const infraEnvironmentFields = {
  platform: z
    .string({ error: 'a solution stack name' })
    .regex(PLATFORM_PATTERN, { error: 'an Amazon Linux 2023 Node.js solution stack name like "64bit Amazon Linux 2023 v6.10.0 running Node.js 22"' })
    .default(DEFAULT_PLATFORM)
    .meta({ description: 'Beanstalk solution stack the environment runs, pinned, so an upgrade is a config change that shows in the diff.', allowed: 'an AL2023 Node.js solution stack name like `64bit Amazon Linux 2023 v6.10.0 running Node.js 22`' }),
  relay: relaySettingsSchema.default({ tokenAuth: 'generate', apiKey: 'off', logLevel: 'info', drainWindowMs: 20_000, backplaneGraceMs: 60_000 }).meta({ description: 'The relay\'s own settings in this environment.' }),
  https: z
    .union(
      [
        z.strictObject({ certificateArn: z.string().regex(/^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[0-9a-f-]{36}$/, { error: 'an ACM certificate ARN' }).meta({ description: 'An existing ACM certificate.' }) }),
        z.strictObject({
          domain: z.string().regex(/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, { error: 'a lower-case DNS name like "relay.example.com"' }).meta({ description: 'Name clients connect to; the stack creates its certificate (DNS validation) and alias record.', allowed: 'a lower-case DNS name like `relay.example.com`' }),
          hostedZone: z.string().regex(/^([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, { error: 'a hosted zone name like "example.com"' }).meta({ description: 'Public Route 53 hosted zone the domain is in, looked up by name.', allowed: 'a hosted zone name like `example.com`' }),
        }),
      ],
      { error: '{ "certificateArn": "<ACM ARN>" } or { "domain": "<name>", "hostedZone": "<zone name>" }' },
    )
    .optional()
    .meta({ description: 'HTTPS on 443, and :80 redirected to it.', unset: 'HTTP only: needs `insecure`' }),
  insecure: z
    .strictObject({ reason: z.string().trim().min(1, { error: 'a non-empty reason' }).meta({ description: 'Why this environment may run without HTTPS or token auth; synth prints it.' }) })
    .optional()
    .meta({ description: 'Allows an environment without HTTPS or token auth (the `https-and-auth` policy rule); never for an environment others use.', unset: 'HTTPS and token auth required' }),
  scaling: z
    .strictObject({
      connectionsPerInstance: z.int({ error: 'an integer' }).min(100, { error: 'an integer >= 100' }).max(1_000_000, { error: 'an integer <= 1000000' }).optional().meta({ description: 'Target of the average connections per instance.', unset: 'derived from the instance type\'s memory and the measured memory per connection, at most 70 % of `relay.maxConnections`' }),
      cpuPercent: z.int({ error: 'an integer' }).min(10, { error: 'an integer >= 10' }).max(90, { error: 'an integer <= 90' }).default(60).meta({ description: 'Target of the average CPU utilisation (second policy).' }),
    })
    .default({ cpuPercent: 60 })
    .meta({ description: 'Target-tracking scaling policies.' }),
  spot: z
    .strictObject({
      onDemandBase: z.int({ error: 'an integer' }).min(0, { error: 'an integer >= 0' }).default(1).meta({ description: 'On-Demand instances before any Spot.' }),
      onDemandAbovePercent: z.int({ error: 'an integer' }).min(0, { error: 'an integer >= 0' }).max(100, { error: 'an integer <= 100' }).default(0).meta({ description: 'Percentage of On-Demand above the base.' }),
    })
    .optional()
    .meta({ description: 'Run Spot instances (then several `instances.types` make sense).', unset: 'On-Demand only, a single instance type' }),
  alarms: z
    .strictObject({ email: z.email({ error: 'an email address' }).optional().meta({ description: 'Subscribed to the alarms\' SNS topic (confirm the subscription mail).', unset: 'no subscription' }) })
    .default({})
    .meta({ description: 'Alarm notifications; the alarms and the dashboard exist in every environment.' }),
  deregistrationDelaySeconds: z.int({ error: 'an integer' }).min(0, { error: 'an integer >= 0' }).max(3600, { error: 'an integer <= 3600' }).optional().meta({ description: 'ALB deregistration delay.', unset: 'health-check silence + drain window + 15 s margin' }),
  redisEngine: z.enum(['redis', 'valkey'], { error: '"redis" or "valkey"' }).default('redis').meta({ description: 'ElastiCache engine; the parameter group family follows it.' }),
  redisMaintenanceWindow: z
    .string()
    .regex(new RegExp(`^(${DAYS.join('|')}):([01]\\d|2[0-3]):[0-5]\\d-(${DAYS.join('|')}):([01]\\d|2[0-3]):[0-5]\\d$`), { error: 'a weekly window like "sun:05:00-sun:06:00" (UTC)' })
    .default('sun:05:00-sun:06:00')
    .meta({ description: 'ElastiCache maintenance window (UTC); must not overlap the two hours from the Beanstalk managed-update start.', allowed: '`ddd:hh:mm-ddd:hh:mm`, e.g. `sun:05:00-sun:06:00`' }),
};

interface InfraFields {
  readonly name: string;
  readonly maintenanceWindow: string;
  readonly redisMaintenanceWindow: string;
  readonly https?: unknown;
  readonly loadBalancer: { readonly certificateArn?: string };
  readonly insecure?: { readonly reason: string };
  readonly relay: { readonly tokenAuth: unknown };
  readonly instances: { readonly types: readonly string[]; readonly max: number };
  readonly spot?: { readonly onDemandBase: number };
  readonly policyWaivers: readonly { readonly rule: string; readonly reason: string }[];
}

/**
 * Cross-field rules of the fields above. `insecure` becomes the waiver of the `https-and-auth` policy rule, which
 * fails synth for an environment without HTTPS or token auth (it reads the synthesized listener and secrets).
 */
export function withInfraRules<S extends z.ZodType<InfraFields>>(schema: S) {
  return schema
    .superRefine((env, ctx) => {
      if (env.instances.types.length > 1 && env.spot === undefined) {
        ctx.addIssue({ code: 'custom', path: ['instances', 'types'], input: env.instances.types, message: 'a single instance type unless "spot" is set (On-Demand uses only the first)' });
      }
      // SpotFleetOnDemandBase: "0 to MaxSize option in aws:autoscaling:asg" (Beanstalk's general options).
      if (env.spot !== undefined && env.spot.onDemandBase > env.instances.max) {
        ctx.addIssue({
          code: 'custom',
          path: ['spot', 'onDemandBase'],
          input: env.spot.onDemandBase,
          message: `an integer <= instances.max (${env.instances.max}): Beanstalk accepts an On-Demand base from 0 to MaxSize`,
        });
      }
      if (overlaps(env.maintenanceWindow, env.redisMaintenanceWindow)) {
        ctx.addIssue({
          code: 'custom',
          path: ['redisMaintenanceWindow'],
          input: env.redisMaintenanceWindow,
          message: `a window that does not overlap the two-hour Beanstalk managed-update window starting ${env.maintenanceWindow}`,
        });
      }
    })
    .transform((env) =>
      env.insecure === undefined || env.policyWaivers.some((w) => w.rule === 'https-and-auth')
        ? env
        : { ...env, policyWaivers: [...env.policyWaivers, { rule: 'https-and-auth' as const, reason: env.insecure.reason }] },
    );
}

const MINUTES_PER_WEEK = 7 * 24 * 60;

/** Minute of the week of "Sun:03:00" or "sun:03:00". */
function minuteOfWeek(day: string, hh: string, mm: string): number {
  return DAYS.indexOf(day.toLowerCase() as (typeof DAYS)[number]) * 1440 + Number(hh) * 60 + Number(mm);
}

/** Whether the Beanstalk window (an hour from its start) and the ElastiCache window share a minute. */
export function overlaps(beanstalkStart: string, redisWindow: string): boolean {
  const b = /^(\w{3}):(\d\d):(\d\d)$/.exec(beanstalkStart);
  const r = /^(\w{3}):(\d\d):(\d\d)-(\w{3}):(\d\d):(\d\d)$/.exec(redisWindow);
  if (!b || !r) return false;
  const bStart = minuteOfWeek(b[1], b[2], b[3]);
  const rStart = minuteOfWeek(r[1], r[2], r[3]);
  let rEnd = minuteOfWeek(r[4], r[5], r[6]);
  if (rEnd <= rStart) rEnd += MINUTES_PER_WEEK;
  // "Maintenance windows are two hours long" (Beanstalk's managed platform updates page, docs/infrastructure.md).
  for (const shift of [-MINUTES_PER_WEEK, 0, MINUTES_PER_WEEK]) {
    const s = bStart + shift;
    if (s < rEnd && rStart < s + 120) return true;
  }
  return false;
}

/** The environment's infrastructure fields as they appear in a parsed config (see `infraEnvironmentFields`). */
export interface InfraEnvironment {
  readonly name: string;
  readonly platform: string;
  readonly relay: z.output<typeof relaySettingsSchema>;
  readonly https?: RelayStackProps['https'];
  readonly scaling: { readonly connectionsPerInstance?: number; readonly cpuPercent: number };
  readonly spot?: { readonly onDemandBase: number; readonly onDemandAbovePercent: number };
  readonly alarms: { readonly email?: string };
  readonly deregistrationDelaySeconds?: number;
  readonly redisEngine: 'redis' | 'valkey';
  readonly redisMaintenanceWindow: string;
  readonly redis: NonNullable<RelayStackProps['redis']>;
}

/** The relay's settings as the environment variables its own config reads. */
export function relayEnvironmentVariables(relay: z.output<typeof relaySettingsSchema>): Record<string, string> {
  const vars: Record<string, string> = {
    LOG_LEVEL: relay.logLevel,
    RELAY_DRAIN_WINDOW_MS: String(relay.drainWindowMs),
    RELAY_BACKPLANE_GRACE_MS: String(relay.backplaneGraceMs),
  };
  // With token auth on, rooms are closed unless a token opens them: an app's backend decides who joins what.
  const roomAccess = relay.defaultRoomAccess ?? (relay.tokenAuth === 'off' ? undefined : 'none');
  if (roomAccess !== undefined) vars.RELAY_DEFAULT_ROOM_ACCESS = roomAccess;
  const optional: [EnvVar, string | number | readonly string[] | undefined][] = [
    ['RELAY_ALLOWED_ORIGINS', relay.allowedOrigins],
    ['RELAY_RATE_LIMIT', relay.rateLimit],
    ['RELAY_RATE_BURST', relay.rateBurst],
    ['RELAY_MAX_CONNECTIONS', relay.maxConnections],
    ['RELAY_HISTORY_SIZE', relay.historySize],
    ['RELAY_HISTORY_TTL_SECONDS', relay.historyTtlSeconds],
  ];
  for (const [name, value] of optional) {
    if (value !== undefined) vars[name] = Array.isArray(value) ? value.join(',') : String(value);
  }
  return vars;
}

/** The stack props these fields decide; app/synth.ts spreads them into the environment's RelayStackProps. */
export function infraStackProps(env: InfraEnvironment): Pick<
  RelayStackProps,
  'platform' | 'https' | 'tokenAuth' | 'apiKey' | 'relayEnvironment' | 'scaling' | 'spot' | 'alarmEmail' | 'deregistrationDelaySeconds' | 'protectData' | 'redis'
> {
  return {
    platform: env.platform,
    https: env.https,
    tokenAuth: env.relay.tokenAuth,
    apiKey: env.relay.apiKey,
    relayEnvironment: relayEnvironmentVariables(env.relay),
    scaling: env.scaling,
    spot: env.spot,
    alarmEmail: env.alarms.email,
    deregistrationDelaySeconds: env.deregistrationDelaySeconds,
    // Production keeps its releases and secrets on destroy; every other environment can be torn down and rebuilt.
    protectData: env.name === 'prod',
    redis: { ...env.redis, engine: env.redisEngine, maintenanceWindow: env.redisMaintenanceWindow },
  };
}
