import type { Pool } from './db/pool';

/**
 * The one way runs are inserted, for both starters: the gateway's `RunStarter` (run-starter.ts, a
 * group-committed batch) and `startRun` (runs.ts: schedules and events, one run). Each validates the
 * input first; here a run row is written `pending`, and a repeated `(workflow, idempotency key)`
 * inserts nothing and finds the first run instead.
 */

type Queryable = Pick<Pool, 'query'>;

export interface NewRun {
  id: string;
  workflow: string;
  version: number | undefined;
  input: unknown;
  trigger: unknown;
  idempotencyKey?: string;
  /** `runs.metadata` (the trace context, when tracing is on). */
  metadata: Record<string, unknown>;
  /** `runs.tags`, already validated and resolved (workflow/tags.ts). */
  tags: Record<string, string>;
  /** `runs.singleton_key` (singleton.ts): while the run is active, no other run of the workflow has it. */
  singletonKey?: string;
}

/**
 * Inserts runs with one statement; returns the ids inserted. `onlyLatest`: a run is inserted only if
 * its version is still its workflow's latest (RunStarter validated the input against the latest it
 * knew, and starts the others again). startRun's callers start the version they hold (the one a
 * schedule or a subscription came from), so it passes false.
 */
export async function insertRuns(
  client: Queryable,
  runs: NewRun[],
  opts: { onlyLatest: boolean },
): Promise<Set<string>> {
  if (!runs.length) return new Set();
  // A repeated idempotency key (an earlier run, or an earlier item of this batch) inserts nothing, nor
  // does a singleton key an active run holds (the index runs_singleton; ON CONFLICT without a target
  // covers both unique indexes).
  // Named statements: prepared once per connection instead of parsed and planned every batch.
  const { rows } = await client.query<{ id: string }>({
    name: 'baton.insert_runs',
    text: `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger, idempotency_key, metadata, tags,
                      singleton_key)
     SELECT r.id, r.workflow_name, r.workflow_version, 'pending', r.input::jsonb, r.trigger, r.idempotency_key, r.metadata,
            COALESCE(r.tags, '{}'), r.singleton_key
       FROM jsonb_to_recordset($1::jsonb)
            AS r(id uuid, workflow_name text, workflow_version int, input text, trigger jsonb, idempotency_key text, metadata jsonb, tags jsonb,
                 singleton_key text)
      WHERE $2::boolean IS NOT TRUE
         OR r.workflow_version = (SELECT max(d.version) FROM workflow_definitions d WHERE d.name = r.workflow_name)
     ON CONFLICT DO NOTHING
     RETURNING id`,
    values: [
      JSON.stringify(
        runs.map((r) => ({
          id: r.id,
          workflow_name: r.workflow,
          workflow_version: r.version,
          // As text, so a JSON null input stays JSON null rather than SQL NULL.
          input: JSON.stringify(r.input ?? null),
          trigger: r.trigger,
          idempotency_key: r.idempotencyKey ?? null,
          metadata: r.metadata,
          tags: r.tags,
          singleton_key: r.singletonKey ?? null,
        })),
      ),
      opts.onlyLatest,
    ],
  });
  return new Set(rows.map((r) => r.id));
}

/** The key `existingRuns` answers by. */
export function runKey(workflow: string, idempotencyKey: string | undefined): string {
  return `${workflow}\u0000${idempotencyKey}`;
}

/** The runs already started with these idempotency keys, by `runKey`. */
export async function existingRuns(
  client: Queryable,
  keys: { workflow: string; idempotencyKey?: string }[],
): Promise<Map<string, { runId: string; status: string }>> {
  if (!keys.length) return new Map();
  const { rows } = await client.query<{ id: string; status: string; workflow_name: string; idempotency_key: string }>(
    // The arrays let PostgreSQL use the idempotency index rather than scan runs (see run-store.ts).
    `SELECT r.id, r.status, r.workflow_name, r.idempotency_key
       FROM runs r JOIN jsonb_to_recordset($1::jsonb) AS k(workflow_name text, idempotency_key text)
         ON r.workflow_name = k.workflow_name AND r.idempotency_key = k.idempotency_key
      WHERE r.workflow_name = ANY($2::text[]) AND r.idempotency_key = ANY($3::text[])`,
    [
      JSON.stringify(keys.map((k) => ({ workflow_name: k.workflow, idempotency_key: k.idempotencyKey }))),
      [...new Set(keys.map((k) => k.workflow))],
      keys.map((k) => k.idempotencyKey ?? ''),
    ],
  );
  return new Map(rows.map((r) => [runKey(r.workflow_name, r.idempotency_key), { runId: r.id, status: r.status }]));
}
