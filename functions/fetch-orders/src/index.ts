import { defineFunction, NonRetryableError, type FunctionDefinition } from '@baton/sdk';
import type pg from 'pg';
import { z } from 'zod';
import { ErrorCode } from './error-codes';

export const FETCH_ORDERS = 'fetch-orders';

export const fetchOrdersInput = z.object({ customerId: z.string().trim().min(1).max(200) });
export type FetchOrdersInput = z.infer<typeof fetchOrdersInput>;

export interface Customer {
  id: string;
  name: string;
  email: string;
  address: string | null;
}

export interface Order {
  id: string;
  description: string;
  quantity: number;
  unitPriceCents: number;
  amountCents: number;
  currency: string;
}

export interface FetchOrdersOutput {
  customer: Customer;
  orders: Order[];
}

interface OrderRow {
  id: string;
  description: string;
  quantity: number;
  unit_price_cents: number;
  currency: string;
}

export function toOrder(row: OrderRow): Order {
  return {
    id: row.id,
    description: row.description,
    quantity: row.quantity,
    unitPriceCents: row.unit_price_cents,
    amountCents: row.quantity * row.unit_price_cents,
    currency: row.currency,
  };
}

/** First step of the invoice workflow: the customer and the orders still open for them. */
export function createFetchOrders(deps: { pool: pg.Pool }): FunctionDefinition<FetchOrdersInput, FetchOrdersOutput> {
  return defineFunction({
    name: FETCH_ORDERS,
    description: "Reads a customer and their open orders (the invoice's lines)",
    input: fetchOrdersInput,
    handler: async ({ customerId }, ctx) => {
      const customers = await deps.pool.query<Customer>(
        'SELECT id, name, email, address FROM customers WHERE id = $1',
        [customerId],
      );
      const customer = customers.rows[0];
      if (!customer) throw new NonRetryableError(ErrorCode.CUSTOMER_NOT_FOUND, `customer '${customerId}' not found`);

      const orders = await deps.pool.query<OrderRow>(
        `SELECT id, description, quantity, unit_price_cents, currency
           FROM orders
          WHERE customer_id = $1 AND status = 'open'
          ORDER BY ordered_at, id`,
        [customerId],
      );
      if (orders.rows.length === 0) {
        throw new NonRetryableError(ErrorCode.NO_OPEN_ORDERS, `customer '${customerId}' has no open orders to invoice`);
      }
      ctx.log.info('fetched open orders', { customerId, orders: orders.rows.length });
      return {
        customer: { id: customer.id, name: customer.name, email: customer.email, address: customer.address },
        orders: orders.rows.map(toOrder),
      };
    },
  });
}
