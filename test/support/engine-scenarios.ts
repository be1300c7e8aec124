import nodemailer, { type Transporter } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import { z } from 'zod';
import { NonRetryableError } from '@baton/workflow';
import { defineFunction, saveDefinition, type FunctionDefinition, type Pool } from '@baton/engine';

type AnyFunction = FunctionDefinition<any, any>;
import { createCreateInvoice } from '../../functions/create-invoice/src/index';
import { createFetchOrders } from '../../functions/fetch-orders/src/index';
import { createGeneratePdf } from '../../functions/generate-pdf/src/index';
import { createSendEmail } from '../../functions/send-email/src/index';
import { createVoidInvoice } from '../../functions/void-invoice/src/index';
import type { Engine } from './engine';
import { waitFor, type TestEnv } from './env';
import { startSmtp, type TestSmtp } from './mail';

/**
 * The representative engine scenarios a topology suite (a Redis Cluster, a pooler, …) runs on its
 * own env: the invoice workflow end to end, a DAG, retries, compensation and the reconciler after a
 * wipe of the Redis keys. `scenarioFunctions()` gives the step functions (with the counters they
 * record into), `saveScenarioWorkflows()` the workflows using them, and each `expect…` function
 * runs one scenario on an engine and asserts its outcome.
 */

/** Retry backoff short enough for tests. */
export const FAST_RETRY = { backoff: { delayMs: 20, maxDelayMs: 50, jitter: 0 } };

export interface ScenarioFunctions {
  /** Handler calls of `flaky`, by its `key` input. */
  calls: Record<string, number>;
  /** `<kind>:<tag>` of every `record` call that finished, in order (kind: action or compensation). */
  completions: string[];
  /** Logs `flaky attempt`, fails its first `failTimes` attempts, then returns `{ key, attempt }`. */
  flaky: AnyFunction;
  /** Waits `delayMs`, records its tag, returns `{ tag, value }`. */
  record: AnyFunction;
  /** Always fails: for good (NonRetryableError) when `permanent`, else a retryable error. */
  broken: AnyFunction;
  /** All three. */
  all: AnyFunction[];
}

export function scenarioFunctions(): ScenarioFunctions {
  const calls: Record<string, number> = {};
  const completions: string[] = [];
  const flaky = defineFunction({
    name: 'flaky',
    input: z.object({ key: z.string(), failTimes: z.number().int() }),
    handler: async ({ key, failTimes }, ctx) => {
      calls[key] = (calls[key] ?? 0) + 1;
      ctx.log.info('flaky attempt', { attempt: ctx.attempt });
      if (ctx.attempt <= failTimes) throw new Error(`planned failure ${ctx.attempt}`);
      return { key, attempt: ctx.attempt };
    },
  });
  const record = defineFunction({
    name: 'record',
    input: z.object({ tag: z.string(), value: z.number().optional(), delayMs: z.number().optional() }),
    handler: async ({ tag, value, delayMs }, ctx) => {
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      completions.push(`${ctx.kind}:${tag}`);
      return { tag, value };
    },
  });
  const broken = defineFunction({
    name: 'broken',
    input: z.object({ permanent: z.boolean().default(false) }),
    handler: async ({ permanent }) => {
      if (permanent) throw new NonRetryableError('BROKEN', 'broken for good');
      throw new Error('still broken');
    },
  });
  return { calls, completions, flaky, record, broken, all: [flaky, record, broken] };
}

/**
 * The workflows of the scenarios: `retrying` (flaky fails twice, three attempts), `diamond` (a, then
 * b and c, then d joining both; tags and values flow through), `saga` (one and two with
 * compensations, then `broken`: for good at once with `permanent`, else after two attempts) and
 * `slow-chain` (three slow steps in a row).
 */
/** `retrying`: one `flaky` step failing twice, with three attempts. */
export async function saveRetryingWorkflow(pool: Pool): Promise<void> {
  await saveDefinition(pool, {
    name: 'retrying',
    steps: [
      {
        id: 'only',
        function: 'flaky',
        input: { key: '{{ input.key }}', failTimes: 2 },
        retry: { attempts: 3, ...FAST_RETRY },
      },
    ],
  });
}

