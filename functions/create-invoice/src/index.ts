import crypto from 'node:crypto';
import { defineFunction, NonRetryableError, type FunctionDefinition } from '@baton/sdk';
import type pg from 'pg';
import { z } from 'zod';
import { ErrorCode } from './error-codes';

export const CREATE_INVOICE = 'create-invoice';

/**
 * VAT applied to the invoice subtotal (20 %). Tax is computed once on the subtotal, not per line,
 * in integer cents, rounded half up to the cent (commercial rounding), so the printed
 * subtotal + VAT always equals the total.
 */
export const TAX_RATE = 0.2;
const TAX_RATE_BASIS_POINTS = Math.round(TAX_RATE * 10_000);

/** PostgreSQL's foreign_key_violation (SQLSTATE 23503): the customer row is missing. */
const FOREIGN_KEY_VIOLATION = '23503';

/** invoices.*_cents are PostgreSQL `integer`. */
const MAX_CENTS = 2_147_483_647;

const cents = z.number().int().min(0).max(MAX_CENTS);

export const invoiceCustomer = z.object({
  id: z.string().min(1),
  name: z.string().min(1),
  email: z.string().min(1),
  address: z.string().nullable(),
});

export const invoiceOrder = z
  .object({
    id: z.string().min(1),
    description: z.string().min(1),
    quantity: z.number().int().positive(),
    unitPriceCents: cents,
    amountCents: cents,
    currency: z.string().regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as EUR'),
  })
  .refine((o) => o.amountCents === o.quantity * o.unitPriceCents, {
    message: 'amountCents must equal quantity × unitPriceCents',
    path: ['amountCents'],
  });

/** The output of fetch-orders. */
export const createInvoiceInput = z.object({
  customer: invoiceCustomer,
  orders: z.array(invoiceOrder).min(1),
});
export type CreateInvoiceInput = z.infer<typeof createInvoiceInput>;

/** One row of invoices.lines (jsonb); generate-pdf reads the same shape. */
export interface InvoiceLine {
  orderId: string;
  description: string;
  quantity: number;
  unitPriceCents: number;
  amountCents: number;
}

export interface InvoiceTotals {
  lines: InvoiceLine[];
  subtotalCents: number;
  taxCents: number;
  totalCents: number;
  currency: string;
}

export interface CreateInvoiceOutput {
  invoiceId: string;
  number: string;
  customerId: string;
  totalCents: number;
  currency: string;
}

/** VAT on an amount in cents, rounded half up to a whole cent, in integer arithmetic. */
export function taxFor(subtotalCents: number): number {
  return Math.floor((subtotalCents * TAX_RATE_BASIS_POINTS + 5_000) / 10_000);
}

/** Lines and totals of an invoice. Throws NonRetryableError when the orders cannot form one. */
export function computeInvoice(orders: CreateInvoiceInput['orders']): InvoiceTotals {
  if (orders.length === 0) throw new NonRetryableError(ErrorCode.NO_OPEN_ORDERS, 'an invoice needs at least one order');
  const currencies = [...new Set(orders.map((o) => o.currency))];
  if (currencies.length > 1) {
    throw new NonRetryableError(
      ErrorCode.MIXED_CURRENCIES,
      `orders are in several currencies (${currencies.join(', ')})`,
    );
  }
  const lines = orders.map((o) => ({
    orderId: o.id,
    description: o.description,
    quantity: o.quantity,
    unitPriceCents: o.unitPriceCents,
    amountCents: o.quantity * o.unitPriceCents,
  }));
  const subtotalCents = lines.reduce((sum, l) => sum + l.amountCents, 0);
  const taxCents = taxFor(subtotalCents);
  const totalCents = subtotalCents + taxCents;
  if (totalCents > MAX_CENTS) {
    throw new NonRetryableError(ErrorCode.INVOICE_TOO_LARGE, `invoice total ${totalCents} cents exceeds ${MAX_CENTS}`);
  }
  return { lines, subtotalCents, taxCents, totalCents, currency: currencies[0] };
}

