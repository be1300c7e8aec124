-- Demo data for the reference invoice workflow. Idempotent: safe to run on every `npm run dev`.
INSERT INTO customers (id, name, email, address) VALUES
  ('cust-01', 'Ada Lovelace Ltd', 'ada@example.com', '12 Analytical Row, London'),
  ('cust-02', 'Grace Hopper GmbH', 'grace@example.com', 'Compilerweg 5, Berlin'),
  ('cust-03', 'Alan Turing SARL', 'alan@example.com', '7 rue Enigma, Paris'),
  ('cust-04', 'Katherine Johnson Inc', 'katherine@example.com', '1 Orbit Ave, Hampton VA'),
  ('cust-05', 'Edsger Dijkstra BV', 'edsger@example.com', 'Kortstepad 3, Amsterdam')
ON CONFLICT (id) DO NOTHING;

INSERT INTO orders (id, customer_id, description, quantity, unit_price_cents, currency) VALUES
  ('ord-0101', 'cust-01', 'Difference engine gears', 4, 12500, 'EUR'),
  ('ord-0102', 'cust-01', 'Punch cards (box of 500)', 2, 3999, 'EUR'),
  ('ord-0103', 'cust-01', 'Consulting: note G review', 1, 45000, 'EUR'),
  ('ord-0201', 'cust-02', 'Compiler licence', 1, 99900, 'EUR'),
  ('ord-0202', 'cust-02', 'Moth trap', 3, 1250, 'EUR'),
  ('ord-0301', 'cust-03', 'Rotor set', 5, 7800, 'EUR'),
  ('ord-0302', 'cust-03', 'Paper tape', 10, 450, 'EUR'),
  ('ord-0401', 'cust-04', 'Trajectory review', 2, 60000, 'EUR'),
  ('ord-0501', 'cust-05', 'Semaphore kit', 6, 2100, 'EUR'),
  ('ord-0502', 'cust-05', 'Shortest-path workshop', 1, 30000, 'EUR')
ON CONFLICT (id) DO NOTHING;
