import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { UnrecoverableError, Worker, type Job, type MinimalJob } from 'bullmq';
import { jsonByteLength, DEFAULT_MAX_OUTPUT_BYTES, type RateLimit } from './config';
import { StepErrorCode } from './error-codes';
import { BatonError, CancelledError, NonRetryableError, StepTimeoutError, serializeError } from './errors';
import { failpoint } from './failpoints';
import type { FunctionContext, FunctionDefinition, StepLog } from './function';
import { functionQueueName, redisKeys } from './keys';
import type { Logger } from './logger';
import { epochMs, stepMetrics as metrics } from './metrics';
import {
  appendEncodedToInbox,
  backoffDelayMs,
  EVENT_NAME_PATTERN,
  INBOX_MESSAGE_FIELD,
  isRetryable,
  PROTOCOL_VERSION,
  reportStreamKey,
  stepIdempotencyKey,
  type StepJobData,
  type StepLogLine,
  type StepReport,
} from './protocol';
import { duplicateRedis, isCluster, type QueueContext } from './redis';
import { injectTrace, inSpan, traced } from './tracing';

export interface FunctionWorkerOptions {
  queues: QueueContext;
  logger: Logger;
  concurrency?: number;
  /**
   * At most `max` attempts start per `durationMs` on this function's queue, counted in Redis across
   * every worker of it (BullMQ's global limiter). Give every replica the same value.
   */
  rateLimit?: RateLimit;
  workerId?: string;
  /**
   * Times a job may stall (its worker died or was killed mid-step) before BullMQ fails it. 2: one
   * interrupted attempt is re-run, not counted as a failure.
   */
  maxStalledCount?: number;
  /** How long a job's lock lasts without renewal; a killed worker's job is re-run after this. */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  /**
   * Delivery of an attempt's outcome report that Redis refused is tried again after `minMs`, the
   * wait doubling up to `maxMs` (defaults 50 ms and 5 s), until Redis takes it.
   */
  reportRetry?: { minMs?: number; maxMs?: number };
  /**
   * Once close() began, how long an undelivered outcome report is still tried before the job
   * records the outcome instead (see `deliver` below). Default 10 s: below the 25 s a function
   * container gets to stop (runtime/main.ts).
   */
  reportCloseGraceMs?: number;
  /**
   * Largest output (with its emitted events) reported (BATON_MAX_OUTPUT_BYTES, default 1 MiB): a
   * larger one fails the attempt with OUTPUT_TOO_LARGE, not retried, before it is sent through Redis
   * (where a huge report could be refused for memory, and its delivery retried for ever).
   */
  maxOutputBytes?: number;
}

export interface FunctionWorker {
  worker: Worker;
  workerId: string;
  /** Stops taking jobs, waits for running attempts to finish, then closes connections. */
  close(): Promise<void>;
}

const MAX_RETRY_AFTER_MS = 3_600_000;
/** An attempt still running after this long reports `step.started` (a quicker one sends only its outcome). */
export const STARTED_REPORT_DELAY_MS = 100;
const MAX_EVENTS = 100;
export const REPORT_RETRY_MIN_MS = 50;
export const REPORT_RETRY_MAX_MS = 5_000;
export const REPORT_CLOSE_GRACE_MS = 10_000;

/** The runtime's hops of a step's path (baton_step_hop_seconds), bound once: no label lookup per step. */
const hops = {
  queueWait: metrics.stepHop.labels('queue_wait'),
  handlerStart: metrics.stepHop.labels('handler_start'),
};

/** Error thrown to BullMQ for a retry: carries the delay already reported to the coordinator. */
class RetryLater extends Error {
  constructor(
    message: string,
    readonly delayMs: number,
  ) {
    super(message);
  }
}

/**
 * Runs a function definition against its queue: validates input, calls the handler with a context,
 * enforces the step timeout, and reports every attempt's outcome on the coordinator's inbox stream.
 * Retries are BullMQ's (attempts + a backoff strategy computed from the step's policy).
 */
