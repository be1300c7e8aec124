import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Queue } from 'bullmq';
import type { Express } from 'express';
import { Redis } from 'ioredis';
import request, { type Response } from 'supertest';
import {
  coordinatorQueue,
  inboxKey,
  createLogger,
  createPool,
  parseDefinitionText,
  saveDefinition,
  type Pool,
} from '@baton/shared';
import { createApp } from '../../services/gateway/src/app';
import { loadGatewayConfig, type GatewayConfig } from '../../services/gateway/src/config';
import { createTestEnv, type TestEnv } from '../support/env';

/**
 * The gateway against a real PostgreSQL and Redis. No coordinator runs here, so started runs stay
 * `pending`; step, attempt, log and document rows are written with SQL as the coordinator would.
 */

const INVOICE_YAML = path.resolve(__dirname, '../../workflows/invoice.yaml');
const FALLBACK_INVOICE = {
  name: 'invoice',
  input: {
    type: 'object',
    required: ['customerId'],
    additionalProperties: false,
    properties: { customerId: { type: 'string' } },
  },
  steps: [
    { id: 'fetchOrders', function: 'fetch-orders', input: { customerId: '{{ input.customerId }}' } },
    { id: 'createInvoice', function: 'create-invoice', compensate: { function: 'void-invoice' } },
    { id: 'generatePdf', function: 'generate-pdf' },
    { id: 'sendEmail', function: 'send-email' },
  ],
};

