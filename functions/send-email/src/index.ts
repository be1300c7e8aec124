import { defineFunction, NonRetryableError, type FunctionDefinition } from '@baton/sdk';
import type pg from 'pg';
import type { SMTPSentMessageInfo, Transporter } from 'nodemailer';
import { z } from 'zod';
import { ErrorCode } from './error-codes';
import { classifySendError, composeInvoiceEmail, messageIdFor } from './email';

export * from './email';

export const SEND_EMAIL = 'send-email';

export const sendEmailInput = z.object({ invoiceId: z.uuid(), documentId: z.uuid() });
export type SendEmailInput = z.infer<typeof sendEmailInput>;

export interface SendEmailOutput {
  messageId: string;
  to: string;
}

export interface SendEmailDeps {
  pool: pg.Pool;
  transport: Transporter<SMTPSentMessageInfo>;
  /** The From header, e.g. `Baton Invoices <invoices@baton.local>`. */
  from: string;
}

interface InvoiceRow {
  number: string;
  status: 'issued' | 'void';
  total_cents: number;
  tax_cents: number;
  currency: string;
  issued_at: Date;
  customer_name: string;
  customer_email: string;
}

interface DocumentRow {
  filename: string;
  content_type: string;
  content: Buffer;
}

/**
 * E-mails the invoice PDF to the customer. The Message-ID comes from ctx.idempotencyKey, so a
 * re-sent message (a retry after the server accepted it but before the step reported) is the same
 * message to the recipient's client.
 */
export function createSendEmail(deps: SendEmailDeps): FunctionDefinition<SendEmailInput, SendEmailOutput> {
  return defineFunction({
    name: SEND_EMAIL,
    description: 'E-mails the invoice PDF to the customer over SMTP',
    input: sendEmailInput,
    handler: async ({ invoiceId, documentId }, ctx) => {
      const invoices = await deps.pool.query<InvoiceRow>(
        `SELECT i.number, i.status, i.total_cents, i.tax_cents, i.currency, i.issued_at,
                c.name AS customer_name, c.email AS customer_email
           FROM invoices i JOIN customers c ON c.id = i.customer_id
          WHERE i.id = $1`,
        [invoiceId],
      );
      const invoice = invoices.rows[0];
      if (!invoice) throw new NonRetryableError(ErrorCode.INVOICE_NOT_FOUND, `invoice '${invoiceId}' not found`);
      if (invoice.status === 'void')
        throw new NonRetryableError(ErrorCode.INVOICE_VOID, `invoice ${invoice.number} is void`);

      const documents = await deps.pool.query<DocumentRow>(
        'SELECT filename, content_type, content FROM documents WHERE id = $1',
        [documentId],
      );
      const document = documents.rows[0];
      if (!document) throw new NonRetryableError(ErrorCode.DOCUMENT_NOT_FOUND, `document '${documentId}' not found`);

      const email = composeInvoiceEmail({
        number: invoice.number,
        issuedAt: invoice.issued_at,
        customerName: invoice.customer_name,
        totalCents: invoice.total_cents,
        taxCents: invoice.tax_cents,
        currency: invoice.currency,
      });
      const messageId = messageIdFor(ctx.idempotencyKey);
      const to = invoice.customer_email;
      if (ctx.attempt > 1) ctx.log.info('sending again with the same Message-ID', { messageId, attempt: ctx.attempt });

      let info: SMTPSentMessageInfo;
      try {
        info = await deps.transport.sendMail({
          from: deps.from,
          to,
          subject: email.subject,
          text: email.text,
          html: email.html,
          messageId,
          attachments: [{ filename: document.filename, content: document.content, contentType: document.content_type }],
          // Cancels the SMTP session when the attempt times out or the run is cancelled.
          signal: ctx.signal,
        });
      } catch (err) {
        throw classifySendError(err);
      }
      ctx.log.info('invoice e-mail sent', {
        to,
        messageId: info.messageId,
        number: invoice.number,
        attachment: document.filename,
        response: info.response,
      });
      return { messageId: info.messageId, to };
    },
  });
}
