import crypto from 'node:crypto';
import { NonRetryableError } from '@baton/workflow';
import nodemailer from 'nodemailer';
import { createCreateInvoice, type CreateInvoiceOutput } from '../../functions/create-invoice/src/index';
import { createFetchOrders, type FetchOrdersOutput } from '../../functions/fetch-orders/src/index';
import { createGeneratePdf } from '../../functions/generate-pdf/src/index';
import { createSendEmail, DEFAULT_MAIL_FROM, parseSendEmailConfig } from '../../functions/send-email/src/index';
import { createVoidInvoice } from '../../functions/void-invoice/src/index';
import { createTestContext } from '../support/context';
import { pdfText, startSmtp, type TestSmtp } from '../support/mail';
import { createTestEnv, type TestEnv } from '../support/env';
import { closedPort, failure } from '../support/failures';

function transportTo(port: number) {
  const { smtpUrl, from } = parseSendEmailConfig({ SMTP_URL: `smtp://127.0.0.1:${port}` });
  return { transport: nodemailer.createTransport({ url: smtpUrl, connectionTimeout: 5_000 }), from };
}

describe('invoice step functions against PostgreSQL and SMTP', () => {
  let env: TestEnv;
  let fetchOrders: ReturnType<typeof createFetchOrders>;
  let createInvoice: ReturnType<typeof createCreateInvoice>;
  let voidInvoice: ReturnType<typeof createVoidInvoice>;
  let generatePdf: ReturnType<typeof createGeneratePdf>;

  beforeAll(async () => {
    env = await createTestEnv('functions');
    fetchOrders = createFetchOrders({ pool: env.pool });
    createInvoice = createCreateInvoice({ pool: env.pool });
    voidInvoice = createVoidInvoice({ pool: env.pool });
    generatePdf = createGeneratePdf({ pool: env.pool });
  });
  afterAll(() => env.cleanup());

  const ordersOf = async (customerId: string): Promise<FetchOrdersOutput> =>
    fetchOrders.handler(fetchOrders.input.parse({ customerId }), createTestContext({ stepId: 'orders' }));

  /** A fresh invoice for cust-01, as a new run's create-invoice step would issue it. */
  const issueInvoice = async (): Promise<CreateInvoiceOutput> =>
    createInvoice.handler(
      createInvoice.input.parse(await ordersOf('cust-01')),
      createTestContext({ stepId: 'invoice' }),
    );

  describe('fetch-orders', () => {
    it("returns cust-01 and their open orders with line amounts, logging to the run's log", async () => {
      const ctx = createTestContext({ stepId: 'orders' });
      const output = await fetchOrders.handler({ customerId: 'cust-01' }, ctx);
      expect(output.customer).toEqual({
        id: 'cust-01',
        name: 'Ada Lovelace Ltd',
        email: 'ada@example.com',
        address: '12 Analytical Row, London',
      });
      expect(output.orders).toEqual([
        {
          id: 'ord-0101',
          description: 'Difference engine gears',
          quantity: 4,
          unitPriceCents: 12500,
          amountCents: 50000,
          currency: 'EUR',
        },
        {
          id: 'ord-0102',
          description: 'Punch cards (box of 500)',
          quantity: 2,
          unitPriceCents: 3999,
          amountCents: 7998,
          currency: 'EUR',
        },
        {
          id: 'ord-0103',
          description: 'Consulting: note G review',
          quantity: 1,
          unitPriceCents: 45000,
          amountCents: 45000,
          currency: 'EUR',
        },
      ]);
      expect(ctx.lines).toContainEqual({
        level: 'info',
        message: 'fetched open orders',
        data: { customerId: 'cust-01', orders: 3 },
      });
      // The output is exactly what create-invoice accepts.
      expect(createInvoice.input.safeParse(output).success).toBe(true);
    });

    it('fails for good on an unknown customer', async () => {
      const error = await failure(fetchOrders.handler({ customerId: 'cust-404' }, createTestContext()));
      expect(error).toBeInstanceOf(NonRetryableError);
      expect(error.code).toBe('CUSTOMER_NOT_FOUND');
      expect(error.message).toBe("customer 'cust-404' not found");
    });

    it('fails for good when the customer has nothing open to invoice', async () => {
      await env.pool.query(
        "INSERT INTO customers (id, name, email) VALUES ('cust-empty', 'Empty Shelf Ltd', 'empty@example.com')",
      );
      const error = await failure(fetchOrders.handler({ customerId: 'cust-empty' }, createTestContext()));
      expect(error).toBeInstanceOf(NonRetryableError);
      expect(error.code).toBe('NO_OPEN_ORDERS');
    });

    it('rejects input without a customer id', () => {
      expect(fetchOrders.input.safeParse({}).success).toBe(false);
      expect(fetchOrders.input.safeParse({ customerId: '' }).success).toBe(false);
    });
  });

  describe('create-invoice', () => {
    it('issues one numbered invoice per idempotency key, however often the step runs', async () => {
      const input = createInvoice.input.parse(await ordersOf('cust-01'));
      const ctx = createTestContext({ stepId: 'invoice' });
      const first = await createInvoice.handler(input, ctx);
      expect(first).toEqual({
        invoiceId: expect.any(String),
        number: expect.stringMatching(new RegExp(`^INV-${new Date().getUTCFullYear()}-\\d{6}$`)),
        customerId: 'cust-01',
        totalCents: 123_598,
        currency: 'EUR',
      });

      const retry = await createInvoice.handler(input, { ...ctx, attempt: 2 });
      expect(retry).toEqual(first);
      const { rows } = await env.pool.query(
        'SELECT id, number, status, lines, subtotal_cents, tax_cents, total_cents, run_id FROM invoices WHERE idempotency_key = $1',
        [ctx.idempotencyKey],
      );
      expect(rows).toEqual([
        {
          id: first.invoiceId,
          number: first.number,
          status: 'issued',
          lines: [
            {
              orderId: 'ord-0101',
              description: 'Difference engine gears',
              quantity: 4,
              unitPriceCents: 12500,
              amountCents: 50000,
            },
            {
              orderId: 'ord-0102',
              description: 'Punch cards (box of 500)',
              quantity: 2,
              unitPriceCents: 3999,
              amountCents: 7998,
            },
            {
              orderId: 'ord-0103',
              description: 'Consulting: note G review',
              quantity: 1,
              unitPriceCents: 45000,
              amountCents: 45000,
            },
          ],
          subtotal_cents: 102_998,
          tax_cents: 20_600,
          total_cents: 123_598,
          run_id: ctx.runId,
        },
      ]);

      // The repeat did not use up an invoice number: the next run's invoice gets the next one.
      const next = await createInvoice.handler(input, createTestContext({ stepId: 'invoice' }));
      expect(next.invoiceId).not.toBe(first.invoiceId);
      expect(Number(next.number.slice(-6))).toBe(Number(first.number.slice(-6)) + 1);
    });

    it('returns the same invoice to attempts racing on one key', async () => {
      const input = createInvoice.input.parse(await ordersOf('cust-02'));
      const ctx = createTestContext({ stepId: 'invoice' });
      // Open the connections first, so that the attempts overlap instead of queueing for one.
      await Promise.all([1, 2, 3, 4, 5].map(() => env.pool.query('SELECT pg_sleep(0.05)')));
      const outputs = await Promise.all(
        [1, 2, 3, 4].map((attempt) => createInvoice.handler(input, { ...ctx, attempt })),
      );
      expect(new Set(outputs.map((o) => o.invoiceId)).size).toBe(1);
      const { rows } = await env.pool.query('SELECT count(*)::int AS n FROM invoices WHERE idempotency_key = $1', [
        ctx.idempotencyKey,
      ]);
      expect(rows[0].n).toBe(1);
      expect(ctx.lines.map((l) => l.message)).toContain('invoice issued by a concurrent attempt');
    });

    it('fails for good when the customer does not exist', async () => {
      const input = createInvoice.input.parse(await ordersOf('cust-03'));
      const ghost = { ...input, customer: { ...input.customer, id: 'cust-ghost' } };
      const error = await failure(createInvoice.handler(ghost, createTestContext()));
      expect(error).toBeInstanceOf(NonRetryableError);
      expect(error.code).toBe('CUSTOMER_NOT_FOUND');
    });
  });

  describe('void-invoice', () => {
    it('voids an invoice once and succeeds again on a repeat', async () => {
      const invoice = await issueInvoice();
      const ctx = createTestContext({ stepId: 'invoice', kind: 'compensation' });
      expect(ctx.idempotencyKey).toMatch(/:invoice:compensate$/);
      expect(await voidInvoice.handler({ invoiceId: invoice.invoiceId }, ctx)).toEqual({
        invoiceId: invoice.invoiceId,
        status: 'void',
      });
      const read = async () =>
        (await env.pool.query('SELECT status, voided_at FROM invoices WHERE id = $1', [invoice.invoiceId])).rows[0];
      const voided = await read();
      expect(voided.status).toBe('void');
      expect(voided.voided_at).toBeInstanceOf(Date);

      expect(await voidInvoice.handler({ invoiceId: invoice.invoiceId }, ctx)).toEqual({
        invoiceId: invoice.invoiceId,
        status: 'void',
      });
      expect(await read()).toEqual(voided); // the first voided_at is kept
      expect(ctx.lines.map((l) => l.message)).toEqual(['invoice voided', 'invoice was already void']);
    });

    it('fails for good on an unknown invoice', async () => {
      const error = await failure(voidInvoice.handler({ invoiceId: crypto.randomUUID() }, createTestContext()));
      expect(error).toBeInstanceOf(NonRetryableError);
      expect(error.code).toBe('INVOICE_NOT_FOUND');
      expect(voidInvoice.input.safeParse({ invoiceId: 'not-a-uuid' }).success).toBe(false);
    });
  });

  describe('generate-pdf', () => {
    it('stores the invoice PDF once per idempotency key', async () => {
      const invoice = await issueInvoice();
      const ctx = createTestContext({ stepId: 'pdf' });
      const output = await generatePdf.handler({ invoiceId: invoice.invoiceId }, ctx);
      expect(output).toEqual({
        documentId: expect.any(String),
        filename: `${invoice.number}.pdf`,
        sizeBytes: expect.any(Number),
      });

      const { rows } = await env.pool.query(
        'SELECT run_id, filename, content_type, size_bytes, content FROM documents WHERE id = $1',
        [output.documentId],
      );
      const doc = rows[0];
      expect(doc).toMatchObject({
        run_id: ctx.runId,
        filename: `${invoice.number}.pdf`,
        content_type: 'application/pdf',
        size_bytes: output.sizeBytes,
      });
      expect(doc.content.length).toBe(output.sizeBytes);
      expect(doc.content.subarray(0, 5).toString('latin1')).toBe('%PDF-');
      const text = await pdfText(doc.content);
      for (const expected of [
        'Ada Lovelace Ltd',
        'cust-01',
        invoice.number,
        'Difference engine gears',
        'Total EUR 1,235.98',
      ]) {
        expect(text).toContain(expected);
      }

      expect(await generatePdf.handler({ invoiceId: invoice.invoiceId }, { ...ctx, attempt: 2 })).toEqual(output);
      const count = await env.pool.query('SELECT count(*)::int AS n FROM documents WHERE idempotency_key = $1', [
        ctx.idempotencyKey,
      ]);
      expect(count.rows[0].n).toBe(1);
    });

    it('fails for good on an unknown or void invoice', async () => {
      const unknown = await failure(generatePdf.handler({ invoiceId: crypto.randomUUID() }, createTestContext()));
      expect(unknown).toBeInstanceOf(NonRetryableError);
      expect(unknown.code).toBe('INVOICE_NOT_FOUND');

      const invoice = await issueInvoice();
      await voidInvoice.handler({ invoiceId: invoice.invoiceId }, createTestContext({ kind: 'compensation' }));
      const voided = await failure(generatePdf.handler({ invoiceId: invoice.invoiceId }, createTestContext()));
      expect(voided).toBeInstanceOf(NonRetryableError);
      expect(voided.code).toBe('INVOICE_VOID');
    });
  });

  describe('send-email', () => {
    let smtp: TestSmtp;
    beforeAll(async () => {
      smtp = await startSmtp();
    });
    afterAll(() => smtp.close());

    const invoiceWithPdf = async () => {
      const invoice = await issueInvoice();
      const pdf = await generatePdf.handler({ invoiceId: invoice.invoiceId }, createTestContext({ stepId: 'pdf' }));
      return { invoice, pdf };
    };

    it('mails the PDF to the customer with a Message-ID derived from the idempotency key', async () => {
      const { invoice, pdf } = await invoiceWithPdf();
      const { transport, from } = transportTo(smtp.port);
      const sendEmail = createSendEmail({ pool: env.pool, transport, from });
      const ctx = createTestContext({ stepId: 'email' });
      const before = smtp.received.length;

      const output = await sendEmail.handler({ invoiceId: invoice.invoiceId, documentId: pdf.documentId }, ctx);
      transport.close();
      const expectedId = `<${ctx.runId}.email@baton>`;
      expect(output).toEqual({ messageId: expectedId, to: 'ada@example.com' });

      expect(smtp.received).toHaveLength(before + 1);
      const { envelope, mail } = smtp.received[before];
      expect(envelope).toEqual({ from: 'invoices@baton.local', to: ['ada@example.com'] });
      expect(mail.messageId).toBe(expectedId);
      expect(mail.from?.text).toBe(DEFAULT_MAIL_FROM.replace('Baton Invoices', '"Baton Invoices"'));
      expect(mail.to && !Array.isArray(mail.to) ? mail.to.value.map((a) => a.address) : []).toEqual([
        'ada@example.com',
      ]);
      expect(mail.subject).toContain(invoice.number);
      expect(mail.text).toContain('EUR 1,235.98');
      expect(mail.html).toContain('EUR 1,235.98');

      expect(mail.attachments).toHaveLength(1);
      const [attachment] = mail.attachments;
      expect(attachment.contentType).toBe('application/pdf');
      expect(attachment.filename).toBe(`${invoice.number}.pdf`);
      expect(attachment.size).toBe(pdf.sizeBytes);
      expect(await pdfText(attachment.content)).toContain(invoice.number);
      expect(ctx.lines.map((l) => l.message)).toContain('invoice e-mail sent');
    });

    it('fails for good when the SMTP server rejects the recipient with a 5xx reply', async () => {
      const rejecting = await startSmtp({ rejectRecipientsWith: 550 });
      try {
        const { invoice, pdf } = await invoiceWithPdf();
        const { transport, from } = transportTo(rejecting.port);
        const sendEmail = createSendEmail({ pool: env.pool, transport, from });
        const error = await failure(
          sendEmail.handler({ invoiceId: invoice.invoiceId, documentId: pdf.documentId }, createTestContext()),
        );
        transport.close();
        expect(error).toBeInstanceOf(NonRetryableError);
        expect(error.code).toBe('EMAIL_REJECTED');
        expect(error.details).toMatchObject({ responseCode: 550 });
        expect(rejecting.received).toHaveLength(0);
      } finally {
        await rejecting.close();
      }
    });

    it('stays retryable on a 4xx reply and when the server cannot be reached', async () => {
      const deferring = await startSmtp({ rejectRecipientsWith: 451 });
      try {
        const { invoice, pdf } = await invoiceWithPdf();
        const input = { invoiceId: invoice.invoiceId, documentId: pdf.documentId };
        for (const port of [deferring.port, await closedPort()]) {
          const { transport, from } = transportTo(port);
          const error = await failure(
            createSendEmail({ pool: env.pool, transport, from }).handler(input, createTestContext()),
          );
          transport.close();
          expect(error).not.toBeInstanceOf(NonRetryableError);
          expect(error.retryable).toBe(true);
          expect(error.code).toBe('EMAIL_SEND_FAILED');
        }
      } finally {
        await deferring.close();
      }
    });

    it('fails for good on a missing document', async () => {
      const invoice = await issueInvoice();
      const { transport, from } = transportTo(smtp.port);
      const error = await failure(
        createSendEmail({ pool: env.pool, transport, from }).handler(
          { invoiceId: invoice.invoiceId, documentId: crypto.randomUUID() },
          createTestContext(),
        ),
      );
      transport.close();
      expect(error).toBeInstanceOf(NonRetryableError);
      expect(error.code).toBe('DOCUMENT_NOT_FOUND');
    });
  });
});
