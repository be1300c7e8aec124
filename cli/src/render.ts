import type { Fanout, LogEntry, Operation, Run, RunAccepted, Step } from './types';

/** Pure text rendering of runs, steps and log lines; `color` adds ANSI colours. */

export interface Style {
  color: boolean;
}

const CODES = { red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, dim: 2, bold: 1 } as const;
type Paint = keyof typeof CODES;

const paint = (style: Style, what: Paint, text: string): string =>
  style.color ? `\x1b[${CODES[what]}m${text}\x1b[0m` : text;

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

const STEP_LOOK: Record<string, { icon: string; paint: Paint }> = {
  queued: { icon: '·', paint: 'dim' },
  running: { icon: '●', paint: 'cyan' },
  retrying: { icon: '↻', paint: 'yellow' },
  succeeded: { icon: '✓', paint: 'green' },
  failed: { icon: '✗', paint: 'red' },
  skipped: { icon: '–', paint: 'dim' },
  compensating: { icon: '↶', paint: 'magenta' },
  compensated: { icon: '↶', paint: 'magenta' },
  cancelled: { icon: '⊘', paint: 'yellow' },
};

const RUN_PAINT: Record<string, Paint> = {
  pending: 'dim',
  running: 'cyan',
  succeeded: 'green',
  failed: 'red',
  compensating: 'magenta',
  compensated: 'yellow',
  compensation_failed: 'red',
  cancelled: 'yellow',
};

/** 850ms, 1.2s, 42s, 3m05s, 2h07m. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 10_000) return `${(ms / 1_000).toFixed(1)}s`;
  const s = Math.round(ms / 1_000);
  if (s < 60) return `${s}s`;
  if (s < 3_600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3_600)}h${String(Math.floor((s % 3_600) / 60)).padStart(2, '0')}m`;
}

const time = (iso: string | null): number | undefined => (iso ? Date.parse(iso) : undefined);

/** How long the step took, is taking, or has been waiting. */
export function stepDuration(step: Step, now: number): string {
  const started = time(step.startedAt);
  const finished = time(step.finishedAt);
  if (started !== undefined) return formatDuration((finished ?? now) - started);
  const queued = time(step.queuedAt);
  if (queued !== undefined && finished === undefined) return `waiting ${formatDuration(now - queued)}`;
  return '';
}

/** `CODE: message` of a step or run error, if it has one. */
export function errorText(error: unknown): string | undefined {
  if (!error || typeof error !== 'object') return undefined;
  const e = error as { code?: unknown; message?: unknown };
  const message = typeof e.message === 'string' ? e.message : undefined;
  const code = typeof e.code === 'string' ? e.code : undefined;
  if (!message && !code) return JSON.stringify(error);
  return code && message ? `${code}: ${message}` : (code ?? message);
}

export interface StepColumns {
  id: number;
  fn: number;
}

export function columnsFor(steps: Step[]): StepColumns {
  return {
    id: Math.max(4, ...steps.map((s) => s.id.length)),
    fn: Math.max(8, ...steps.map((s) => s.function.length)),
  };
}

/**
 * `✓ fetchOrders  fetch-orders  succeeded     1/3  1.2s` (+ the error of a failed or retrying step, or
 * `→ run <id>`: the child run of a `workflow:` step). A forEach/repeat step shows no attempts: its
 * items have their own (see `progressLine`).
 */
export function stepLine(step: Step, now: number, style: Style, cols = columnsFor([step])): string {
  const look = STEP_LOOK[step.status] ?? { icon: '?', paint: 'dim' as Paint };
  const icon = step.status === 'running' ? SPINNER[Math.floor(now / 100) % SPINNER.length] : look.icon;
  const attempts = step.status === 'skipped' || step.fanout ? '' : `${step.attempts}/${step.maxAttempts}`;
  const error = ['failed', 'retrying', 'cancelled'].includes(step.status) ? errorText(step.error) : undefined;
  const parts = [
    paint(style, look.paint, icon),
    step.id.padEnd(cols.id),
    paint(style, 'dim', step.function.padEnd(cols.fn)),
    paint(style, look.paint, step.status.padEnd(12)),
    attempts.padStart(5),
    stepDuration(step, now).padEnd(8),
  ];
  const child = step.childRunId ? paint(style, 'dim', `→ run ${step.childRunId}`) : undefined;
  const line = [parts.join('  ').trimEnd(), child, error ? paint(style, 'red', error) : undefined];
  return line.filter(Boolean).join('  ');
}

