import { setTimeout as sleep } from 'node:timers/promises';
import { coordinatorQueue, createLogger, saveDefinition, syncSchedules, type CoordinatorClient } from '@baton/engine';
import { Coordinator } from '../../services/coordinator/src';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';

/**
 * `catchUp` with BullMQ's real job scheduler (issue 18): per-second schedules synced while no
 * coordinator runs, a coordinator started once several ticks have passed. The default (`latest`)
 * starts one run for the outage — what Baton did before `catchUp` — and `all` one per tick.
 */
describe('schedule catch-up after coordinators were down', () => {
  let env: TestEnv;
  let queue: CoordinatorClient;
  let coordinator: Coordinator | undefined;

  beforeAll(async () => {
    env = await createTestEnv('schedule-catch-up');
    const steps = [{ id: 'wait', sleep: { durationMs: 3_600_000 } }];
    await saveDefinition(env.pool, { name: 'cu-default', triggers: [{ schedule: { cron: '* * * * * *' } }], steps });
    await saveDefinition(env.pool, {
      name: 'cu-all',
      triggers: [{ schedule: { cron: '* * * * * *', catchUp: 'all' } }],
      steps,
    });
    queue = coordinatorQueue(env.queues);
  });

  afterAll(async () => {
    for (const scheduler of (await queue?.getJobSchedulers(0, -1)) ?? []) await queue.removeJobScheduler(scheduler.key);
    await coordinator?.close();
    await queue?.close();
    await env?.cleanup();
  });

  it('fires one run for the missed ticks by default, and one per tick with catchUp: all', async () => {
    // No coordinator: the schedulers' first tick jobs wait in the delayed set.
    await syncSchedules(env.pool, queue);
    const synced = Date.now();
    // The outage: at least 4 ticks pass.
    await sleep(4_500);
    coordinator = new Coordinator({
      pool: env.pool,
      queues: env.queues,
      logger: createLogger('test', env.config.logLevel),
      concurrency: 2,
    });
    coordinator.start();

    const runsOf = async (workflow: string) =>
      (
        await env.pool.query<{ fired: string; tick: string }>(
          `SELECT trigger->>'firedAt' AS fired, trigger->>'tickAt' AS tick FROM runs
            WHERE workflow_name = $1 ORDER BY trigger->>'tickAt'`,
          [workflow],
        )
      ).rows;
    // The positive signal: a later, regular tick of each schedule has started its run, so the
    // catch-up tick was handled before it.
    for (const workflow of ['cu-default', 'cu-all']) {
      await waitFor(
        async () => {
          const runs = await runsOf(workflow);
          return new Set(runs.map((r) => r.fired)).size >= 2 || undefined;
        },
        30_000,
        `a regular tick of ${workflow} after the catch-up`,
      );
    }
    // The first tick handled after the outage: its runs share its firedAt.
    const catchUp = async (workflow: string) => {
      const runs = await runsOf(workflow);
      const first = runs.map((r) => r.fired).sort()[0];
      return runs.filter((r) => r.fired === first);
    };
    const latest = await catchUp('cu-default');
    expect(latest).toHaveLength(1);
    const all = await catchUp('cu-all');
    expect(all.length).toBeGreaterThanOrEqual(4);
    // One per tick, a second apart, from the first tick after the sync.
    const ticks = all.map((r) => Date.parse(r.tick));
    expect(ticks[0]).toBeGreaterThan(synced - 1_000);
    ticks.slice(1).forEach((t, i) => expect(t - ticks[i]).toBe(1_000));
  });
});