export function startFunctionWorker(
  definition: FunctionDefinition<any, any>,
  opts: FunctionWorkerOptions,
): FunctionWorker {
  const workerId = opts.workerId ?? `${os.hostname()}:${process.pid}`;
  // Attempts running in this process, by execution id, so a cancellation can abort them.
  const inflight = new Map<string, AbortController>();
  const cancellations = duplicateRedis(opts.queues.connection, 'baton:cancellations');
  cancellations.on('message', (_channel: string, message: string) => {
    for (const id of JSON.parse(message) as string[]) inflight.get(id)?.abort(new CancelledError());
  });
  // Its failures are the main connection's too (logged there by the worker): without a listener,
  // ioredis prints each reconnection attempt's error to stderr while Redis is away.
  cancellations.on('error', () => undefined);
  cancellations.subscribe(redisKeys(opts.queues.prefix).cancel).catch((err: unknown) => {
    opts.logger.error({ err }, 'cannot subscribe to cancellations');
  });
  // Successes whose report is sent with their job's completion, by job id (see `withCompletion` below).
  const withCompletion = !isCluster(opts.queues.connection);
  // Those MULTIs go out on a connection of their own. On BullMQ's connection, an ioredis MULTI first
  // copies each of the ~90 scripts BullMQ defined there onto the transaction object: measured, that
  // copy was about a sixth of this process's CPU per job (docs/PERFORMANCE.md). A script is the
  // server's, not the connection's: EVALSHA finds it from any connection.
  const completions = withCompletion
    ? (duplicateRedis(opts.queues.connection, 'baton:completions') as unknown as CompletionClient & {
        quit(): Promise<unknown>;
        on(event: 'error', listener: () => void): unknown;
      })
    : undefined;
  // A failed MULTI rejects its own call (handled there); the event would only repeat it on stderr.
  completions?.on('error', () => undefined);
  const reportsWithCompletion = new Map<
    string,
    {
      message: StepReport;
      encoded: string;
      logger: Logger;
      shard: number | undefined;
      job: Job<StepJobData>;
      token: string;
    }
  >();
  // A report goes to the inbox shard the coordinator named in the job data (absent: shard 0).
  const report = (message: StepReport, shard?: number): Promise<void> =>
    appendEncodedToInbox(opts.queues.connection, opts.queues.prefix, JSON.stringify(message), shard);

  const retryMinMs = opts.reportRetry?.minMs ?? REPORT_RETRY_MIN_MS;
  const retryMaxMs = Math.max(retryMinMs, opts.reportRetry?.maxMs ?? REPORT_RETRY_MAX_MS);
  const closeGraceMs = opts.reportCloseGraceMs ?? REPORT_CLOSE_GRACE_MS;
  const maxOutputBytes = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  /** Aborted by close(): wakes delivery retries that are waiting, so they count down the grace period. */
  const closing = new AbortController();
  let closeDeadline: number | undefined;

  /**
   * Delivers an attempt's outcome (already encoded) to the inbox, trying again until Redis takes it.
   * The handler has run by now: a report Redis refuses (READONLY after a failover, OOM, a dropped
   * connection, a refused key) is a delivery problem, never the attempt's failure. Treating it as
   * one would call the handler again (a second side effect) or record a success as `failed`.
   * Meanwhile the processor keeps running, so BullMQ keeps renewing the job's lock and no other
   * worker takes the job. Returns false only when it gave up because the worker is closing.
   *
   * On close (SIGTERM) the delivery is tried for `reportCloseGraceMs` more, then abandoned and the
   * job records the outcome itself: a success returns its output (BullMQ completes the job with it),
   * a failure throws as usual (BullMQ fails the job or schedules its retry). That is the durable
   * fallback: for an execution still outstanding whose job completed or failed without a report,
   * the reconciler replays the report from the job (the output; a failure's message). Going on
   * until the process is killed would be worse: a worker killed mid-processor leaves its job
   * active, and once its lock expires BullMQ's stalled check runs the handler again. The grace
   * period is still worth waiting: when all of Redis is away (a failover of a single server), the
   * job cannot be completed either, and a Redis that is back within the grace gets the full report.
   * What the fallback loses is what only the report carries: the attempt's logs and ctx.emit events.
   * A delivery that hangs rather than fails (a frozen server) is waited for like any command of
   * the worker's connection, but not past the grace period once closing.
   */
  const deliver = async (
    message: StepReport,
    encoded: string,
    logger: Logger,
    shard: number | undefined,
  ): Promise<boolean> => {
    let delayMs = retryMinMs;
    for (let failures = 0; ;) {
      try {
        const sent = appendEncodedToInbox(opts.queues.connection, opts.queues.prefix, encoded, shard);
        if (closeDeadline === undefined) await sent;
        else {
          sent.catch(() => undefined);
          await Promise.race([
            sent,
            untilDeadline(closeDeadline).then(() => {
              throw new Error('no answer from Redis before the close grace period ended');
            }),
          ]);
        }
        if (failures) logger.info({ type: message.type, failures }, 'step report delivered after retries');
        return true;
      } catch (err) {
        failures += 1;
        if (closeDeadline !== undefined && Date.now() >= closeDeadline) {
          logger.warn(
            { err: (err as Error).message, type: message.type, failures },
            'worker closing: step report not delivered; the job records the outcome and the reconciler replays it',
          );
          return false;
        }
        metrics.reportRetries.inc({ function: definition.name, type: message.type });
        logger.warn(
          { err: (err as Error).message, type: message.type, failures, retryInMs: delayMs },
          'step report not delivered; trying again (the handler is not called again)',
        );
        if (closeDeadline === undefined) {
          await sleep(delayMs, undefined, { signal: closing.signal }).catch(() => undefined);
        } else {
          await sleep(Math.max(0, Math.min(delayMs, closeDeadline - Date.now())));
        }
        delayMs = Math.min(delayMs * 2, retryMaxMs);
      }
    }
  };

  // One span per attempt, a child of the coordinator span that planned the step.
  const processJob = async (job: Job<StepJobData>, token?: string): Promise<unknown> => {
    const pickedUp = epochMs();
    // Queue wait from the job's creation (by the coordinator, just before its add) or the end of its
    // delay, once per step: later attempts wait on purpose (backoff).
    if (job.attemptsMade === 0 && Number.isFinite(job.timestamp))
      hops.queueWait.observe(Math.max(0, pickedUp - job.timestamp - (job.delay || 0)) / 1000);
    if (typeof job.data?.stepExecutionId !== 'string' || typeof job.data.runId !== 'string') {
      // A job whose hash a Redis wipe emptied while its id stayed in the wait list: there is nothing
      // to run and no step to report for. Completing it with nothing lets the reconciler see a
      // finished job without its execution's data and enqueue the step again from PostgreSQL.
      opts.logger.warn({ jobId: job.id }, 'job without step data (its Redis hash was lost): skipped');
      return null;
    }
    return processStep(job, pickedUp, token);
  };

  const processStep = (job: Job<StepJobData>, pickedUp: number, token?: string): Promise<unknown> =>
    inSpan(
      `baton.step ${definition.name}`,
      job.data.trace,
      { 'baton.run_id': job.data.runId, 'baton.step_id': job.data.stepId, 'baton.attempt': job.attemptsMade + 1 },
      () => runJob(job, pickedUp, token),
    );

  const runJob = async (job: Job<StepJobData>, pickedUp: number, token?: string): Promise<unknown> => {
    const data = job.data;
    const attempt = job.attemptsMade + 1;
    const maxAttempts = job.opts.attempts ?? 1;
    const logger = opts.logger.child({ runId: data.runId, stepId: data.stepId, function: definition.name, attempt });
    const logs: StepLogLine[] = [];
    const events: { name: string; payload: unknown }[] = [];
    const base = {
      v: PROTOCOL_VERSION,
      runId: data.runId,
      stepExecutionId: data.stepExecutionId,
      attempt,
      workerId,
      function: definition.name,
      ...traced(injectTrace()),
    };
    const started = performance.now();
    const startedAt = new Date().toISOString();
    // Queue wait is measured once per step: later attempts wait on purpose (backoff).
    // (A job without its creation time, a partly wiped hash, is not measured: NaN would throw.)
    if (attempt === 1 && Number.isFinite(job.timestamp))
      metrics.stepWait.observe({ function: definition.name }, Math.max(0, Date.now() - job.timestamp) / 1000);
    // A quick attempt sends one report, with its start time; a slow one says it started meanwhile, so
    // the run shows it running (and which worker has it).
    let startedReport: Promise<void> | undefined;
    const startedTimer = setTimeout(() => {
      startedReport = report(
        { type: 'step.started', ...base, at: startedAt, sentAt: epochMs() },
        data.inboxShard,
      ).catch((err: unknown) => logger.warn({ err }, 'started report not sent'));
    }, STARTED_REPORT_DELAY_MS);
    /** Delivers the outcome (retrying, see `deliver`); never throws. */
    const finish = async (message: StepReport, encoded: string): Promise<boolean> => {
      clearTimeout(startedTimer);
      // In order: the started report, when sent, precedes the outcome in the inbox.
      await startedReport;
      return deliver(message, encoded, logger, data.inboxShard);
    };

    let success: { output: unknown; message: StepReport; encoded: string };
    try {
      const output = await runAttempt(definition, data, {
        attempt,
        maxAttempts,
        logger,
        logs,
        events,
        inflight,
        pickedUp,
      });
      const message: StepReport = {
        type: 'step.succeeded',
        ...base,
        startedAt,
        at: new Date().toISOString(),
        sentAt: epochMs(),
        output: output ?? null,
        logs,
        ...(events.length ? { events } : {}),
      };
      // Encoded here, so an output JSON cannot carry fails the attempt (as BullMQ could not store it
      // either), while a report Redis refuses below does not.
      const encoded = encodeReport(message);
      // The encoded report holds the output and events, so only a report over the limit needs them
      // measured apart (serialising every output twice would tax each step for the rare large one).
      const outputBytes =
        Buffer.byteLength(encoded) <= maxOutputBytes
          ? 0
          : jsonByteLength(output ?? null) + (events.length ? jsonByteLength(events) : 0);
      if (outputBytes > maxOutputBytes) {
        // The handler ran: failing for good (no retry) keeps its side effect from being repeated for
        // an output that would be too large again. The coordinator applies the same limit.
        throw new NonRetryableError(
          StepErrorCode.OUTPUT_TOO_LARGE,
          `step output is ${outputBytes} bytes${events.length ? ' (with its emitted events)' : ''}, over the limit of ` +
            `${maxOutputBytes} (BATON_MAX_OUTPUT_BYTES): store a large result as a document and return its id`,
        );
      }
      success = { output: output ?? null, message, encoded };
    } catch (err) {
      const error = serializeError(err);
      if (attempt < maxAttempts && isRetryable(data.retry, error)) {
        // A server's Retry-After wins over a shorter backoff (bounded, so a hostile header cannot park a step for days).
        const retryAfterMs = err instanceof BatonError ? Math.min(err.retryAfterMs ?? 0, MAX_RETRY_AFTER_MS) : 0;
        const delayMs = Math.max(backoffDelayMs(data.retry, attempt), retryAfterMs);
        observe(definition.name, 'retrying', started);
        metrics.stepRetries.inc({ function: definition.name });
        logger.warn({ err: error, delayMs }, 'step attempt failed; retrying');
        const retrying: StepReport = {
          type: 'step.retrying',
          ...base,
          startedAt,
          at: new Date().toISOString(),
          sentAt: epochMs(),
          error,
          delayMs,
          logs,
        };
        // A lost failure report must not become a second handler call either: its delivery is
        // retried too, and only then does BullMQ schedule the next attempt.
        await finish(retrying, encodeReport(retrying));
        throw new RetryLater(error.message, delayMs);
      }
      observe(definition.name, 'failed', started);
      logger.warn({ err: error }, 'step failed for good');
      const failed: StepReport = {
        type: 'step.failed',
        ...base,
        startedAt,
        at: new Date().toISOString(),
        sentAt: epochMs(),
        error,
        logs,
      };
      await finish(failed, encodeReport(failed));
      // Tell BullMQ not to try again: the coordinator has been told this execution failed (or, when
      // the worker closed before Redis took the report, the reconciler replays it from this job).
      throw new UnrecoverableError(error.message);
    }
    observe(definition.name, 'succeeded', started);
    failpoint('after-handler'); // tests only (BATON_FAILPOINT): see ./failpoints.ts
    if (withCompletion && closeDeadline === undefined && job.id !== undefined && token !== undefined) {
      // The report goes in one MULTI with the job's completion (see `withCompletion` below).
      clearTimeout(startedTimer);
      await startedReport;
      reportsWithCompletion.set(job.id, {
        message: success.message,
        encoded: success.encoded,
        logger,
        shard: data.inboxShard,
        job,
        token,
      });
      return success.output;
    }
    // Not delivered only when the worker is closing: the output completes the job, which is what
    // the reconciler replays.
    await finish(success.message, success.encoded);
    return success.output;
  };

  const lockDurationMs = opts.lockDurationMs ?? 30_000;
  const worker = new Worker<StepJobData>(functionQueueName(definition.name), processJob, {
    connection: opts.queues.connection,
    prefix: opts.queues.prefix,
    concurrency: opts.concurrency ?? definition.concurrency ?? 4,
    ...(opts.rateLimit ? { limiter: { max: opts.rateLimit.max, duration: opts.rateLimit.durationMs } } : {}),
    maxStalledCount: opts.maxStalledCount ?? 2,
    lockDuration: lockDurationMs,
    stalledInterval: opts.stalledIntervalMs ?? 30_000,
    name: workerId,
    settings: {
      backoffStrategy: (attemptsMade: number, _type?: string, err?: Error, job?: MinimalJob) =>
        err instanceof RetryLater ? err.delayMs : backoffDelayMs((job?.data as StepJobData).retry, attemptsMade),
    },
  });
  worker.on('error', (err) => opts.logger.error({ err }, 'worker error'));

  /**
   * `withCompletion`: a success's report and its job's completion, in one MULTI on one connection (one write, one
   * reply), instead of the report's XADD awaited and then BullMQ's moveToFinished: a round trip and
   * a socket write less per step. BullMQ completes the job through its backend's `execCommand`
   * ('moveToFinished'); for a job whose report waits in `reportsWithCompletion`, the wrapper sends
   * MULTI, XADD of the report, the same moveToFinished, EXEC.
   *
   * Why no report is lost, and no completion happens without its report:
   * - MULTI/EXEC is all or nothing for what Redis refuses when the commands are queued (NOPERM,
   *   READONLY after a failover, OOM, a wrong argument count: EXECABORT, nothing applied). Then the
   *   report is delivered the usual way (`deliver`: retried until Redis takes it, the lock renewed
   *   meanwhile) and only then is the job completed, as before.
   * - A crash (of this process or the connection) before EXEC reaches Redis applies neither: the
   *   job's lock expires and the stalled check runs the attempt again, which reports again (the
   *   coordinator's inbox drops a repeated report). After EXEC both are applied. The old order had a
   *   window between the two where the report was in and the job still active: a crash there ran
   *   the handler a second time; this order has no such window.
   * - The report's XADD runs first inside the transaction. The only error it can meet at EXEC
   *   rather than when queued is WRONGTYPE (the inbox key holding something other than a stream):
   *   then the report is retried as any refused one (`deliver`); moveToFinished's own refusals (lost lock, job gone)
   *   are answered to BullMQ as before, with the report already in (a duplicate at worst, dropped
   *   by the inbox). A server without the script (NOSCRIPT: flushed, a promoted replica) has the
   *   report and not the completion: BullMQ's own call, which reloads the script, then completes it.
   * On a Redis Cluster the inbox stream and the job's keys are in different slots (one MULTI cannot
   * hold both): there, and once the worker is closing, the report is awaited before the job
   * completes, as it always was.
   */
  if (withCompletion) {
    // bullmq's RedisQueueBackend is not typed publicly (bullmq 6); a bullmq that renamed these fails
    // here at start, not per job.
    const backend = (worker as unknown as { backend: CompletionBackend }).backend;
    if (
      typeof backend?.execCommand !== 'function' ||
      !Array.isArray(backend.moveToFinishedKeys) ||
      typeof backend.version !== 'string'
    )
      throw new Error('bullmq: its Redis backend has no execCommand, moveToFinishedKeys or version (unsupported)');
    const execCommand = backend.execCommand.bind(backend);
    backend.execCommand = async (client, name, args) => {
      const jobId = name === 'moveToFinished' ? args[backend.moveToFinishedKeys.length] : undefined;
      const pending = typeof jobId === 'string' ? reportsWithCompletion.get(jobId) : undefined;
      // The script as BullMQ defined it on the connection (ioredis' defineCommand): sent as EVALSHA.
      // Not through the custom command: in a MULTI, ioredis cannot tell the script is loaded on the
      // socket and sends its whole source (40 KB) as EVAL every time.
      const script = (opts.queues.connection as unknown as { scriptsSet?: Record<string, ScriptDefinition> })
        .scriptsSet?.[`${name}:${backend.version}`];
      if (!pending || !script) return execCommand(client, name, args);
      reportsWithCompletion.delete(jobId as string);
      const key = reportStreamKey(opts.queues.prefix, pending.shard);
      const replies = await (completions ?? client)
        .multi()
        .xadd(key, '*', INBOX_MESSAGE_FIELD, pending.encoded)
        .evalsha(script.sha, script.numberOfKeys, ...args)
        .exec()
        .catch((err: unknown) => {
          // A refused delivery like deliver()'s: counted and said so, then tried again there.
          metrics.reportRetries.inc({ function: definition.name, type: pending.message.type });
          pending.logger.warn(
            { err: (err as Error).message, type: pending.message.type },
            'step report not delivered with its completion; trying again before completing the job',
          );
          return undefined;
        });
      if (replies) {
        const [[reportErr], [err, result]] = replies;
        // EXEC ran the completion but not the XADD (WRONGTYPE): retried like any refused report.
        if (reportErr) await deliver(pending.message, pending.encoded, pending.logger, pending.shard);
        // The server lacks the script (flushed, or a failed-over replica): the report is in, and
        // BullMQ's own call completes the job (ioredis loads the script again on NOSCRIPT).
        if (err && /NOSCRIPT/.test(err.message)) return execCommand(client, name, args);
        if (err) throw err;
        return result;
      }
      // Nothing was applied: the report first, retried until Redis takes it, then the completion,
      // as before. BullMQ stopped renewing the job's lock when the processor returned: it is renewed
      // here meanwhile, so a long refusal does not hand the job (and its handler) to another worker.
      const renew = setInterval(() => {
        pending.job.extendLock(pending.token, lockDurationMs).catch(() => undefined);
      }, lockDurationMs / 3);
      try {
        await deliver(pending.message, pending.encoded, pending.logger, pending.shard);
      } finally {
        clearInterval(renew);
      }
      return execCommand(client, name, args);
    };
  }

  return {
    worker,
    workerId,
    close: async () => {
      // Reports still being retried get the grace period from now (see `deliver`).
      closeDeadline ??= Date.now() + closeGraceMs;
      closing.abort();
      await worker.close();
      await cancellations.quit().catch(() => undefined);
      await completions?.quit().catch(() => undefined);
    },
  };
}