/** `slow-chain`: three `record` steps in a row, each taking `delayMs`. */
export async function saveSlowChainWorkflow(pool: Pool, delayMs: number): Promise<void> {
  await saveDefinition(pool, {
    name: 'slow-chain',
    steps: [
      { id: 's1', function: 'record', input: { tag: '{{ input.tag }}-1', delayMs } },
      { id: 's2', function: 'record', needs: ['s1'], input: { tag: '{{ input.tag }}-2', delayMs } },
      { id: 's3', function: 'record', needs: ['s2'], input: { tag: '{{ input.tag }}-3', delayMs } },
    ],
  });
}

export async function saveScenarioWorkflows(pool: Pool, opts: { slowStepMs?: number } = {}): Promise<void> {
  await saveRetryingWorkflow(pool);
  await saveDefinition(pool, {
    name: 'diamond',
    steps: [
      { id: 'a', function: 'record', input: { tag: '{{ input.tag }}-a', value: '{{ input.x }}' } },
      {
        id: 'b',
        function: 'record',
        needs: ['a'],
        input: { tag: '{{ steps.a.output.tag }}-b', value: '{{ steps.a.output.value * 2 }}' },
      },
      {
        id: 'c',
        function: 'record',
        needs: ['a'],
        input: { tag: '{{ steps.a.output.tag }}-c', value: '{{ steps.a.output.value * 3 }}' },
      },
      {
        id: 'd',
        function: 'record',
        needs: ['b', 'c'],
        input: {
          tag: '{{ steps.b.output.tag }}+{{ steps.c.output.tag }}',
          value: '{{ steps.b.output.value + steps.c.output.value }}',
        },
      },
    ],
    output: '{{ steps.d.output.value }}',
  });
  await saveDefinition(pool, {
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
      {
        id: 'three',
        function: 'broken',
        input: { permanent: '{{ input.permanent }}' },
        retry: { attempts: 2, ...FAST_RETRY },
      },
    ],
  });
  await saveSlowChainWorkflow(pool, opts.slowStepMs ?? 150);
}

export interface InvoiceMail {
  smtp: TestSmtp;
  transport: Transporter<SMTPTransport.SentMessageInfo>;
  close(): Promise<void>;
}

/** A real SMTP server and a transport to it; `refuse` lists mailboxes refused for good (550). */
export async function startInvoiceMail(opts: { refuse?: string[] } = {}): Promise<InvoiceMail> {
  const smtp = await startSmtp(opts.refuse ? { rejectRecipientsWith: 550, rejectOnly: opts.refuse } : {});
  const transport = nodemailer.createTransport({ url: `smtp://127.0.0.1:${smtp.port}`, connectionTimeout: 5_000 });
  return {
    smtp,
    transport,
    close: async () => {
      transport.close();
      await smtp.close();
    },
  };
}

/** The five functions of workflows/invoice.yaml on `pool`, mailing through `transport`. */
export function invoiceFunctions(pool: Pool, transport: Transporter<SMTPTransport.SentMessageInfo>): AnyFunction[] {
  return [
    createFetchOrders({ pool }),
    createCreateInvoice({ pool }),
    createVoidInvoice({ pool }),
    createGeneratePdf({ pool }),
    createSendEmail({ pool, transport, from: 'Baton Invoices <invoices@baton.test>' }),
  ];
}

/**
 * Invoices cust-01 (workflows/invoice.yaml must be loaded): the run succeeds through its four steps
 * in order, each once and in time order, one issued invoice of 1235.98, and Ada gets the e-mail.
 */
export async function expectInvoiceEndToEnd(env: TestEnv, engine: Engine, smtp: TestSmtp): Promise<string> {
  const runId = await engine.start('invoice', { customerId: 'cust-01' });
  const run = await engine.waitForRun(runId);
  expect(run.status).toBe('succeeded');
  const steps = await env.pool.query(
    'SELECT step_id, status, attempt, queued_at, started_at, finished_at FROM step_executions WHERE run_id = $1 ORDER BY created_at',
    [runId],
  );
  expect(steps.rows.map((s) => [s.step_id, s.status, s.attempt])).toEqual([
    ['fetchOrders', 'succeeded', 1],
    ['createInvoice', 'succeeded', 1],
    ['generatePdf', 'succeeded', 1],
    ['sendEmail', 'succeeded', 1],
  ]);
  for (const s of steps.rows) {
    expect(s.queued_at.getTime()).toBeLessThanOrEqual(s.started_at.getTime());
    expect(s.started_at.getTime()).toBeLessThanOrEqual(s.finished_at.getTime());
  }
  const invoice = await env.pool.query('SELECT customer_id, status, total_cents FROM invoices WHERE run_id = $1', [
    runId,
  ]);
  expect(invoice.rows).toEqual([{ customer_id: 'cust-01', status: 'issued', total_cents: 123598 }]);
  await waitFor(
    async () => (smtp.received.some((m) => m.envelope.to.includes('ada@example.com')) ? true : undefined),
    10_000,
    "the e-mail to cust-01's address",
  );
  return runId;
}

