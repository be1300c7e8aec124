import { isIP } from 'node:net';
import { BatonError, NonRetryableError, parseEnv } from '@baton/sdk';
import { z } from 'zod';
import { ErrorCode } from './error-codes';

/**
 * Pure parts of http-request: configuration, input, status classification, Retry-After, redirect
 * rules and what may be logged. No I/O here; the client is in index.ts.
 */

export const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'] as const;
export type Method = (typeof METHODS)[number];

export const DEFAULT_TIMEOUT_MS = 30_000;
export const MAX_TIMEOUT_MS = 300_000;
export const MAX_REDIRECTS = 5;
export const DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024;
export const REDIRECT_STATUSES: readonly number[] = [301, 302, 303, 307, 308];

// ---------------------------------------------------------------------------------------------
// Configuration

export interface HttpRequestConfig {
  /** Canonical host names and IPs (lower case, no brackets, no trailing dot) exempt from the SSRF guard. */
  allowedHosts: string[];
  maxBodyBytes: number;
}

/**
 * One host as the WHATWG URL parser spells it, so `LOCALHOST.`, `[::1]`, `0:0::1` and `127.1` match
 * the hostname of the URLs they mean. Undefined for anything that is not a bare host (scheme, port,
 * path, user info...).
 */
export function canonicalHost(raw: string): string | undefined {
  const value = raw.trim();
  if (!value || /[\s/?#@\\]/.test(value)) return undefined;
  const bare = value.startsWith('[') && value.endsWith(']') ? value.slice(1, -1) : value;
  const forUrl = isIP(bare) === 6 ? `[${bare}]` : bare;
  let url: URL;
  try {
    url = new URL(`http://${forUrl}/`);
  } catch {
    return undefined;
  }
  if (url.port !== '' || url.username !== '' || url.password !== '') return undefined;
  return hostOf(url);
}

/** The hostname of a URL as compared with the allow-list: lower case, IPv6 without brackets, no trailing dot. */
export function hostOf(url: URL): string {
  const host = url.hostname.toLowerCase();
  const unbracketed = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return unbracketed.endsWith('.') ? unbracketed.slice(0, -1) : unbracketed;
}

/** `HTTP_REQUEST_ALLOWED_HOSTS`: comma-separated exact host names or IPs; blanks are ignored. */
export const allowedHostsSchema = z
  .string()
  .default('')
  .transform((value, ctx) => {
    const hosts: string[] = [];
    for (const item of value.split(',')) {
      if (item.trim() === '') continue;
      const host = canonicalHost(item);
      if (host === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `'${item.trim()}' is not a host name or IP (no scheme, port or path; e.g. api.internal,10.0.0.5,::1)`,
        });
        return z.NEVER;
      }
      if (!hosts.includes(host)) hosts.push(host);
    }
    return hosts;
  });

export const httpRequestEnv = z.object({
  HTTP_REQUEST_ALLOWED_HOSTS: allowedHostsSchema,
  HTTP_REQUEST_MAX_BODY_BYTES: z.coerce
    .number()
    .int()
    .min(1)
    .max(1024 * 1024 * 1024)
    .default(DEFAULT_MAX_BODY_BYTES),
});

/** Reads the function's environment once; a bad value throws ConfigError naming it. */
export function parseHttpRequestConfig(env: NodeJS.ProcessEnv = process.env): HttpRequestConfig {
  const parsed = parseEnv(httpRequestEnv, env);
  return { allowedHosts: parsed.HTTP_REQUEST_ALLOWED_HOSTS, maxBodyBytes: parsed.HTTP_REQUEST_MAX_BODY_BYTES };
}

// ---------------------------------------------------------------------------------------------
// Input

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}

const status = z.number().int().min(100).max(599);

export const httpRequestInput = z
  .object({
    url: z.string().trim().max(8_192).refine(isHttpUrl, 'must be an absolute http: or https: URL'),
    method: z
      .string()
      .transform((m) => m.toUpperCase())
      .pipe(z.enum(METHODS))
      .default('GET'),
    headers: z
      .record(
        z.string().regex(TOKEN, 'not a valid header name'),
        z
          .union([z.string(), z.number(), z.boolean()])
          .transform(String)
          .refine((v) => !/[\r\n\0]/.test(v), 'header values may not contain CR, LF or NUL'),
      )
      .optional(),
    /** A string is sent as it is; any other JSON value is sent as JSON. */
    body: z.json().optional(),
    timeoutMs: z.number().int().min(1).max(MAX_TIMEOUT_MS).optional(),
    expectStatus: z.union([status, z.array(status).min(1).max(100)]).optional(),
  })
  .refine((input) => input.body === undefined || (input.method !== 'GET' && input.method !== 'HEAD'), {
    message: 'a GET or HEAD request cannot have a body',
    path: ['body'],
  });
export type HttpRequestInput = z.infer<typeof httpRequestInput>;

export interface HttpRequestOutput {
  status: number;
  /** Response headers, names in lower case; `set-cookie` is a list. */
  headers: Record<string, string | string[]>;
  /**
   * Parsed JSON when the response is JSON, otherwise text; null for HEAD and empty bodies. Binary
   * bodies (a non-text media type, or bytes that are not valid text, or text holding NUL) are
   * base64, with `bodyEncoding: 'base64'`: a workflow decodes them with `$base64decode` only where
   * it needs text, and the step's output stays storable.
   */
  body: unknown;
  bodyEncoding?: 'base64';
}