/** What the report-with-completion wrapper uses of BullMQ's Redis backend (bullmq's RedisQueueBackend, not typed publicly). */
interface CompletionBackend {
  moveToFinishedKeys: string[];
  version: string;
  execCommand(client: CompletionClient, name: string, args: unknown[]): Promise<unknown>;
}
/** A Lua script as ioredis keeps it after defineCommand. */
interface ScriptDefinition {
  sha: string;
  numberOfKeys: number;
}
interface CompletionClient {
  multi(): {
    xadd(key: string, id: string, field: string, value: string): ReturnType<CompletionClient['multi']>;
    evalsha(sha: string, numberOfKeys: number, ...args: unknown[]): ReturnType<CompletionClient['multi']>;
    exec(): Promise<[Error | null, unknown][] | null>;
  };
}

/** Resolves once `deadline` (epoch ms) has passed; unref'd, so it holds no process open. */
function untilDeadline(deadline: number): Promise<void> {
  return sleep(Math.max(0, deadline - Date.now()), undefined, { ref: false });
}

/**
 * The report as the inbox carries it. Log data or error details JSON cannot encode (a BigInt, a
 * cycle: handler-supplied) are dropped rather than lose the report; an output or event payload that
 * cannot be encoded throws, failing the attempt.
 */
function encodeReport(message: StepReport): string {
  try {
    return JSON.stringify(message);
  } catch {
    const slim = {
      ...message,
      ...(message.logs ? { logs: message.logs.map(({ data: _data, ...line }) => line) } : {}),
      ...('error' in message ? { error: { ...message.error, details: undefined } } : {}),
    } as StepReport;
    return JSON.stringify(slim);
  }
}

