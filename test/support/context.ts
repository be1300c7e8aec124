import crypto from 'node:crypto';
import { createLogger, type FunctionContext, type StepLog } from '@baton/engine';

export interface RecordedLogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  data?: Record<string, unknown>;
}

export interface TestFunctionContext extends FunctionContext {
  /** Every ctx.log line the handler wrote, in order. */
  lines: RecordedLogLine[];
  /** Every ctx.emit call, in order. */
  emitted: { name: string; payload: unknown }[];
  /** Aborts ctx.signal, as the runtime does on a step timeout or a cancel. */
  controller: AbortController;
}

/**
 * A real FunctionContext for calling a handler directly, as the function runtime would: the
 * idempotency key follows the runtime's `<runId>:<stepId>[:compensate]` rule.
 */
export function createTestContext(
  overrides: Partial<Omit<FunctionContext, 'signal' | 'log'>> = {},
): TestFunctionContext {
  const runId = overrides.runId ?? crypto.randomUUID();
  const stepId = overrides.stepId ?? 'step';
  const kind = overrides.kind ?? 'action';
  const controller = new AbortController();
  const lines: RecordedLogLine[] = [];
  const emitted: { name: string; payload: unknown }[] = [];
  const record =
    (level: RecordedLogLine['level']) =>
    (message: string, data?: Record<string, unknown>): void => {
      lines.push({ level, message, ...(data ? { data } : {}) });
    };
  const log: StepLog = { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') };
  return {
    runId,
    stepId,
    stepExecutionId: crypto.randomUUID(),
    workflow: 'invoice',
    kind,
    attempt: 1,
    maxAttempts: 3,
    idempotencyKey: `${runId}:${stepId}${kind === 'compensation' ? ':compensate' : ''}`,
    signal: controller.signal,
    log,
    logger: createLogger('test', 'silent', { runId, stepId }),
    emit: (name, payload) => emitted.push({ name, payload }),
    ...overrides,
    emitted,
    lines,
    controller,
  };
}
