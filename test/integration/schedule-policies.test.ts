import { CronExpressionParser } from 'cron-parser';
import { tickJobId, tickTimeOfJob } from '@baton/workflow';
import { saveDefinition, syncSchedules } from '@baton/engine';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';

/**
 * A schedule's `overlap` and `catchUp` (issue 18) in the real coordinator, driven deterministically:
 * each tick is handled as its `schedule.fire` job would be, with the time chosen (`now`) instead of
 * waiting for it. Runs sleep for an hour, so a scheduled run stays active until cancelled.
 */

const T = Date.UTC(2030, 0, 1, 0, 0, 0);
const S = 1_000;
const MIN = 60 * S;
/** Every 5 minutes, on the minute: a second-scale pattern (6 fields). */
const CRON = '0 */5 * * * *';
const LONG = [{ id: 'wait', sleep: { durationMs: 3_600_000 } }];

describe('schedule overlap and catch-up', () => {
  let env: TestEnv;
  let engine: Engine;

  const tick = (workflow: string, at: number, now = at + 2 * S): Promise<string[]> =>
    engine.coordinator.fireSchedule(`${workflow}.0`, workflow, tickJobId(`${workflow}.0`, at), now);
  const runsOf = async (workflow: string) =>
    (
      await env.pool.query<{ id: string; status: string; trigger: any; idempotency_key: string }>(
        `SELECT id, status, trigger, idempotency_key FROM runs WHERE workflow_name = $1 ORDER BY created_at`,
        [workflow],
      )
    ).rows;

  beforeAll(async () => {
    env = await createTestEnv('schedule-policies');
    const define = (name: string, schedule: Record<string, unknown>) =>
      saveDefinition(env.pool, { name, triggers: [{ schedule: { cron: CRON, ...schedule } }], steps: LONG });
    await define('ov-allow', {});
    await define('ov-skip', { overlap: 'skip' });
    await define('ov-cancel', { overlap: 'cancelPrevious' });
    await define('cu-default', {});
    await define('cu-none', { catchUp: 'none' });
    await define('cu-latest', { catchUp: 'latest' });
    await define('cu-all', { catchUp: 'all' });
    engine = await startEngine(env, []);
  });

  afterAll(async () => {
    await engine?.close();
    await env?.cleanup();
  });

  it('overlap: allow (the default) starts a run per tick, however many are active', async () => {
    expect(await tick('ov-allow', T)).toHaveLength(1);
    expect(await tick('ov-allow', T + 5 * MIN)).toHaveLength(1);
    const runs = await runsOf('ov-allow');
    expect(runs.map((r) => r.idempotency_key)).toEqual([
      `schedule:repeat:ov-allow.0:${T}`,
      `schedule:repeat:ov-allow.0:${T + 5 * MIN}`,
    ]);
    expect(runs.every((r) => r.status !== 'cancelled')).toBe(true);
  });

  it('overlap: skip starts nothing while a run of the schedule is active, and starts again once it ended', async () => {
    const [first] = await tick('ov-skip', T);
    expect(first).toBeDefined();
    await engine.waitForRun(first, ['running']);
    expect(await tick('ov-skip', T + 5 * MIN)).toEqual([]);
    expect(await runsOf('ov-skip')).toHaveLength(1);
    // A run not started by the schedule does not count.
    await engine.start('ov-skip', {});
    // The schedule's run ends: the next tick starts one.
    const { rows } = await env.pool.query(
      `INSERT INTO control_requests (id, run_id, type, payload)
       VALUES (gen_random_uuid(), $1, 'run.cancel', '{"compensate":false}') RETURNING id`,
      [first],
    );
    await engine.coordinator.queue.send({ type: 'run.cancel', runId: first, compensate: false, requestId: rows[0].id });
    await engine.waitForRun(first, ['cancelled']);
    const [next] = await tick('ov-skip', T + 10 * MIN);
    expect(next).toBeDefined();
    expect((await runsOf('ov-skip')).map((r) => r.trigger.type)).toEqual(['schedule', 'http', 'schedule']);
  });

  it('overlap: cancelPrevious cancels the active run, then starts; a tick handled again cancels nothing', async () => {
    const [first] = await tick('ov-cancel', T);
    await engine.waitForRun(first, ['running']);
    const [second] = await tick('ov-cancel', T + 5 * MIN);
    expect(second).toBeDefined();
    await engine.waitForRun(first, ['cancelled']);
    await engine.waitForRun(second, ['running']);
    const cancelsOf = async (runId: string): Promise<number> =>
      (
        await env.pool.query(
          `SELECT count(*)::int AS n FROM control_requests WHERE run_id = $1 AND type = 'run.cancel'`,
          [runId],
        )
      ).rows[0].n;
    expect(await cancelsOf(first)).toBe(1);
    // The same tick again (a coordinator died mid-message): its own run is not "the previous one".
    // A cancel is recorded before fireSchedule returns, so none recorded now means none at all.
    expect(await tick('ov-cancel', T + 5 * MIN)).toEqual([]);
    expect(await cancelsOf(second)).toBe(0);
    const [third] = await tick('ov-cancel', T + 10 * MIN);
    expect(await cancelsOf(second)).toBe(1);
    await engine.waitForRun(second, ['cancelled']);
    expect(third).toBeDefined();
  });

  it('catchUp after an outage of 21.5 minutes (5 ticks due, the latest 90 s old)', async () => {
    const now = T + 21 * MIN + 30 * S;
    // latest (the default, and Baton's behaviour before catchUp): one run, for the latest tick.
    for (const workflow of ['cu-default', 'cu-latest']) {
      expect(await tick(workflow, T, now)).toHaveLength(1);
      expect((await runsOf(workflow)).map((r) => r.trigger.tickAt)).toEqual([new Date(T + 20 * MIN).toISOString()]);
    }
    // none: no run for missed ticks.
    expect(await tick('cu-none', T, now)).toEqual([]);
    expect(await runsOf('cu-none')).toEqual([]);
    // all: one per due tick, oldest first, each keyed on its tick...
    expect(await tick('cu-all', T, now)).toHaveLength(5);
    const all = await runsOf('cu-all');
    expect(all.map((r) => r.idempotency_key)).toEqual(
      [0, 5, 10, 15, 20].map((m) => `schedule:repeat:cu-all.0:${T + m * MIN}`),
    );
    expect(all.every((r) => r.trigger.firedAt === new Date(now).toISOString())).toBe(true);
    // ...so the same tick handled again starts none.
    expect(await tick('cu-all', T, now)).toEqual([]);
    expect(await runsOf('cu-all')).toHaveLength(5);
  });

  it('catchUp: none still fires a tick on time, and every policy fires the usual on-time tick', async () => {
    // The coordinator came back 30 s after the 3rd tick of the outage: that one is on time.
    expect(await tick('cu-none', T + 30 * MIN, T + 40 * MIN + 30 * S)).toHaveLength(1);
    expect((await runsOf('cu-none')).map((r) => r.trigger.tickAt)).toEqual([new Date(T + 40 * MIN).toISOString()]);
    for (const workflow of ['cu-none', 'cu-latest', 'cu-all']) {
      expect(await tick(workflow, T + 60 * MIN)).toHaveLength(1);
    }
  });

  it('a tick job id without a time (not from the job scheduler) fires once, as before', async () => {
    const started = await engine.coordinator.fireSchedule('cu-none.0', 'cu-none', 'repeat_tick_direct', T + 999 * MIN);
    expect(started).toHaveLength(1);
    const run = (await runsOf('cu-none')).find((r) => r.id === started[0]);
    expect(run?.idempotency_key).toBe('schedule:repeat_tick_direct');
  });

  it('every run the ticks started was admitted by the coordinator', async () => {
    await waitFor(
      async () =>
        (await env.pool.query(`SELECT count(*)::int AS n FROM runs WHERE status = 'pending'`)).rows[0].n === 0 ||
        undefined,
      20_000,
      'every run admitted',
    );
  });

  it("reads the tick time from the job id BullMQ's job scheduler gives a tick", async () => {
    const queue = engine.coordinatorQueue;
    await syncSchedules(env.pool, queue);
    try {
      const next = CronExpressionParser.parse(CRON, { tz: 'UTC' }).next().getTime();
      const jobs = await queue.getDelayed();
      const job = jobs.find((j) => j.data?.scheduleId === 'cu-all.0');
      expect(job).toBeDefined();
      // Between the next tick and the one after (a tick may have passed since `next` was computed).
      const at = tickTimeOfJob(job!.id, 'cu-all.0');
      expect(at === next || at === next + 5 * MIN).toBe(true);
    } finally {
      for (const scheduler of await queue.getJobSchedulers(0, -1)) await queue.removeJobScheduler(scheduler.key);
    }
  });
});
