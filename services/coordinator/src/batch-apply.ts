import { DEFAULT_MAX_OUTPUT_BYTES } from '@baton/workflow';
import {
  isDataError,
  metrics,
  openSpan,
  withOwnTransaction,
  type InboxMessage,
  type Logger,
  type OpenSpan,
  type Pool,
  type PoolClient,
} from '@baton/engine';
import { merge, nothing, type Outcome } from './outcome';
import { guardReport, quarantineReport, withoutLogs } from './report-guard';
import type { RunAdvancer } from './run-advancer';
import {
  applyReport,
  insertLogsOf,
  loadExecutionsOf,
  lockAndRecord,
  markFunctionSeen,
  RunWrites,
  stepIdOf,
  type LockedRun,
  type SuccessReport,
} from './run-store';
import type { Triggers } from './triggers';

/**
 * Applies inbox batches (run starts and step reports) in one transaction each: the report guard
 * first, then lock and record, plan each run once, write, commit, carry out. A lone report PostgreSQL
 * refuses for its data is quarantined (report-guard.ts).
 *
 * Immediate writes (not buffered in `RunWrites`), and why: `lockAndRecord`, `applyReport` and
 * `insertLogsOf` record the reports that planning then reads (the runs' executions are loaded after
 * them); `markFunctionSeen` is outside the transaction (once per function and process).
 */
export class BatchApplier {
  private readonly seenFunctions = new Set<string>();

  constructor(
    private readonly deps: {
      pool: Pool;
      logger: Logger;
      advancer: RunAdvancer;
      triggers: Triggers;
      maxOutputBytes?: number;
    },
  ) {}

  /**
   * Applies a batch of run starts and step reports in one transaction (group commit): lock the runs
   * (in id order), record the reports (successes with one statement), plan each run concerned once
   * against its state after the whole batch, write what the plans decided with one statement per
   * kind, commit — then enqueue. Applying a message twice changes nothing, so a batch re-read after a
   * crash is safe. `onCommit` runs once the transaction has committed (the inbox acknowledges then).
   */
  async handleBatch(received: InboxMessage[], onCommit?: () => Promise<void>): Promise<void> {
    const limits = { maxOutputBytes: this.deps.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES };
    const messages = received.map((m) => guardReport(m, limits));
    try {
      await this.applyGuarded(messages, onCommit);
    } catch (err) {
      // Alone, a report PostgreSQL refuses for its data is the culprit: stored without its payload it
      // fails its step (UNSTORABLE_OUTPUT) and the run goes on. In a batch, the caller (the inbox)
      // applies the messages one by one, so each culprit comes back here alone.
      if (messages.length !== 1 || !isDataError(err) || messages[0].type === 'run.start') throw err;
      await this.applyQuarantined(messages[0], err as Error, onCommit);
    }
  }

  /**
   * A lone report PostgreSQL refused for its data: applied again without its logs (kept as one line
   * saying why), then, if still refused, without its payload, failing its step (UNSTORABLE_OUTPUT).
   */
  private async applyQuarantined(
    message: Exclude<InboxMessage, { type: 'run.start' }>,
    refused: Error,
    onCommit?: () => Promise<void>,
  ): Promise<void> {
    const where = { runId: message.runId, stepExecutionId: message.stepExecutionId };
    let reason = refused.message;
    if (message.logs?.length) {
      try {
        await this.applyGuarded([withoutLogs(message, reason)], onCommit);
        this.deps.logger.error(
          { err: refused, ...where },
          'step logs could not be stored; the report was applied without them',
        );
        metrics.reportsQuarantined.inc({ type: message.type, dropped: 'logs' });
        return;
      } catch (err) {
        if (!isDataError(err)) throw err;
        reason = (err as Error).message;
      }
    }
    this.deps.logger.error(
      { err: refused, ...where },
      'step report could not be stored; its step fails with UNSTORABLE_OUTPUT',
    );
    metrics.reportsQuarantined.inc({ type: message.type, dropped: 'payload' });
    await this.applyGuarded([quarantineReport(message, reason)], onCommit);
  }

