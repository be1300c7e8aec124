/** The parts of the API's answers the CLI reads (the full shapes are in GET /openapi.json). */

export const TERMINAL_RUN_STATUSES = ['succeeded', 'failed', 'compensated', 'compensation_failed', 'cancelled'];

export interface RunAccepted {
  runId: string;
  /** A run status, or `debounced`: the run starts when its debounce window closes. */
  status: string;
  statusUrl: string;
  /** Singleton and debounced workflows: whether this request started the run. */
  started?: boolean;
  singleton?: { key: string; mode: string; skipped?: boolean; cancelled?: string[] };
  debounce?: { key: string; count: number; firesAt: string; deadline: string | null };
}

export interface Step {
  id: string;
  executionId: string;
  function: string;
  status: string;
  attempts: number;
  maxAttempts: number;
  queuedAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  error: unknown;
  output: unknown;
  /** A `workflow:` step: the child run it started. */
  childRunId?: string;
  /** A forEach/repeat step: its items by state, its first items, the cursor to the rest. */
  fanout?: Fanout;
  items?: StepItem[];
  itemsNext?: string;
}

export interface Fanout {
  mode: 'forEach' | 'repeat';
  total: number;
  pending: number;
  running: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  compensated: number;
  concurrency: number | null;
}

export interface StepItem {
  index: number;
  executionId: string;
  status: string;
  attempts: number;
  childRunId?: string;
  error?: unknown;
  output?: unknown;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface Run {
  id: string;
  workflow: string;
  workflowVersion: number;
  status: string;
  input: unknown;
  output: unknown;
  error: unknown;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** A child run: the run and step that started it (absent from gateways before child workflows). */
  parentRunId?: string | null;
  parentStepId?: string | null;
  depth?: number;
  /** Run tags (absent from gateways before tags). */
  tags?: Record<string, string>;
  /** A fork: the run it was forked from (absent from gateways before fork). */
  forkedFrom?: string | null;
  steps: Step[];
  compensations: Step[];
}

/** A bulk operation (`GET /v1/operations/:id`). */
export interface Operation {
  id: string;
  kind: 'retry' | 'cancel';
  status: 'running' | 'succeeded' | 'cancelled' | 'failed';
  ratePerSec: number;
  matched: number;
  done: number;
  skipped: number;
  failed: number;
  remaining: number;
  error: string | null;
  createdAt: string;
  /** Only on a single operation: the first skipped or failed runs, with why. */
  problems?: { runId: string; outcome: 'skipped' | 'failed'; reason: string }[];
}

export interface LogEntry {
  id: number;
  time: string;
  level: string;
  message: string;
  stepId: string | null;
  data: unknown;
}

export interface LogPage {
  logs: LogEntry[];
  nextCursor: string | null;
}

export interface WorkflowSaved {
  name: string;
  version: number;
  warnings: { path: string; message: string }[];
}

export interface EventPublished {
  eventId: string;
  runIds: string[];
  rejected?: { workflow: string; message: string }[];
}

/** A function's pause, as POST /v1/functions/:name/pause|resume answers it. */
export interface FunctionControl {
  name: string;
  paused: boolean;
  pausedAt: string | null;
  pauseReason: string | null;
}

/** One row of GET /v1/functions. */
export interface FunctionSummary extends FunctionControl {
  queue: string;
  jobs: Record<string, number>;
  workers: number;
  lastSeenAt: string | null;
}
