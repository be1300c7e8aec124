import http from 'node:http';
import https from 'node:https';
import { pipeline, type Readable } from 'node:stream';
import zlib from 'node:zlib';
import {
  BatonError,
  CancelledError,
  defineFunction,
  NonRetryableError,
  type FunctionContext,
  type FunctionDefinition,
} from '@baton/sdk';
import { ErrorCode } from './error-codes';
import {
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_TIMEOUT_MS,
  hostOf,
  headersAfterRedirect,
  httpRequestInput,
  isFollowedRedirect,
  MAX_REDIRECTS,
  redactUrl,
  redirectMethod,
  statusError,
  type HttpRequestConfig,
  type HttpRequestInput,
  type HttpRequestOutput,
  type Method,
} from './policy';

export * from './policy';

export const HTTP_REQUEST = 'http-request';

/**
 * Cloud metadata endpoints. Every non-public address is refused for hosts that are not on the
 * allow-list; these stay refused even for allowed host names (a name that is later pointed at the
 * metadata service must not reach it), unless the address itself is listed.
 */
export const METADATA_ADDRESSES = [
  '169.254.169.254',
  '::ffff:169.254.169.254',
  'fd00:ec2::254',
  '169.254.170.2',
  '100.100.100.200',
];

/*
 * The SSRF guard is request-filtering-agent: http(s).Agent subclasses that check the address every
 * connection actually goes to — IP literals before connecting, names after DNS resolution (so DNS
 * rebinding cannot slip past) — against ipaddr.js's ranges (anything not public unicast: loopback,
 * private, link-local, CGNAT, unique-local, IPv4-mapped, reserved...). It is an ES module; this
 * package is CommonJS, so it is loaded with import() once, on the first request.
 */
type FilterModule = typeof import('request-filtering-agent');
let filterModule: Promise<FilterModule> | undefined;
const loadFilter = (): Promise<FilterModule> => (filterModule ??= import('request-filtering-agent'));

interface AgentPair {
  http: http.Agent;
  https: https.Agent;
}

/** Agents by trust: `guarded` for everything, `allowed` for listed names, `open` for listed metadata IPs. */
async function createAgents(): Promise<Record<'guarded' | 'allowed' | 'open', AgentPair>> {
  const { RequestFilteringHttpAgent, RequestFilteringHttpsAgent } = await loadFilter();
  const pair = (options: ConstructorParameters<typeof RequestFilteringHttpAgent>[0]): AgentPair => ({
    http: new RequestFilteringHttpAgent(options),
    https: new RequestFilteringHttpsAgent(options),
  });
  return {
    guarded: pair({ allowPrivateIPAddress: false, allowMetaIPAddress: false }),
    allowed: pair({ allowPrivateIPAddress: true, allowMetaIPAddress: false, denyIPAddressList: METADATA_ADDRESSES }),
    open: pair({ allowPrivateIPAddress: true, allowMetaIPAddress: false }),
  };
}

const USER_AGENT = 'baton-http-request/0.1';
const NO_BODY_STATUSES = [204, 205, 304];

export interface HttpRequestDeps extends Partial<HttpRequestConfig> {
  /** Jobs one process runs at once (HTTP_REQUEST_CONCURRENCY overrides it). */
  concurrency?: number;
}

/**
 * The generic HTTP call step. 2xx (or `expectStatus`) → `{status, headers, body}`; 5xx, 429, network
 * errors and its own timeout are retried per the step's policy; any other status fails the step at
 * once. Requests to non-public addresses are refused unless the host is in `allowedHosts`.
 */
