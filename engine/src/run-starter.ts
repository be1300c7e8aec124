import crypto from 'node:crypto';
import type { CoordinatorClient, DelayedMessage } from './coordinator-client';
import type { Pool } from './db/pool';
import { isUnstorableText } from './db/sqlstate';
import { NotFoundError, ValidationError, ErrorCode, resolveRunTags } from '@baton/workflow';
import { GroupCommit } from './group-commit';
import type { Logger } from './logger';
import { existingRuns, insertRuns, runKey, type RunStart } from './run-rows';
import { planDirectStart } from './direct-start';
import { boundedRedisCall } from './queues';
import { stepJobData, StepQueues } from './step-jobs';
import { debounceWakeups, sendWakeups, traced, validateRunInput, type RunTrigger, type StartedRun } from './runs';
import { withTransaction } from './db/pool';
import { debounceOf, debounceTrigger, type DebounceStart } from './debounce';
import { singletonHolders, singletonSlot } from './flow-store';
import { replaceSingleton, singletonOf, type SingletonStart } from './singleton';
import { injectTrace, inSpan, type TraceCarrier } from './tracing';
import { getDefinition, type StoredDefinition } from './workflow/store';

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
  /** A singleton workflow's key (singleton.ts); a debounced one's window (debounce.ts). */
  singleton?: SingletonStart;
  debounce?: DebounceStart;
  /** Its admission and first steps, when it starts with its insert (direct-start.ts). */
  start?: RunStart;
}

/** Runs inserted per transaction at most; a burst beyond it waits for the next commit. */
export const RUN_START_BATCH = 256;

/**
 * The gateway's way to start runs: concurrent requests share one commit (group commit, see
 * group-commit.ts). Each batch validates every input against its workflow's latest version, inserts
 * the valid runs with one autocommit statement (which checks that version is still the latest). A
 * run of a workflow without admission limits whose first plan is function steps only (direct-start.ts)
 * is written `running` with those steps `queued` by that statement, and the starter enqueues their
 * jobs (one addBulk per function queue) and arms its workflow timeout: the coordinator first hears of
 * it from its first step's report. The other runs are written `pending` and their `run.start` appended
 * to the coordinator's inbox in one round trip. A burst of requests costs a few commits, not one or
 * two each; a lone request is committed at once. A bad input or an unknown workflow fails its own
 * request only.
 */
export class RunStarter {
  /** The latest version of each workflow, as last seen (checked by every INSERT). */
  private readonly latest = new Map<string, StoredDefinition>();
  private readonly commits: GroupCommit<Pending, StartedRun>;
  private readonly logger: Logger | undefined;
  /** The function queues of first steps (on the coordinator client's connection). */
  private readonly steps: StepQueues | undefined;
  private readonly direct: boolean;

