import type { Express } from 'express';
import request from 'supertest';
import type { TestEnv } from '../support/env';
import { useGatewaySuite } from '../support/gateway-suite';

/**
 * Run tags (issue #18): given at start, resolved from the definition's `tags:` templates for every
 * trigger, validated by path, stored in runs.tags and filtered by `GET /v1/runs?tag=k:v` through
 * the GIN index runs_tags (migration 008). Real PostgreSQL and Redis, no coordinator.
 */

const TAGGED = {
  name: 'tagged',
  input: { type: 'object' },
  triggers: [{ http: {} }, { event: { name: 'order.placed' } }],
  tags: {
    customer: '{{ input.customerId }}',
    amount: '{{ input.amount }}',
    region: '{{ input.region }}',
    source: 'tagged-workflow',
  },
  steps: [{ id: 'only', function: 'say-hello' }],
};

describe('gateway HTTP API: run tags', () => {
  const suite = useGatewaySuite('gateway-tags');
  let env: TestEnv;
  let app: Express;
  beforeAll(async () => {
    ({ env, app } = suite);
    await request(app).put('/v1/workflows/tagged').send(TAGGED).expect(201);
  });

  const start = (body: object, workflow = 'greet') => request(app).post(`/v1/workflows/${workflow}/runs`).send(body);
  const list = (tags: string[], extra: Record<string, string> = {}) =>
    request(app)
      .get('/v1/runs')
      .query({ ...extra, tag: tags })
      .expect(200);

  it('stores the tags given at start and shows them in the run and the list', async () => {
    const res = await start({ input: { name: 'Ada' }, tags: { customer: 'cust-01', tier: 'gold' } }).expect(202);
    const run = await request(app).get(res.body.statusUrl).expect(200);
    expect(run.body.tags).toEqual({ customer: 'cust-01', tier: 'gold' });
    const untagged = await start({ input: { name: 'Bob' } }).expect(202);
    expect((await request(app).get(untagged.body.statusUrl).expect(200)).body.tags).toEqual({});
    const legacy = await request(app)
      .post('/invoice/start')
      .send({ customerId: 'cust-02', tags: { customer: 'cust-02' } })
      .expect(202);
    const { rows } = await env.pool.query('SELECT tags FROM runs WHERE id = $1', [legacy.body.runId]);
    expect(rows[0].tags).toEqual({ customer: 'cust-02' });
  });

  it('refuses bad tags with a 400 naming tags.<key>', async () => {
    const badKey = await start({ input: { name: 'Ada' }, tags: { Customer: 'x' } }).expect(400);
    expect(badKey.body.error).toMatchObject({ code: 'INVALID_REQUEST' });
    expect(badKey.body.error.details[0].path).toBe('tags.Customer');
    expect(badKey.body.error.details[0].message).toMatch(/lowercase/);
    const badValue = await start({ input: { name: 'Ada' }, tags: { note: 'x'.repeat(257), n: 3 } }).expect(400);
    expect(badValue.body.error.details.map((d: { path: string }) => d.path).sort()).toEqual(['tags.n', 'tags.note']);
    const many = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v']));
    const tooMany = await start({ input: { name: 'Ada' }, tags: many }).expect(400);
    expect(tooMany.body.error.details).toEqual([{ path: 'tags', message: 'at most 20 tags' }]);
  });

  it("resolves the definition's templates under explicit tags; a failing one is a 400 on an API start", async () => {
    const res = await start({ input: { customerId: 'cust-07', amount: 12.5, region: null } }, 'tagged').expect(202);
    const run = await request(app).get(res.body.statusUrl).expect(200);
    // A number is stringified, null is left out, a plain string is a constant.
    expect(run.body.tags).toEqual({ customer: 'cust-07', amount: '12.5', source: 'tagged-workflow' });
    const explicit = await start({ input: { customerId: 'cust-07' }, tags: { customer: 'override' } }, 'tagged').expect(
      202,
    );
    expect((await request(app).get(explicit.body.statusUrl).expect(200)).body.tags).toEqual({
      customer: 'override',
      source: 'tagged-workflow',
    });
    const bad = await start({ input: { customerId: { nested: true } } }, 'tagged').expect(400);
    expect(bad.body.error.details).toEqual([{ path: 'tags.customer', message: expect.stringMatching(/not a string/) }]);
  });

  it('an event-started run gets the templates; a failing one drops the tag, never the run', async () => {
    const ok = await request(app)
      .post('/v1/events/order.placed')
      .send({ payload: { customerId: 'cust-09', amount: 3 } })
      .expect(202);
    const bad = await request(app)
      .post('/v1/events/order.placed')
      .send({ payload: { customerId: ['not', 'a', 'string'] } })
      .expect(202);
    const { rows } = await env.pool.query('SELECT id, tags FROM runs WHERE id = ANY($1::uuid[])', [
      [...ok.body.runIds, ...bad.body.runIds],
    ]);
    const byId = new Map(rows.map((r) => [r.id, r.tags]));
    expect(byId.get(ok.body.runIds[0])).toEqual({ customer: 'cust-09', amount: '3', source: 'tagged-workflow' });
    expect(byId.get(bad.body.runIds[0])).toEqual({ source: 'tagged-workflow' });
  });

  it('GET /v1/runs?tag= filters by one tag, by two (all must match), with other filters and cursors', async () => {
    for (const [customer, tier] of [
      ['acme', 'gold'],
      ['acme', 'silver'],
      ['acme', 'gold'],
      ['globex', 'gold'],
    ]) {
      await start({ input: { name: 'x' }, tags: { customer, tier } }).expect(202);
    }
    const acme = await list(['customer:acme']);
    expect(acme.body.runs).toHaveLength(3);
    expect(acme.body.runs.every((r: { tags: Record<string, string> }) => r.tags.customer === 'acme')).toBe(true);
    const both = await list(['customer:acme', 'tier:gold']);
    expect(both.body.runs.map((r: { tags: object }) => r.tags)).toEqual([
      { customer: 'acme', tier: 'gold' },
      { customer: 'acme', tier: 'gold' },
    ]);
    const paged = await list(['customer:acme'], { limit: '2', workflow: 'greet' });
    expect(paged.body.runs).toHaveLength(2);
    const rest = await list(['customer:acme'], { limit: '2', workflow: 'greet', cursor: paged.body.nextCursor });
    expect(rest.body.runs).toHaveLength(1);
    expect(rest.body.nextCursor).toBeNull();
    expect((await list(['customer:acme'], { workflow: 'tagged' })).body.runs).toEqual([]);
    const bad = await request(app).get('/v1/runs').query({ tag: 'no-colon' }).expect(400);
    expect(bad.body.error).toMatchObject({ code: 'INVALID_QUERY', details: [{ path: 'tag' }] });
  });

  it('the tag filter is served by the GIN index runs_tags, first page and next ones alike', async () => {
    // Each customer on 0.1% of the runs, each run a distinct tags object (as with an order id).
    await env.pool.query(
      `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger, tags, created_at)
       SELECT gen_random_uuid(), 'greet', 1, 'succeeded', '{}', '{"type":"http"}',
              jsonb_build_object('customer', 'bulk-' || (i % 1000), 'order', 'o-' || i), now() - i * interval '1 s'
         FROM generate_series(1, 10000) i`,
    );
    await env.pool.query('ANALYZE runs');
    const plan = async (cursor: string) => {
      const { rows } = await env.pool.query(
        `EXPLAIN SELECT id FROM runs WHERE tags @> '{"customer":"bulk-7"}'::jsonb ${cursor}
          ORDER BY created_at DESC, id DESC LIMIT 21`,
      );
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    };
    expect(await plan('')).toMatch(/Bitmap Index Scan on runs_tags/);
    expect(await plan(`AND (created_at, id) < (now() - interval '1 h', gen_random_uuid())`)).toMatch(
      /Bitmap Index Scan on runs_tags/,
    );
  });
});