/**
 * A forEach/repeat step's progress: `12 succeeded · 1 failed · 3 running of 30 items`, then the counts
 * that are not zero among pending, cancelled and compensated, and its concurrency.
 */
export function progressText(f: Fanout): string {
  const unit = f.mode === 'repeat' ? 'iteration' : 'item';
  const main = `${f.succeeded} succeeded · ${f.failed} failed · ${f.running} running of ${f.total} ${unit}${f.total === 1 ? '' : 's'}`;
  const rest = (
    [
      ['pending', f.pending],
      ['cancelled', f.cancelled],
      ['compensated', f.compensated],
    ] as const
  )
    .filter(([, n]) => n > 0)
    .map(([what, n]) => `${n} ${what}`);
  return rest.length ? `${main} (${rest.join(', ')})` : main;
}

/**
 * The lines under a step: a forEach/repeat step's progress (with its concurrency), and where its
 * items' child runs are listed when they are child runs.
 */
export function stepDetailLines(step: Step, runId: string, style: Style): string[] {
  if (!step.fanout) return [];
  const cap = step.fanout.concurrency ? `, at most ${step.fanout.concurrency} at a time` : '';
  const lines = [`${progressText(step.fanout)}${cap}`];
  if (step.items?.some((i) => i.childRunId)) lines.push(`child runs: baton runs list --parent ${runId}`);
  return lines.map((l) => paint(style, 'dim', `     ${l}`));
}

export function runHeader(run: Run, now: number, style: Style): string {
  const started = time(run.startedAt) ?? time(run.createdAt);
  const elapsed = started === undefined ? '' : formatDuration((time(run.finishedAt) ?? now) - started);
  return [
    paint(style, 'bold', `run ${run.id}`),
    `${run.workflow} v${run.workflowVersion}`,
    paint(style, RUN_PAINT[run.status] ?? 'dim', run.status),
    elapsed,
  ]
    .filter(Boolean)
    .join('  ');
}

/** Why the run did not succeed, in one line: the step, attempt and error the API recorded. */
export function runOutcome(run: Run, style: Style): string {
  const elapsed = formatDuration((time(run.finishedAt) ?? Date.now()) - (time(run.startedAt) ?? time(run.createdAt)!));
  if (run.status === 'succeeded') return paint(style, 'green', `run succeeded in ${elapsed}`);
  const e = (run.error ?? {}) as { stepId?: string; function?: string; attempt?: number };
  const where = e.stepId
    ? ` at step ${e.stepId}${e.function ? ` (${e.function})` : ''}${e.attempt ? `, attempt ${e.attempt}` : ''}`
    : '';
  const why = errorText(run.error);
  return paint(style, 'red', `run ${run.status}${where}${why ? `: ${why}` : ''}`);
}

/** `  child of run <id>, step <stepId>` for a child run. */
export function parentLine(run: Run, style: Style): string | undefined {
  if (!run.parentRunId) return undefined;
  return paint(
    style,
    'dim',
    `  child of run ${run.parentRunId}${run.parentStepId ? `, step ${run.parentStepId}` : ''}`,
  );
}

