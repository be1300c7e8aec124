import { NotFoundError, ValidationError } from '@baton/workflow';
import {
  coordinatorQueue,
  createPool,
  getDefinition,
  inboxKey,
  RunStarter,
  saveDefinition,
  startRun,
  type Pool,
  type StartedRun,
  type CoordinatorClient,
} from '@baton/engine';
import { createTestEnv, type TestEnv } from '../support/env';

/**
 * RunStarter on real PostgreSQL and Redis: concurrent starts share transactions (counted as BEGINs
 * on a pool of the suite's own), a bad request fails alone, idempotency keys hold across and within
 * batches, each created run is announced in the coordinator inbox, and the latest workflow version
 * is read per batch.
 */

const GREET = {
  name: 'rs-greet',
  input: {
    type: 'object',
    required: ['name'],
    additionalProperties: false,
    properties: { name: { type: 'string', minLength: 1 } },
  },
  steps: [{ id: 'hello', function: 'say-hello', input: { name: '{{ input.name }}' } }],
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface RunRow {
  id: string;
  workflow_name: string;
  workflow_version: number;
  status: string;
  input: unknown;
  idempotency_key: string | null;
}

describe('RunStarter (group commit of run starts)', () => {
  let env: TestEnv;
  let queue: CoordinatorClient;
  /** The starters' pool: every run INSERT (one autocommit transaction each) sent on it is counted. */
  let pool: Pool;
  let commits = 0;

  beforeAll(async () => {
    env = await createTestEnv('run-starter');
    queue = coordinatorQueue(env.queues);
    pool = createPool(env.databaseUrl, { max: 10, applicationName: 'test-run-starter' });
    pool.on('connect', (client) => {
      // Each physical connection is wrapped once, when the pool opens it.
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        const config = args[0] as { name?: string } | string;
        if (typeof config === 'object' && config?.name === 'baton.insert_runs') commits += 1;
        return query(...args);
      };
    });
    await saveDefinition(env.pool, GREET);
  });

  afterAll(async () => {
    await queue?.close();
    await pool?.end();
    await env?.cleanup();
  });

  const runsByIds = async (ids: string[]) =>
    (
      await env.pool.query<RunRow>(
        'SELECT id, workflow_name, workflow_version, status, input, idempotency_key FROM runs WHERE id = ANY($1::uuid[])',
        [ids],
      )
    ).rows;

  /** The inbox's messages, parsed from field `m`. */
  const inboxMessages = async (): Promise<{ type: string; runId: string }[]> => {
    const entries = (await env.redis.xrange(inboxKey(env.config.queuePrefix), '-', '+')) as [string, string[]][];
    return entries.map(([, fields]) => JSON.parse(fields[fields.indexOf('m') + 1]) as { type: string; runId: string });
  };

  /** Settles every promise, keeping what each ended with. */
  const settleAll = <T>(promises: Promise<T>[]) => Promise.allSettled(promises);

  it('commits 50 concurrent starts as 50 pending runs in far fewer than 50 transactions', async () => {
    const starter = new RunStarter(pool, queue, { direct: false });
    commits = 0;
    const started = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        starter.start({ workflow: 'rs-greet', input: { name: `n${i}` }, trigger: { type: 'http' } }),
      ),
    );
    // Idle starter: two lone flushes start at once (maxInFlight 2), the other 48 share the next one.
    expect(commits).toBeGreaterThanOrEqual(2);
    expect(commits).toBeLessThanOrEqual(4);

    const ids = started.map((s) => s.runId);
    expect(new Set(ids).size).toBe(50);
    for (const s of started) {
      expect(s).toMatchObject({ status: 'pending', created: true });
      expect(s.runId).toMatch(UUID);
    }
    const rows = await runsByIds(ids);
    expect(rows).toHaveLength(50);
    expect(new Set(rows.map((r) => r.status))).toEqual(new Set(['pending']));
    expect(new Set(rows.map((r) => r.workflow_version))).toEqual(new Set([1]));
    // Each run has its own input, not a neighbour's.
    const byId = new Map(rows.map((r) => [r.id, r]));
    started.forEach((s, i) => expect(byId.get(s.runId)?.input).toEqual({ name: `n${i}` }));
  });

  it('announces each created run with one run.start in the coordinator inbox, after commit', async () => {
    const starter = new RunStarter(pool, queue, { direct: false });
    const before = (await inboxMessages()).length;
    const started = await Promise.all(
      Array.from({ length: 7 }, (_, i) =>
        starter.start({ workflow: 'rs-greet', input: { name: `inbox${i}` }, trigger: { type: 'http' } }),
      ),
    );
    const messages = (await inboxMessages()).slice(before);
    expect(messages).toHaveLength(7);
    expect(new Set(messages.map((m) => m.type))).toEqual(new Set(['run.start']));
    expect(messages.map((m) => m.runId).sort()).toEqual(started.map((s) => s.runId).sort());
    // When the message is readable, its run is committed (visible from another connection).
    const rows = await runsByIds(messages.map((m) => m.runId));
    expect(rows).toHaveLength(7);
  });

  it('in one batch, a bad input and an unknown workflow fail alone while the others are created', async () => {
    // One flush at a time: the first start runs alone, the next five queue up and share the second.
    const starter = new RunStarter(pool, queue, { maxInFlight: 1, direct: false });
    const inboxBefore = (await inboxMessages()).length;
    commits = 0;
    const results = await settleAll([
      starter.start({ workflow: 'rs-greet', input: { name: 'first' }, trigger: { type: 'http' } }),
      starter.start({ workflow: 'rs-greet', input: { name: 'ok-1' }, trigger: { type: 'http' } }),
      starter.start({ workflow: 'rs-greet', input: { nom: 'typo' }, trigger: { type: 'http' } }),
      starter.start({ workflow: 'rs-no-such-workflow', input: { name: 'x' }, trigger: { type: 'http' } }),
      starter.start({ workflow: 'rs-greet', input: { name: 'ok-2' }, trigger: { type: 'http' } }),
      starter.start({ workflow: 'rs-greet', input: { name: '' }, trigger: { type: 'http' } }),
    ]);
    expect(commits).toBe(2);
    expect(results.map((r) => r.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'rejected',
      'fulfilled',
      'rejected',
    ]);

    const invalid = (results[2] as PromiseRejectedResult).reason;
    expect(invalid).toBeInstanceOf(ValidationError);
    expect(invalid.code).toBe('INVALID_INPUT');
    expect(invalid.message).toContain("input does not match the input schema of workflow 'rs-greet'");
    expect(invalid.details).toEqual(expect.arrayContaining([expect.objectContaining({ path: 'input.name' })]));

    const missing = (results[3] as PromiseRejectedResult).reason;
    expect(missing).toBeInstanceOf(NotFoundError);
    expect(missing.code).toBe('NOT_FOUND');
    expect(missing.message).toBe("workflow 'rs-no-such-workflow' not found");

    const empty = (results[5] as PromiseRejectedResult).reason;
    expect(empty).toBeInstanceOf(ValidationError);
    expect(empty.code).toBe('INVALID_INPUT');

    const ok = results
      .filter((r): r is PromiseFulfilledResult<StartedRun> => r.status === 'fulfilled')
      .map((r) => r.value);
    expect(ok.map((s) => s.created)).toEqual([true, true, true]);
    const rows = await runsByIds(ok.map((s) => s.runId));
    expect(rows.map((r) => (r.input as { name: string }).name).sort()).toEqual(['first', 'ok-1', 'ok-2']);
    // Only the created runs are announced; nothing was inserted for the failed requests.
    const announced = (await inboxMessages()).slice(inboxBefore).map((m) => m.runId);
    expect(announced.sort()).toEqual(ok.map((s) => s.runId).sort());
    const { rows: stray } = await env.pool.query(
      `SELECT count(*)::int AS n FROM runs WHERE input->>'nom' = 'typo' OR input->>'name' = '' OR workflow_name = 'rs-no-such-workflow'`,
    );
    expect(stray[0].n).toBe(0);
  });

  it('two concurrent starts with one idempotency key make one run: one created, one found', async () => {
    const starter = new RunStarter(pool, queue, { direct: false });
    const inboxBefore = (await inboxMessages()).length;
    const key = `idem-${Date.now()}`;
    const [a, b] = await Promise.all([
      starter.start({ workflow: 'rs-greet', input: { name: 'a' }, trigger: { type: 'http' }, idempotencyKey: key }),
      starter.start({ workflow: 'rs-greet', input: { name: 'b' }, trigger: { type: 'http' }, idempotencyKey: key }),
    ]);
    expect(a.runId).toBe(b.runId);
    expect([a.created, b.created].sort()).toEqual([false, true]);
    expect(a.status).toBe('pending');
    expect(b.status).toBe('pending');
    const { rows } = await env.pool.query<RunRow>('SELECT id, input FROM runs WHERE idempotency_key = $1', [key]);
    expect(rows).toHaveLength(1);
    expect(rows[0].id).toBe(a.runId);
    // The run holds the input of the request that created it.
    const creator = a.created ? 'a' : 'b';
    expect(rows[0].input).toEqual({ name: creator });
    // One announcement: the request that found the run sends nothing.
    const announced = (await inboxMessages()).slice(inboxBefore).filter((m) => m.runId === a.runId);
    expect(announced).toHaveLength(1);

    // A later request with the key finds the same run.
    const again = await starter.start({
      workflow: 'rs-greet',
      input: { name: 'c' },
      trigger: { type: 'http' },
      idempotencyKey: key,
    });
    expect(again).toMatchObject({ runId: a.runId, created: false, status: 'pending' });
  });

  it('a repeated idempotency key within one batch inserts one run and resolves both requests to it', async () => {
    const starter = new RunStarter(pool, queue, { maxInFlight: 1, direct: false });
    const key = `same-batch-${Date.now()}`;
    commits = 0;
    const [, first, second, other] = await Promise.all([
      starter.start({ workflow: 'rs-greet', input: { name: 'lead' }, trigger: { type: 'http' } }),
      starter.start({ workflow: 'rs-greet', input: { name: 'x' }, trigger: { type: 'http' }, idempotencyKey: key }),
      starter.start({ workflow: 'rs-greet', input: { name: 'y' }, trigger: { type: 'http' }, idempotencyKey: key }),
      starter.start({ workflow: 'rs-greet', input: { name: 'z' }, trigger: { type: 'http' } }),
    ]);
    expect(commits).toBe(2);
    expect(first).toMatchObject({ created: true, status: 'pending' });
    expect(second).toMatchObject({ runId: first.runId, created: false, status: 'pending' });
    expect(other.created).toBe(true);
    const { rows } = await env.pool.query<RunRow>('SELECT id, input FROM runs WHERE idempotency_key = $1', [key]);
    expect(rows).toEqual([{ id: first.runId, input: { name: 'x' } }]);
  });

  it('reads the latest workflow version per batch: a version saved between batches applies to the next start', async () => {
    const starter = new RunStarter(pool, queue, { direct: false });
    const v1 = await saveDefinition(env.pool, { ...GREET, name: 'rs-versioned' });
    expect(v1.version).toBe(1);
    const one = await starter.start({ workflow: 'rs-versioned', input: { name: 'v1' }, trigger: { type: 'http' } });

    // Version 2 requires `code` and no longer knows `name`.
    const v2 = await saveDefinition(env.pool, {
      ...GREET,
      name: 'rs-versioned',
      input: {
        type: 'object',
        required: ['code'],
        additionalProperties: false,
        properties: { code: { type: 'integer' } },
      },
    });
    expect(v2.version).toBe(2);
    const two = await starter.start({ workflow: 'rs-versioned', input: { code: 7 }, trigger: { type: 'http' } });
    await expect(
      starter.start({ workflow: 'rs-versioned', input: { name: 'v1' }, trigger: { type: 'http' } }),
    ).rejects.toMatchObject({ code: 'INVALID_INPUT' });

    const rows = await runsByIds([one.runId, two.runId]);
    const version = new Map(rows.map((r) => [r.id, r.workflow_version]));
    expect(version.get(one.runId)).toBe(1);
    expect(version.get(two.runId)).toBe(2);
  });

  it('stores a JSON null input as JSON null and keeps the trigger', async () => {
    const starter = new RunStarter(pool, queue, { direct: false });
    await saveDefinition(env.pool, { name: 'rs-open', steps: [{ id: 's', function: 'say-hello' }] });
    const started = await starter.start({
      workflow: 'rs-open',
      input: null,
      trigger: { type: 'http', route: '/v1/workflows/:name/runs', requestId: 'req-1' },
    });
    const { rows } = await env.pool.query(
      `SELECT input IS NULL AS sql_null, jsonb_typeof(input) AS json_type, trigger FROM runs WHERE id = $1`,
      [started.runId],
    );
    expect(rows[0]).toEqual({
      sql_null: false,
      json_type: 'null',
      trigger: { type: 'http', route: '/v1/workflows/:name/runs', requestId: 'req-1' },
    });
  });

  it('an input PostgreSQL cannot store (a NUL character) fails its own request only, as a 400', async () => {
    const starter = new RunStarter(pool, queue, { maxInFlight: 1, direct: false });
    const results = await Promise.allSettled([
      starter.start({ workflow: 'rs-greet', input: { name: 'lead' }, trigger: { type: 'http' } }),
      starter.start({ workflow: 'rs-greet', input: { name: 'innocent-1' }, trigger: { type: 'http' } }),
      starter.start({ workflow: 'rs-greet', input: { name: 'nul\u0000byte' }, trigger: { type: 'http' } }),
      starter.start({ workflow: 'rs-greet', input: { name: 'innocent-2' }, trigger: { type: 'http' } }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    const reason = (results[2] as PromiseRejectedResult).reason;
    expect(reason).toBeInstanceOf(ValidationError);
    expect(reason).toMatchObject({ code: 'INVALID_INPUT' });
  });

  it('never starts a run on a version that is no longer the latest, even with the old one cached', async () => {
    const starter = new RunStarter(pool, queue, { direct: false });
    await saveDefinition(env.pool, { ...GREET, name: 'rs-cached' });
    const first = await starter.start({ workflow: 'rs-cached', input: { name: 'a' }, trigger: { type: 'http' } });
    // Saved behind the starter's back (another gateway): same input schema, another step.
    const v2 = await saveDefinition(env.pool, {
      ...GREET,
      name: 'rs-cached',
      steps: [{ id: 'hello-again', function: 'say-hello', input: { name: '{{ input.name }}' } }],
    });
    commits = 0;
    const second = await starter.start({ workflow: 'rs-cached', input: { name: 'b' }, trigger: { type: 'http' } });
    // The first INSERT refused the cached version 1; the second inserted on version 2.
    expect(commits).toBe(2);
    const version = new Map((await runsByIds([first.runId, second.runId])).map((r) => [r.id, r.workflow_version]));
    expect(version.get(first.runId)).toBe(1);
    expect(version.get(second.runId)).toBe(v2.version);
    const announced = (await inboxMessages()).map((m) => m.runId);
    expect(announced).toContain(second.runId);
  });

  it('startRun (schedules, events) inserts through the same statement, on the version it is given', async () => {
    const v1 = await saveDefinition(env.pool, { ...GREET, name: 'rs-start-run' });
    await saveDefinition(env.pool, {
      ...GREET,
      name: 'rs-start-run',
      steps: [{ id: 'hello-again', function: 'say-hello', input: { name: '{{ input.name }}' } }],
    });
    const held = await getDefinition(env.pool, 'rs-start-run', v1.version);
    commits = 0;
    const request = {
      definition: held,
      input: { name: 'tick' },
      trigger: {
        type: 'schedule' as const,
        scheduleId: 'rs-start-run:0',
        cron: '* * * * *',
        firedAt: '2026-01-01T00:00:00Z',
      },
      idempotencyKey: 'schedule:rs-tick-1',
    };
    const first = await startRun(pool, queue, request);
    const again = await startRun(pool, queue, request);
    expect(commits).toBe(2);
    expect(first.created).toBe(true);
    expect(again).toEqual({ runId: first.runId, status: 'pending', created: false });
    // Not the latest version, and still inserted: startRun starts the definition it holds.
    expect((await runsByIds([first.runId]))[0].workflow_version).toBe(v1.version);
  });
});