export function createHttpRequest(deps: HttpRequestDeps = {}): FunctionDefinition<HttpRequestInput, HttpRequestOutput> {
  const allowedHosts = new Set(deps.allowedHosts ?? []);
  const maxBodyBytes = deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  let agents: ReturnType<typeof createAgents> | undefined;

  const agentFor = async (url: URL): Promise<http.Agent> => {
    const all = await (agents ??= createAgents());
    const host = hostOf(url);
    const trust = !allowedHosts.has(host) ? 'guarded' : METADATA_ADDRESSES.includes(host) ? 'open' : 'allowed';
    return url.protocol === 'https:' ? all[trust].https : all[trust].http;
  };

  return defineFunction({
    name: HTTP_REQUEST,
    description: 'Calls an HTTP API (SSRF-guarded) and returns status, headers and body',
    input: httpRequestInput,
    concurrency: deps.concurrency ?? 16,
    handler: async (input, ctx) => {
      if (ctx.signal.aborted) throw abortReason(ctx.signal);
      const timeoutMs = input.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      const state: ExchangeState = { url: new URL(input.url), method: input.method, redirects: 0 };
      const timeout = new BatonError(
        ErrorCode.HTTP_TIMEOUT,
        `${input.method} ${redactUrl(state.url)} did not complete within ${timeoutMs} ms`,
      );
      // One signal for both ends of the attempt: the step's (timeout, cancel) and this request's own.
      const controller = new AbortController();
      const onStepAbort = (): void => controller.abort(ctx.signal.reason);
      ctx.signal.addEventListener('abort', onStepAbort, { once: true });
      const timer = setTimeout(() => controller.abort(timeout), timeoutMs);
      try {
        return await exchange(input, state, { ctx, signal: controller.signal, agentFor, maxBodyBytes });
      } catch (err) {
        if (ctx.signal.aborted) throw abortReason(ctx.signal);
        if (controller.signal.aborted && controller.signal.reason === timeout) throw timeout;
        throw toStepError(err, state);
      } finally {
        clearTimeout(timer);
        ctx.signal.removeEventListener('abort', onStepAbort);
      }
    },
  });
}

interface ExchangeState {
  /** The hop being requested (it moves with redirects); only its redacted form is ever logged. */
  url: URL;
  method: Method;
  redirects: number;
}

interface ExchangeOptions {
  ctx: FunctionContext;
  signal: AbortSignal;
  agentFor: (url: URL) => Promise<http.Agent>;
  maxBodyBytes: number;
}

async function exchange(
  input: HttpRequestInput,
  state: ExchangeState,
  opts: ExchangeOptions,
): Promise<HttpRequestOutput> {
  const started = performance.now();
  let { headers, body } = prepareRequest(input);
  for (;;) {
    const { url, method } = state;
    const res = await send(url, { method, headers, body, agent: await opts.agentFor(url), signal: opts.signal });
    const status = res.statusCode ?? 0;
    const location = res.headers.location;

    if (location && isFollowedRedirect(status, input.expectStatus)) {
      res.destroy();
      if (state.redirects >= MAX_REDIRECTS) {
        throw new NonRetryableError(
          ErrorCode.HTTP_TOO_MANY_REDIRECTS,
          `${method} ${redactUrl(url)}: more than ${MAX_REDIRECTS} redirects`,
        );
      }
      const next = resolveRedirect(location, url, method);
      const follow = redirectMethod(status, method);
      headers = headersAfterRedirect(headers, { sameOrigin: next.origin === url.origin, keepBody: follow.keepBody });
      if (!follow.keepBody) body = undefined;
      opts.ctx.log.debug('following redirect', { status, to: redactUrl(next) });
      state.url = next;
      state.method = follow.method;
      state.redirects += 1;
      continue;
    }

    const failure = statusError(status, res.statusMessage, {
      method,
      url,
      ...(input.expectStatus === undefined ? {} : { expectStatus: input.expectStatus }),
      retryAfter: res.headers['retry-after'],
    });
    if (failure) {
      res.destroy();
      throw failure;
    }

    const noBody = method === 'HEAD' || NO_BODY_STATUSES.includes(status);
    const raw = noBody
      ? Buffer.alloc(0)
      : await readBody(res, { limit: opts.maxBodyBytes, method, url, signal: opts.signal });
    if (noBody) res.destroy();
    const parsed = decodeBody(raw, res.headers['content-type'], noBody);
    if (parsed.invalidJson) opts.ctx.log.warn('response says JSON but does not parse; returned as text', { status });
    opts.ctx.log.info('http request done', {
      method,
      url: redactUrl(url),
      status,
      redirects: state.redirects,
      bytes: raw.length,
      durationMs: Math.round(performance.now() - started),
    });
    return {
      status,
      headers: responseHeaders(res),
      body: parsed.body,
      ...(parsed.bodyEncoding ? { bodyEncoding: parsed.bodyEncoding } : {}),
    };
  }
}

