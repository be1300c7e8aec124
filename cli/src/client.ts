/**
 * A small client of the gateway's JSON API over Node's global fetch. Every non-2xx answer becomes
 * an ApiError carrying the API's `{error: {code, message, details}}`; a gateway that cannot be
 * reached becomes a CliError naming the URL.
 */
import { CliErrorCode } from './error-codes';

export class CliError extends Error {
  constructor(
    message: string,
    /** Process exit code. */
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export class ApiError extends CliError {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message, 1);
  }
}

export interface ClientOptions {
  baseUrl: string;
  apiKey?: string;
  /** Per request; a gateway that does not answer in time is an error, not a hang. */
  timeoutMs?: number;
}

export interface RequestOptions {
  /** An array: the key repeated, once per value. */
  query?: Record<string, string | number | string[] | undefined>;
  /** Sent as JSON. */
  json?: unknown;
  /** Sent as is, with `contentType`. */
  body?: string;
  contentType?: string;
}

export class Client {
  readonly baseUrl: string;

  constructor(private readonly opts: ClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
  }

  async request<T>(method: string, path: string, req: RequestOptions = {}): Promise<{ status: number; body: T }> {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(req.query ?? {})) {
      if (Array.isArray(value)) for (const v of value) url.searchParams.append(key, v);
      else if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (this.opts.apiKey) headers.Authorization = `Bearer ${this.opts.apiKey}`;
    let body: string | undefined;
    if (req.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(req.json);
    } else if (req.body !== undefined) {
      headers['Content-Type'] = req.contentType ?? 'application/octet-stream';
      body = req.body;
    }

    let res: Response;
    try {
      res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (err as Error).message;
      throw new CliError(`cannot reach the Baton gateway at ${this.baseUrl} (${why}); set BATON_URL`);
    }
    const text = await res.text();
    let parsed: unknown = undefined;
    if (text && (res.headers.get('content-type') ?? '').includes('json')) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    if (!res.ok) {
      const error = (parsed as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
      if (error && typeof error.message === 'string') {
        throw new ApiError(res.status, String(error.code ?? CliErrorCode.ERROR), error.message, error.details);
      }
      throw new ApiError(
        res.status,
        `HTTP_${res.status}`,
        `${method} ${path}: HTTP ${res.status} ${text.slice(0, 200)}`,
      );
    }
    return { status: res.status, body: parsed as T };
  }
}
