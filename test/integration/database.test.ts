import { createTestEnv, type TestEnv } from '../support/env';

describe('database migrations and seed', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv('database');
  });
  afterAll(() => env.cleanup());

  it('creates the engine and demo tables and loads five customers with e-mail addresses', async () => {
    const { rows } = await env.pool.query<{ id: string; email: string }>('SELECT id, email FROM customers ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual(['cust-01', 'cust-02', 'cust-03', 'cust-04', 'cust-05']);
    for (const row of rows) expect(row.email).toMatch(/^[^@\s]+@[^@\s]+$/);
    const tables = await env.pool.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
    );
    expect(tables.rows.map((r) => r.table_name)).toEqual(
      expect.arrayContaining([
        'runs',
        'step_executions',
        'step_attempts',
        'run_logs',
        'workflow_definitions',
        'documents',
        'events',
        'invoices',
        'orders',
      ]),
    );
  });
});
