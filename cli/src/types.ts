/** The parts of the API's answers the CLI reads (the full shapes are in GET /openapi.json). */

export const TERMINAL_RUN_STATUSES = ['succeeded', 'failed', 'compensated', 'compensation_failed', 'cancelled'];

export interface RunAccepted {
  runId: string;
  status: string;
  statusUrl: string;
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
  steps: Step[];
  compensations: Step[];
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