/** `INV-2025-000042`: the sequence is zero-padded to six digits and keeps growing past them. */
export function formatInvoiceNumber(year: number, sequence: number): string {
  return `INV-${year}-${String(sequence).padStart(6, '0')}`;
}

interface InvoiceRow {
  id: string;
  number: string;
  customer_id: string;
  total_cents: number;
  currency: string;
}

const RETURNING = 'id, number, customer_id, total_cents, currency';

function toOutput(row: InvoiceRow): CreateInvoiceOutput {
  return {
    invoiceId: row.id,
    number: row.number,
    customerId: row.customer_id,
    totalCents: row.total_cents,
    currency: row.currency,
  };
}

/**
 * Issues the invoice for fetch-orders' output. Keyed on ctx.idempotencyKey: another attempt of the
 * same step (a retry, a redelivered job, a retried run) returns the invoice the first one created.
 */
export function createCreateInvoice(deps: {
  pool: pg.Pool;
}): FunctionDefinition<CreateInvoiceInput, CreateInvoiceOutput> {
  const byKey = async (key: string): Promise<InvoiceRow | undefined> =>
    (await deps.pool.query<InvoiceRow>(`SELECT ${RETURNING} FROM invoices WHERE idempotency_key = $1`, [key])).rows[0];

  return defineFunction({
    name: CREATE_INVOICE,
    description: 'Computes lines, VAT and total from the orders and issues a numbered invoice',
    input: createInvoiceInput,
    handler: async ({ customer, orders }, ctx) => {
      // Checked first so that a repeated attempt does not burn an invoice number.
      const existing = await byKey(ctx.idempotencyKey);
      if (existing) {
        ctx.log.info('invoice already issued by an earlier attempt', {
          invoiceId: existing.id,
          number: existing.number,
        });
        return toOutput(existing);
      }

      const totals = computeInvoice(orders);
      const issuedAt = new Date();
      // nextval is a bigint, which pg returns as a string.
      const { rows } = await deps.pool.query<{ n: string }>("SELECT nextval('invoice_number_seq') AS n");
      const number = formatInvoiceNumber(issuedAt.getUTCFullYear(), Number(rows[0].n));
      let inserted: InvoiceRow | undefined;
      try {
        const result = await deps.pool.query<InvoiceRow>(
          `INSERT INTO invoices (id, number, customer_id, lines, subtotal_cents, tax_cents, total_cents, currency,
                                 idempotency_key, run_id, issued_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
           ON CONFLICT (idempotency_key) DO NOTHING
           RETURNING ${RETURNING}`,
          [
            crypto.randomUUID(),
            number,
            customer.id,
            JSON.stringify(totals.lines),
            totals.subtotalCents,
            totals.taxCents,
            totals.totalCents,
            totals.currency,
            ctx.idempotencyKey,
            ctx.runId,
            issuedAt,
          ],
        );
        inserted = result.rows[0];
      } catch (err) {
        if ((err as { code?: string }).code === FOREIGN_KEY_VIOLATION) {
          throw new NonRetryableError(ErrorCode.CUSTOMER_NOT_FOUND, `customer '${customer.id}' not found`, {
            cause: err,
          });
        }
        throw err;
      }
      if (!inserted) {
        // A concurrent attempt with the same key won the insert; its invoice is the one.
        const winner = await byKey(ctx.idempotencyKey);
        if (!winner) throw new Error(`invoice for idempotency key '${ctx.idempotencyKey}' vanished`);
        ctx.log.info('invoice issued by a concurrent attempt', { invoiceId: winner.id, number: winner.number });
        return toOutput(winner);
      }
      ctx.log.info('invoice issued', {
        invoiceId: inserted.id,
        number: inserted.number,
        customerId: customer.id,
        lines: totals.lines.length,
        subtotalCents: totals.subtotalCents,
        taxCents: totals.taxCents,
        totalCents: totals.totalCents,
        currency: totals.currency,
      });
      return toOutput(inserted);
    },
  });
}
