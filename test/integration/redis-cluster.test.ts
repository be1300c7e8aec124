import path from 'node:path';
import nodemailer, { type Transporter } from 'nodemailer';
import request from 'supertest';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import { z } from 'zod';
import {
  coordinatorQueue,
  createLogger,
  defineFunction,
  functionQueueName,
  inboxKey,
  inboxShardOf,
  INBOX_GROUP,
  isCluster,
  loadDefinitionsFromDir,
  metrics,
  NonRetryableError,
  saveDefinition,
  startRun,
  syncSchedules,
  getDefinition,
  type RedisConnection,
} from '@baton/shared';
import { createApp } from '../../services/gateway/src/app';
import { createCreateInvoice } from '../../functions/create-invoice/src/index';
import { createFetchOrders } from '../../functions/fetch-orders/src/index';
import { createGeneratePdf } from '../../functions/generate-pdf/src/index';
import { createSendEmail } from '../../functions/send-email/src/index';
import { createVoidInvoice } from '../../functions/void-invoice/src/index';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';
import { startSmtp, type TestSmtp } from '../support/mail';
import { TestRedisCluster } from '../support/redis-cluster';

/**
 * The engine on a 3-master Redis Cluster started by this suite (redis-server --cluster-enabled, on
 * free ports), with a sharded coordinator inbox (BATON_INBOX_SHARDS=4): the invoice workflow end to
 * end, a DAG, retries, compensation, the reconciler after FLUSHALL on every master, a schedule, and
 * the drain of shards of a larger former count.
 */

const SHARDS = 4;
const calls: Record<string, number> = {};
const completions: string[] = [];

const flaky = defineFunction({
  name: 'flaky',
  input: z.object({ key: z.string(), failTimes: z.number().int() }),
  handler: async ({ key, failTimes }, ctx) => {
    calls[key] = (calls[key] ?? 0) + 1;
    if (ctx.attempt <= failTimes) throw new Error(`planned failure ${ctx.attempt}`);
    return { key, attempt: ctx.attempt };
  },
});

const record = defineFunction({
  name: 'record',
  input: z.object({ tag: z.string(), delayMs: z.number().optional() }),
  handler: async ({ tag, delayMs }, ctx) => {
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    completions.push(`${ctx.kind}:${tag}`);
    return { tag };
  },
});

const broken = defineFunction({
  name: 'broken',
  input: z.object({}),
  handler: async () => {
    throw new NonRetryableError('BROKEN', 'broken for good');
  },
});

const fast = { backoff: { delayMs: 20, maxDelayMs: 50, jitter: 0 } };

/** The master port serving `key`. */
async function portOfKey(cluster: TestRedisCluster, redis: RedisConnection, key: string): Promise<number> {
  const slot = (await redis.cluster('KEYSLOT', key)) as number;
  return cluster.portOfSlot(slot);
}

let cluster: TestRedisCluster;

