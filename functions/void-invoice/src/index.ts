import { defineFunction, NonRetryableError, type FunctionDefinition } from '@baton/sdk';
import type pg from 'pg';
import { z } from 'zod';
import { ErrorCode } from './error-codes';

export const VOID_INVOICE = 'void-invoice';

export const voidInvoiceInput = z.object({ invoiceId: z.uuid() });
export type VoidInvoiceInput = z.infer<typeof voidInvoiceInput>;

export interface VoidInvoiceOutput {
  invoiceId: string;
  status: 'void';
}

/**
 * Compensation of create-invoice: an issued invoice is voided, never deleted (its number stays
 * used). Idempotent: voiding a void invoice keeps its first voided_at and succeeds.
 */
export function createVoidInvoice(deps: { pool: pg.Pool }): FunctionDefinition<VoidInvoiceInput, VoidInvoiceOutput> {
  return defineFunction({
    name: VOID_INVOICE,
    description: 'Voids an invoice (compensation of create-invoice)',
    input: voidInvoiceInput,
    handler: async ({ invoiceId }, ctx) => {
      const { rows } = await deps.pool.query<{ number: string; already_void: boolean }>(
        // The CTE sees the row before the update, so the log can tell a first void from a repeat.
        `WITH prev AS (SELECT id, status FROM invoices WHERE id = $1 FOR UPDATE)
         UPDATE invoices i
            SET status = 'void', voided_at = COALESCE(i.voided_at, now())
           FROM prev
          WHERE i.id = prev.id
      RETURNING i.number, prev.status = 'void' AS already_void`,
        [invoiceId],
      );
      const row = rows[0];
      if (!row) throw new NonRetryableError(ErrorCode.INVOICE_NOT_FOUND, `invoice '${invoiceId}' not found`);
      ctx.log.info(row.already_void ? 'invoice was already void' : 'invoice voided', {
        invoiceId,
        number: row.number,
      });
      return { invoiceId, status: 'void' };
    },
  });
}
