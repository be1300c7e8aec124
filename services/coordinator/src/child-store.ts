import type { PoolClient } from '@baton/engine';

/**
 * SQL of child runs (`workflow:` steps). A child run is inserted in the transaction that dispatches
 * the execution awaiting it, and its id is that execution's id: a coordinator killed at any point
 * leaves either both or neither, and a re-run inserts nothing twice (the primary key).
 */

/** The latest version of each named workflow (absent: no definition). */
export async function latestVersions(client: PoolClient, names: string[]): Promise<Map<string, number>> {
  if (!names.length) return new Map();
  const { rows } = await client.query<{ name: string; version: number }>(
    'SELECT name, max(version)::int AS version FROM workflow_definitions WHERE name = ANY($1) GROUP BY name',
    [names],
  );
  return new Map(rows.map((r) => [r.name, r.version]));
}

export interface NewChildRun {
  /** The awaiting execution's id. */
  id: string;
  workflow: string;
  version: number;
  input: unknown;
  parentRunId: string;
  parentStepId: string;
  depth: number;
  /** `runs.metadata` (the trace context, when tracing is on). */
  metadata: Record<string, unknown>;
}

/**
 * Inserts child runs `pending` (the coordinator starts them after commit, the reconciler if not),
 * with their parent's tags.
 */
export async function insertChildRuns(client: PoolClient, children: NewChildRun[]): Promise<void> {
  if (!children.length) return;
  await client.query({
    name: 'baton.insert_child_runs',
    text: `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger, metadata, parent_run_id,
                             parent_step_id, parent_execution_id, depth, tags)
     SELECT c.id, c.workflow_name, c.workflow_version, 'pending', c.input::jsonb,
            jsonb_build_object('type', 'parent', 'runId', c.parent_run_id, 'stepId', c.parent_step_id),
            c.metadata, c.parent_run_id, c.parent_step_id, c.id, c.depth,
            -- A child run carries its parent's tags (docs/WORKFLOWS.md, Tags).
            COALESCE((SELECT p.tags FROM runs p WHERE p.id = c.parent_run_id), '{}')
       FROM jsonb_to_recordset($1::jsonb)
         AS c(id uuid, workflow_name text, workflow_version int, input text, metadata jsonb, parent_run_id uuid,
              parent_step_id text, depth int)
     ON CONFLICT (id) DO NOTHING`,
    values: [
      JSON.stringify(
        children.map((c) => ({
          id: c.id,
          workflow_name: c.workflow,
          workflow_version: c.version,
          input: JSON.stringify(c.input ?? null),
          metadata: c.metadata,
          parent_run_id: c.parentRunId,
          parent_step_id: c.parentStepId,
          depth: c.depth,
        })),
      ),
    ],
  });
}

/** What a child run ended with, for the report to its parent (the reconciler re-sends it). */
export interface EndedChild {
  id: string;
  status: string;
  output: unknown;
  error: unknown;
  parentRunId: string;
  parentExecutionId: string;
}

/** Child runs that have ended, by id (those not ended are left out). */
export async function endedChildren(client: Pick<PoolClient, 'query'>, ids: string[]): Promise<EndedChild[]> {
  if (!ids.length) return [];
  const { rows } = await client.query<{
    id: string;
    status: string;
    output: unknown;
    error: unknown;
    parent_run_id: string;
    parent_execution_id: string;
  }>(
    `SELECT id, status, output, error, parent_run_id, parent_execution_id FROM runs
      WHERE id = ANY($1::uuid[]) AND parent_execution_id IS NOT NULL
        AND status IN ('succeeded', 'failed', 'compensated', 'compensation_failed', 'cancelled')`,
    [ids],
  );
  return rows.map((r) => ({
    id: r.id,
    status: r.status,
    output: r.output,
    error: r.error,
    parentRunId: r.parent_run_id,
    parentExecutionId: r.parent_execution_id,
  }));
}
