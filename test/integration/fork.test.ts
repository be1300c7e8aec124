import { NonRetryableError } from '@baton/workflow';
import { defineFunction, saveDefinition } from '@baton/engine';
import type { Express } from 'express';
import request from 'supertest';
import { z } from 'zod';
import { testApp } from '../support/gateway';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, type TestEnv } from '../support/env';

/**
 * Fork from a step through the gateway, on real Redis and PostgreSQL: the steps before `fromStep`
 * keep their outputs and are not executed again (their side effects counted), `fromStep` and what
 * follows run again, `forkedFrom` links the fork, a failing fork never compensates a copied step,
 * and a forEach step is copied as its output without running its items again.
 */

/** Side effects by step and customer: each call of a step's handler. */
const effects = new Map<string, number>();
const effect = (key: string) => effects.set(key, (effects.get(key) ?? 0) + 1);
const failingPdf = new Set<string>();

const fn = (name: string, handler: (input: { customer: string; [k: string]: unknown }) => unknown) =>
  defineFunction({
    name,
    input: z.object({ customer: z.string() }).passthrough(),
    handler: async (input) => {
      effect(`${name}:${input.customer}`);
      return handler(input);
    },
  });

const fetchOrders = fn('fx-fetch', (i) => ({ orders: [1, 2, 3], customer: i.customer }));
const createInvoice = fn('fx-create', (i) => ({
  invoiceId: `inv-${i.customer}-${effects.get(`fx-create:${i.customer}`)}`,
}));
const voidInvoice = fn('fx-void', (i) => ({ voided: i.invoiceId }));
const pdf = fn('fx-pdf', (i) => {
  if (failingPdf.has(i.customer)) throw new NonRetryableError('PDF_FAILED', 'renderer down');
  return { documentId: `doc-${i.invoiceId}` };
});
const email = fn('fx-email', (i) => ({ sent: i.documentId }));
const line = fn('fx-line', (i) => ({ line: (i.item as number) * 10 }));

const INVOICE_LIKE = {
  name: 'invoice-like',
  input: { type: 'object', required: ['customer'], properties: { customer: { type: 'string' } } },
  steps: [
    { id: 'fetchOrders', function: 'fx-fetch', input: { customer: '{{ input.customer }}' } },
    {
      id: 'createInvoice',
      function: 'fx-create',
      input: { customer: '{{ input.customer }}' },
      compensate: {
        function: 'fx-void',
        input: { customer: '{{ input.customer }}', invoiceId: '{{ steps.createInvoice.output.invoiceId }}' },
      },
    },
    {
      id: 'generatePdf',
      function: 'fx-pdf',
      retry: { attempts: 1 },
      input: { customer: '{{ input.customer }}', invoiceId: '{{ steps.createInvoice.output.invoiceId }}' },
    },
    {
      id: 'sendEmail',
      function: 'fx-email',
      input: { customer: '{{ input.customer }}', documentId: '{{ steps.generatePdf.output.documentId }}' },
    },
  ],
  output: {
    invoiceId: '{{ steps.createInvoice.output.invoiceId }}',
    documentId: '{{ steps.generatePdf.output.documentId }}',
  },
};

const LINES = {
  name: 'lines',
  steps: [
    { id: 'orders', function: 'fx-fetch', input: { customer: '{{ input.customer }}' } },
    {
      id: 'lines',
      function: 'fx-line',
      forEach: '{{ steps.orders.output.orders }}',
      input: { customer: '{{ input.customer }}', item: '{{ item }}' },
    },
    {
      id: 'total',
      function: 'fx-email',
      input: { customer: '{{ input.customer }}', documentId: '{{ steps.lines.output }}' },
    },
  ],
};