/**
 * Runs `diamond` once per input and checks each: succeeded, d joined b and c (its tag names both
 * branches) and the output is a's value times five. Returns the run ids.
 */
export async function expectDiamonds(engine: Engine, env: TestEnv, inputs: { tag: string; x: number }[]) {
  const runIds = await Promise.all(inputs.map((input) => engine.start('diamond', input)));
  for (const [i, id] of runIds.entries()) {
    const { tag, x } = inputs[i];
    const run = await engine.waitForRun(id);
    expect(run.status).toBe('succeeded');
    expect(run.output).toBe(x * 5);
    const d = await env.pool.query("SELECT output FROM step_executions WHERE run_id = $1 AND step_id = 'd'", [id]);
    expect(d.rows).toEqual([{ output: { tag: `${tag}-a-b+${tag}-a-c`, value: x * 5 } }]);
  }
  return runIds;
}

/** Runs `retrying` with `key` (unused before): it succeeds on the third call, every attempt recorded. */
export async function expectRetriedToSuccess(
  engine: Engine,
  env: TestEnv,
  fns: ScenarioFunctions,
  key: string,
): Promise<void> {
  const run = await engine.waitForRun(await engine.start('retrying', { key }));
  expect(run.status).toBe('succeeded');
  expect(fns.calls[key]).toBe(3);
  const attempts = await env.pool.query(
    `SELECT a.attempt, a.status FROM step_attempts a JOIN step_executions e ON e.id = a.step_execution_id
      WHERE e.run_id = $1 ORDER BY a.attempt`,
    [run.id],
  );
  expect(attempts.rows).toEqual([
    { attempt: 1, status: 'failed' },
    { attempt: 2, status: 'failed' },
    { attempt: 3, status: 'succeeded' },
  ]);
}

/**
 * Runs `saga`: its third step fails for good (at once when `permanent`, else once its two attempts
 * are spent), so the run is compensated, the done steps undone newest first.
 */
export async function expectCompensated(
  engine: Engine,
  env: TestEnv,
  fns: ScenarioFunctions,
  opts: { permanent: boolean },
): Promise<void> {
  fns.completions.length = 0;
  const run = await engine.waitForRun(await engine.start('saga', { permanent: opts.permanent }));
  expect(run.status).toBe('compensated');
  expect(fns.completions).toEqual(['action:one', 'action:two', 'compensation:undo-two', 'compensation:undo-one']);
  const attempts = await env.pool.query(
    `SELECT a.status FROM step_attempts a JOIN step_executions e ON e.id = a.step_execution_id
      WHERE e.run_id = $1 AND e.step_id = 'three' ORDER BY a.attempt`,
    [run.id],
  );
  expect(attempts.rows.map((a) => a.status)).toEqual(opts.permanent ? ['failed'] : ['failed', 'failed']);
}

/**
 * Starts ten `slow-chain` runs, calls `wipe` (the Redis keys gone) once some steps are done, and
 * checks that the reconciler finishes every run with each step succeeded exactly once.
 */
export async function expectRunsFinishAfterWipe(
  engine: Engine,
  env: TestEnv,
  fns: ScenarioFunctions,
  wipe: () => Promise<unknown>,
): Promise<void> {
  fns.completions.length = 0;
  const runIds = await Promise.all(Array.from({ length: 10 }, (_, i) => engine.start('slow-chain', { tag: `w${i}` })));
  await waitFor(async () => (fns.completions.length >= 4 ? true : undefined), 20_000, 'some steps to complete');
  await wipe();
  const runs = await Promise.all(runIds.map((id) => engine.waitForRun(id, ['succeeded', 'failed'], 60_000)));
  expect(runs.map((r) => r.status)).toEqual(Array(10).fill('succeeded'));
  const { rows } = await env.pool.query(
    `SELECT run_id, step_id, count(*)::int AS n FROM step_executions
      WHERE run_id = ANY($1) AND status = 'succeeded' GROUP BY 1, 2`,
    [runIds],
  );
  expect(rows).toHaveLength(30);
  for (const row of rows) expect(row.n).toBe(1);
}
