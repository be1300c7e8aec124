import type { z } from 'zod';
import type { Logger } from './logger';

/**
 * What a step function author writes: a name (its queue is `{fn.<name>}`), an input schema, and a
 * handler. Everything else — taking jobs, retries, timeouts, reporting — is the runtime's.
 */
export interface FunctionDefinition<I = unknown, O = unknown> {
  name: string;
  description?: string;
  input: z.ZodType<I>;
  /** Jobs one process runs at once; `<NAME>_CONCURRENCY` overrides it. Default 4. */
  concurrency?: number;
  handler: (input: I, ctx: FunctionContext) => Promise<O>;
}

export interface StepLog {
  debug(message: string, data?: Record<string, unknown>): void;
  info(message: string, data?: Record<string, unknown>): void;
  warn(message: string, data?: Record<string, unknown>): void;
  error(message: string, data?: Record<string, unknown>): void;
}

/** What a handler gets besides its input: `ctx`. */
export interface FunctionContext {
  runId: string;
  stepId: string;
  stepExecutionId: string;
  workflow: string;
  kind: 'action' | 'compensation';
  /** 1 for the first try. */
  attempt: number;
  maxAttempts: number;
  /**
   * Stable across attempts and across retries of the run (`<runId>:<stepId>`, plus `:compensate`
   * for compensations): key every external side effect on it so that a re-run does not repeat it.
   */
  idempotencyKey: string;
  /** Aborted when the attempt times out or the run is cancelled. Pass it to fetch, DB queries... */
  signal: AbortSignal;
  /** Logs to stdout and into the run's stored logs (GET /v1/runs/:id/logs). */
  log: StepLog;
  /** The process logger bound to run and step, for lines that need not be stored with the run. */
  logger: Logger;
  /**
   * Emits an event (`POST /v1/events/:name` semantics): delivered once this attempt's success is
   * recorded, exactly once per step — events of failed attempts are dropped.
   */
  emit(name: string, payload?: unknown): void;
}

/** Function names: they become queue names, metric labels and environment variable names. */
export const FUNCTION_NAME_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;

export function defineFunction<I, O>(definition: FunctionDefinition<I, O>): FunctionDefinition<I, O> {
  if (!FUNCTION_NAME_PATTERN.test(definition.name)) {
    throw new Error(`function name '${definition.name}' must be lowercase letters, digits and dashes`);
  }
  return definition;
}

/** `generate-pdf` → `GENERATE_PDF_CONCURRENCY`. */
export function concurrencyEnvName(functionName: string): string {
  return `${functionName.replace(/-/g, '_').toUpperCase()}_CONCURRENCY`;
}

/** `send-email` → `SEND_EMAIL_RATE_LIMIT` (the same rule as `concurrencyEnvName`). */
export function rateLimitEnvName(functionName: string): string {
  return `${functionName.replace(/-/g, '_').toUpperCase()}_RATE_LIMIT`;
}

/** The rate limit every function process of this installation falls back to. */
export const FUNCTION_RATE_LIMIT_ENV = 'BATON_FUNCTION_RATE_LIMIT';
