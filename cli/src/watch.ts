import { ApiError, type Client } from './client';
import {
  fitWidth,
  logLine,
  parentLine,
  progressText,
  runFrame,
  runHeader,
  stepDetailLines,
  stepLine,
  type Style,
} from './render';
import { TERMINAL_RUN_STATUSES, type LogEntry, type LogPage, type Run } from './types';

export interface Output {
  write(text: string): void;
  isTTY?: boolean;
  columns?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export const isTerminal = (run: Run): boolean => TERMINAL_RUN_STATUSES.includes(run.status);

/** Transient failures (the gateway restarting) are retried this many times in a row while polling. */
const MAX_POLL_FAILURES = 10;

/** Polls `fetch` until it answers, tolerating a few network failures; API errors are final. */
async function poll<T>(fetch: () => Promise<T>, intervalMs: number): Promise<T> {
  for (let failures = 0; ; failures++) {
    try {
      return await fetch();
    } catch (err) {
      if (err instanceof ApiError || failures >= MAX_POLL_FAILURES) throw err;
      await sleep(intervalMs);
    }
  }
}

export const getRun = async (client: Client, id: string): Promise<Run> =>
  (await client.request<Run>('GET', `/v1/runs/${encodeURIComponent(id)}`)).body;

export interface WatchOptions {
  intervalMs: number;
  style: Style;
  /** Print nothing while watching (`--json` prints the final run instead). */
  quiet?: boolean;
  /**
   * Whether a terminal run is the end to wait for. After a retry request the run stays `failed`
   * until the coordinator takes the request; that old end is not the one to report.
   */
  isNewEnd?: (run: Run) => boolean;
}

/** Run executions (steps and compensations) so far: a retry that was taken adds some. */
export const executionCount = (run: Run): number => run.steps.length + run.compensations.length;

/**
 * Follows a run until it is terminal and returns it. On a terminal the picture is redrawn in place
 * (a line per step with status, attempts and duration); elsewhere (a pipe, a CI log) a line is
 * printed whenever a step changes, then the outcome.
 */
export async function watchRun(client: Client, id: string, out: Output, opts: WatchOptions): Promise<Run> {
  let drawn = 0;
  const seen = new Map<string, string>();
  let first = true;
  let sawActive = false;
  for (;;) {
    const run = await poll(() => getRun(client, id), opts.intervalMs);
    sawActive ||= !isTerminal(run);
    const terminal = isTerminal(run) && (sawActive || (opts.isNewEnd?.(run) ?? true));
    const now = Date.now();
    if (!opts.quiet && out.isTTY) {
      const frame = runFrame(run, now, opts.style, terminal).map((l) => fitWidth(l, out.columns ?? 0));
      // Back to the first line of the previous frame, clear below it, draw the new one.
      out.write(`${drawn ? `\x1b[${drawn}F\x1b[J` : ''}${frame.join('\n')}\n`);
      drawn = frame.length;
    } else if (!opts.quiet) {
      const lines: string[] = [];
      if (first) lines.push(runHeader(run, now, opts.style), ...[parentLine(run, opts.style) ?? []].flat());
      for (const step of [...run.steps, ...run.compensations]) {
        // A forEach/repeat step prints again as its items progress.
        const key = `${step.status}/${step.attempts}/${step.fanout ? progressText(step.fanout) : ''}`;
        if (seen.get(step.executionId) === key) continue;
        seen.set(step.executionId, key);
        lines.push(`  ${stepLine(step, now, opts.style)}`, ...stepDetailLines(step, run.id, opts.style));
      }
      if (terminal) lines.push(runFrame(run, now, opts.style, true).at(-1)!);
      if (lines.length) out.write(`${lines.join('\n')}\n`);
    }
    first = false;
    if (terminal) return run;
    await sleep(opts.intervalMs);
  }
}

export interface LogOptions {
  stepId?: string;
  level?: string;
  follow: boolean;
  intervalMs: number;
  json: boolean;
  style: Style;
}

/**
 * Prints a run's logs, oldest first. With `follow`, keeps polling until the run is terminal: the
 * cursor that fetched the last (partial) page is asked again, and only lines not printed yet are
 * printed, so the opaque cursors are never built by hand.
 */
export async function printLogs(client: Client, runId: string, out: Output, opts: LogOptions): Promise<void> {
  let cursor: string | undefined;
  let lastId = -1;
  const path = `/v1/runs/${encodeURIComponent(runId)}/logs`;
  const print = (entries: LogEntry[]) => {
    for (const entry of entries) {
      if (entry.id <= lastId) continue;
      lastId = entry.id;
      out.write(`${opts.json ? JSON.stringify(entry) : logLine(entry, opts.style)}\n`);
    }
  };
  const drain = async () => {
    for (;;) {
      const page = await poll(
        async () =>
          (await client.request<LogPage>('GET', path, { query: { cursor, stepId: opts.stepId, level: opts.level } }))
            .body,
        opts.intervalMs,
      );
      print(page.logs);
      if (!page.nextCursor) return;
      cursor = page.nextCursor;
    }
  };

  await drain();
  if (!opts.follow) return;
  for (;;) {
    // Read the status first: logs are stored before the run finishes, so a drain after seeing it
    // terminal cannot miss any.
    const terminal = isTerminal(await poll(() => getRun(client, runId), opts.intervalMs));
    await drain();
    if (terminal) return;
    await sleep(opts.intervalMs);
  }
}