beforeAll(async () => {
  cluster = await TestRedisCluster.start(3);
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('the engine on a Redis Cluster with a sharded inbox', () => {
  let env: TestEnv;
  let engine: Engine;
  let smtp: TestSmtp;
  let transport: Transporter<SMTPTransport.SentMessageInfo>;

  beforeAll(async () => {
    env = await createTestEnv('cluster', { redisClusterNodes: cluster.nodes, inboxShards: SHARDS });
    await loadDefinitionsFromDir(env.pool, path.join(__dirname, '../../workflows'));
    await saveDefinition(env.pool, {
      name: 'retrying',
      steps: [
        {
          id: 'only',
          function: 'flaky',
          input: { key: '{{ input.key }}', failTimes: 2 },
          retry: { attempts: 3, ...fast },
        },
      ],
    });
    await saveDefinition(env.pool, {
      name: 'diamond',
      steps: [
        { id: 'a', function: 'record', input: { tag: '{{ input.tag }}-a' } },
        { id: 'b', function: 'record', needs: ['a'], input: { tag: '{{ steps.a.output.tag }}-b' } },
        { id: 'c', function: 'record', needs: ['a'], input: { tag: '{{ steps.a.output.tag }}-c' } },
        {
          id: 'd',
          function: 'record',
          needs: ['b', 'c'],
          input: { tag: '{{ steps.b.output.tag }}+{{ steps.c.output.tag }}' },
        },
      ],
    });
    await saveDefinition(env.pool, {
      name: 'saga',
      steps: [
        {
          id: 'one',
          function: 'record',
          input: { tag: 'one' },
          compensate: { function: 'record', input: { tag: 'undo-one' } },
        },
        {
          id: 'two',
          function: 'record',
          input: { tag: 'two' },
          compensate: { function: 'record', input: { tag: 'undo-two' } },
        },
        { id: 'three', function: 'broken', retry: { attempts: 2, ...fast } },
      ],
    });
    await saveDefinition(env.pool, {
      name: 'slow-chain',
      steps: [
        { id: 's1', function: 'record', input: { tag: '{{ input.tag }}-1', delayMs: 100 } },
        { id: 's2', function: 'record', input: { tag: '{{ input.tag }}-2', delayMs: 100 } },
        { id: 's3', function: 'record', input: { tag: '{{ input.tag }}-3', delayMs: 100 } },
      ],
    });
    smtp = await startSmtp({});
    transport = nodemailer.createTransport({ url: `smtp://127.0.0.1:${smtp.port}`, connectionTimeout: 5_000 });
    const { pool } = env;
    engine = await startEngine(env, [
      flaky,
      record,
      broken,
      createFetchOrders({ pool }),
      createCreateInvoice({ pool }),
      createVoidInvoice({ pool }),
      createGeneratePdf({ pool }),
      createSendEmail({ pool, transport, from: 'Baton Invoices <invoices@baton.test>' }),
    ]);
  }, 120_000);

  afterAll(async () => {
    await engine?.close();
    transport?.close();
    await smtp?.close();
    await env?.cleanup();
  });

  it('is on the cluster, and the inbox shards and queues spread over its masters', async () => {
    expect(isCluster(env.redis)).toBe(true);
    const prefix = env.config.queuePrefix;
    const shardKeys = Array.from({ length: SHARDS }, (_, i) => inboxKey(prefix, i));
    // Shard 0 keeps the unsharded key; each shard has a hash tag, so a slot, of its own.
    expect(shardKeys[0]).toBe(`${prefix}:{coordinator}:inbox`);
    const slots = await Promise.all(shardKeys.map((key) => env.redis.cluster('KEYSLOT', key) as Promise<number>));
    expect(new Set(slots).size).toBe(SHARDS);
    const shardPorts = await Promise.all(shardKeys.map((key) => portOfKey(cluster, env.redis, key)));
    expect(new Set(shardPorts).size).toBeGreaterThan(1);
    // Each shard's consumer group exists (the coordinator made it), on the shard's own master.
    for (const [i, key] of shardKeys.entries()) {
      const groups = (await cluster.node(shardPorts[i], (r) => r.xinfo('GROUPS', key))) as unknown[][];
      expect(groups.map((g) => g[1])).toContain(INBOX_GROUP);
    }
    // A queue's keys share its tag: one slot each.
    const queueSlots = await Promise.all(
      ['wait', 'active', 'meta', 'events'].map((k) =>
        env.redis.cluster('KEYSLOT', `${prefix}:${functionQueueName('record')}:${k}`),
      ),
    );
    expect(new Set(queueSlots).size).toBe(1);
  });

  it("counts the gateway's rate limit in the cluster, shared by replicas", async () => {
    const config = {
      ...env.config,
      queuePrefix: `${env.config.queuePrefix}-rl`,
      port: 0,
      apiKeys: [],
      bodyLimit: '1mb',
      rateLimit: 3,
    };
    const deps = {
      pool: env.pool,
      redis: env.redis,
      coordinator: engine.coordinatorQueue,
      logger: createLogger('test', 'silent'),
    };
    const a = createApp({ ...deps, config });
    const b = createApp({ ...deps, config });
    for (const app of [a, b, a]) await request(app).get('/v1/workflows').expect(200);
    const limited = await request(b).get('/v1/workflows').expect(429);
    expect(limited.body.error.code).toBe('RATE_LIMITED');
  });

  it('invoices cust-01 end to end: four steps, an invoice, a PDF, an e-mail', async () => {
    const runId = await engine.start('invoice', { customerId: 'cust-01' });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    const steps = await env.pool.query(
      'SELECT step_id, status, attempt FROM step_executions WHERE run_id = $1 ORDER BY created_at',
      [runId],
    );
    expect(steps.rows.map((s) => [s.step_id, s.status, s.attempt])).toEqual([
      ['fetchOrders', 'succeeded', 1],
      ['createInvoice', 'succeeded', 1],
      ['generatePdf', 'succeeded', 1],
      ['sendEmail', 'succeeded', 1],
    ]);
    const invoice = await env.pool.query('SELECT status, total_cents FROM invoices WHERE run_id = $1', [runId]);
    expect(invoice.rows).toEqual([{ status: 'issued', total_cents: 123598 }]);
    await waitFor(async () => (smtp.received.length ? true : undefined), 10_000, 'the e-mail');
  });

  it('runs a DAG: b and c after a, d joining both', async () => {
    const runs = await Promise.all(Array.from({ length: 6 }, (_, i) => engine.start('diamond', { tag: `x${i}` })));
    const shards = new Set(runs.map((id) => inboxShardOf(id, SHARDS)));
    expect(shards.size).toBeGreaterThan(1);
    for (const [i, id] of runs.entries()) {
      const run = await engine.waitForRun(id);
      expect(run.status).toBe('succeeded');
      const d = await env.pool.query("SELECT output FROM step_executions WHERE run_id = $1 AND step_id = 'd'", [id]);
      expect(d.rows[0].output).toEqual({ tag: `x${i}-a-b+x${i}-a-c` });
    }
  });

  it('retries a failing step until it succeeds', async () => {
    const runId = await engine.start('retrying', { key: 'r1' });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    expect(calls.r1).toBe(3);
    const attempts = await env.pool.query(
      'SELECT a.attempt, a.status FROM step_attempts a JOIN step_executions e ON e.id = a.step_execution_id WHERE e.run_id = $1 ORDER BY a.attempt',
      [runId],
    );
    expect(attempts.rows.map((a) => a.status)).toEqual(['failed', 'failed', 'succeeded']);
  });

  it('compensates completed steps, newest first, when a step fails for good', async () => {
    completions.length = 0;
    const runId = await engine.start('saga', {});
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('compensated');
    expect(completions).toEqual(['action:one', 'action:two', 'compensation:undo-two', 'compensation:undo-one']);
  });

  it('finishes every run after FLUSHALL on every master (the reconciler)', async () => {
    completions.length = 0;
    const reconciled = async (): Promise<number> =>
      (await metrics.reconciledTotal.get()).values.reduce((sum, v) => sum + v.value, 0);
    const before = await reconciled();
    const runIds = await Promise.all(
      Array.from({ length: 10 }, (_, i) => engine.start('slow-chain', { tag: `w${i}` })),
    );
    await waitFor(async () => (completions.length >= 4 ? true : undefined), 20_000, 'some steps to complete');
    await cluster.flushAll();
    const runs = await Promise.all(runIds.map((id) => engine.waitForRun(id, ['succeeded', 'failed'], 60_000)));
    expect(runs.map((r) => r.status)).toEqual(Array(10).fill('succeeded'));
    const { rows } = await env.pool.query(
      `SELECT run_id, step_id, count(*)::int AS n FROM step_executions WHERE run_id = ANY($1) AND status = 'succeeded' GROUP BY 1, 2`,
      [runIds],
    );
    expect(rows).toHaveLength(30);
    for (const row of rows) expect(row.n).toBe(1);
    expect((await reconciled()) - before).toBeGreaterThan(0);
  }, 90_000);

  it('starts runs from a schedule (a job scheduler on the coordinator queue)', async () => {
    await saveDefinition(env.pool, {
      name: 'ticking',
      triggers: [{ schedule: { cron: '* * * * * *' } }],
      steps: [{ id: 'only', function: 'record', input: { tag: 'tick' } }],
    });
    await syncSchedules(env.pool, engine.coordinatorQueue);
    const run = await waitFor(
      async () => {
        const { rows } = await env.pool.query(
          "SELECT id, status FROM runs WHERE workflow_name = 'ticking' AND status = 'succeeded' LIMIT 1",
        );
        return rows[0] as { id: string } | undefined;
      },
      30_000,
      'a scheduled run to succeed',
    );
    expect(run.id).toBeDefined();
    await saveDefinition(env.pool, {
      name: 'ticking',
      steps: [{ id: 'only', function: 'record', input: { tag: 'tick' } }],
    });
    await syncSchedules(env.pool, engine.coordinatorQueue);
  });
});

describe('changing the shard count on a live system (BATON_INBOX_DRAIN_SHARDS)', () => {
  let env: TestEnv;

  beforeAll(async () => {
    env = await createTestEnv('cluster-drain', { redisClusterNodes: cluster.nodes, inboxShards: SHARDS });
    await saveDefinition(env.pool, {
      name: 'pair',
      steps: [
        { id: 'a', function: 'record', input: { tag: '{{ input.tag }}-a' } },
        { id: 'b', function: 'record', input: { tag: '{{ steps.a.output.tag }}-b' } },
      ],
    });
  });

  afterAll(async () => {
    await env?.cleanup();
  });

  it('still applies the messages left in the shards of a larger former count', async () => {
    // Written by gateways still on the former count (8 shards) before any coordinator on the new one
    // (4) runs: half of these runs' starts are in shards 4..7.
    const formerWriters = coordinatorQueue({ ...env.queues, inboxShards: 8 });
    const definition = await getDefinition(env.pool, 'pair');
    const runIds: string[] = [];
    try {
      for (let i = 0; i < 12; i += 1) {
        const started = await startRun(env.pool, formerWriters, {
          definition,
          input: { tag: `old${i}` },
          trigger: { type: 'http' },
        });
        runIds.push(started.runId);
      }
    } finally {
      await formerWriters.close();
    }
    const old = runIds.filter((id) => inboxShardOf(id, 8) >= SHARDS);
    expect(old.length).toBeGreaterThan(0);
    for (const id of old)
      expect(await env.redis.xlen(inboxKey(env.config.queuePrefix, inboxShardOf(id, 8)))).toBeGreaterThan(0);
    // The new count (4) with drain shards 8: it reads 0..7. The reconciler is kept out (a grace far
    // longer than the test), so only the inbox can start these runs.
    const engine = await startEngine(env, [record], {
      reconcileGraceMs: 600_000,
      reconcileIntervalMs: 60_000,
      inboxReadShards: 8,
    });
    try {
      const runs = await Promise.all(runIds.map((id) => engine.waitForRun(id, ['succeeded', 'failed'], 60_000)));
      expect(runs.map((r) => r.status)).toEqual(Array(12).fill('succeeded'));
      // Their steps reported to the new count's shards (the job data names the shard).
      for (let shard = SHARDS; shard < 8; shard += 1) {
        expect(await env.redis.xlen(inboxKey(env.config.queuePrefix, shard))).toBe(0);
      }
    } finally {
      await engine.close();
    }
  }, 90_000);
});
