import { CHILD_WORKFLOW_FUNCTION, ErrorCode, type RetryPolicy, type Settlement } from '@baton/workflow';
import type { PoolClient } from '@baton/engine';
import { toCancelled, type CancelledExecution } from './run-store';

/**
 * SQL of forEach and repeat items (see workflow/src/fanout.ts for what they are). Items are
 * step_executions rows under their step's execution (`parent_execution_id`, `item_index`); their
 * counts are in step_fanouts. The counts of the items a statement here inserts are set by that
 * statement; every later change of an item's status is counted by the trigger of migration 006.
 *
 * Every function takes the transaction's client under the run's lock, and writes at once (not
 * buffered in RunWrites): the items' rows and counts are what the next statements of the same
 * transaction (promotion, dispatch, child runs) read.
 */

/** An item to insert: dispatched now (`queued`, or `running` for a child run) or `pending`. */
export interface NewItem {
  id: string;
  index: number;
  input: unknown;
  dispatched: boolean;
  idempotencyKey: string;
  /** A compensation item: the action item it undoes. */
  undoes?: string;
}

/** The step an item belongs to, as its item rows repeat it. */
export interface ItemParent {
  executionId: string;
  runId: string;
  stepId: string;
  kind: 'action' | 'compensation';
  function: string;
  retry: RetryPolicy;
  timeoutMs?: number;
  mode: 'forEach' | 'repeat';
  concurrency?: number;
}

/** An item as dispatching needs it (job data, child run). */
export interface DispatchedItem {
  id: string;
  stepId: string;
  kind: 'action' | 'compensation';
  function: string;
  input: unknown;
  retry: RetryPolicy;
  timeoutMs?: number;
  idempotencyKey?: string;
  index: number;
}

/**
 * Inserts items under their step (creating its step_fanouts row the first time) in one statement,
 * with their counts. A child-workflow item that is dispatched is `running` from the start, its child
 * run's id being its own.
 */
export async function insertItems(client: PoolClient, parent: ItemParent, items: NewItem[]): Promise<void> {
  const child = parent.function === CHILD_WORKFLOW_FUNCTION;
  const pending = items.filter((i) => !i.dispatched).length;
  await client.query({
    name: 'baton.insert_items',
    text: `WITH items AS (
       INSERT INTO step_executions (id, run_id, step_id, kind, function_name, status, input, attempt, max_attempts,
                                    retry_policy, timeout_ms, metadata, queued_at, started_at, worker_id,
                                    parent_execution_id, item_index, child_run_id, undoes_execution_id)
       SELECT i.id, $2, $3, $13, $4, CASE WHEN NOT i.dispatched THEN 'pending' WHEN $9 THEN 'running' ELSE 'queued' END,
              i.input::jsonb, CASE WHEN i.dispatched AND $9 THEN 1 ELSE 0 END, $5, $6, $7,
              jsonb_build_object('idempotencyKey', i.key), CASE WHEN i.dispatched THEN now() END,
              CASE WHEN i.dispatched AND $9 THEN now() END, CASE WHEN i.dispatched AND $9 THEN 'coordinator' END,
              $1, i.index, CASE WHEN $9 AND i.dispatched THEN i.id END, i.undoes
         FROM jsonb_to_recordset($8::jsonb)
           AS i(id uuid, index int, input text, dispatched boolean, key text, undoes uuid)
       RETURNING 1
     )
     INSERT INTO step_fanouts (execution_id, run_id, mode, total, pending, concurrency)
     VALUES ($1, $2, $10, (SELECT count(*) FROM items), $11, $12)
     ON CONFLICT (execution_id) DO UPDATE
       SET total = step_fanouts.total + EXCLUDED.total, pending = step_fanouts.pending + EXCLUDED.pending`,
    values: [
      parent.executionId,
      parent.runId,
      parent.stepId,
      parent.function,
      parent.retry.attempts,
      parent.retry,
      parent.timeoutMs ?? null,
      JSON.stringify(
        items.map((i) => ({
          id: i.id,
          index: i.index,
          // As text, so a JSON null input stays JSON null rather than SQL NULL.
          input: JSON.stringify(i.input ?? null),
          dispatched: i.dispatched,
          key: i.idempotencyKey,
          undoes: i.undoes ?? null,
        })),
      ),
      child,
      parent.mode,
      pending,
      parent.concurrency ?? null,
      parent.kind,
    ],
  });
}

