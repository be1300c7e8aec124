import net from 'node:net';
import {
  COORDINATOR_JOB_OPTIONS,
  coordinatorQueue,
  createLogger,
  createPool,
  saveDefinition,
  type Pool,
  type TriggerMessage,
} from '@baton/engine';
import type { Queue } from 'bullmq';
import { Coordinator } from '../../services/coordinator/src';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';

/**
 * Issue #13, item 5: a schedule tick handled while PostgreSQL was unreachable used to be taken for
 * "the schedule no longer exists" (every error of the definition read was swallowed) and the tick was
 * lost. Only not-found is ignored now; any other failure fails the tick's job, BullMQ retries it with
 * backoff, and the run starts once PostgreSQL answers again.
 */

/** A TCP gate in front of PostgreSQL: closed, it resets every connection; open, it forwards. */
async function postgresGate(target: { host: string; port: number }): Promise<{
  port: number;
  open(): void;
  close(): Promise<void>;
}> {
  let open = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    if (!open) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    open: () => {
      open = true;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('schedule ticks while PostgreSQL is unreachable', () => {
  let env: TestEnv;
  let gate: Awaited<ReturnType<typeof postgresGate>>;
  let gatedPool: Pool;
  let coordinator: Coordinator;
  let queue: Queue;

  beforeAll(async () => {
    env = await createTestEnv('schedule-tick');
    await saveDefinition(env.pool, {
      name: 'ticked',
      triggers: [{ schedule: { cron: '0 3 * * *' } }],
      steps: [{ id: 'wait', sleep: { durationMs: 3_600_000 } }],
    });
    const url = new URL(env.databaseUrl);
    gate = await postgresGate({ host: url.hostname, port: Number(url.port || 5432) });
    url.port = String(gate.port);
    gatedPool = createPool(url.toString(), {
      max: 4,
      applicationName: 'test-schedule-tick',
      ...(env.config.database ? { database: env.config.database } : {}),
    });
    coordinator = new Coordinator({
      pool: gatedPool,
      queues: env.queues,
      logger: createLogger('test', env.config.logLevel),
      concurrency: 2,
    });
    queue = coordinatorQueue(env.queues);
  });

  afterAll(async () => {
    await coordinator?.close();
    await queue?.close();
    await gatedPool?.end().catch(() => undefined);
    await gate?.close();
    await env?.cleanup();
  });

  it('a tick that cannot read its definition fails (and is retried) instead of being ignored', async () => {
    const tick: TriggerMessage = { type: 'schedule.fire', scheduleId: 'ticked.0', workflow: 'ticked' };
    await expect(coordinator.handle(tick, 'repeat_tick_direct')).rejects.toThrow();
  });

  it('the tick starts its run once PostgreSQL is back, exactly once', async () => {
    coordinator.start();
    const tick: TriggerMessage = { type: 'schedule.fire', scheduleId: 'ticked.0', workflow: 'ticked' };
    // As the job scheduler makes it: the coordinator's attempts and backoff (250 ms, exponential).
    const job = await queue.add(tick.type, tick, { ...COORDINATOR_JOB_OPTIONS, jobId: 'repeat_ticked_1' });
    // The first attempt failed while PostgreSQL was unreachable...
    await waitFor(
      async () => ((await queue.getJob(job.id!))?.attemptsMade ?? 0) >= 1 || undefined,
      20_000,
      'a failed attempt',
    );
    gate.open();
    // ...and a retry started the run.
    const run = await waitFor(
      async () =>
        (await env.pool.query(`SELECT id, idempotency_key, trigger FROM runs WHERE workflow_name = 'ticked'`)).rows[0],
      30_000,
      'the scheduled run',
    );
    expect(run).toMatchObject({
      idempotency_key: 'schedule:repeat_ticked_1',
      trigger: { type: 'schedule', scheduleId: 'ticked.0' },
    });
    await waitFor(
      async () => ((await queue.getJob(job.id!))?.finishedOn ? true : undefined),
      20_000,
      'the tick job to finish',
    );
    expect((await env.pool.query(`SELECT count(*)::int AS n FROM runs WHERE workflow_name = 'ticked'`)).rows[0].n).toBe(
      1,
    );
  });
});