function resolveRedirect(location: string, from: URL, method: string): URL {
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new NonRetryableError(
      ErrorCode.HTTP_BAD_REDIRECT,
      `${method} ${redactUrl(from)} redirected to an invalid URL`,
    );
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw new NonRetryableError(
      ErrorCode.HTTP_BAD_REDIRECT,
      `${method} ${redactUrl(from)} redirected to a '${next.protocol}' URL; only http: and https: are followed`,
    );
  }
  return next;
}

function hasHeader(headers: Record<string, string>, name: string): boolean {
  return Object.keys(headers).some((key) => key.toLowerCase() === name);
}

function prepareRequest(input: HttpRequestInput): { headers: Record<string, string>; body: Buffer | undefined } {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(input.headers ?? {})) {
    // Framing is this client's business.
    if (['content-length', 'transfer-encoding', 'connection'].includes(name.toLowerCase())) continue;
    headers[name] = value;
  }
  if (!hasHeader(headers, 'user-agent')) headers['user-agent'] = USER_AGENT;
  if (!hasHeader(headers, 'accept-encoding')) headers['accept-encoding'] = 'gzip, deflate, br';
  if (input.body === undefined) return { headers, body: undefined };
  const isText = typeof input.body === 'string';
  if (!hasHeader(headers, 'content-type')) {
    headers['content-type'] = isText ? 'text/plain; charset=utf-8' : 'application/json';
  }
  return { headers, body: Buffer.from(isText ? (input.body as string) : JSON.stringify(input.body), 'utf8') };
}

function send(
  url: URL,
  init: {
    method: string;
    headers: Record<string, string>;
    body: Buffer | undefined;
    agent: http.Agent;
    signal: AbortSignal;
  },
): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const headers = init.body ? { ...init.headers, 'content-length': String(init.body.length) } : init.headers;
    const request = url.protocol === 'https:' ? https.request : http.request;
    let req: http.ClientRequest;
    try {
      req = request(url, { method: init.method, headers, agent: init.agent, signal: init.signal }, resolve);
    } catch (err) {
      reject(err as Error);
      return;
    }
    req.on('error', reject);
    req.end(init.body);
  });
}

/** The response body, decompressed, refused as soon as it passes `limit` bytes. */
async function readBody(
  res: http.IncomingMessage,
  opts: { limit: number; method: string; url: URL; signal: AbortSignal },
): Promise<Buffer> {
  const tooLarge = (): NonRetryableError =>
    new NonRetryableError(
      ErrorCode.HTTP_BODY_TOO_LARGE,
      `${opts.method} ${redactUrl(opts.url)}: response body is larger than ${opts.limit} bytes (HTTP_REQUEST_MAX_BODY_BYTES); it was cut off`,
      { details: { limitBytes: opts.limit } },
    );
  const encoding = String(res.headers['content-encoding'] ?? 'identity')
    .trim()
    .toLowerCase();
  const declared = Number(res.headers['content-length']);
  if (encoding === 'identity' && Number.isFinite(declared) && declared > opts.limit) {
    res.destroy();
    throw tooLarge();
  }
  const decoder = decompressor(encoding);
  if (decoder === null) {
    res.destroy();
    throw new NonRetryableError(
      ErrorCode.HTTP_UNSUPPORTED_ENCODING,
      `${opts.method} ${redactUrl(opts.url)}: response Content-Encoding '${encoding}' is not supported`,
    );
  }
  const stream: Readable = decoder ? pipeline(res, decoder, () => undefined) : res;
  const onAbort = (): void => {
    res.destroy(opts.signal.reason instanceof Error ? opts.signal.reason : undefined);
  };
  opts.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of stream) {
      const buffer = chunk as Buffer;
      size += buffer.length;
      if (size > opts.limit) {
        res.destroy();
        throw tooLarge();
      }
      chunks.push(buffer);
    }
    return Buffer.concat(chunks, size);
  } finally {
    opts.signal.removeEventListener('abort', onAbort);
  }
}

