import crypto from 'node:crypto';
import type { CoordinatorClient } from './coordinator-client';
import type { Pool } from './db/pool';
import { isUnstorableText } from './db/sqlstate';
import { NotFoundError, ValidationError } from './errors';
import { GroupCommit } from './group-commit';
import type { Logger } from './logger';
import { traced, validateRunInput, type Queryable, type RunTrigger, type StartedRun } from './runs';
import { injectTrace, inSpan, type TraceCarrier } from './tracing';
import { getDefinition, type StoredDefinition } from './workflow/store';
import { ErrorCode } from './error-codes';

export interface StartByNameRequest {
  workflow: string;
  input: unknown;
  trigger: RunTrigger;
  idempotencyKey?: string;
}

interface Pending extends StartByNameRequest {
  runId: string;
  trace: TraceCarrier;
}

/** Runs inserted per transaction at most; a burst beyond it waits for the next commit. */
export const RUN_START_BATCH = 256;

/**
 * The gateway's way to start runs: concurrent requests share one commit (group commit, see
 * group-commit.ts). Each batch validates every input against its workflow's latest version, inserts
 * the valid runs with one autocommit INSERT (which checks that version is still the latest), then
 * appends their `run.start` to the coordinator's inbox in one round trip. A burst of requests costs
 * a few commits, not one or two each; a lone request is committed at once. A bad input or an unknown
 * workflow fails its own request only.
 */
export class RunStarter {
  /** The latest version of each workflow, as last seen (checked by every INSERT). */
  private readonly latest = new Map<string, StoredDefinition>();
  private readonly commits: GroupCommit<Pending, StartedRun>;
  private readonly logger: Logger | undefined;

  /**
   * `logger`: where a `run.start` Redis did not take is reported (a warning; the request still
   * succeeds). The append is bounded by the coordinator connection's command timeout, if it has one.
   */
  constructor(
    private readonly pool: Pool,
    private readonly coordinator: CoordinatorClient | undefined,
    opts: { maxBatch?: number; maxInFlight?: number; logger?: Logger } = {},
  ) {
    this.logger = opts.logger;
    this.commits = new GroupCommit((items) => this.flush(items), {
      maxBatch: opts.maxBatch ?? RUN_START_BATCH,
      maxInFlight: opts.maxInFlight ?? 2,
    });
  }

  start(req: StartByNameRequest): Promise<StartedRun> {
    // The root span of the run's trace: every later span (coordinator, functions) descends from it.
    const attributes = { 'baton.workflow': req.workflow, 'baton.trigger': req.trigger.type };
    return inSpan('baton.run.create', undefined, attributes, () =>
      this.commits.submit({ ...req, runId: crypto.randomUUID(), trace: injectTrace() }),
    );
  }

  private async flush(items: Pending[]): Promise<(StartedRun | Error)[]> {
    try {
      return await this.flushTogether(items);
    } catch (err) {
      if (items.length === 1) return [unstorable(err)];
      // One input PostgreSQL refuses (a NUL character in a string passes JSON Schema, not jsonb)
      // fails the whole INSERT: then each request goes alone, so it fails its own request only.
      return Promise.all(items.map((item) => this.flushTogether([item]).then((r) => r[0], unstorable)));
    }
  }

  /**
   * One autocommit INSERT for the batch, which inserts a run only if the version it was validated
   * against is still its workflow's latest: the latest version per name is cached, and a PUT
   * elsewhere shows up as runs left out, which are validated again against the new version.
   */
  private async flushTogether(items: Pending[], attempt = 1): Promise<(StartedRun | Error)[]> {
    const fetched = new Set<string>();
    const latest = await this.latestVersions([...new Set(items.map((i) => i.workflow))], fetched);
    // An input refused by a cached version is checked again against a fresh read before it is
    // refused for good: it may match a version saved since.
    const recheck: Pending[] = [];
    const checked: (Pending | Error)[] = items.map((item) => {
      const definition = latest.get(item.workflow);
      if (!definition) return new NotFoundError('workflow', item.workflow);
      try {
        validateRunInput(definition, item.input);
        return item;
      } catch (err) {
        if (!fetched.has(item.workflow)) recheck.push(item);
        return err as Error;
      }
    });
    const valid = checked.filter((c): c is Pending => !(c instanceof Error));
    const created = await insertRuns(this.pool, valid, latest);
    const existing = await existingRuns(
      this.pool,
      valid.filter((v) => !created.has(v.runId) && v.idempotencyKey !== undefined),
    );
    // Items to start again against a fresh read of their workflow: those refused by a cached
    // version, and those neither inserted nor found by key (a newer version was saved meanwhile).
    const again = new Set(recheck.map((r) => r.runId));
    const results = checked.map((c, i): StartedRun | Error => {
      if (c instanceof Error) return c;
      if (created.has(c.runId)) return { runId: c.runId, status: 'pending', created: true, ...traced(c.trace) };
      const found = existing.get(`${c.workflow}\u0000${c.idempotencyKey}`);
      if (found) return { ...found, created: false };
      again.add(items[i].runId);
      return new Error('replaced below by the second attempt');
    });
    let final = results;
    if (again.size) {
      if (attempt >= 3) throw new Error(`workflow versions kept changing while starting ${again.size} run(s)`);
      const stale = items.filter((item) => again.has(item.runId));
      for (const name of new Set(stale.map((r) => r.workflow))) this.latest.delete(name);
      const retried = await this.flushTogether(stale, attempt + 1);
      const byRun = new Map(stale.map((r, i) => [r.runId, retried[i]]));
      final = results.map((r, i) => byRun.get(items[i].runId) ?? r);
    }
    // Committed: the runs start even if Redis is unreachable now (the reconciler starts pending runs
    // that have no executions), so a failed notification fails no request. It cannot hold the
    // request either: the append is bounded by the connection's command timeout (the gateway's).
    const started = final.filter((r): r is StartedRun => !(r instanceof Error) && r.created);
    if (attempt === 1 && this.coordinator && started.length) {
      await this.coordinator
        .sendToInbox(
          started.map((r) => ({ type: 'run.start' as const, runId: r.runId, ...traced(r.trace ?? {}) })),
          'appending run.start to the coordinator inbox',
        )
        .catch((err: unknown) =>
          this.logger?.warn(
            { err: (err as Error).message, runs: started.length, runIds: started.slice(0, 20).map((r) => r.runId) },
            'run.start not appended to the coordinator inbox; the reconciler starts these runs',
          ),
        );
    }
    return final;
  }

