import crypto from 'node:crypto';
import type { CoordinatorClient } from './coordinator-client';
import type { Pool } from './db/pool';
import { isUnstorableText } from './db/sqlstate';
import { NotFoundError, ValidationError } from './errors';
import { GroupCommit } from './group-commit';
import type { Logger } from './logger';
import { existingRuns, insertRuns, runKey } from './run-rows';
import { traced, validateRunInput, type RunTrigger, type StartedRun } from './runs';
import { injectTrace, inSpan, type TraceCarrier } from './tracing';
import { getDefinition, type StoredDefinition } from './workflow/store';
import { ErrorCode } from './error-codes';
import { resolveRunTags } from './workflow/tags';

export interface StartByNameRequest {
  workflow: string;
  input: unknown;
  trigger: RunTrigger;
  idempotencyKey?: string;
  /** Validated by the caller (runTagsSchema); the definition's `tags:` are merged under them. */
  tags?: Record<string, string>;
}

interface Pending extends StartByNameRequest {
  runId: string;
  trace: TraceCarrier;
  /** The tags resolved against the definition the input was validated with. */
  resolvedTags?: Record<string, string>;
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
    const checked: (Pending | Error)[] = await Promise.all(
      items.map(async (item) => {
        const definition = latest.get(item.workflow);
        if (!definition) return new NotFoundError('workflow', item.workflow);
        try {
          validateRunInput(definition, item.input);
          // An API start: a tag template that fails is a 400 naming `tags.<key>` (tags.ts).
          const tags = await resolveRunTags(definition.definition.tags, item.input, item.tags, { strict: true });
          return { ...item, resolvedTags: tags };
        } catch (err) {
          if (!fetched.has(item.workflow)) recheck.push(item);
          return err as Error;
        }
      }),
    );
    const valid = checked.filter((c): c is Pending => !(c instanceof Error));
    const created = await insertRuns(
      this.pool,
      valid.map((v) => ({
        id: v.runId,
        workflow: v.workflow,
        version: latest.get(v.workflow)?.version,
        input: v.input,
        trigger: v.trigger,
        idempotencyKey: v.idempotencyKey,
        metadata: traced(v.trace),
        tags: v.resolvedTags ?? {},
      })),
      { onlyLatest: true },
    );
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
      const found = existing.get(runKey(c.workflow, c.idempotencyKey));
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