/** A decompressor for the encoding; undefined for none needed, null for one this client cannot read. */
function decompressor(encoding: string): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | undefined | null {
  switch (encoding) {
    case 'identity':
    case '':
      return undefined;
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip();
    case 'deflate':
      return zlib.createInflate();
    case 'br':
      return zlib.createBrotliDecompress();
    default:
      return null;
  }
}

export function isJsonContentType(contentType: string | undefined): boolean {
  const mime = (contentType ?? '').split(';')[0].trim().toLowerCase();
  return mime === 'application/json' || mime === 'text/json' || /^application\/[a-z0-9.+-]+\+json$/.test(mime);
}

/** Media types whose bodies are text (besides text/*): JSON, XML, YAML, JavaScript, forms. */
const TEXT_MEDIA =
  /^(application\/([a-z0-9.+-]+\+)?(json|xml|yaml|x-yaml|javascript|ecmascript|x-www-form-urlencoded|graphql)|image\/svg\+xml)$/;

export function isTextContentType(contentType: string | undefined): boolean {
  const mime = (contentType ?? '').split(';')[0].trim().toLowerCase();
  return mime === '' || mime.startsWith('text/') || TEXT_MEDIA.test(mime);
}

/**
 * Text in the response's charset (UTF-8 when none or unknown); JSON parsed when the response is JSON;
 * base64 (`bodyEncoding: 'base64'`) when the body is binary: a non-text media type, UTF-8 that does
 * not decode, or text holding NUL (which PostgreSQL cannot store in the step's output).
 */
export function decodeBody(
  raw: Buffer,
  contentType: string | undefined,
  noBody = false,
): { body: unknown; invalidJson?: boolean; bodyEncoding?: 'base64' } {
  if (noBody) return { body: null };
  const json = isJsonContentType(contentType);
  if (raw.length === 0) return { body: json ? null : '' };
  const binary = { body: raw.toString('base64'), bodyEncoding: 'base64' as const };
  if (!isTextContentType(contentType)) return binary;
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType ?? '')?.[1];
  let decoder: InstanceType<typeof TextDecoder>;
  try {
    decoder = new TextDecoder(charset ?? 'utf-8', { fatal: true });
  } catch {
    // An unknown charset name: read it as UTF-8.
    decoder = new TextDecoder('utf-8', { fatal: true });
  }
  let text: string;
  try {
    text = decoder.decode(raw);
  } catch {
    // Bytes that are not text in that charset.
    return binary;
  }
  if (text.includes('\u0000')) return binary;
  if (!json) return { body: text };
  try {
    return { body: JSON.parse(text) as unknown };
  } catch {
    return { body: text, invalidJson: true };
  }
}

function responseHeaders(res: http.IncomingMessage): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(res.headers)) if (value !== undefined) out[name] = value;
  return out;
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new CancelledError();
}

/** request-filtering-agent's refusal: `DNS lookup <ip>(family:…, host:…) is not allowed. Because, …`. */
const REFUSED = /^DNS lookup (\S*?)\(family:[^)]*\) is not allowed\. Because,? (.*)$/;

function toStepError(err: unknown, state: ExchangeState): Error {
  if (err instanceof BatonError) return err;
  const error = err instanceof Error ? err : new Error(String(err));
  const refused = REFUSED.exec(error.message);
  const target = `${state.method} ${redactUrl(state.url)}`;
  if (refused) {
    const host = hostOf(state.url);
    const address = refused[1] && refused[1] !== host ? `${host} (${refused[1]})` : host;
    const why = /denyIPAddressList/.test(refused[2]) ? 'a cloud metadata address' : 'not a public address';
    return new NonRetryableError(
      ErrorCode.HTTP_ADDRESS_REFUSED,
      `${target} refused: ${address} is ${why} (loopback, private, link-local, CGNAT, unique-local and metadata addresses are blocked; list the host in HTTP_REQUEST_ALLOWED_HOSTS to allow it)`,
      { details: { host, ...(refused[1] ? { address: refused[1] } : {}) } },
    );
  }
  const code = (error as NodeJS.ErrnoException).code;
  return new BatonError(ErrorCode.HTTP_NETWORK, `${target} failed: ${error.message}`, {
    cause: error,
    details: { ...(code ? { errno: code } : {}) },
  });
}