interface ItemRow {
  id: string;
  step_id: string;
  kind: 'action' | 'compensation';
  function_name: string;
  input: unknown;
  retry_policy: RetryPolicy;
  timeout_ms: number | null;
  idempotency_key: string | null;
  item_index: number;
}

/** Dispatches the next `count` pending items of a step, in list order; returns them. */
export async function promoteItems(client: PoolClient, executionId: string, count: number): Promise<DispatchedItem[]> {
  const { rows } = await client.query<ItemRow>({
    name: 'baton.promote_items',
    text: `UPDATE step_executions e
        SET status = CASE WHEN e.function_name = $3 THEN 'running' ELSE 'queued' END,
            -- A child-workflow item's child run is inserted now, with the item's id.
            child_run_id = CASE WHEN e.function_name = $3 THEN e.id END,
            attempt = CASE WHEN e.function_name = $3 THEN 1 ELSE 0 END,
            started_at = CASE WHEN e.function_name = $3 THEN now() END,
            worker_id = CASE WHEN e.function_name = $3 THEN 'coordinator' END,
            queued_at = now(), updated_at = now()
       FROM (SELECT id FROM step_executions
              WHERE parent_execution_id = $1 AND status = 'pending'
              ORDER BY item_index LIMIT $2 FOR UPDATE) next
      WHERE e.id = next.id
      RETURNING e.id, e.step_id, e.kind, e.function_name, e.input, e.retry_policy, e.timeout_ms,
                e.metadata->>'idempotencyKey' AS idempotency_key, e.item_index`,
    values: [executionId, count, CHILD_WORKFLOW_FUNCTION],
  });
  return rows
    .sort((a, b) => a.item_index - b.item_index)
    .map((r) => ({
      id: r.id,
      stepId: r.step_id,
      kind: r.kind,
      function: r.function_name,
      input: r.input,
      retry: r.retry_policy,
      ...(r.timeout_ms === null ? {} : { timeoutMs: r.timeout_ms }),
      ...(r.idempotency_key ? { idempotencyKey: r.idempotency_key } : {}),
      index: r.item_index,
    }));
}

/**
 * Ends a forEach/repeat step: succeeded (with its output; a forEach's is its items' outputs in list
 * order, assembled here once), failed (its error naming the item) or cancelled. False when it had
 * already ended.
 */
export async function settleFanout(client: PoolClient, settlement: Settlement): Promise<boolean> {
  const { rowCount } = await client.query({
    name: 'baton.settle_fanout',
    text: `UPDATE step_executions p
        SET status = $2,
            output = CASE WHEN $3 THEN (SELECT COALESCE(jsonb_agg(i.output ORDER BY i.item_index), '[]'::jsonb)
                                          FROM step_executions i
                                         WHERE i.parent_execution_id = p.id AND i.superseded_at IS NULL)
                          ELSE $4::jsonb END,
            error = $5::jsonb, finished_at = now(), updated_at = now()
      WHERE p.id = $1 AND p.status = 'running'`,
    values: [
      settlement.executionId,
      settlement.status,
      Boolean(settlement.collect),
      settlement.output === undefined ? null : JSON.stringify(settlement.output),
      settlement.error ? JSON.stringify(settlement.error) : null,
    ],
  });
  return (rowCount ?? 0) > 0;
}

/**
 * Cancels the items of these steps: those not yet dispatched, and (unless `pendingOnly`) those in
 * flight. Returns them, so jobs can be stopped and child runs cancelled.
 */
export async function cancelItems(
  client: PoolClient,
  executionIds: string[],
  reason: string,
  pendingOnly = false,
): Promise<CancelledExecution[]> {
  if (!executionIds.length) return [];
  const { rows } = await client.query<{ id: string; function_name: string; child_run_id: string | null }>(
    `UPDATE step_executions SET status = 'cancelled', error = $3, finished_at = now(), updated_at = now()
      WHERE parent_execution_id = ANY($1::uuid[]) AND superseded_at IS NULL AND status = ANY($2)
      RETURNING id, function_name, child_run_id`,
    [
      executionIds,
      pendingOnly ? ['pending'] : ['pending', 'queued', 'running', 'retrying'],
      JSON.stringify({ code: ErrorCode.CANCELLED, message: reason, nonRetryable: true }),
    ],
  );
  return rows.map(toCancelled);
}

