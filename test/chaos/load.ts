import { setTimeout as sleep } from 'node:timers/promises';
import { seededRandom } from '../../sdk/src/failpoints';

/**
 * Load during faults, Jepsen style: run starts at a fixed rate (with seeded jitter) for the whole
 * fault window, each request classified by what the client can know:
 * - `ok`: 202 (or 200) with a run id — the run was accepted and must finish as expected;
 * - `failed`: a definite refusal — a 4xx or a 503 whose body says so, or a refused connection (the
 *   request never reached the gateway) — no run may exist for its idempotency key;
 * - `unknown`: a timeout, a reset connection, any other 5xx — the run may or may not have started;
 *   at the end it is looked up by its idempotency key and, if it exists, checked like an ok one.
 */

/** mulberry32: a small seeded generator; the seed fixes fault timing and load jitter (the failpoints' own). */
export const rng = seededRandom;

export type Outcome = 'ok' | 'failed' | 'unknown';

/** One run start the driver sends. */
export interface RunRequest {
  /** The workflow the run belongs to (for the lookup by key). */
  workflow: string;
  /** Gateway path: `/v1/workflows/<name>/runs` or `/invoice/start`. */
  path: string;
  body: unknown;
  idempotencyKey: string;
  /** The status the run must end in. */
  expect: string;
  /** The ledger keys its steps must have produced once it succeeded (from its run id). */
  effects?: (runId: string) => string[];
}

export interface RequestResult {
  request: RunRequest;
  outcome: Outcome;
  status?: number;
  runId?: string;
  detail?: string;
  sentAt: number;
  answeredAt: number;
}

export interface LoadOptions {
  /** Run starts in all. */
  runs: number;
  /** Starts per second (the mean; each gap is jittered ±50% by the seeded generator). */
  ratePerSecond: number;
  /** The i-th request. */
  request: (i: number) => RunRequest;
  random: () => number;
  /** A request unanswered after this is `unknown` (default 10 s). */
  timeoutMs?: number;
}

export async function classify(res: Response): Promise<{ outcome: Outcome; runId?: string; detail?: string }> {
  const text = await res.text().catch(() => '');
  let body: { runId?: string; error?: { code?: string; message?: string } } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // not JSON
  }
  if ((res.status === 202 || res.status === 200) && body.runId) return { outcome: 'ok', runId: body.runId };
  const said = body.error?.code ?? body.error?.message;
  // A refusal the server stands by: a client error, or "unavailable" with a body saying why.
  if ((res.status >= 400 && res.status < 500) || (res.status === 503 && said))
    return { outcome: 'failed', detail: `${res.status} ${said ?? text.slice(0, 80)}` };
  return { outcome: 'unknown', detail: `${res.status} ${said ?? text.slice(0, 80)}` };
}

/** Sends one run start and classifies the answer (never throws). */
export async function send(baseUrl: string, request: RunRequest, timeoutMs = 10_000): Promise<RequestResult> {
  const sentAt = Date.now();
  try {
    const res = await fetch(`${baseUrl}${request.path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Idempotency-Key': request.idempotencyKey },
      body: JSON.stringify(request.body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const c = await classify(res);
    return { request, status: res.status, ...c, sentAt, answeredAt: Date.now() };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
    // Refused: the connection was never made, so the request never reached the gateway.
    const outcome: Outcome = cause === 'ECONNREFUSED' ? 'failed' : 'unknown';
    return { request, outcome, detail: cause, sentAt, answeredAt: Date.now() };
  }
}

/** Sends `runs` requests at the rate, concurrently (a slow answer does not slow the load). */
export async function drive(baseUrl: string, opts: LoadOptions): Promise<RequestResult[]> {
  const pending: Promise<RequestResult>[] = [];
  const gap = 1000 / opts.ratePerSecond;
  let next = Date.now();
  for (let i = 0; i < opts.runs; i++) {
    const wait = next - Date.now();
    if (wait > 0) await sleep(wait);
    pending.push(send(baseUrl, opts.request(i), opts.timeoutMs));
    next += gap * (0.5 + opts.random());
  }
  return Promise.all(pending);
}

export function tally(results: RequestResult[]): Record<Outcome, number> {
  const counts: Record<Outcome, number> = { ok: 0, failed: 0, unknown: 0 };
  for (const r of results) counts[r.outcome] += 1;
  return counts;
}