/** A workflow with a precise input schema, independent of how invoice.yaml evolves. */
const GREET = {
  name: 'greet',
  description: 'Says hello',
  input: {
    type: 'object',
    required: ['name'],
    additionalProperties: false,
    properties: { name: { type: 'string', minLength: 1 }, times: { type: 'integer', minimum: 1 } },
  },
  steps: [
    { id: 'hello', function: 'say-hello', input: { name: '{{ input.name }}' } },
    { id: 'bye', function: 'say-bye' },
  ],
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('gateway HTTP API', () => {
  let env: TestEnv;
  let coordinator: Queue;
  let config: GatewayConfig;
  let app: Express;
  const logger = createLogger('gateway-test', 'silent');
  const extraPools: Pool[] = [];

  const appWith = (overrides: Partial<GatewayConfig> = {}, pool: Pool = env.pool, redis = env.redis): Express =>
    createApp({ pool, redis, coordinator, config: { ...config, ...overrides }, logger });

  beforeAll(async () => {
    env = await createTestEnv('gateway');
    coordinator = coordinatorQueue(env.queues);
    config = { ...env.config, port: 0, apiKeys: [], bodyLimit: '1mb' };
    app = appWith();
    const invoice = fs.existsSync(INVOICE_YAML)
      ? parseDefinitionText(fs.readFileSync(INVOICE_YAML, 'utf8'), 'invoice.yaml')
      : FALLBACK_INVOICE;
    await saveDefinition(env.pool, invoice);
    await saveDefinition(env.pool, GREET);
    await env.redis.ping();
  });

  afterAll(async () => {
    await Promise.all(extraPools.map((p) => p.end()));
    await coordinator.close();
    await env.cleanup();
  });

  describe('config', () => {
    it('applies defaults and splits the API key list', () => {
      const defaults = loadGatewayConfig({});
      expect(defaults).toMatchObject({ port: 3000, apiKeys: [], bodyLimit: '1mb' });
      const custom = loadGatewayConfig({ PORT: '8080', BATON_API_KEYS: ' a , b,,', BATON_BODY_LIMIT: '64kb' });
      expect(custom).toMatchObject({ port: 8080, apiKeys: ['a', 'b'], bodyLimit: '64kb' });
    });

    it('names every bad variable', () => {
      expect(() => loadGatewayConfig({ PORT: 'http', BATON_BODY_LIMIT: 'lots' })).toThrow(
        /PORT="http" is invalid.*BATON_BODY_LIMIT="lots" is invalid/,
      );
    });
  });

  describe('health', () => {
    it('GET /healthz answers ok with a request id', async () => {
      const res = await request(app).get('/healthz').expect(200);
      expect(res.body).toEqual({ status: 'ok' });
      expect(res.headers['x-request-id']).toMatch(UUID);
      const echoed = await request(app).get('/healthz').set('x-request-id', 'trace-123').expect(200);
      expect(echoed.headers['x-request-id']).toBe('trace-123');
    });

    it('GET /readyz is 200 when PostgreSQL and Redis answer', async () => {
      const res = await request(app).get('/readyz').expect(200);
      expect(res.body).toEqual({ status: 'ok', checks: { database: 'ok', redis: 'ok' } });
    });

    it('GET /readyz is 503 naming the database when PostgreSQL is unreachable', async () => {
      const closedPort = createPool('postgres://postgres@127.0.0.1:1/baton');
      const noDatabase = createPool(env.databaseUrl.replace(/\/[^/]+$/, '/baton_no_such_database'));
      extraPools.push(closedPort, noDatabase);
      for (const pool of [closedPort, noDatabase]) {
        const res = await request(appWith({}, pool)).get('/readyz').expect(503);
        expect(res.body.error.code).toBe('NOT_READY');
        expect(res.body.error.message).toMatch(/database/);
        expect(res.body.error.message).not.toMatch(/redis/);
        expect(res.body.error.details.redis).toBe('ok');
        expect(res.body.error.details.database).not.toBe('ok');
      }
    });

    it('GET /readyz is 503 naming Redis when Redis is unreachable', async () => {
      // Reconnects forever like the gateway's own connection; short timers so that disconnect()
      // leaves nothing running past the suite (ioredis waits disconnectTimeout to drop the socket).
      const deadRedis = new Redis({
        host: '127.0.0.1',
        port: 1,
        maxRetriesPerRequest: null,
        retryStrategy: () => 20,
        disconnectTimeout: 20,
      });
      deadRedis.on('error', () => undefined);
      try {
        const res = await request(appWith({}, env.pool, deadRedis))
          .get('/readyz')
          .expect(503);
        expect(res.body.error).toMatchObject({ code: 'NOT_READY', details: { database: 'ok' } });
        expect(res.body.error.message).toMatch(/redis/);
        expect(res.body.error.details.redis).not.toBe('ok');
      } finally {
        deadRedis.disconnect();
      }
    });
  });

  describe('starting runs', () => {
    it('POST /invoice/start creates a pending invoice run and tells the coordinator', async () => {
      const res = await request(app).post('/invoice/start').send({ customerId: 'cust-01' }).expect(202);
      expect(res.body).toEqual({
        runId: expect.stringMatching(UUID),
        status: 'pending',
        statusUrl: `/v1/runs/${res.body.runId}`,
      });
      expect(res.headers.location).toBe(res.body.statusUrl);
      const { rows } = await env.pool.query('SELECT workflow_name, status, input, trigger FROM runs WHERE id = $1', [
        res.body.runId,
      ]);
      expect(rows[0]).toMatchObject({
        workflow_name: 'invoice',
        status: 'pending',
        input: { customerId: 'cust-01' },
        trigger: { type: 'http', route: '/invoice/start', requestId: res.headers['x-request-id'] },
      });
      // The start goes through the coordinator's inbox stream.
      const entries = await env.redis.xrange(inboxKey(env.queues.prefix), '-', '+');
      const messages = entries.map(([, fields]) => JSON.parse(fields[1]));
      expect(messages).toContainEqual({ type: 'run.start', runId: res.body.runId });
    });

    it('POST /invoice/start rejects a missing customerId and unknown fields by name', async () => {
      const missing = await request(app).post('/invoice/start').send({}).expect(400);
      expect(missing.body.error).toMatchObject({ code: 'INVALID_REQUEST', details: [{ path: 'customerId' }] });
      const extra = await request(app).post('/invoice/start').send({ customerId: 'cust-01', rush: true }).expect(400);
      expect(extra.body.error.details).toEqual([{ path: 'rush', message: 'unknown field' }]);
      expect(extra.body.error.message).toMatch(/rush/);
    });

    it('POST /v1/workflows/:name/runs returns 202 with the run', async () => {
      const res = await request(app)
        .post('/v1/workflows/greet/runs')
        .send({ input: { name: 'Ada' } })
        .expect(202);
      expect(res.body).toEqual({
        runId: expect.stringMatching(UUID),
        status: 'pending',
        statusUrl: `/v1/runs/${res.body.runId}`,
      });
      const run = await request(app).get(res.body.statusUrl).expect(200);
      expect(run.body).toMatchObject({
        workflow: 'greet',
        workflowVersion: 1,
        status: 'pending',
        input: { name: 'Ada' },
      });
    });

    it('a repeated idempotency key returns the first run with 200', async () => {
      const first = await request(app)
        .post('/v1/workflows/greet/runs')
        .send({ input: { name: 'Ada' }, idempotencyKey: 'order-1' })
        .expect(202);
      const again = await request(app)
        .post('/v1/workflows/greet/runs')
        .send({ input: { name: 'Someone else' }, idempotencyKey: 'order-1' })
        .expect(200);
      expect(again.body).toEqual(first.body);
      // The header is the same key as the body field.
      const viaHeader = await request(app)
        .post('/v1/workflows/greet/runs')
        .set('Idempotency-Key', 'order-1')
        .send({ input: { name: 'Ada' } })
        .expect(200);
      expect(viaHeader.body.runId).toBe(first.body.runId);
      const both = await request(app)
        .post('/v1/workflows/greet/runs')
        .set('Idempotency-Key', 'order-1')
        .send({ input: { name: 'Ada' }, idempotencyKey: 'order-1' })
        .expect(200);
      expect(both.body.runId).toBe(first.body.runId);
      const { rows } = await env.pool.query("SELECT count(*)::int AS n FROM runs WHERE idempotency_key = 'order-1'");
      expect(rows[0].n).toBe(1);
      // Another key is another run.
      const other = await request(app)
        .post('/v1/workflows/greet/runs')
        .set('Idempotency-Key', 'order-2')
        .send({ input: { name: 'Ada' } })
        .expect(202);
      expect(other.body.runId).not.toBe(first.body.runId);
    });

    it('conflicting header and body idempotency keys are a 400', async () => {
      const res = await request(app)
        .post('/v1/workflows/greet/runs')
        .set('Idempotency-Key', 'key-a')
        .send({ input: { name: 'Ada' }, idempotencyKey: 'key-b' })
        .expect(400);
      expect(res.body.error).toMatchObject({ code: 'INVALID_REQUEST', details: [{ path: 'idempotencyKey' }] });
    });

    it('input that violates the workflow input schema is a 400 naming each path', async () => {
      const missing = await request(app)
        .post('/v1/workflows/greet/runs')
        .send({ input: { times: 0 } })
        .expect(400);
      expect(missing.body.error.code).toBe('INVALID_INPUT');
      expect(missing.body.error.details).toEqual(
        expect.arrayContaining([
          { path: 'input.name', message: expect.any(String) },
          { path: 'input.times', message: expect.any(String) },
        ]),
      );
      const wrongType = await request(app)
        .post('/v1/workflows/greet/runs')
        .send({ input: { name: 5 } })
        .expect(400);
      expect(wrongType.body.error.details).toEqual([{ path: 'input.name', message: 'must be string' }]);
      const invoice = await request(app).post('/invoice/start').send({ customerId: 'has spaces!' }).expect(400);
      expect(invoice.body.error).toMatchObject({ code: 'INVALID_INPUT', details: [{ path: 'input.customerId' }] });
    });

    it('a body with unknown fields is a 400 naming them', async () => {
      const res = await request(app)
        .post('/v1/workflows/greet/runs')
        .send({ inputs: { name: 'Ada' } })
        .expect(400);
      expect(res.body.error).toEqual({
        code: 'INVALID_REQUEST',
        message: expect.stringContaining('inputs'),
        details: [{ path: 'inputs', message: 'unknown field' }],
      });
    });

    it('malformed JSON is a 400 INVALID_JSON, a non-JSON body a 415', async () => {
      const res = await request(app)
        .post('/v1/workflows/greet/runs')
        .set('Content-Type', 'application/json')
        .send('{"input": {')
        .expect(400);
      expect(res.body.error.code).toBe('INVALID_JSON');
      expect(JSON.stringify(res.body)).not.toMatch(/at .*\.js/);
      const text = await request(app)
        .post('/v1/workflows/greet/runs')
        .set('Content-Type', 'text/plain')
        .send('name=Ada')
        .expect(415);
      expect(text.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    });

    it('an unknown workflow is a 404', async () => {
      const res = await request(app).post('/v1/workflows/nope/runs').send({ input: {} }).expect(404);
      expect(res.body.error).toEqual({ code: 'NOT_FOUND', message: "workflow 'nope' not found" });
    });

    it('a body over the configured limit is a 413', async () => {
      const small = appWith({ bodyLimit: '1kb' });
      const big = { input: { name: 'x'.repeat(2048) } };
      const res = await request(small).post('/v1/workflows/greet/runs').send(big).expect(413);
      expect(res.body.error.code).toBe('PAYLOAD_TOO_LARGE');
      const yaml = await request(small)
        .put('/v1/workflows/greet')
        .set('Content-Type', 'application/yaml')
        .send(`name: greet\ndescription: ${'y'.repeat(2048)}\n`)
        .expect(413);
      expect(yaml.body.error.code).toBe('PAYLOAD_TOO_LARGE');
      // Under the limit the same app accepts the request.
      await request(small)
        .post('/v1/workflows/greet/runs')
        .send({ input: { name: 'Ada' } })
        .expect(202);
    });
  });

  describe('reading a run', () => {
    let runId: string;
    const exec = {
      fetch: crypto.randomUUID(),
      bill: crypto.randomUUID(),
      voidBill: crypto.randomUUID(),
    };

    beforeAll(async () => {
      const res = await request(app)
        .post('/v1/workflows/greet/runs')
        .send({ input: { name: 'Ada' } })
        .expect(202);
      runId = res.body.runId;
      const policy = JSON.stringify({ attempts: 3 });
      // Inserted out of order: the API orders by created_at.
      await env.pool.query(
        `INSERT INTO step_executions (id, run_id, step_id, kind, function_name, status, output, error, attempt,
                                      max_attempts, retry_policy, created_at, queued_at, started_at, finished_at)
         VALUES
          ($2, $1, 'bye', 'action', 'say-bye', 'failed', NULL, '{"code":"BOOM","message":"no"}', 1, 1, $5,
           '2024-05-01T10:00:05Z', '2024-05-01T10:00:05Z', '2024-05-01T10:00:06Z', '2024-05-01T10:00:07Z'),
          ($3, $1, 'hello', 'action', 'say-hello', 'succeeded', '{"greeting":"hi"}', NULL, 2, 3, $5,
           '2024-05-01T10:00:00.123456Z', '2024-05-01T10:00:00.123456Z', '2024-05-01T10:00:01Z', '2024-05-01T10:00:04Z'),
          ($4, $1, 'hello', 'compensation', 'un-hello', 'queued', NULL, NULL, 0, 3, $5,
           '2024-05-01T10:00:08Z', '2024-05-01T10:00:08Z', NULL, NULL)`,
        [runId, exec.bill, exec.fetch, exec.voidBill, policy],
      );
      await env.pool.query(
        `INSERT INTO step_attempts (step_execution_id, attempt, status, worker_id, error, started_at, finished_at) VALUES
          ($1, 2, 'succeeded', 'w-2', NULL, '2024-05-01T10:00:03Z', '2024-05-01T10:00:04Z'),
          ($1, 1, 'failed', 'w-1', '{"code":"FLAKY","message":"try again"}', '2024-05-01T10:00:01Z', '2024-05-01T10:00:02Z'),
          ($2, 1, 'failed', 'w-1', '{"code":"BOOM","message":"no"}', '2024-05-01T10:00:06Z', '2024-05-01T10:00:07Z')`,
        [exec.fetch, exec.bill],
      );
      await env.pool.query(
        `INSERT INTO run_logs (run_id, step_execution_id, step_id, level, message, data, time) VALUES
          ($1, $2, 'hello', 'info', 'l1', '{"n":1}', '2024-05-01T10:00:01Z'),
          ($1, $2, 'hello', 'debug', 'l2', NULL, '2024-05-01T10:00:02Z'),
          ($1, $2, 'hello', 'warn', 'l3', NULL, '2024-05-01T10:00:03Z'),
          ($1, $3, 'bye', 'error', 'l4', '{"code":"BOOM"}', '2024-05-01T10:00:06Z'),
          ($1, NULL, NULL, 'info', 'l5', NULL, '2024-05-01T10:00:07Z')`,
        [runId, exec.fetch, exec.bill],
      );
    });

    it('GET /v1/runs/:id returns the run with steps, attempts and compensations', async () => {
      const res = await request(app).get(`/v1/runs/${runId}`).expect(200);
      expect(res.body).toEqual({
        id: runId,
        workflow: 'greet',
        workflowVersion: 1,
        status: 'pending',
        input: { name: 'Ada' },
        output: null,
        error: null,
        trigger: { type: 'http', route: '/v1/workflows/:name/runs', requestId: expect.any(String) },
        idempotencyKey: null,
        createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        startedAt: null,
        finishedAt: null,
        steps: [
          {
            id: 'hello',
            executionId: exec.fetch,
            function: 'say-hello',
            status: 'succeeded',
            attempts: 2,
            maxAttempts: 3,
            queuedAt: '2024-05-01T10:00:00.123Z',
            startedAt: '2024-05-01T10:00:01.000Z',
            finishedAt: '2024-05-01T10:00:04.000Z',
            error: null,
            output: { greeting: 'hi' },
            attemptHistory: [
              {
                attempt: 1,
                status: 'failed',
                workerId: 'w-1',
                startedAt: '2024-05-01T10:00:01.000Z',
                finishedAt: '2024-05-01T10:00:02.000Z',
                error: { code: 'FLAKY', message: 'try again' },
              },
              {
                attempt: 2,
                status: 'succeeded',
                workerId: 'w-2',
                startedAt: '2024-05-01T10:00:03.000Z',
                finishedAt: '2024-05-01T10:00:04.000Z',
                error: null,
              },
            ],
          },
          {
            id: 'bye',
            executionId: exec.bill,
            function: 'say-bye',
            status: 'failed',
            attempts: 1,
            maxAttempts: 1,
            queuedAt: '2024-05-01T10:00:05.000Z',
            startedAt: '2024-05-01T10:00:06.000Z',
            finishedAt: '2024-05-01T10:00:07.000Z',
            error: { code: 'BOOM', message: 'no' },
            output: null,
            attemptHistory: [
              {
                attempt: 1,
                status: 'failed',
                workerId: 'w-1',
                startedAt: '2024-05-01T10:00:06.000Z',
                finishedAt: '2024-05-01T10:00:07.000Z',
                error: { code: 'BOOM', message: 'no' },
              },
            ],
          },
        ],
        compensations: [
          {
            id: 'hello',
            executionId: exec.voidBill,
            function: 'un-hello',
            status: 'queued',
            attempts: 0,
            maxAttempts: 3,
            queuedAt: '2024-05-01T10:00:08.000Z',
            startedAt: null,
            finishedAt: null,
            error: null,
            output: null,
            attemptHistory: [],
          },
        ],
      });
    });

    it('GET /v1/runs/:id is 400 for a non-UUID and 404 for an unknown run', async () => {
      const bad = await request(app).get('/v1/runs/not-a-uuid').expect(400);
      expect(bad.body.error.code).toBe('INVALID_ID');
      const unknown = crypto.randomUUID();
      const missing = await request(app).get(`/v1/runs/${unknown}`).expect(404);
      expect(missing.body.error).toEqual({ code: 'NOT_FOUND', message: `run '${unknown}' not found` });
    });

    it('GET /v1/runs/:id/logs pages oldest first', async () => {
      const seen: string[] = [];
      const ids: number[] = [];
      let cursor: string | null | undefined;
      let pages = 0;
      do {
        const res = await request(app)
          .get(`/v1/runs/${runId}/logs`)
          .query({ limit: 2, ...(cursor ? { cursor } : {}) })
          .expect(200);
        pages += 1;
        expect(res.body.logs.length).toBeLessThanOrEqual(2);
        for (const log of res.body.logs) {
          seen.push(log.message);
          ids.push(log.id);
        }
        cursor = res.body.nextCursor;
      } while (cursor);
      expect(pages).toBe(3);
      expect(seen).toEqual(['l1', 'l2', 'l3', 'l4', 'l5']);
      expect([...ids].sort((a, b) => a - b)).toEqual(ids);
      const all = await request(app).get(`/v1/runs/${runId}/logs`).expect(200);
      expect(all.body.nextCursor).toBeNull();
      expect(all.body.logs[0]).toEqual({
        id: ids[0],
        time: '2024-05-01T10:00:01.000Z',
        level: 'info',
        message: 'l1',
        stepId: 'hello',
        data: { n: 1 },
      });
    });

    it('GET /v1/runs/:id/logs filters by step and minimum level', async () => {
      const byStep = await request(app).get(`/v1/runs/${runId}/logs?stepId=bye`).expect(200);
      expect(byStep.body.logs.map((l: { message: string }) => l.message)).toEqual(['l4']);
      const warn = await request(app).get(`/v1/runs/${runId}/logs?level=warn`).expect(200);
      expect(warn.body.logs.map((l: { message: string }) => l.message)).toEqual(['l3', 'l4']);
    });

    it('GET /v1/runs/:id/logs rejects bad parameters and unknown runs', async () => {
      for (const query of [
        'level=loud',
        'limit=0',
        'limit=1001',
        'cursor=%%%',
        `cursor=${Buffer.from('{"after":"x"}').toString('base64url')}`,
      ]) {
        const res = await request(app).get(`/v1/runs/${runId}/logs?${query}`).expect(400);
        expect(res.body.error.code).toMatch(/^INVALID_(QUERY|CURSOR)$/);
      }
      await request(app).get(`/v1/runs/${crypto.randomUUID()}/logs`).expect(404);
      await request(app).get('/v1/runs/123/logs').expect(400);
    });
  });

  describe('listing runs', () => {
    // Microsecond-apart timestamps and a tie: the cursor must keep full precision and break ties by id.
    const stamps = [
      '2024-06-01T10:00:00.000001Z',
      '2024-06-01T10:00:00.000002Z',
      '2024-06-01T10:00:01.5Z',
      '2024-06-01T10:00:01.5Z',
      '2024-06-01T10:00:02Z',
      '2024-06-01T10:00:03.0009Z',
    ];
    const statuses = ['succeeded', 'failed', 'running', 'failed', 'pending', 'compensated'];
    let expectedOrder: string[];
    const otherRunId = crypto.randomUUID();

    beforeAll(async () => {
      await saveDefinition(env.pool, { name: 'listing', steps: [{ id: 'only', function: 'noop' }] });
      // A run of another workflow, newer than all of them, that the workflow filter must leave out.
      await saveDefinition(env.pool, { name: 'listing-other', steps: [{ id: 'only', function: 'noop' }] });
      await env.pool.query(
        `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger, created_at)
         VALUES ($1, 'listing-other', 1, 'failed', '{}', '{"type":"http"}', '2024-06-01T10:00:02.5Z')`,
        [otherRunId],
      );
      const rows = stamps.map((createdAt, i) => ({ id: crypto.randomUUID(), createdAt, status: statuses[i] }));
      for (const row of rows) {
        await env.pool.query(
          `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger, created_at)
           VALUES ($1, 'listing', 1, $2, '{}', '{"type":"http"}', $3)`,
          [row.id, row.status, row.createdAt],
        );
      }
      expectedOrder = [...rows]
        .sort((a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1))
        .map((r) => r.id);
      // Timestamps as strings sort like instants only because they share one format; the tie makes id decide.
      expect(new Set(expectedOrder).size).toBe(6);
    });

    const collect = async (query: Record<string, string | number>): Promise<{ ids: string[]; pages: number }> => {
      const ids: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res: Response = await request(app)
          .get('/v1/runs')
          .query({ ...query, ...(cursor ? { cursor } : {}) })
          .expect(200);
        pages += 1;
        for (const run of res.body.runs) ids.push(run.id);
        cursor = res.body.nextCursor;
      } while (cursor && pages < 20);
      return { ids, pages };
    };

    it('pages newest first with a cursor at every page size', async () => {
      for (const limit of [1, 2, 4, 6, 100]) {
        const { ids, pages } = await collect({ workflow: 'listing', limit });
        expect(ids).toEqual(expectedOrder);
        expect(pages).toBe(Math.max(1, Math.ceil(6 / limit)));
      }
    });

    it('returns summaries without steps and a null cursor at the end', async () => {
      const res = await request(app).get('/v1/runs?workflow=listing&limit=100').expect(200);
      expect(res.body.nextCursor).toBeNull();
      expect(res.body.runs[0]).toEqual({
        id: expectedOrder[0],
        workflow: 'listing',
        workflowVersion: 1,
        status: 'compensated',
        input: {},
        output: null,
        error: null,
        trigger: { type: 'http' },
        idempotencyKey: null,
        createdAt: '2024-06-01T10:00:03.000Z',
        startedAt: null,
        finishedAt: null,
      });
    });

    it('filters by workflow and status', async () => {
      const failed = await collect({ workflow: 'listing', status: 'failed', limit: 1 });
      expect(failed.ids).toHaveLength(2);
      expect(failed.ids).toEqual(expectedOrder.filter((id) => failed.ids.includes(id)));
      const several = await request(app).get('/v1/runs?workflow=listing&status=failed,pending').expect(200);
      expect(several.body.runs.map((r: { status: string }) => r.status).sort()).toEqual([
        'failed',
        'failed',
        'pending',
      ]);
      const other = await request(app).get('/v1/runs?workflow=listing-other&limit=100').expect(200);
      expect(other.body.runs.map((r: { id: string }) => r.id)).toEqual([otherRunId]);
      const none = await request(app).get('/v1/runs?workflow=nothing-here').expect(200);
      expect(none.body).toEqual({ runs: [], nextCursor: null });
      // Without a filter the default page size applies.
      const all = await request(app).get('/v1/runs').expect(200);
      expect(all.body.runs.length).toBeLessThanOrEqual(20);
    });

    it('rejects a bad status, limit or cursor', async () => {
      const cases: [string, string][] = [
        ['status=done', 'INVALID_QUERY'],
        ['status=failed,nope', 'INVALID_QUERY'],
        ['limit=0', 'INVALID_QUERY'],
        ['limit=101', 'INVALID_QUERY'],
        ['limit=ten', 'INVALID_QUERY'],
        ['cursor=garbage', 'INVALID_CURSOR'],
        [`cursor=${Buffer.from('{"t":"yesterday","id":"x"}').toString('base64url')}`, 'INVALID_CURSOR'],
      ];
      for (const [query, code] of cases) {
        const res = await request(app).get(`/v1/runs?${query}`).expect(400);
        expect(res.body.error.code).toBe(code);
        expect(res.body.error.details[0].path).toBe(query.split('=')[0]);
      }
    });
  });

  describe('documents', () => {
    it('GET /v1/documents/:id returns the bytes inline with their content type', async () => {
      const id = crypto.randomUUID();
      const bytes = Buffer.concat([Buffer.from('%PDF-1.4\n'), crypto.randomBytes(300), Buffer.from('\n%%EOF\n')]);
      await env.pool.query(
        `INSERT INTO documents (id, filename, content_type, size_bytes, content)
         VALUES ($1, 'INV-0001.pdf', 'application/pdf', $2, $3)`,
        [id, bytes.length, bytes],
      );
      const res = await request(app)
        .get(`/v1/documents/${id}`)
        .buffer(true)
        .parse((response, done) => {
          const chunks: Buffer[] = [];
          response.on('data', (c: Buffer) => chunks.push(c));
          response.on('end', () => done(null, Buffer.concat(chunks)));
        })
        .expect(200);
      expect(res.headers['content-type']).toBe('application/pdf');
      expect(res.headers['content-disposition']).toMatch(/^inline; filename="INV-0001\.pdf"/);
      expect(Buffer.compare(res.body as Buffer, bytes)).toBe(0);
    });

    it('is 404 for an unknown document and 400 for a non-UUID', async () => {
      const res = await request(app).get(`/v1/documents/${crypto.randomUUID()}`).expect(404);
      expect(res.body.error.code).toBe('NOT_FOUND');
      expect((await request(app).get('/v1/documents/abc').expect(400)).body.error.code).toBe('INVALID_ID');
    });
  });

  describe('workflows', () => {
    it('GET /v1/workflows lists the latest definitions with their steps', async () => {
      const res = await request(app).get('/v1/workflows').expect(200);
      const greet = res.body.workflows.find((w: { name: string }) => w.name === 'greet');
      expect(greet).toEqual({
        name: 'greet',
        version: 1,
        description: 'Says hello',
        createdAt: expect.any(String),
        steps: [
          { id: 'hello', function: 'say-hello', needs: [] },
          { id: 'bye', function: 'say-bye', needs: ['hello'] },
        ],
      });
      expect(res.body.workflows.map((w: { name: string }) => w.name)).toEqual(
        expect.arrayContaining(['invoice', 'greet']),
      );
    });

    it('GET /v1/workflows/:name returns the latest definition and its versions; 404 when unknown', async () => {
      const res = await request(app).get('/v1/workflows/greet').expect(200);
      expect(res.body).toMatchObject({ name: 'greet', version: 1, definition: { name: 'greet', input: GREET.input } });
      expect(res.body.versions).toEqual([{ version: 1, createdAt: expect.any(String) }]);
      const missing = await request(app).get('/v1/workflows/nope').expect(404);
      expect(missing.body.error.code).toBe('NOT_FOUND');
    });

    it('PUT /v1/workflows/:name saves a new version (201) and an identical one is a no-op (200)', async () => {
      const def = { name: 'putflow', steps: [{ id: 'a', function: 'fn-a' }] };
      const created = await request(app).put('/v1/workflows/putflow').send(def).expect(201);
      // fn-a never reported from a worker: saved all the same, with a warning naming the path.
      expect(created.body).toEqual({
        name: 'putflow',
        version: 1,
        warnings: [{ path: 'steps[0].function', message: "no worker of function 'fn-a' has reported yet" }],
      });
      expect(created.headers.location).toBe('/v1/workflows/putflow');
      const same = await request(app).put('/v1/workflows/putflow').send(def).expect(200);
      expect(same.body).toMatchObject({ name: 'putflow', version: 1 });
      const changed = await request(app)
        .put('/v1/workflows/putflow')
        .send({ ...def, steps: [...def.steps, { id: 'b', function: 'fn-b' }] })
        .expect(201);
      await env.pool.query("INSERT INTO known_functions (name) VALUES ('fn-a')");
      expect(changed.body).toMatchObject({ name: 'putflow', version: 2 });
      const again = await request(app)
        .put('/v1/workflows/putflow')
        .send({ ...def, steps: [...def.steps, { id: 'b', function: 'fn-b' }] });
      expect(again.body.warnings).toEqual([
        { path: 'steps[1].function', message: "no worker of function 'fn-b' has reported yet" },
      ]);
      const got = await request(app).get('/v1/workflows/putflow').expect(200);
      expect(got.body.version).toBe(2);
      expect(got.body.versions.map((v: { version: number }) => v.version)).toEqual([2, 1]);
      const v1 = await request(app).get('/v1/workflows/putflow?version=1').expect(200);
      expect(v1.body.definition.steps).toHaveLength(1);
    });

    it('PUT answers 400, not 500, for a body name that is not a string (found by the fuzz test)', async () => {
      const res = await request(app)
        .put('/v1/workflows/fuzzed')
        .send({ name: [{ toString: [true] }], steps: [] })
        .expect(400);
      expect(res.body.error.code).toBe('INVALID_DEFINITION');
      expect(res.body.error.details).toEqual([
        { path: 'name', message: "must equal 'fuzzed', the workflow name in the URL" },
      ]);
    });

    it('PUT accepts YAML', async () => {
      const yaml = [
        'name: yamlflow',
        'steps:',
        '  - id: first',
        '    function: fn-one',
        '  - id: second',
        '    function: fn-two',
        '',
      ].join('\n');
      const res = await request(app)
        .put('/v1/workflows/yamlflow')
        .set('Content-Type', 'application/yaml')
        .send(yaml)
        .expect(201);
      expect(res.body).toMatchObject({ name: 'yamlflow', version: 1 });
      const got = await request(app).get('/v1/workflows/yamlflow').expect(200);
      expect(got.body.definition.steps.map((s: { needs: string[] }) => s.needs)).toEqual([[], ['first']]);
      const broken = await request(app)
        .put('/v1/workflows/yamlflow')
        .set('Content-Type', 'application/yaml')
        .send('name: [unclosed')
        .expect(400);
      expect(broken.body.error.code).toBe('INVALID_DEFINITION');
    });

    it('PUT rejects an invalid definition with a problem per path, and a name that differs from the URL', async () => {
      const res = await request(app)
        .put('/v1/workflows/badflow')
        .send({
          name: 'badflow',
          steps: [
            { id: 'a', function: 'Not_A_Name' },
            { id: 'b', function: 'fn-b', needs: ['ghost'] },
          ],
        })
        .expect(400);
      expect(res.body.error.code).toBe('INVALID_DEFINITION');
      expect(res.body.error.details.map((d: { path: string }) => d.path)).toContain('steps[0].function');
      const semantic = await request(app)
        .put('/v1/workflows/badflow')
        .send({ name: 'badflow', steps: [{ id: 'a', function: 'fn-a', needs: ['ghost'] }] })
        .expect(400);
      expect(semantic.body.error.details).toEqual([{ path: 'steps[0].needs[0]', message: "unknown step 'ghost'" }]);
      const mismatch = await request(app)
        .put('/v1/workflows/badflow')
        .send({ name: 'otherflow', steps: [{ id: 'a', function: 'fn-a' }] })
        .expect(400);
      expect(mismatch.body.error).toMatchObject({ code: 'INVALID_DEFINITION', details: [{ path: 'name' }] });
      await request(app).get('/v1/workflows/otherflow').expect(404);
      await request(app).get('/v1/workflows/badflow').expect(404);
    });
  });

  describe('auth', () => {
    let secured: Express;
    beforeAll(() => {
      secured = appWith({ apiKeys: ['key-one', 'key-two'] });
    });

    it('requires a bearer key on /v1 and POST /invoice/start', async () => {
      const none = await request(secured).get('/v1/workflows').expect(401);
      expect(none.body.error.code).toBe('UNAUTHORIZED');
      expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
      const wrong = await request(secured).get('/v1/workflows').set('Authorization', 'Bearer key-three').expect(401);
      expect(wrong.headers['www-authenticate']).toMatch(/invalid_token/);
      await request(secured).get('/v1/workflows').set('Authorization', 'Basic a2V5LW9uZQ==').expect(401);
      await request(secured).get(`/v1/runs/${crypto.randomUUID()}`).expect(401);
      await request(secured).post('/invoice/start').send({ customerId: 'cust-02' }).expect(401);
      // Routing is case-insensitive and ignores a trailing slash; the auth mount must cover the same paths.
      await request(secured).get('/V1/workflows').expect(401);
      await request(secured).get('/v1/workflows/').expect(401);
      await request(secured).post('/Invoice/Start').send({ customerId: 'cust-02' }).expect(401);
      // Unauthenticated requests are refused before their body is read or validated.
      await request(secured)
        .post('/v1/workflows/greet/runs')
        .send('{bad')
        .set('Content-Type', 'application/json')
        .expect(401);
    });

    it('accepts any configured key', async () => {
      await request(secured).get('/v1/workflows').set('Authorization', 'Bearer key-one').expect(200);
      await request(secured).get('/v1/workflows').set('Authorization', 'bearer key-two').expect(200);
      await request(secured)
        .post('/invoice/start')
        .set('Authorization', 'Bearer key-two')
        .send({ customerId: 'cust-02' })
        .expect(202);
    });

    it('leaves health, readiness and metrics open', async () => {
      await request(secured).get('/healthz').expect(200);
      await request(secured).get('/readyz').expect(200);
      await request(secured).get('/metrics').expect(200);
    });
  });

  describe('errors and metrics', () => {
    it('an unknown route is a JSON 404', async () => {
      const res = await request(app).get('/v1/nothing').expect(404);
      expect(res.body).toEqual({ error: { code: 'NOT_FOUND', message: 'no route for GET /v1/nothing' } });
    });

    it('an unexpected failure is a 500 with a generic message', async () => {
      const broken = createPool('postgres://postgres@127.0.0.1:1/baton');
      extraPools.push(broken);
      const res = await request(appWith({}, broken)).get('/v1/workflows').expect(500);
      expect(res.body).toEqual({ error: { code: 'INTERNAL', message: 'internal server error' } });
    });

    it('GET /metrics exposes request durations labelled by route pattern, never by id', async () => {
      const id = crypto.randomUUID();
      await request(app).get(`/v1/runs/${id}`).expect(404);
      await request(app).post('/v1/workflows/greet/runs').set('Content-Type', 'application/json').send('{').expect(400);
      const res = await request(app).get('/metrics').expect(200);
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
      expect(res.text).toContain('baton_http_request_duration_seconds');
      expect(res.text).toMatch(
        /baton_http_request_duration_seconds_count\{[^}]*route="\/v1\/runs\/:id"[^}]*status="404"/,
      );
      expect(res.text).toMatch(
        /baton_http_request_duration_seconds_count\{[^}]*route="\/v1\/workflows\/:name\/runs"[^}]*status="400"/,
      );
      expect(res.text).toMatch(/route="unmatched"/);
      expect(res.text).not.toContain(id);
    });
  });
});