  /**
   * `logger`: where a `run.start` or a first step's job Redis did not take is reported (a warning;
   * the request still succeeds). Appends and enqueues are bounded by the coordinator connection's
   * command timeout, if it has one. `direct: false` sends every run through the coordinator's inbox
   * (without a coordinator client, every run is: nothing would enqueue its steps).
   */
  constructor(
    private readonly pool: Pool,
    private readonly coordinator: CoordinatorClient | undefined,
    opts: { maxBatch?: number; maxInFlight?: number; logger?: Logger; direct?: boolean } = {},
  ) {
    this.logger = opts.logger;
    this.direct = Boolean(coordinator) && opts.direct !== false;
    this.steps = coordinator
      ? new StepQueues({
          connection: coordinator.redis,
          prefix: coordinator.keyPrefix,
          inboxShards: coordinator.inboxShards,
        })
      : undefined;
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
  private async flushTogether(
    items: Pending[],
    attempt = 1,
    /** The first plans of the runs started with their insert, by run id (the last attempt's). */
    starts = new Map<string, RunStart>(),
  ): Promise<(StartedRun | Error)[]> {
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
          // A key that fails on the input is a 400 naming `singleton.key` / `debounce.key` (flow-keys.ts).
          const singleton = await singletonOf(definition.definition, item.input);
          const debounce = await debounceOf(definition.definition, item.input);
          // Planned against the version it is inserted with (the INSERT checks it is still the latest).
          // A plan that fails leaves the run to the coordinator, which plans it (and fails it if it
          // must): never the request.
          const start =
            this.direct && !debounce && singleton?.mode !== 'cancelRunning'
              ? await planDirectStart(definition.definition, {
                  id: item.runId,
                  workflow: item.workflow,
                  version: definition.version,
                  input: item.input,
                }).catch(() => undefined)
              : undefined;
          if (start) starts.set(item.runId, start);
          else starts.delete(item.runId);
          return {
            ...item,
            resolvedTags: tags,
            ...(singleton ? { singleton } : {}),
            ...(debounce ? { debounce } : {}),
            ...(start ? { start } : {}),
          };
        } catch (err) {
          if (!fetched.has(item.workflow)) recheck.push(item);
          return err as Error;
        }
      }),
    );
    const all = checked.filter((c): c is Pending => !(c instanceof Error));
    // Debounced triggers and cancelRunning starts go one by one (flow-control below); the rest,
    // singleton `skip` ones included, share the batch's INSERT.
    const alone = await this.startAlone(
      all.filter((v) => v.debounce || v.singleton?.mode === 'cancelRunning'),
      latest,
    );
    const valid = all.filter((v) => !alone.has(v.runId));
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
        ...(v.singleton ? { singletonKey: v.singleton.key } : {}),
        ...(v.start ? { start: v.start } : {}),
      })),
      { onlyLatest: true },
    );
    const existing = await existingRuns(
      this.pool,
      valid.filter((v) => !created.has(v.runId) && v.idempotencyKey !== undefined),
    );
    // singleton `skip`: a start the key's index refused returns the run that holds the key.
    const holders = await singletonHolders(
      this.pool,
      valid.flatMap((v) =>
        !created.has(v.runId) && v.singleton && !existing.has(runKey(v.workflow, v.idempotencyKey))
          ? [{ workflow: v.workflow, key: v.singleton.key }]
          : [],
      ),
    );
    // Items to start again against a fresh read of their workflow: those refused by a cached
    // version, and those neither inserted nor found by key (a newer version was saved meanwhile).
    const again = new Set(recheck.map((r) => r.runId));
    const results = checked.map((c, i): StartedRun | Error => {
      if (c instanceof Error) return c;
      const apart = alone.get(c.runId);
      if (apart === 'stale') {
        again.add(c.runId);
        return new Error('replaced below by the second attempt');
      }
      if (apart) return apart;
      const singleton = c.singleton && { key: c.singleton.key, mode: c.singleton.mode };
      const status = created.get(c.runId);
      if (status)
        return {
          runId: c.runId,
          status,
          created: true,
          ...traced(c.trace),
          ...(singleton && { singleton }),
        };
      const found = existing.get(runKey(c.workflow, c.idempotencyKey));
      if (found) return { ...found, created: false };
      const holder = singleton && holders.get(singletonSlot(c.workflow, singleton.key));
      if (holder) return { ...holder, created: false, singleton: { ...singleton, skipped: true } };
      again.add(items[i].runId);
      return new Error('replaced below by the second attempt');
    });
    let final = results;
    if (again.size) {
      if (attempt >= 3) throw new Error(`workflow versions kept changing while starting ${again.size} run(s)`);
      const stale = items.filter((item) => again.has(item.runId));
      for (const name of new Set(stale.map((r) => r.workflow))) this.latest.delete(name);
      const retried = await this.flushTogether(stale, attempt + 1, starts);
      const byRun = new Map(stale.map((r, i) => [r.runId, retried[i]]));
      final = results.map((r, i) => byRun.get(items[i].runId) ?? r);
    }
    // Committed: the runs start even if Redis is unreachable now (the reconciler starts pending runs
    // that have no executions, and enqueues queued executions that have no job), so a failed
    // notification or enqueue fails no request. It cannot hold the request either: each is bounded by
    // the connection's command timeout (the gateway's).
    if (attempt === 1 && this.coordinator) {
      // Best effort (runs.ts sendWakeups): cancel requests are in the outbox, lost timers are swept.
      for (const r of final) if (!(r instanceof Error) && r.wakeups) await sendWakeups(this.coordinator, r.wakeups);
    }
    if (attempt === 1) await this.announce(items, final, starts);
    return final;
  }

  /**
   * After the commit: the first steps of the runs written `running` are enqueued and their workflow
   * timeouts armed; the runs written `pending` are announced with `run.start` in the coordinator's
   * inbox. All three at once, one round trip each (per function queue for the steps).
   */
  private async announce(
    items: Pending[],
    results: (StartedRun | Error)[],
    starts: Map<string, RunStart>,
  ): Promise<void> {
    const { coordinator, steps } = this;
    if (!coordinator || !steps) return;
    const byRun = new Map(items.map((item) => [item.runId, item]));
    const pending: StartedRun[] = [];
    const jobs: ReturnType<typeof stepJobData>[] = [];
    const deadlines: DelayedMessage[] = [];
    const timed: string[] = [];
    for (const r of results) {
      if (r instanceof Error || !r.created) continue;
      const item = byRun.get(r.runId);
      const start = starts.get(r.runId);
      if (r.status !== 'running' || !item || !start) {
        pending.push(r);
        continue;
      }
      const run = { id: r.runId, workflow: item.workflow, priority: start.priority };
      // The function's attempt spans become children of the run's root span.
      for (const e of start.queued) jobs.push(stepJobData(run, e, r.trace));
      if (start.deadlineMs) {
        deadlines.push({ message: { type: 'run.timeout', runId: r.runId, attempt: 0 }, delayMs: start.deadlineMs });
        timed.push(r.runId);
      }
    }
    const warn = (what: string, runs: string[]) => (err: unknown) =>
      this.logger?.warn({ err: (err as Error).message, runs: runs.length, runIds: runs.slice(0, 20) }, what);
    const jobRuns = [...new Set(jobs.map((j) => j.runId))];
    await Promise.all([
      jobs.length
        ? boundedRedisCall(coordinator.redis, 'enqueueing first steps', () => steps.add(jobs)).catch(
            warn('first steps not enqueued; the reconciler enqueues them', jobRuns),
          )
        : undefined,
      deadlines.length
        ? boundedRedisCall(coordinator.redis, 'arming workflow timeouts', () =>
            coordinator.sendAllDelayed(deadlines),
          ).catch(warn('workflow timeouts not armed; the reconciler times out runs past their deadline', timed))
        : undefined,
      pending.length
        ? coordinator
            .sendToInbox(
              pending.map((r) => ({ type: 'run.start' as const, runId: r.runId, ...traced(r.trace ?? {}) })),
              'appending run.start to the coordinator inbox',
            )
            .catch(
              warn(
                'run.start not appended to the coordinator inbox; the reconciler starts these runs',
                pending.map((r) => r.runId),
              ),
            )
        : undefined,
    ]);
  }

  /** Closes the function queues of first steps (their connection is the coordinator client's). */
  async close(): Promise<void> {
    await this.steps?.close();
  }

  /**
   * Starts that cannot share the batch's INSERT, each on its own: a debounced trigger joins its
   * window (debounce.ts: no run yet, 202 with the run id it will start); a cancelRunning start
   * releases the key's active run (cancelled) and inserts its own in one transaction (singleton.ts).
   * 'stale': not inserted because a newer version was saved (started again like the batch's).
   */
  private async startAlone(
    items: Pending[],
    latest: Map<string, StoredDefinition>,
  ): Promise<Map<string, StartedRun | Error | 'stale'>> {
    const results = new Map<string, StartedRun | Error | 'stale'>();
    for (const item of items) {
      const definition = latest.get(item.workflow) as StoredDefinition;
      const base = {
        id: item.runId,
        workflow: item.workflow,
        version: definition.version,
        input: item.input,
        trigger: item.trigger,
        idempotencyKey: item.idempotencyKey,
        metadata: traced(item.trace),
        tags: item.resolvedTags ?? {},
      };
      try {
        if (item.debounce) {
          const d = await debounceTrigger(this.pool, {
            ...base,
            definition,
            debounce: item.debounce,
            runId: item.runId,
          });
          results.set(item.runId, {
            runId: d.runId,
            status: 'debounced',
            created: false,
            debounce: d.debounce,
            wakeups: debounceWakeups(d),
          });
          continue;
        }
        const singleton = item.singleton as SingletonStart;
        const outcome = await withTransaction(this.pool, (client) =>
          replaceSingleton(
            client,
            { ...base, singletonKey: singleton.key },
            {
              onlyLatest: true,
              compensate: singleton.compensate,
            },
          ),
        );
        if (outcome.kind === 'stale') results.set(item.runId, 'stale');
        else if (outcome.kind === 'existing')
          results.set(item.runId, { runId: outcome.runId, status: outcome.status, created: false });
        else
          results.set(item.runId, {
            runId: item.runId,
            status: 'pending',
            created: true,
            ...traced(item.trace),
            singleton: { key: singleton.key, mode: singleton.mode, cancelled: outcome.cancelled.map((c) => c.runId) },
            wakeups: { cancels: outcome.cancelled.map((c) => ({ ...c, compensate: singleton.compensate })) },
          });
      } catch (err) {
        results.set(item.runId, unstorable(err));
      }
    }
    return results;
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
