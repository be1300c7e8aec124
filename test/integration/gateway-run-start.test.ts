import type { Express } from 'express';
import request from 'supertest';
import { Queue } from 'bullmq';
import { functionQueueName, inboxKey } from '@baton/engine';
import type { TestEnv } from '../support/env';
import { UUID, useGatewaySuite } from '../support/gateway-suite';

/**
 * Starting runs: POST /invoice/start and POST /v1/workflows/:name/runs. The setup (a real
 * PostgreSQL and Redis, no coordinator) is test/support/gateway-suite.ts; this suite has its own
 * database and Redis prefix.
 */

describe('gateway HTTP API: starting runs', () => {
  const suite = useGatewaySuite('gateway-run-start');
  let env: TestEnv;
  let app: Express;
  beforeAll(() => {
    ({ env, app } = suite);
  });
  const { appWith } = suite;

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

    it('with BATON_DIRECT_START, POST /v1/workflows/:name/runs answers running with step 1 queued and its job added', async () => {
      const direct = appWith({ directStart: true });
      const res = await request(direct)
        .post('/v1/workflows/greet/runs')
        .send({ input: { name: 'Grace' } })
        .expect(202);
      expect(res.body).toEqual({
        runId: expect.stringMatching(UUID),
        status: 'running',
        statusUrl: `/v1/runs/${res.body.runId}`,
      });
      const run = await request(direct).get(res.body.statusUrl).expect(200);
      expect(run.body).toMatchObject({ status: 'running', steps: [{ id: 'hello', status: 'queued' }] });
      const job = await new Queue(functionQueueName('say-hello'), {
        connection: env.queues.connection,
        prefix: env.queues.prefix,
      }).getJob(run.body.steps[0].executionId);
      expect(job?.data).toMatchObject({ runId: res.body.runId, stepId: 'hello', input: { name: 'Grace' } });
      // Not announced: the coordinator first hears of the run from its step's report.
      const entries = await env.redis.xrange(inboxKey(env.queues.prefix), '-', '+');
      expect(entries.map(([, fields]) => JSON.parse(fields[1]).runId)).not.toContain(res.body.runId);
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
});
