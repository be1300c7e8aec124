import { Queue, Worker } from 'bullmq';
import { createLogger, createRedis, functionQueueName, startMetricsServer } from '@baton/engine';
import { BacklogReader, backlogRoute, type Backlog } from '../../services/coordinator/src/backlog';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';

/**
 * The coordinator's GET /backlog (what KEDA scales functions on) against a real Redis: every BullMQ
 * state a job of a function queue can be in, read through the same HTTP route the chart points at.
 */
describe('function backlog endpoint (KEDA metrics-api)', () => {
  let env: TestEnv;
  let queue: Queue;
  let worker: Worker;
  let workerRedis: ReturnType<typeof createRedis>;
  let reader: BacklogReader;
  let server: { port: number; close(): Promise<void> };
  const logger = createLogger('backlog-test', 'silent');

  const get = async (query: string): Promise<{ status: number; body: any }> => {
    const res = await fetch(`http://127.0.0.1:${server.port}/backlog${query}`);
    return { status: res.status, body: await res.json() };
  };

  beforeAll(async () => {
    env = await createTestEnv('backlog');
    queue = new Queue(functionQueueName('pdf'), { connection: env.redis, prefix: env.config.queuePrefix });
    // Manual processing: getNextJob moves a job to active and keeps it there, as a busy pod would.
    workerRedis = createRedis(env.config.redis, 'backlog-test-worker');
    worker = new Worker(functionQueueName('pdf'), null, {
      connection: workerRedis,
      prefix: env.config.queuePrefix,
      autorun: false,
    });
    reader = new BacklogReader(env.queues, env.redis);
    server = await startMetricsServer(0, '127.0.0.1', { '/backlog': backlogRoute(reader, logger) });
  });

  afterAll(async () => {
    await server.close();
    await reader.close();
    await worker.close();
    await workerRedis.quit();
    await queue.close();
    await env.cleanup();
  });

  it('reads an unknown function as an empty queue', async () => {
    const { status, body } = await get('?function=never-deployed');
    expect(status).toBe(200);
    expect(body).toEqual<Backlog>({
      function: 'never-deployed',
      waiting: 0,
      prioritized: 0,
      active: 0,
      delayed: 0,
      dueDelayed: 0,
      paused: false,
      backlog: 0,
    });
  });

  it('counts waiting, prioritized, active and delayed jobs, and tells due retries apart', async () => {
    await queue.add('step', { n: 1 }, { jobId: 'active-1' });
    const job = await worker.getNextJob('token-1');
    expect(job?.id).toBe('active-1');

    await queue.add('step', { n: 2 }, { jobId: 'wait-1' });
    await queue.add('step', { n: 3 }, { jobId: 'wait-2' });
    await queue.add('step', { n: 4 }, { jobId: 'prio-1', priority: 5 });
    await queue.add('step', { n: 5 }, { jobId: 'later-1', delay: 3_600_000 });
    await queue.add('step', { n: 6 }, { jobId: 'due-1', delay: 1 });
    // No worker is fetching, so nothing promotes the due job: it stays delayed, as at zero replicas.
    await new Promise((r) => setTimeout(r, 20));

    const { status, body } = await get('?function=pdf');
    expect(status).toBe(200);
    expect(body).toEqual<Backlog>({
      function: 'pdf',
      waiting: 2,
      prioritized: 1,
      active: 1,
      delayed: 2,
      dueDelayed: 1,
      paused: false,
      backlog: 6,
    });
  });

  it('reads a paused queue as its running attempts only, and 0 once they are done', async () => {
    await queue.pause();
    const paused = (await get('?function=pdf')).body as Backlog;
    expect(paused).toMatchObject({ paused: true, active: 1, backlog: 1 });

    const job = await queue.getJob('active-1');
    await job!.moveToCompleted({ ok: true }, 'token-1', false);
    const idle = (await get('?function=pdf')).body as Backlog;
    expect(idle).toMatchObject({ paused: true, active: 0, backlog: 0 });

    await queue.resume();
    const resumed = (await get('?function=pdf')).body as Backlog;
    expect(resumed).toMatchObject({ paused: false, waiting: 2, prioritized: 1, delayed: 2, backlog: 5 });
  });

  it('keeps function queues apart and uses the configured prefix', async () => {
    const other = new Queue(functionQueueName('mail'), { connection: env.redis, prefix: env.config.queuePrefix });
    await other.add('step', {}, { jobId: 'm-1' });
    await other.close();
    expect((await get('?function=mail')).body).toMatchObject({ waiting: 1, backlog: 1 });
    const keys = await env.redis.keys(`${env.config.queuePrefix}:{fn.mail}:*`);
    expect(keys.length).toBeGreaterThan(0);

    const elsewhere = new BacklogReader(
      // Under the suite prefix, so the suite's cleanup removes what this reader creates.
      { connection: env.redis, prefix: `${env.config.queuePrefix}:other` },
      env.redis,
    );
    await expect(elsewhere.read('mail')).resolves.toMatchObject({ waiting: 0, backlog: 0 });
    await elsewhere.close();
  });

  it('rejects a missing or malformed function name with 400', async () => {
    expect((await get('')).status).toBe(400);
    expect((await get('?function=')).status).toBe(400);
    expect((await get('?function=..%2F*')).status).toBe(400);
    await expect(reader.read('a b')).rejects.toThrow(RangeError);
  });

  it('answers 503 in bounded time when Redis does not answer (stub reader that never resolves)', async () => {
    // ioredis queues commands while Redis is away (maxRetriesPerRequest: null), so a read can hang.
    const hanging = { read: () => new Promise<Backlog>(() => undefined) };
    const deadServer = await startMetricsServer(0, '127.0.0.1', { '/backlog': backlogRoute(hanging, logger, 300) });
    try {
      const started = Date.now();
      const res = await fetch(`http://127.0.0.1:${deadServer.port}/backlog?function=pdf`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ error: { code: 'UNAVAILABLE' } });
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await deadServer.close();
    }
  });

  it('still serves /healthz and /metrics beside /backlog', async () => {
    await waitFor(async () => ((await fetch(`http://127.0.0.1:${server.port}/healthz`)).ok ? true : undefined));
    expect((await fetch(`http://127.0.0.1:${server.port}/metrics`)).status).toBe(200);
  });
});