// ---------------------------------------------------------------------------------------------
// Statuses and errors

export type StatusOutcome =
  | { kind: 'ok' }
  | { kind: 'retry'; code: typeof ErrorCode.HTTP_5XX | typeof ErrorCode.HTTP_429 }
  | { kind: 'fail'; code: typeof ErrorCode.HTTP_STATUS };

/**
 * What a final (non-redirect) status means: expected (`expectStatus`, default any 2xx) → ok;
 * otherwise 429 and 5xx are worth retrying and anything else is a permanent failure.
 */
export function classifyStatus(statusCode: number, expectStatus?: number | number[]): StatusOutcome {
  const expected =
    expectStatus === undefined
      ? statusCode >= 200 && statusCode <= 299
      : (Array.isArray(expectStatus) ? expectStatus : [expectStatus]).includes(statusCode);
  if (expected) return { kind: 'ok' };
  if (statusCode === 429) return { kind: 'retry', code: ErrorCode.HTTP_429 };
  if (statusCode >= 500 && statusCode <= 599) return { kind: 'retry', code: ErrorCode.HTTP_5XX };
  return { kind: 'fail', code: ErrorCode.HTTP_STATUS };
}

/** A redirect is followed unless the caller asked for that status itself. */
export function isFollowedRedirect(statusCode: number, expectStatus?: number | number[]): boolean {
  if (!REDIRECT_STATUSES.includes(statusCode)) return false;
  if (expectStatus === undefined) return true;
  return !(Array.isArray(expectStatus) ? expectStatus : [expectStatus]).includes(statusCode);
}

/**
 * `Retry-After` as milliseconds from `now`: delay-seconds (`120`) or an HTTP date
 * (`Wed, 21 Oct 2015 07:28:00 GMT`); a date in the past is 0; anything else is undefined.
 */
export function parseRetryAfter(value: string | string[] | undefined, now: number = Date.now()): number | undefined {
  const raw = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!raw) return undefined;
  if (/^\d+$/.test(raw)) {
    const seconds = Number(raw);
    return Number.isSafeInteger(seconds * 1000) ? seconds * 1000 : undefined;
  }
  // The three HTTP date shapes (RFC 9110 §5.6.7) only: Date.parse alone would read `1.5` as a date.
  let text: string;
  if (/^[A-Za-z]{3,9},\s*\d{1,2}[ -][A-Za-z]{3}[ -]\d{2,4}\s+\d{2}:\d{2}:\d{2}\s+GMT$/.test(raw)) text = raw;
  else if (/^[A-Za-z]{3}\s+[A-Za-z]{3}\s+\d{1,2}\s+\d{2}:\d{2}:\d{2}\s+\d{4}$/.test(raw)) text = `${raw} GMT`;
  else return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/** The error for a final status that was not expected; undefined when the status is fine. */
export function statusError(
  statusCode: number,
  statusMessage: string | undefined,
  opts: { method: string; url: URL; expectStatus?: number | number[]; retryAfter?: string | string[] },
): BatonError | undefined {
  const outcome = classifyStatus(statusCode, opts.expectStatus);
  if (outcome.kind === 'ok') return undefined;
  const expected =
    opts.expectStatus === undefined
      ? '2xx'
      : (Array.isArray(opts.expectStatus) ? opts.expectStatus : [opts.expectStatus]).join(', ');
  const message = `${opts.method} ${redactUrl(opts.url)} answered ${statusCode}${statusMessage ? ` ${statusMessage}` : ''} (expected ${expected})`;
  const details = { status: statusCode };
  if (outcome.kind === 'fail') return new NonRetryableError(outcome.code, message, { details });
  const retryAfterMs = statusCode === 429 || statusCode === 503 ? parseRetryAfter(opts.retryAfter) : undefined;
  return new BatonError(outcome.code, message, {
    details,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}

// ---------------------------------------------------------------------------------------------
// Redirects and logging

/** The method and body of the request that follows a redirect (as browsers and fetch do). */
export function redirectMethod(statusCode: number, method: Method): { method: Method; keepBody: boolean } {
  if (statusCode === 303 && method !== 'HEAD') return { method: 'GET', keepBody: false };
  if ((statusCode === 301 || statusCode === 302) && method === 'POST') return { method: 'GET', keepBody: false };
  return { method, keepBody: true };
}

const CREDENTIAL_HEADERS = ['authorization', 'proxy-authorization', 'cookie'];
const BODY_HEADERS = ['content-type', 'content-length', 'content-encoding', 'content-language', 'content-location'];

/** Headers for the next hop: credentials stay with their origin, body headers with their body. */
export function headersAfterRedirect(
  headers: Record<string, string>,
  opts: { sameOrigin: boolean; keepBody: boolean },
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (!opts.sameOrigin && (CREDENTIAL_HEADERS.includes(lower) || lower === 'host')) continue;
    if (!opts.keepBody && BODY_HEADERS.includes(lower)) continue;
    out[name] = value;
  }
  return out;
}

/** A URL fit for logs and error messages: no user info, no query (it often carries keys), no fragment. */
export function redactUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}${url.search ? '?…' : ''}`;
}
