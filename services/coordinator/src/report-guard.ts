import {
  jsonByteLength,
  storableJson,
  storableString,
  storableText,
  type SerializedError,
  ErrorCode,
} from '@baton/workflow';
import type { InboxMessage, StepLogLine, StepReport } from '@baton/engine';

/**
 * The coordinator's guard between what functions report and what PostgreSQL stores. A report comes
 * from code Baton does not control (a user's function, an HTTP body, a transform of anything): one
 * value jsonb refuses would fail its whole batch, be retried, dead-lettered and leave its run
 * `running` for ever — and, replayed by the reconciler from the finished job, abort every pass.
 *
 * Two layers:
 * 1. `guardReport` (every report, before its batch is applied): strings made storable (NUL and lone
 *    surrogates replaced, workflow/src/storable.ts), texts and logs capped, and an output larger than
 *    `maxOutputBytes` turned into a failure, `OUTPUT_TOO_LARGE`. Large results belong in the documents
 *    store, with only their id in the output (generate-pdf does this).
 * 2. `quarantineReport` (a report that failed alone with a data error anyway): the payload PostgreSQL
 *    refused is dropped and the step fails with `UNSTORABLE_OUTPUT`, so the run moves on (to its
 *    failure handling: compensation of the steps before it) instead of stalling.
 *
 * Both turn a success into a failure that is not retried: the handler ran and returned, so running it
 * again would repeat its side effect and most likely return the same value.
 */

const MAX_ERROR_MESSAGE_CHARS = 8_192;
const MAX_ERROR_DETAILS_BYTES = 64 * 1024;
const MAX_LOG_LINES = 500;
const MAX_LOG_MESSAGE_CHARS = 4_096;
const MAX_LOG_DATA_BYTES = 16 * 1024;

export interface ReportLimits {
  maxOutputBytes: number;
}

export function guardReport(received: InboxMessage, limits: ReportLimits): InboxMessage {
  if (received.type === 'run.start') return received;
  const message = guardTimes(received);
  const logs = message.logs ? guardLogs(message.logs) : undefined;
  const withLogs = <M extends StepReport>(m: M): M => (logs === message.logs ? m : { ...m, logs });

  switch (message.type) {
    case 'step.started':
      return withLogs(message);
    case 'step.retrying':
    case 'step.failed':
      return withLogs({ ...message, error: guardError(message.error) });
    case 'step.succeeded': {
      const output = storableJson(message.output);
      const events = message.events?.map((e) => ({ name: storableString(e.name), payload: storableJson(e.payload) }));
      const bytes = jsonByteLength(output) + (events ? jsonByteLength(events) : 0);
      if (bytes > limits.maxOutputBytes) {
        const { output: _output, events: _events, ...rest } = message;
        return withLogs({
          ...rest,
          type: 'step.failed',
          error: {
            code: ErrorCode.OUTPUT_TOO_LARGE,
            message:
              `step output is ${bytes} bytes${events?.length ? ' (with its emitted events)' : ''}, over the limit of ` +
              `${limits.maxOutputBytes} (BATON_MAX_OUTPUT_BYTES): store a large result as a document and return its id`,
            nonRetryable: true,
          },
        });
      }
      return withLogs({
        ...message,
        ...(output === message.output ? {} : { output }),
        ...(events ? { events } : {}),
      });
    }
  }
}

/**
 * `at` and `startedAt` are protocol fields the coordinator writes into timestamp columns: one that is
 * not an ISO time (a function built on another SDK) is replaced by the coordinator's clock, and the
 * attempt number is kept to an integer PostgreSQL stores.
 */
function guardTimes<M extends StepReport>(message: M): M {
  const valid = (t: unknown): t is string => typeof t === 'string' && ISO_TIME.test(t) && !Number.isNaN(Date.parse(t));
  const at = valid(message.at) ? message.at : new Date().toISOString();
  const startedAt = message.startedAt === undefined || valid(message.startedAt) ? message.startedAt : at;
  const attempt =
    Number.isInteger(message.attempt) && message.attempt >= 1 && message.attempt <= 1_000_000 ? message.attempt : 1;
  if (at === message.at && startedAt === message.startedAt && attempt === message.attempt) return message;
  return { ...message, at, attempt, ...(startedAt === undefined ? {} : { startedAt }) };
}

/** An ISO 8601 date-time as Date.prototype.toISOString writes it (the runtime's format), offsets allowed. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$/;

/**
 * A report PostgreSQL still refused (applied alone, so it is the culprit): what it carried is dropped
 * and kept only as a description, and the step fails with `UNSTORABLE_OUTPUT`.
 */
export function quarantineReport(message: InboxMessage, reason: string): InboxMessage {
  if (message.type === 'run.start' || message.type === 'step.started') return message;
  const { logs: _logs, ...rest } = message;
  const why = storableText(reason, 500);
  if (message.type === 'step.succeeded') {
    const { output: _output, events: _events, ...base } = rest as typeof message;
    return {
      ...base,
      type: 'step.failed',
      error: {
        code: ErrorCode.UNSTORABLE_OUTPUT,
        message: `PostgreSQL refused to store this step's output (${why}); the step's handler did return`,
        nonRetryable: true,
      },
    };
  }
  return {
    ...(rest as typeof message),
    error: {
      code: storableString(message.error.code).slice(0, 100),
      message: `${storableText(message.error.message, 1_000)} (its details could not be stored: ${why})`,
      nonRetryable: message.error.nonRetryable,
    },
  };
}

/** The report without its logs, in their place one line saying why they are missing. */
export function withoutLogs<M extends Exclude<InboxMessage, { type: 'run.start' }>>(message: M, reason: string): M {
  const dropped = message.logs?.length ?? 0;
  return {
    ...message,
    logs: [
      {
        level: 'warn',
        message: `${dropped} log line(s) of this attempt could not be stored: ${storableText(reason, 500)}`,
        time: new Date().toISOString(),
      },
    ],
  };
}

function guardError(error: SerializedError): SerializedError {
  const details = error.details === undefined ? undefined : storableJson(error.details);
  const detailsFit = details === undefined || jsonByteLength(details) <= MAX_ERROR_DETAILS_BYTES;
  return {
    code: storableString(String(error.code)).slice(0, 100),
    message: storableText(String(error.message), MAX_ERROR_MESSAGE_CHARS),
    nonRetryable: Boolean(error.nonRetryable),
    ...(details === undefined ? {} : detailsFit ? { details } : { details: { omitted: 'larger than 64 KiB' } }),
  };
}

function guardLogs(logs: StepLogLine[]): StepLogLine[] {
  let changed = logs.length > MAX_LOG_LINES;
  const kept = logs.slice(0, MAX_LOG_LINES).map((line) => {
    const message = storableText(String(line.message), MAX_LOG_MESSAGE_CHARS);
    let data = line.data === undefined ? undefined : storableJson(line.data);
    if (data !== undefined && jsonByteLength(data) > MAX_LOG_DATA_BYTES) data = { omitted: 'larger than 16 KiB' };
    if (message === line.message && data === line.data) return line;
    changed = true;
    return { ...line, message, ...(data === undefined ? {} : { data }) };
  });
  if (logs.length > MAX_LOG_LINES) {
    kept.push({
      level: 'warn',
      message: `${logs.length - MAX_LOG_LINES} more log lines of this attempt were not stored`,
      time: logs[logs.length - 1].time,
    });
  }
  return changed ? kept : logs;
}