/** Fails items that could not be dispatched (their child run cannot start), each with its error. */
export async function failItems(client: PoolClient, items: { id: string; error: unknown }[]): Promise<void> {
  if (!items.length) return;
  await client.query(
    // Its child run was never inserted: no link to one.
    `UPDATE step_executions e SET status = 'failed', error = f.error, child_run_id = NULL, finished_at = now(),
            updated_at = now()
       FROM jsonb_to_recordset($1::jsonb) AS f(id uuid, error jsonb)
      WHERE e.id = f.id AND e.id = ANY($2::uuid[]) AND e.status IN ('pending', 'queued', 'running')`,
    [JSON.stringify(items), items.map((i) => i.id)],
  );
}

/** The succeeded items of a forEach step, newest first: what its compensation undoes, in order. */
export async function itemsToUndo(
  client: PoolClient,
  executionId: string,
): Promise<{ list: unknown; items: { id: string; index: number; output: unknown }[] }> {
  const [step, items] = await Promise.all([
    client.query<{ input: unknown }>('SELECT input FROM step_executions WHERE id = $1', [executionId]),
    client.query<{ id: string; item_index: number; output: unknown }>(
      `SELECT id, item_index, output FROM step_executions
        WHERE parent_execution_id = $1 AND kind = 'action' AND status = 'succeeded' AND superseded_at IS NULL
        ORDER BY finished_at DESC, item_index DESC`,
      [executionId],
    ),
  ]);
  return {
    list: step.rows[0]?.input ?? null,
    items: items.rows.map((r) => ({ id: r.id, index: r.item_index, output: r.output })),
  };
}

/** Compensation items dispatched: the items they undo are being undone (`compensating`). */
export async function markUndoing(client: PoolClient, compensationIds: string[]): Promise<void> {
  if (!compensationIds.length) return;
  await client.query(
    `UPDATE step_executions a SET status = 'compensating', updated_at = now()
       FROM step_executions c
      WHERE c.id = ANY($1::uuid[]) AND a.id = c.undoes_execution_id AND a.status = 'succeeded'`,
    [compensationIds],
  );
}

/** A forEach step's compensation succeeded: the step's own execution is `compensated`. */
export async function markStepCompensated(client: PoolClient, runId: string, stepId: string): Promise<void> {
  await client.query(
    `UPDATE step_executions SET status = 'compensated', updated_at = now()
      WHERE run_id = $1 AND step_id = $2 AND kind = 'action' AND parent_execution_id IS NULL
        AND superseded_at IS NULL AND status = 'compensating'`,
    [runId, stepId],
  );
}

/**
 * Retry from failure of a forEach step: its items that did not succeed (failed, cancelled, undone by
 * compensation, never dispatched) are superseded and created again `pending`, and the step runs
 * again, its succeeded items keeping their output. A re-created failed or cancelled item keeps its
 * idempotency key (its effect may not have happened); an undone one gets a new one (`:<retry>`), so
 * its effect is made anew rather than found. Returns how many items run again.
 */
export async function reopenFanout(
  client: PoolClient,
  executionId: string,
  retry: number,
  /** The retry's input for the step: each re-run item is sent it instead of its own. */
  input?: { value: unknown },
): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    `WITH old AS (
       UPDATE step_executions SET superseded_at = now(), updated_at = now()
        WHERE parent_execution_id = $1 AND superseded_at IS NULL AND kind = 'action'
          AND status IN ('failed', 'cancelled', 'compensating', 'compensated', 'pending')
       RETURNING run_id, step_id, function_name, input, max_attempts, retry_policy, timeout_ms, metadata,
                 item_index, status
     ), copies AS (
       INSERT INTO step_executions (id, run_id, step_id, kind, function_name, status, input, attempt, max_attempts,
                                    retry_policy, timeout_ms, metadata, parent_execution_id, item_index)
       SELECT gen_random_uuid(), run_id, step_id, 'action', function_name, 'pending', COALESCE($3::jsonb, input), 0,
              max_attempts,
              retry_policy, timeout_ms,
              CASE WHEN status IN ('compensating', 'compensated')
                   THEN jsonb_build_object('idempotencyKey', (metadata->>'idempotencyKey') || ':' || $2::text)
                   ELSE metadata END,
              $1, item_index
         FROM old
       RETURNING 1
     ), counted AS (
       UPDATE step_fanouts SET total = total + (SELECT count(*) FROM copies),
                               pending = pending + (SELECT count(*) FROM copies)
        WHERE execution_id = $1
     )
     UPDATE step_executions SET status = 'running', error = NULL, output = NULL, finished_at = NULL, updated_at = now()
      WHERE id = $1
     RETURNING (SELECT count(*)::int FROM copies) AS n`,
    [executionId, retry, input ? JSON.stringify(input.value ?? null) : null],
  );
  return rows[0]?.n ?? 0;
}
