import crypto from 'node:crypto';
import { defineFunction, NonRetryableError, type FunctionDefinition } from '@baton/sdk';
import type pg from 'pg';
import { z } from 'zod';
import { ErrorCode } from './error-codes';
import { invoiceFilename, renderInvoicePdf, type InvoiceDocument } from './pdf';

export * from './pdf';

export const GENERATE_PDF = 'generate-pdf';

export const generatePdfInput = z.object({ invoiceId: z.uuid() });
export type GeneratePdfInput = z.infer<typeof generatePdfInput>;

export interface GeneratePdfOutput {
  documentId: string;
  filename: string;
  sizeBytes: number;
}

/** invoices.lines as create-invoice writes them; checked because it crosses a process boundary. */
const storedLines = z.array(
  z.object({
    orderId: z.string(),
    description: z.string(),
    quantity: z.number().int(),
    unitPriceCents: z.number().int(),
    amountCents: z.number().int(),
  }),
);

interface InvoiceRow {
  number: string;
  status: 'issued' | 'void';
  lines: unknown;
  subtotal_cents: number;
  tax_cents: number;
  total_cents: number;
  currency: string;
  issued_at: Date;
  customer_id: string;
  customer_name: string;
  customer_email: string;
  customer_address: string | null;
}

interface DocumentRow {
  id: string;
  filename: string;
  size_bytes: number;
}

/** Reads an invoice and its customer into the renderer's model. */
export async function loadInvoiceDocument(pool: pg.Pool, invoiceId: string): Promise<InvoiceDocument> {
  const { rows } = await pool.query<InvoiceRow>(
    `SELECT i.number, i.status, i.lines, i.subtotal_cents, i.tax_cents, i.total_cents, i.currency, i.issued_at,
            c.id AS customer_id, c.name AS customer_name, c.email AS customer_email, c.address AS customer_address
       FROM invoices i JOIN customers c ON c.id = i.customer_id
      WHERE i.id = $1`,
    [invoiceId],
  );
  const row = rows[0];
  if (!row) throw new NonRetryableError(ErrorCode.INVOICE_NOT_FOUND, `invoice '${invoiceId}' not found`);
  if (row.status === 'void') throw new NonRetryableError(ErrorCode.INVOICE_VOID, `invoice ${row.number} is void`);
  const lines = storedLines.safeParse(row.lines);
  if (!lines.success) {
    throw new NonRetryableError(
      ErrorCode.INVOICE_INVALID,
      `invoice ${row.number} has malformed lines: ${lines.error.message}`,
    );
  }
  return {
    number: row.number,
    issuedAt: row.issued_at,
    customer: {
      id: row.customer_id,
      name: row.customer_name,
      email: row.customer_email,
      address: row.customer_address,
    },
    lines: lines.data,
    subtotalCents: row.subtotal_cents,
    taxCents: row.tax_cents,
    totalCents: row.total_cents,
    currency: row.currency,
  };
}

function toOutput(row: DocumentRow): GeneratePdfOutput {
  return { documentId: row.id, filename: row.filename, sizeBytes: row.size_bytes };
}

/**
 * Renders the invoice PDF into the documents table; the step output carries only its id. Keyed on
 * ctx.idempotencyKey: a repeated attempt returns the stored document instead of adding another.
 */
export function createGeneratePdf(deps: { pool: pg.Pool }): FunctionDefinition<GeneratePdfInput, GeneratePdfOutput> {
  const byKey = async (key: string): Promise<DocumentRow | undefined> =>
    (
      await deps.pool.query<DocumentRow>('SELECT id, filename, size_bytes FROM documents WHERE idempotency_key = $1', [
        key,
      ])
    ).rows[0];

  return defineFunction({
    name: GENERATE_PDF,
    description: 'Renders the invoice as a PDF and stores it as a document',
    input: generatePdfInput,
    handler: async ({ invoiceId }, ctx) => {
      const existing = await byKey(ctx.idempotencyKey);
      if (existing) {
        ctx.log.info('invoice PDF already stored by an earlier attempt', { documentId: existing.id });
        return toOutput(existing);
      }

      const invoice = await loadInvoiceDocument(deps.pool, invoiceId);
      const pdf = await renderInvoicePdf(invoice);
      // A timed-out attempt must not store anything after the runtime has reported it failed.
      ctx.signal.throwIfAborted();
      const filename = invoiceFilename(invoice.number);
      const { rows } = await deps.pool.query<DocumentRow>(
        `INSERT INTO documents (id, run_id, idempotency_key, filename, content_type, size_bytes, content)
         VALUES ($1, $2, $3, $4, 'application/pdf', $5, $6)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING id, filename, size_bytes`,
        [crypto.randomUUID(), ctx.runId, ctx.idempotencyKey, filename, pdf.length, pdf],
      );
      const stored = rows[0] ?? (await byKey(ctx.idempotencyKey));
      if (!stored) throw new Error(`document for idempotency key '${ctx.idempotencyKey}' vanished`);
      ctx.log.info(rows[0] ? 'invoice PDF stored' : 'invoice PDF stored by a concurrent attempt', {
        documentId: stored.id,
        invoiceId,
        number: invoice.number,
        sizeBytes: stored.size_bytes,
      });
      return toOutput(stored);
    },
  });
}
