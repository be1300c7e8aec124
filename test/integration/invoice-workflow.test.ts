import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { loadDefinitionsFromDir } from '@baton/engine';
import nodemailer, { type Transporter } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import { createEmitEvents } from '../../functions/emit-events/src/index';
import { createHttpRequest } from '../../functions/http-request/src/index';
import { createTransform } from '../../functions/transform/src/index';
import { startEngine, type Engine } from '../support/engine';
import { expectInvoiceEndToEnd, invoiceFunctions } from '../support/engine-scenarios';
import { createTestEnv, type TestEnv } from '../support/env';
import { pdfText, startSmtp, type TestSmtp } from '../support/mail';

/**
 * workflows/invoice.yaml end to end through the real coordinator and function runtimes, on real
 * PostgreSQL and Redis, with a real SMTP server receiving the mail.
 */
describe('the invoice workflow', () => {
  let env: TestEnv;
  let engine: Engine;
  let smtp: TestSmtp;
  let transport: Transporter<SMTPTransport.SentMessageInfo>;
  // cust-05's mailbox refuses mail until a test empties this list.
  const refused = ['edsger@example.com'];

  beforeAll(async () => {
    env = await createTestEnv('invoice');
    await loadDefinitionsFromDir(env.pool, path.join(__dirname, '../../workflows'));
    // cust-05's mailbox refuses mail for good: that run must be unwound.
    smtp = await startSmtp({ rejectRecipientsWith: 550, rejectOnly: refused });
    transport = nodemailer.createTransport({ url: `smtp://127.0.0.1:${smtp.port}`, connectionTimeout: 5_000 });
    const { pool } = env;
    engine = await startEngine(env, [
      ...invoiceFunctions(pool, transport),
      // The orders-feed example: the feed is a local server, so its host is allowed explicitly.
      createHttpRequest({ allowedHosts: ['127.0.0.1'] }),
      createTransform(),
      createEmitEvents(),
    ]);
  });

  afterAll(async () => {
    await engine?.close();
    transport?.close();
    await smtp?.close();
    await env?.cleanup();
  });

  it('invoices cust-01: four steps, an invoice row, a PDF naming customer and total, an e-mail with it', async () => {
    // The steps in order and in time, the issued invoice, the e-mail to Ada (as every topology runs it).
    const runId = await expectInvoiceEndToEnd(env, engine, smtp);
    const run = await engine.waitForRun(runId);

    const invoice = await env.pool.query('SELECT * FROM invoices WHERE run_id = $1', [runId]);
    expect(invoice.rows).toHaveLength(1);
    expect(invoice.rows[0]).toMatchObject({ customer_id: 'cust-01', status: 'issued', total_cents: 123598 });
    expect(run.output).toMatchObject({
      invoiceId: invoice.rows[0].id,
      invoiceNumber: invoice.rows[0].number,
      emailedTo: 'ada@example.com',
      documentUrl: `/v1/documents/${run.output.documentId}`,
    });

    const doc = await env.pool.query('SELECT content_type, content FROM documents WHERE id = $1', [
      run.output.documentId,
    ]);
    expect(doc.rows[0].content_type).toBe('application/pdf');
    const text = await pdfText(doc.rows[0].content);
    expect(text).toContain('Ada Lovelace Ltd');
    expect(text).toContain('cust-01');
    expect(text).toContain(invoice.rows[0].number);
    expect(text).toContain('1,235.98');

    const mail = smtp.received.find((m) => m.envelope.to.includes('ada@example.com'));
    expect(mail).toBeDefined();
    expect(mail!.mail.subject).toContain(invoice.rows[0].number);
    const attachment = mail!.mail.attachments.find((a) => a.contentType === 'application/pdf');
    expect(attachment).toBeDefined();
    expect(await pdfText(attachment!.content)).toContain('1,235.98');
  });

  it('fails an unknown customer cleanly, with the reason on the run and nothing to undo', async () => {
    const runId = await engine.start('invoice', { customerId: 'cust-99' });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({
      stepId: 'fetchOrders',
      function: 'fetch-orders',
      code: 'CUSTOMER_NOT_FOUND',
      nonRetryable: true,
      attempt: 1,
    });
    const invoices = await env.pool.query('SELECT count(*)::int AS n FROM invoices WHERE run_id = $1', [runId]);
    expect(invoices.rows[0].n).toBe(0);
  });

  it('orders-feed: fetches a feed over HTTP and invoices each customer with a child invoice run', async () => {
    const feed = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          orders: [
            { id: 'f1', customerId: 'cust-02', status: 'open' },
            { id: 'f2', customerId: 'cust-03', status: 'open' },
            { id: 'f3', customerId: 'cust-02', status: 'open' },
            { id: 'f4', customerId: 'cust-04', status: 'shipped' },
          ],
        }),
      );
    });
    await new Promise<void>((resolve) => feed.listen(0, '127.0.0.1', resolve));
    try {
      const feedUrl = `http://127.0.0.1:${(feed.address() as AddressInfo).port}/orders.json`;
      const runId = await engine.start('orders-feed', { feedUrl });
      const run = await engine.waitForRun(runId);
      expect(run.status).toBe('succeeded');
      const { rows: children } = await env.pool.query(
        `SELECT r.id, r.input, r.status, r.output, r.trigger FROM runs r WHERE r.parent_run_id = $1
          ORDER BY r.input->>'customerId'`,
        [runId],
      );
      // One child invoice run per customer with open orders, each finished before the batch was.
      expect(children.map((r) => [r.input, r.status])).toEqual([
        [{ customerId: 'cust-02' }, 'succeeded'],
        [{ customerId: 'cust-03' }, 'succeeded'],
      ]);
      expect(children[0].trigger).toMatchObject({ type: 'parent', runId, stepId: 'invoices' });
      expect(run.output).toEqual({
        customers: ['cust-02', 'cust-03'],
        invoiceCount: 2,
        invoiced: children.map((c) => ({
          customerId: c.input.customerId,
          invoiceNumber: c.output.invoiceNumber,
          emailedTo: c.output.emailedTo,
        })),
      });
      expect(smtp.received.filter((m) => m.envelope.to.includes('grace@example.com'))).toHaveLength(1);
    } finally {
      await new Promise((r) => feed.close(r));
    }
  });

  it('voids the invoice when the e-mail is refused for good (compensation)', async () => {
    const runId = await engine.start('invoice', { customerId: 'cust-05' });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('compensated');
    expect(run.error).toMatchObject({ stepId: 'sendEmail', code: 'EMAIL_REJECTED', nonRetryable: true });
    const invoice = await env.pool.query('SELECT status, voided_at FROM invoices WHERE run_id = $1', [runId]);
    expect(invoice.rows).toEqual([{ status: 'void', voided_at: expect.any(Date) }]);
    const steps = await env.pool.query(
      'SELECT step_id, kind, status FROM step_executions WHERE run_id = $1 ORDER BY created_at',
      [runId],
    );
    expect(steps.rows).toEqual([
      { step_id: 'fetchOrders', kind: 'action', status: 'succeeded' },
      { step_id: 'createInvoice', kind: 'action', status: 'compensated' },
      { step_id: 'generatePdf', kind: 'action', status: 'succeeded' },
      { step_id: 'sendEmail', kind: 'action', status: 'failed' },
      { step_id: 'createInvoice', kind: 'compensation', status: 'succeeded' },
    ]);
  });

  it('retrying a compensated run issues a new invoice instead of reusing the voided one', async () => {
    const runId = await engine.start('invoice', { customerId: 'cust-05' });
    expect((await engine.waitForRun(runId)).status).toBe('compensated');
    refused.length = 0; // the mailbox accepts mail again
    await engine.coordinator.handle({ type: 'run.retry', runId, attempt: 0 });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    const invoices = await env.pool.query(
      'SELECT id, number, status FROM invoices WHERE run_id = $1 ORDER BY issued_at',
      [runId],
    );
    expect(invoices.rows.map((r) => r.status)).toEqual(['void', 'issued']);
    expect(run.output.invoiceId).toBe(invoices.rows[1].id);
    const mail = smtp.received.find((m) => m.mail.subject?.includes(invoices.rows[1].number));
    expect(mail?.envelope.to).toEqual(['edsger@example.com']);
  });
});
