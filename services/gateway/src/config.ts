import { z } from 'zod';
import { baseEnv, parseEnv, toBaseConfig, type BaseConfig } from '@baton/engine';

/** Default of BATON_RATE_LIMIT: ten requests a second on average, far above what the dashboard needs. */
export const DEFAULT_RATE_LIMIT = 600;

/** Default of BATON_REDIS_COMMAND_TIMEOUT_MS: far above a healthy Redis round trip, well below a client's patience. */
export const DEFAULT_REDIS_COMMAND_TIMEOUT_MS = 2_000;

/** An address (IPv4/IPv6), a subnet in CIDR notation, or one of express's named ranges. */
const TRUST_PROXY_ENTRY = /^(loopback|linklocal|uniquelocal|[0-9a-f.:]+(\/\d{1,3})?)$/i;

/** What express's `trust proxy` setting is given: false, a hop count, or addresses/subnets. */
export type TrustProxy = false | number | string[];

/** A comma-separated list; blanks dropped, so an empty variable (as Helm and Compose render) is `[]`. */
const commaList = z
  .string()
  .optional()
  .transform((value) =>
    (value ?? '')
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item.length > 0),
  );

/** The gateway's environment: the shared keys plus its own, parsed once at start. */
export const gatewayEnv = baseEnv.extend({
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  /**
   * Comma-separated API keys. Unset or blank disables auth (local development); a blank value is
   * treated as unset because Helm and Compose often render an empty variable for "not configured".
   */
  BATON_API_KEYS: commaList,
  /**
   * Comma-separated keys that may only read (GET, HEAD): any other method answers 403. For
   * dashboards on a wall, monitoring scripts, support staff. Setting only these turns auth on too.
   */
  BATON_READONLY_API_KEYS: commaList,
  /** Largest accepted request body, in the `bytes` notation express understands (`100kb`, `1mb`). */
  BATON_BODY_LIMIT: z
    .string()
    .trim()
    .regex(/^\d+(\.\d+)?\s*(b|kb|mb|gb)?$/i, 'a size such as 512kb or 1mb')
    .default('1mb'),
  /**
   * Requests per minute per client (its IP, as `trust proxy` resolves it), counted in Redis so every
   * replica shares the count. 0 turns the limit off. /healthz, /readyz and /metrics are never limited.
   */
  BATON_RATE_LIMIT: z.coerce.number().int().min(0).default(DEFAULT_RATE_LIMIT),
  /**
   * Express's `trust proxy`: which X-Forwarded-For hops to believe when working out the client's IP.
   * Unset or `false`: none (the TCP peer is the client); a number: that many proxies in front
   * (1 behind one ingress); otherwise a comma-separated list of addresses, subnets or the names
   * `loopback`, `linklocal`, `uniquelocal`. `true` (believe any X-Forwarded-For) is refused: any
   * client could then pick its own rate-limit key.
   */
  BATON_TRUST_PROXY: z
    .string()
    .trim()
    .optional()
    .transform((value, ctx): TrustProxy => {
      if (value === undefined || value === '' || value.toLowerCase() === 'false') return false;
      if (/^\d+$/.test(value)) return Number(value);
      if (value.toLowerCase() === 'true') {
        ctx.addIssue({ code: 'custom', message: 'true would trust any client; give the number of proxies (e.g. 1)' });
        return z.NEVER;
      }
      const entries = value
        .split(',')
        .map((entry) => entry.trim())
        .filter(Boolean);
      const bad = entries.find((entry) => !TRUST_PROXY_ENTRY.test(entry));
      if (bad !== undefined) {
        ctx.addIssue({ code: 'custom', message: `'${bad}' is not a number of hops, an address, a subnet or a name` });
        return z.NEVER;
      }
      return entries;
    }),
  /**
   * Serve /metrics on this port only (not on PORT), so an Ingress that exposes the API never exposes
   * the metrics. Separate from METRICS_PORT, which Compose sets for every component.
   */
  BATON_METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  /**
   * Longest time a client may take to send a whole request (headers and body); a slower one gets
   * 408 and its connection closed (slowloris). Headers alone must arrive within the smaller of this
   * and 10 s.
   */
  BATON_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1000).max(600_000).default(30_000),
  /**
   * Longest wait for any one Redis command of the gateway (run-start notifications, cancel and
   * retry, the rate limiter, queue reads), so a frozen or failing-over Redis cannot hold requests:
   * a run start still answers 202 (the run is committed; the reconciler starts it), a read that
   * needs Redis answers 503 REDIS_UNAVAILABLE.
   */
  BATON_REDIS_COMMAND_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(100)
    .max(60_000)
    .default(DEFAULT_REDIS_COMMAND_TIMEOUT_MS),
  /**
   * `true`: a run of a workflow without admission limits is written `running` with its first steps
   * queued by the statement that inserts it, and the gateway enqueues their jobs (shared's
   * direct-start.ts). `false`: every run is inserted `pending` and started by the coordinator from its
   * inbox, as before issue 16.
   */
  BATON_DIRECT_START: z.enum(['true', 'false']).default('true'),
});

export interface GatewayConfig extends BaseConfig {
  port: number;
  /** Empty (and no read-only keys): auth is off. */
  apiKeys: string[];
  /** Keys limited to GET and HEAD (403 otherwise); absent: none. */
  readOnlyApiKeys?: string[];
  bodyLimit: string;
  /**
   * Requests per minute per client; 0 or absent: no limit (apps built by tests leave it out).
   * loadGatewayConfig always sets it (default DEFAULT_RATE_LIMIT).
   */
  rateLimit?: number;
  /** Express's `trust proxy`; absent: false. */
  trustProxy?: TrustProxy;
  /** When set, /metrics is served on this port by main.ts and the API port answers it with 404. */
  gatewayMetricsPort?: number;
  /** server.requestTimeout of main.ts; absent: 30 s. */
  requestTimeoutMs?: number;
  /**
   * The command timeout of the gateway's Redis connection (createGatewayRedis); absent: the
   * default. Apps built by tests use whatever connection they are given.
   */
  redisCommandTimeoutMs?: number;
  /** BATON_DIRECT_START; absent: true. */
  directStart?: boolean;
}

/** Throws a ConfigError naming every bad variable; entry points wrap it in loadConfigOrExit. */
export function loadGatewayConfig(env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const parsed = parseEnv(gatewayEnv, env);
  return {
    ...toBaseConfig(parsed),
    port: parsed.PORT,
    apiKeys: parsed.BATON_API_KEYS,
    readOnlyApiKeys: parsed.BATON_READONLY_API_KEYS,
    bodyLimit: parsed.BATON_BODY_LIMIT,
    rateLimit: parsed.BATON_RATE_LIMIT,
    trustProxy: parsed.BATON_TRUST_PROXY,
    directStart: parsed.BATON_DIRECT_START === 'true',
    requestTimeoutMs: parsed.BATON_REQUEST_TIMEOUT_MS,
    redisCommandTimeoutMs: parsed.BATON_REDIS_COMMAND_TIMEOUT_MS,
    ...(parsed.BATON_METRICS_PORT === undefined ? {} : { gatewayMetricsPort: parsed.BATON_METRICS_PORT }),
  };
}
