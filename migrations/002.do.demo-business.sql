-- Business tables of the reference invoice workflow. Their rows come from seeds/demo.sql
-- (npm run dev), never from a migration, so production databases start empty.

CREATE TABLE customers (
  id          text        PRIMARY KEY,
  name        text        NOT NULL,
  email       text        NOT NULL,
  address     text,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
  id                text        PRIMARY KEY,
  customer_id       text        NOT NULL REFERENCES customers (id),
  description       text        NOT NULL,
  quantity          integer     NOT NULL CHECK (quantity > 0),
  unit_price_cents  integer     NOT NULL CHECK (unit_price_cents >= 0),
  currency          text        NOT NULL DEFAULT 'EUR',
  status            text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cancelled')),
  ordered_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX orders_by_customer ON orders (customer_id) WHERE status = 'open';

CREATE SEQUENCE invoice_number_seq;

CREATE TABLE invoices (
  id               uuid        PRIMARY KEY,
  number           text        NOT NULL UNIQUE,
  customer_id      text        NOT NULL REFERENCES customers (id),
  status           text        NOT NULL DEFAULT 'issued' CHECK (status IN ('issued', 'void')),
  lines            jsonb       NOT NULL,
  subtotal_cents   integer     NOT NULL,
  tax_cents        integer     NOT NULL,
  total_cents      integer     NOT NULL,
  currency         text        NOT NULL,
  -- runId:stepId of the creating step: a second attempt returns the first invoice.
  idempotency_key  text        NOT NULL UNIQUE,
  run_id           uuid,
  issued_at        timestamptz NOT NULL DEFAULT now(),
  voided_at        timestamptz
);
