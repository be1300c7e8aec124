import { coordinatorQueue, createPool, type CoordinatorClient, type Pool } from '@baton/engine';
import request from 'supertest';
import { createTestEnv, freePort, withDatabase, type TestEnv } from '../support/env';
import { testApp } from '../support/gateway';

/**
 * Found by the chaos suite ("PostgreSQL down for 2 minutes under load"): while PostgreSQL was
 * unreachable the gateway answered 500 INTERNAL, which a client must treat as "unknown" (maybe
 * started). Nothing was written, so the answer is now 503 DATABASE_UNAVAILABLE: a definite refusal
 * the client may send again (with its idempotency key).
 */
describe('gateway while PostgreSQL is unreachable', () => {
  let env: TestEnv;
  let coordinator: CoordinatorClient;
  let deadPool: Pool;

  beforeAll(async () => {
    env = await createTestEnv('gateway-database-bounds');
    coordinator = coordinatorQueue(env.queues);
    // Nothing listens on this port: every connection is refused at once.
    deadPool = createPool(withDatabase(`postgres://postgres@127.0.0.1:${await freePort()}/x`, 'x'), { max: 2 });
  });

  afterAll(async () => {
    await deadPool?.end().catch(() => undefined);
    await coordinator?.close();
    await env?.cleanup();
  });

  it('answers reads and run starts with 503 DATABASE_UNAVAILABLE, saying nothing was done', async () => {
    const app = testApp(env, coordinator, { deps: { pool: deadPool } });
    for (const call of [
      request(app).get('/v1/runs'),
      request(app)
        .post('/v1/workflows/invoice/runs')
        .send({ input: { customerId: 'cust-01' } }),
      request(app).post('/invoice/start').send({ customerId: 'cust-01' }),
    ]) {
      const res = await call;
      expect({ status: res.status, code: res.body.error?.code }).toEqual({ status: 503, code: 'DATABASE_UNAVAILABLE' });
      expect(res.body.error.message).toMatch(/PostgreSQL is unavailable .*nothing was done; try again/);
    }
  });

  it('still answers a bug with 500 INTERNAL', async () => {
    // The same app on the real database: a failure that is not about availability stays a 500.
    const broken = { query: async () => Promise.reject(new Error('column "nope" does not exist')) } as unknown as Pool;
    const app = testApp(env, coordinator, { deps: { pool: broken } });
    const res = await request(app).get('/v1/runs');
    expect({ status: res.status, code: res.body.error?.code }).toEqual({ status: 500, code: 'INTERNAL' });
  });
});