function observe(functionName: string, status: string, startedAt: number): void {
  metrics.stepsTotal.inc({ function: functionName, status });
  metrics.stepDuration.observe({ function: functionName, status }, (performance.now() - startedAt) / 1000);
}

async function runAttempt(
  definition: FunctionDefinition<any, any>,
  data: StepJobData,
  attemptInfo: {
    attempt: number;
    maxAttempts: number;
    logger: Logger;
    logs: StepLogLine[];
    events: { name: string; payload: unknown }[];
    inflight: Map<string, AbortController>;
    /** When the worker took the job (epochMs), for the handler_start hop. */
    pickedUp: number;
  },
): Promise<unknown> {
  const parsed = definition.input.safeParse(data.input);
  if (!parsed.success) {
    const details = parsed.error.issues.map((i) => ({ path: ['input', ...i.path].join('.'), message: i.message }));
    throw new NonRetryableError(
      StepErrorCode.INVALID_INPUT,
      `invalid input for ${definition.name}: ${details.map((d) => `${d.path}: ${d.message}`).join('; ')}`,
      { details },
    );
  }
  const controller = new AbortController();
  const ctx: FunctionContext = {
    runId: data.runId,
    stepId: data.stepId,
    stepExecutionId: data.stepExecutionId,
    workflow: data.workflow,
    kind: data.kind,
    attempt: attemptInfo.attempt,
    maxAttempts: attemptInfo.maxAttempts,
    idempotencyKey: data.idempotencyKey ?? stepIdempotencyKey(data),
    signal: controller.signal,
    log: stepLog(attemptInfo.logger, attemptInfo.logs),
    logger: attemptInfo.logger,
    emit: (name, payload) => {
      if (typeof name !== 'string' || !EVENT_NAME_PATTERN.test(name))
        throw new NonRetryableError(
          StepErrorCode.INVALID_EVENT,
          `event name '${String(name)}': use lowercase letters, digits, dots, dashes and underscores (max 128)`,
        );
      if (attemptInfo.events.length >= MAX_EVENTS)
        throw new NonRetryableError(StepErrorCode.TOO_MANY_EVENTS, `at most ${MAX_EVENTS} events per step`);
      attemptInfo.events.push({ name, payload: payload ?? null });
    },
  };
  // The attempt ends at its deadline or on cancellation whether or not the handler honours the
  // signal: the slot is freed and the attempt reported on time.
  const stopped = new Promise<never>((_, reject) => {
    controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
  });
  stopped.catch(() => undefined);
  const timer = data.timeoutMs
    ? setTimeout(() => controller.abort(new StepTimeoutError(data.timeoutMs as number)), data.timeoutMs)
    : undefined;
  attemptInfo.inflight.set(data.stepExecutionId, controller);
  hops.handlerStart.observe(Math.max(0, epochMs() - attemptInfo.pickedUp) / 1000);
  const running = Promise.resolve().then(() => definition.handler(parsed.data, ctx));
  try {
    return await Promise.race([running, stopped]);
  } finally {
    clearTimeout(timer);
    attemptInfo.inflight.delete(data.stepExecutionId);
    if (controller.signal.aborted) {
      // A handler that ignored its signal finishes later; its result is discarded.
      running.then(
        () => attemptInfo.logger.warn('handler finished after its attempt was stopped; result discarded'),
        () => undefined,
      );
    }
  }
}

const MAX_LOG_LINES = 200;
const MAX_LOG_MESSAGE = 4_000;

function stepLog(logger: Logger, lines: StepLogLine[]): StepLog {
  const write =
    (level: StepLogLine['level']) =>
    (message: string, data?: Record<string, unknown>): void => {
      logger[level](data ?? {}, message);
      // Bounded, so a chatty handler cannot grow a report without limit.
      if (lines.length < MAX_LOG_LINES) {
        lines.push({
          level,
          message: message.slice(0, MAX_LOG_MESSAGE),
          ...(data ? { data } : {}),
          time: new Date().toISOString(),
        });
      }
    };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}
