import { closeExpressionPool } from '@baton/workflow';
import {
  coordinatorQueue,
  createLogger,
  getDefinition,
  saveDefinition,
  startFunctionWorker,
  startRun,
  type FunctionDefinition,
  type FunctionWorker,
  type RunTrigger,
  type CoordinatorClient,
} from '@baton/engine';
import { BulkOperations, Coordinator, Reconciler } from '../../services/coordinator/src';
import { waitFor, type TestEnv } from './env';

/**
 * The real coordinator, reconciler and function runtimes, in this process, against the suite's
 * database and Redis prefix. Timings are shortened so failures and recovery show within seconds.
 */
export interface Engine {
  coordinator: Coordinator;
  reconciler: Reconciler;
  /** The bulk operations pass, when `bulkIntervalMs` was given. */
  bulk?: BulkOperations;
  coordinatorQueue: CoordinatorClient;
  workers: FunctionWorker[];
  start(workflow: string, input: unknown, opts?: { idempotencyKey?: string; trigger?: RunTrigger }): Promise<string>;
  waitForRun(runId: string, statuses?: string[], timeoutMs?: number): Promise<RunRow>;
  close(): Promise<void>;
}

export interface RunRow {
  id: string;
  status: string;
  output: any;
  error: any;
  started_at: Date | null;
  finished_at: Date | null;
}

export const TERMINAL = ['succeeded', 'failed', 'compensated', 'compensation_failed', 'cancelled'];

let enginesStarted = 0;

export async function startEngine(
  env: TestEnv,
  functions: FunctionDefinition<any, any>[],
  opts: {
    reconcileIntervalMs?: number;
    reconcileGraceMs?: number;
    maxOutputBytes?: number;
    maxForEachItems?: number;
    maxChildDepth?: number;
    /** Inbox shards the coordinator reads (BATON_INBOX_DRAIN_SHARDS); default: the env's shards. */
    inboxReadShards?: number;
    /** Starts the bulk operations pass (bulk-operations.ts) at this interval. */
    bulkIntervalMs?: number;
  } = {},
): Promise<Engine> {
  const logger = createLogger('test', env.config.logLevel);
  const coordinator = new Coordinator({
    pool: env.pool,
    queues: env.queues,
    logger,
    concurrency: 8,
    ...(opts.maxOutputBytes ? { maxOutputBytes: opts.maxOutputBytes } : {}),
    ...(opts.maxForEachItems ? { maxForEachItems: opts.maxForEachItems } : {}),
    ...(opts.maxChildDepth !== undefined ? { maxChildDepth: opts.maxChildDepth } : {}),
    ...(opts.inboxReadShards ? { inbox: { shards: opts.inboxReadShards } } : {}),
  });
  coordinator.start();
  const reconciler = new Reconciler({
    pool: env.pool,
    coordinator,
    logger,
    intervalMs: opts.reconcileIntervalMs ?? 250,
    graceMs: opts.reconcileGraceMs ?? 500,
  });
  reconciler.start();
  const bulk =
    opts.bulkIntervalMs === undefined
      ? undefined
      : new BulkOperations({
          pool: env.pool,
          coordinator: coordinator.client,
          logger,
          intervalMs: opts.bulkIntervalMs,
        });
  bulk?.start();
  const workers = functions.map((fn) =>
    startFunctionWorker(fn, {
      queues: env.queues,
      logger,
      concurrency: 4,
      stalledIntervalMs: 1_000,
      lockDurationMs: 2_000,
    }),
  );
  const queue = coordinatorQueue(env.queues);
  const token = `engine ${++enginesStarted} (${functions.map((f) => f.name).join(', ') || 'no functions'})`;
  env.running.add(token);
  return {
    coordinator,
    reconciler,
    ...(bulk ? { bulk } : {}),
    coordinatorQueue: queue,
    workers,
    async start(workflow, input, o = {}) {
      const definition = await getDefinition(env.pool, workflow);
      const started = await startRun(env.pool, queue, {
        definition,
        input,
        trigger: o.trigger ?? { type: 'http' },
        ...(o.idempotencyKey ? { idempotencyKey: o.idempotencyKey } : {}),
      });
      return started.runId;
    },
    async waitForRun(runId, statuses = TERMINAL, timeoutMs = 30_000) {
      try {
        return await waitFor(
          async () => {
            const { rows } = await env.pool.query<RunRow>('SELECT * FROM runs WHERE id = $1', [runId]);
            return rows[0] && statuses.includes(rows[0].status) ? rows[0] : undefined;
          },
          timeoutMs,
          `run ${runId} to reach ${statuses.join('|')}`,
        );
      } catch (err) {
        // Say where it is stuck: the run and each execution with its attempts.
        const state = await env.pool.query(
          `SELECT r.status AS run, e.id, e.step_id, e.kind, e.status, e.attempt, e.updated_at,
                  (SELECT json_agg(json_build_object('a', a.attempt, 's', a.status)) FROM step_attempts a WHERE a.step_execution_id = e.id) AS attempts
             FROM runs r LEFT JOIN step_executions e ON e.run_id = r.id WHERE r.id = $1 ORDER BY e.created_at`,
          [runId],
        );
        throw new Error(`${(err as Error).message}\n${JSON.stringify(state.rows, null, 1)}`, { cause: err });
      }
    },
    async close() {
      await bulk?.stop();
      await reconciler.stop();
      await Promise.all(workers.map((w) => w.close()));
      await coordinator.close();
      await queue.close();
      await closeExpressionPool();
      env.running.delete(token);
    },
  };
}

export { saveDefinition };