  /** The latest version of each workflow as last seen; a stale one is caught by the INSERT. */
  private async latestVersions(names: string[], fetched: Set<string>): Promise<Map<string, StoredDefinition>> {
    const latest = new Map<string, StoredDefinition>();
    for (const name of names) {
      let stored = this.latest.get(name);
      if (!stored) {
        fetched.add(name);
        stored = await getDefinition(this.pool, name).catch((err: unknown) => {
          if (err instanceof NotFoundError) return undefined;
          throw err;
        });
        if (stored) this.latest.set(name, stored);
      }
      if (stored) latest.set(name, stored);
    }
    return latest;
  }
}

async function insertRuns(
  client: Queryable,
  items: Pending[],
  latest: Map<string, StoredDefinition>,
): Promise<Set<string>> {
  if (!items.length) return new Set();
  // A repeated idempotency key (an earlier run, or an earlier item of this batch) inserts nothing.
  // Named statements: prepared once per connection instead of parsed and planned every batch.
  const { rows } = await client.query<{ id: string }>({
    name: 'baton.insert_runs',
    text: `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger, idempotency_key, metadata)
     SELECT r.id, r.workflow_name, r.workflow_version, 'pending', r.input::jsonb, r.trigger, r.idempotency_key, r.metadata
       FROM jsonb_to_recordset($1::jsonb)
            AS r(id uuid, workflow_name text, workflow_version int, input text, trigger jsonb, idempotency_key text, metadata jsonb)
      WHERE r.workflow_version = (SELECT max(d.version) FROM workflow_definitions d WHERE d.name = r.workflow_name)
     ON CONFLICT (workflow_name, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
     RETURNING id`,
    values: [
      JSON.stringify(
        items.map((i) => ({
          id: i.runId,
          workflow_name: i.workflow,
          workflow_version: latest.get(i.workflow)?.version,
          // As text, so a JSON null input stays JSON null rather than SQL NULL.
          input: JSON.stringify(i.input ?? null),
          trigger: i.trigger,
          idempotency_key: i.idempotencyKey ?? null,
          metadata: traced(i.trace),
        })),
      ),
    ],
  });
  return new Set(rows.map((r) => r.id));
}

async function existingRuns(
  client: Queryable,
  items: Pending[],
): Promise<Map<string, { runId: string; status: string }>> {
  if (!items.length) return new Map();
  const { rows } = await client.query<{ id: string; status: string; workflow_name: string; idempotency_key: string }>(
    // The arrays let PostgreSQL use the idempotency index rather than scan runs (see run-store.ts).
    `SELECT r.id, r.status, r.workflow_name, r.idempotency_key
       FROM runs r JOIN jsonb_to_recordset($1::jsonb) AS k(workflow_name text, idempotency_key text)
         ON r.workflow_name = k.workflow_name AND r.idempotency_key = k.idempotency_key
      WHERE r.workflow_name = ANY($2::text[]) AND r.idempotency_key = ANY($3::text[])`,
    [
      JSON.stringify(items.map((i) => ({ workflow_name: i.workflow, idempotency_key: i.idempotencyKey }))),
      [...new Set(items.map((i) => i.workflow))],
      items.map((i) => i.idempotencyKey ?? ''),
    ],
  );
  return new Map(rows.map((r) => [`${r.workflow_name}\u0000${r.idempotency_key}`, { runId: r.id, status: r.status }]));
}

/** PostgreSQL's "this text cannot be stored" errors (a NUL character in jsonb) are the input's fault. */
function unstorable(err: unknown): Error {
  if (isUnstorableText(err)) {
    return new ValidationError(
      `input cannot be stored: ${(err as Error).message} (remove NUL characters and invalid escapes)`,
      [{ path: 'input', message: (err as Error).message }],
      ErrorCode.INVALID_INPUT,
    );
  }
  return err as Error;
}