describe('fork from a step', () => {
  let env: TestEnv;
  let engine: Engine;
  let app: Express;

  const startRun = async (workflow: string, input: unknown) =>
    (await request(app).post(`/v1/workflows/${workflow}/runs`).send({ input }).expect(202)).body.runId as string;
  const getRun = async (id: string) => (await request(app).get(`/v1/runs/${id}`).expect(200)).body;
  const finished = async (id: string) => {
    await engine.waitForRun(id);
    return getRun(id);
  };
  const stepsOf = (run: { steps: { id: string; status: string; copiedFrom?: string }[] }) =>
    run.steps.map((s) => [s.id, s.status, s.copiedFrom !== undefined]);

  beforeAll(async () => {
    env = await createTestEnv('fork');
    engine = await startEngine(env, [fetchOrders, createInvoice, voidInvoice, pdf, email, line]);
    app = testApp(env, engine.coordinatorQueue);
    await saveDefinition(env.pool, INVOICE_LIKE);
    await saveDefinition(env.pool, LINES);
  });

  afterAll(async () => {
    await engine?.close();
    await env?.cleanup();
  });

  it('forks a succeeded run from a middle step: earlier steps kept, later ones run again', async () => {
    const sourceId = await startRun('invoice-like', { customer: 'c1' });
    const source = await finished(sourceId);
    expect(source.status).toBe('succeeded');
    expect(source.forkedFrom).toBeNull();

    const res = await request(app).post(`/v1/runs/${sourceId}/fork`).send({ fromStep: 'generatePdf' }).expect(202);
    expect(res.body).toMatchObject({
      status: 'pending',
      forkedFrom: sourceId,
      kept: ['fetchOrders', 'createInvoice'],
      rerun: ['generatePdf', 'sendEmail'],
    });
    expect(res.headers.location).toBe(`/v1/runs/${res.body.runId}`);
    const fork = await finished(res.body.runId);
    expect(fork.status).toBe('succeeded');
    expect(fork.forkedFrom).toBe(sourceId);
    expect(fork.trigger).toMatchObject({ type: 'fork', runId: sourceId, fromStep: 'generatePdf' });
    expect(fork.workflowVersion).toBe(source.workflowVersion);
    expect(stepsOf(fork)).toEqual([
      ['fetchOrders', 'succeeded', true],
      ['createInvoice', 'succeeded', true],
      ['generatePdf', 'succeeded', false],
      ['sendEmail', 'succeeded', false],
    ]);
    // The kept invoice is the source's: created once; the PDF and e-mail happened twice.
    expect(fork.output.invoiceId).toBe(source.output.invoiceId);
    expect([...['fx-fetch', 'fx-create', 'fx-pdf', 'fx-email'].map((f) => effects.get(`${f}:c1`))]).toEqual([
      1, 1, 2, 2,
    ]);
    expect(fork.steps[1].copiedFrom).toBe(source.steps[1].executionId);
    // The source is unchanged.
    expect(stepsOf(await getRun(sourceId))).toEqual(stepsOf(source));
  });

  it('forks with a new input: the step forked from and what follows see it', async () => {
    const sourceId = await startRun('invoice-like', { customer: 'c2' });
    await finished(sourceId);
    const res = await request(app)
      .post(`/v1/runs/${sourceId}/fork`)
      .send({ fromStep: 'fetchOrders', input: { customer: 'c2b' } })
      .expect(202);
    expect(res.body.kept).toEqual([]);
    const fork = await finished(res.body.runId);
    expect(fork.status).toBe('succeeded');
    expect(fork.input).toEqual({ customer: 'c2b' });
    expect(effects.get('fx-fetch:c2b')).toBe(1);
    expect(effects.get('fx-fetch:c2')).toBe(1);
    // The input is checked against the workflow's input schema.
    const bad = await request(app)
      .post(`/v1/runs/${sourceId}/fork`)
      .send({ fromStep: 'fetchOrders', input: { nobody: 1 } })
      .expect(400);
    expect(bad.body.error.code).toBe('INVALID_INPUT');
  });

  it('refuses an unknown step (naming it), an unfinished run, a read-only key', async () => {
    const sourceId = await startRun('invoice-like', { customer: 'c3' });
    await finished(sourceId);
    const unknown = await request(app).post(`/v1/runs/${sourceId}/fork`).send({ fromStep: 'nope' }).expect(400);
    expect(unknown.body.error.message).toMatch(/'nope'/);
    expect(unknown.body.error.details[0].path).toBe('fromStep');
    await request(app).post(`/v1/runs/${sourceId}/fork`).send({}).expect(400);
    await request(app).post('/v1/runs/00000000-0000-4000-8000-000000000000/fork').send({ fromStep: 'x' }).expect(404);

    // Not finished: a pending run (no coordinator has looked at it yet is not needed: inserted pending).
    const { rows } = await env.pool.query<{ id: string }>(
      `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger)
       SELECT gen_random_uuid(), 'invoice-like', 1, 'running', '{"customer":"c3"}', '{"type":"http"}' RETURNING id`,
    );
    const conflict = await request(app)
      .post(`/v1/runs/${rows[0].id}/fork`)
      .send({ fromStep: 'generatePdf' })
      .expect(409);
    expect(conflict.body.error.code).toBe('CONFLICT');

    const locked = testApp(env, engine.coordinatorQueue, { config: { apiKeys: ['k'], readOnlyApiKeys: ['ro'] } });
    await request(locked)
      .post(`/v1/runs/${sourceId}/fork`)
      .set({ Authorization: 'Bearer ro' })
      .send({ fromStep: 'generatePdf' })
      .expect(403);
  });

  it('a fork that fails never compensates the steps it copied (their effect is the source run’s)', async () => {
    const sourceId = await startRun('invoice-like', { customer: 'c4' });
    expect((await finished(sourceId)).status).toBe('succeeded');
    failingPdf.add('c4');
    const res = await request(app).post(`/v1/runs/${sourceId}/fork`).send({ fromStep: 'generatePdf' }).expect(202);
    const fork = await finished(res.body.runId);
    failingPdf.delete('c4');
    expect(fork.status).toBe('failed');
    expect(fork.compensations).toEqual([]);
    expect(effects.get('fx-void:c4')).toBeUndefined();
    expect(effects.get('fx-create:c4')).toBe(1);
    // A failed fork can be retried like any run, and forked again.
    await request(app).post(`/v1/runs/${fork.id}/retry`).send({}).expect(202);
    await engine.waitForRun(fork.id, ['succeeded']);
    expect(effects.get('fx-create:c4')).toBe(1);
  });

  it('copies a succeeded forEach step as its output: its items do not run again', async () => {
    const sourceId = await startRun('lines', { customer: 'c5' });
    const source = await finished(sourceId);
    expect(source.status).toBe('succeeded');
    expect(effects.get('fx-line:c5')).toBe(3);
    const res = await request(app).post(`/v1/runs/${sourceId}/fork`).send({ fromStep: 'total' }).expect(202);
    expect(res.body.kept).toEqual(['orders', 'lines']);
    const fork = await finished(res.body.runId);
    expect(fork.status).toBe('succeeded');
    expect(effects.get('fx-line:c5')).toBe(3);
    const lines = fork.steps.find((s: { id: string }) => s.id === 'lines');
    expect(lines.output).toEqual([{ line: 10 }, { line: 20 }, { line: 30 }]);
    expect(lines.copiedFrom).toBeDefined();
    expect(lines.fanout).toBeUndefined();
    expect(fork.output.total).toEqual(source.output.total);
  });
});