  private async applyGuarded(messages: InboxMessage[], onCommit?: () => Promise<void>): Promise<void> {
    // One span per run: the batch's work for it, in the run's trace.
    const spans = new Map<string, OpenSpan>();
    for (const m of messages) {
      if (!spans.has(m.runId)) {
        spans.set(
          m.runId,
          openSpan(`baton.coordinator ${m.type}`, m.trace, { 'baton.run_id': m.runId, 'baton.batch': messages.length }),
        );
      }
      if (m.type !== 'run.start' && m.function) await this.noteFunction(m.function);
    }
    let failure: unknown;
    const timer = metrics.coordinatorBatchDuration.startTimer();
    try {
      const outcome = await withOwnTransaction(this.deps.pool, (client) => this.applyBatch(client, messages, spans));
      // Acknowledging needs only the commit: it overlaps the enqueueing (a step whose enqueue is lost
      // in between is queued in PostgreSQL, and the reconciler enqueues it).
      await Promise.all([this.deps.advancer.afterCommit(outcome), onCommit?.()]);
      timer();
      metrics.coordinatorBatchMessages.observe(messages.length);
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      for (const span of spans.values()) span.end(failure);
    }
  }

  private async applyBatch(
    client: PoolClient,
    messages: InboxMessage[],
    spans: Map<string, OpenSpan>,
  ): Promise<Outcome> {
    const successes = new Map<string, SuccessReport>();
    for (const m of messages) {
      // The same report twice in a batch (a replay) is recorded once.
      if (m.type === 'step.succeeded' && !successes.has(m.stepExecutionId)) successes.set(m.stepExecutionId, m);
    }
    // BEGIN, lock and record, and the load of the runs that starts and successes may advance: one
    // round trip. A run whose executions change after that load (a report applied below, a
    // compensation that undid its step) is loaded again before it is planned.
    const { runs, recorded, executions } = await lockAndRecord(
      client,
      [...new Set(messages.map((m) => m.runId))],
      [...successes.values()],
      {
        begin: true,
        load: [
          ...new Set(messages.filter((m) => m.type === 'run.start' || m.type === 'step.succeeded').map((m) => m.runId)),
        ],
      },
    );
    const outcome = nothing();
    const toAdvance = new Set<string>();
    const changed = new Set<string>();
    const logged: Parameters<typeof insertLogsOf>[1] = [];
    // The other messages, in arrival order (rare: slow steps' starts, retries, failures).
    for (const m of messages) {
      if (!runs.has(m.runId)) {
        this.deps.logger.warn({ message: m }, 'message for an unknown run dropped');
        continue;
      }
      if (m.type === 'run.start') toAdvance.add(m.runId);
      else if (m.type !== 'step.succeeded' && (await applyReport(client, m))) {
        changed.add(m.runId);
        if (m.type !== 'step.started' && m.logs?.length) {
          logged.push({ runId: m.runId, stepId: await stepIdOf(client, m.stepExecutionId), report: m });
        }
        // Started and retrying reports change no plan.
        if (m.type === 'step.failed') toAdvance.add(m.runId);
      }
    }
    for (const [id, success] of recorded) {
      const report = successes.get(id) as SuccessReport;
      toAdvance.add(success.runId);
      // lockAndRecord marks the step a compensation undid after the load.
      if (success.kind === 'compensation') changed.add(success.runId);
      if (report.logs?.length) logged.push({ runId: success.runId, stepId: success.stepId, report });
      if (report.events?.length) outcome.notify.push(...(await this.deps.triggers.publishEmitted(client, report)));
    }
    await insertLogsOf(client, logged);

    // Each run concerned is planned once, against its state after the whole batch.
    const stale = [...toAdvance].filter((id) => changed.has(id) || !executions.has(id));
    if (stale.length) for (const [id, current] of await loadExecutionsOf(client, stale)) executions.set(id, current);
    const writes = new RunWrites();
    for (const runId of toAdvance) {
      const run = runs.get(runId) as LockedRun;
      merge(
        outcome,
        await this.deps.advancer.advanceLocked(client, run, writes, executions.get(runId), spans.get(runId)?.carrier),
      );
    }
    // The buffered writes and COMMIT: the second round trip.
    await writes.flush(client, { commit: true });
    return outcome;
  }

  /** Remembers which functions have workers, so definitions naming unknown ones get a warning. */
  private async noteFunction(name: string): Promise<void> {
    // Once per function and coordinator process: not a query per step.
    if (this.seenFunctions.has(name)) return;
    await markFunctionSeen(this.deps.pool, name);
    this.seenFunctions.add(name);
  }
}