/** `customer=cust-01 tier=gold`, by key ('' without tags). */
export function tagText(tags: Record<string, string> | undefined): string {
  return Object.entries(tags ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

/** `  tags customer=cust-01 tier=gold` for a run with tags. */
export function tagsLine(run: Pick<Run, 'tags'>, style: Style): string | undefined {
  const text = tagText(run.tags);
  return text ? paint(style, 'dim', `  tags ${text}`) : undefined;
}

/**
 * The whole picture: header, its tags, the parent of a child run, a line per step execution (a forEach/repeat
 * step's progress under it), compensations, and the outcome once finished.
 */
export function runFrame(run: Run, now: number, style: Style, terminal: boolean): string[] {
  const cols = columnsFor([...run.steps, ...run.compensations]);
  const step = (s: Step) => [`  ${stepLine(s, now, style, cols)}`, ...stepDetailLines(s, run.id, style)];
  const lines = [runHeader(run, now, style)];
  const parent = parentLine(run, style);
  if (parent) lines.push(parent);
  if (run.forkedFrom) lines.push(paint(style, 'dim', `  forked from run ${run.forkedFrom}`));
  const tags = tagsLine(run, style);
  if (tags) lines.push(tags);
  lines.push(...run.steps.flatMap(step));
  if (run.compensations.length) {
    lines.push(paint(style, 'dim', '  compensations'));
    lines.push(...run.compensations.flatMap(step));
  }
  if (terminal) lines.push(runOutcome(run, style));
  return lines;
}

export function logLine(entry: LogEntry, style: Style): string {
  const level = entry.level.toUpperCase().padEnd(5);
  const levelPaint: Paint =
    entry.level === 'error' || entry.level === 'fatal' ? 'red' : entry.level === 'warn' ? 'yellow' : 'dim';
  const data =
    entry.data && typeof entry.data === 'object' && Object.keys(entry.data).length
      ? ` ${JSON.stringify(entry.data)}`
      : '';
  return [
    paint(style, 'dim', entry.time),
    paint(style, levelPaint, level),
    entry.stepId ? paint(style, 'cyan', entry.stepId) : '-',
    `${entry.message}${data}`,
  ].join('  ');
}

/** Cuts a line to the terminal width, counting only visible characters (ANSI codes are kept). */
export function fitWidth(line: string, width: number): string {
  // eslint-disable-next-line no-control-regex
  if (width <= 0 || line.replace(/\x1b\[[0-9;]*m/g, '').length < width) return line;
  let visible = 0;
  let out = '';
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '\x1b') {
      const end = line.indexOf('m', i);
      if (end !== -1) {
        out += line.slice(i, end + 1);
        i = end;
        continue;
      }
    }
    if (visible >= width - 1) {
      out += '…\x1b[0m';
      return out;
    }
    out += line[i];
    visible += 1;
  }
  return out;
}

/**
 * What `runs start` says on stderr besides the run id (stdout stays the id alone, for scripts): an
 * earlier run of the idempotency key, a singleton's active run returned or runs replaced, a
 * debounced trigger's window. Undefined for a plain new run.
 */
export function startNote(status: number, body: RunAccepted): string | undefined {
  if (body.debounce) {
    const d = body.debounce;
    return (
      `debounced → run ${body.runId} (${d.count} trigger${d.count === 1 ? '' : 's'} so far; starts at ${d.firesAt}` +
      `${d.deadline ? `, at the latest ${d.deadline}` : ''}, unless another trigger of key '${d.key}' comes)`
    );
  }
  if (body.singleton?.skipped)
    return `singleton: key '${body.singleton.key}' already has an active run (${body.status}): ${body.runId}; nothing started`;
  if (body.singleton?.cancelled?.length)
    return `singleton: cancelled the active run${body.singleton.cancelled.length === 1 ? '' : 's'} ${body.singleton.cancelled.join(', ')}`;
  if (status === 200) return `an earlier run has this idempotency key: ${body.runId}`;
  return undefined;
}

/** An operation's progress on one line, then its skipped and failed runs with why. */
export function operationLines(op: Operation): string[] {
  const counts = `${op.done}/${op.matched} done, ${op.skipped} skipped, ${op.failed} failed, ${op.remaining} remaining`;
  const head = [op.id, op.status.padEnd(9), `bulk ${op.kind}`.padEnd(11), counts, `${op.ratePerSec}/s`, op.createdAt];
  return [
    head.join('  '),
    ...(op.error ? [`error: ${op.error}`] : []),
    ...(op.problems ?? []).map((p) => `  ${p.outcome} ${p.runId}: ${p.reason}`),
  ];
}
