import request from 'supertest';
import { z } from 'zod';
import { defineFunction, saveDefinition, type Pool } from '@baton/engine';
import { startEngine, type Engine } from '../support/engine';
import { waitFor } from '../support/env';
import { UUID, useGatewaySuite } from '../support/gateway-suite';

/**
 * The read side of forEach fan-out, repeat and child workflows through the gateway, on runs the real
 * coordinator and function runtime made: a forEach step's counts and first items in the run detail,
 * its items paged through `GET /v1/runs/:id/steps/:stepId/items`, a repeat step's iterations, and the
 * links between a parent run and its children (`childRunId`, `parentRunId`, `?parentRunId=`,
 * `?topLevel=true`).
 */

const work = defineFunction({
  name: 'gfo-work',
  input: z.object({ value: z.number(), ms: z.number().default(0) }),
  handler: async ({ value, ms }) => {
    if (ms) await new Promise((resolve) => setTimeout(resolve, ms));
    return { doubled: value * 2 };
  },
});

const polls = new Map<string, number>();
const poll = defineFunction({
  name: 'gfo-poll',
  input: z.object({ key: z.string() }),
  handler: async ({ key }) => {
    const n = (polls.get(key) ?? 0) + 1;
    polls.set(key, n);
    return { n, done: n >= 3 };
  },
});

const fast = { attempts: 1 };
const ITEMS = 30;
const CONCURRENCY = 3;

interface Item {
  index: number;
  executionId: string;
  status: string;
  attempts: number;
  childRunId?: string;
  output?: unknown;
}

/** pool.query calls made through the returned pool. */
function countingPool(pool: Pool): { pool: Pool; count: () => number } {
  let n = 0;
  const counted = new Proxy(pool, {
    get(target, prop) {
      if (prop === 'query') {
        return (...args: unknown[]) => {
          n += 1;
          return (target.query as (...a: unknown[]) => unknown)(...args);
        };
      }
      const value: unknown = Reflect.get(target, prop);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { pool: counted, count: () => n };
}

describe('gateway: forEach, repeat and child runs', () => {
  const suite = useGatewaySuite('gateway-fan-out');

  describe('with the coordinator and functions running', () => {
    let engine: Engine;

    beforeAll(async () => {
      engine = await startEngine(suite.env, [work, poll]);
      await saveDefinition(suite.env.pool, {
        name: 'gfo-each',
        steps: [
          { id: 'first', function: 'gfo-work', input: { value: 1 }, retry: fast },
          {
            id: 'each',
            forEach: '{{ input.values }}',
            concurrency: CONCURRENCY,
            function: 'gfo-work',
            input: { value: '{{ item }}', ms: '{{ input.ms }}' },
            retry: fast,
          },
        ],
      });
      await saveDefinition(suite.env.pool, {
        name: 'gfo-child',
        input: { type: 'object', required: ['value'] },
        steps: [{ id: 'work', function: 'gfo-work', input: { value: '{{ input.value }}' }, retry: fast }],
        output: { result: '{{ steps.work.output.doubled }}' },
      });
      await saveDefinition(suite.env.pool, {
        name: 'gfo-parent',
        steps: [
          { id: 'one', workflow: 'gfo-child', input: { value: 21 } },
          { id: 'many', forEach: '{{ [1, 2, 3] }}', workflow: 'gfo-child', input: { value: '{{ item }}' } },
        ],
      });
      await saveDefinition(suite.env.pool, {
        name: 'gfo-poll',
        steps: [
          {
            id: 'poll',
            function: 'gfo-poll',
            input: { key: '{{ input.key }}' },
            repeat: { until: 'output.done', maxIterations: 5 },
            retry: fast,
          },
        ],
      });
    });

    afterAll(async () => {
      await engine?.close();
    });

    const values = Array.from({ length: ITEMS }, (_, i) => i + 1);

    describe('a 30-item forEach', () => {
      let runId: string;

      beforeAll(async () => {
        runId = await engine.start('gfo-each', { values, ms: 40 });
      });

      it('shows its counts while the items run, at most `concurrency` in flight', async () => {
        const seen = await waitFor(
          async () => {
            const res = await request(suite.app).get(`/v1/runs/${runId}`).expect(200);
            const step = res.body.steps.find((s: { id: string }) => s.id === 'each');
            return step?.fanout && step.fanout.pending > 0 && step.fanout.running > 0 ? step : undefined;
          },
          20_000,
          'the forEach step with items pending and in flight',
        );
        const f = seen.fanout;
        expect(f).toMatchObject({ mode: 'forEach', total: ITEMS, concurrency: CONCURRENCY, compensated: 0 });
        expect(f.running).toBeLessThanOrEqual(CONCURRENCY);
        expect(f.pending + f.running + f.succeeded + f.failed + f.cancelled + f.compensated).toBe(ITEMS);
        expect(seen.items.some((i: Item) => i.status === 'pending')).toBe(true);
      });

      it('shows the step once with its counts and first 20 items when done', async () => {
        const run = await engine.waitForRun(runId);
        expect(run.status).toBe('succeeded');
        const res = await request(suite.app).get(`/v1/runs/${runId}`).expect(200);
        // The steps' own executions only: the 30 items are not steps.
        expect(res.body.steps.map((s: { id: string }) => s.id)).toEqual(['first', 'each']);
        expect(res.body).toMatchObject({ parentRunId: null, parentStepId: null, depth: 0 });
        const step = res.body.steps[1];
        expect(step).toMatchObject({ status: 'succeeded', function: 'gfo-work' });
        expect(step.childRunId).toBeUndefined();
        expect(step.output).toEqual(values.map((v) => ({ doubled: v * 2 })));
        expect(step.fanout).toEqual({
          mode: 'forEach',
          total: ITEMS,
          pending: 0,
          running: 0,
          succeeded: ITEMS,
          failed: 0,
          cancelled: 0,
          compensated: 0,
          concurrency: CONCURRENCY,
        });
        expect(step.items.map((i: Item) => i.index)).toEqual([...Array(20).keys()]);
        for (const item of step.items as Item[]) {
          expect(item).toEqual({
            index: item.index,
            executionId: expect.stringMatching(UUID),
            status: 'succeeded',
            attempts: 1,
            output: { doubled: values[item.index] * 2 },
            startedAt: expect.any(String),
            finishedAt: expect.any(String),
          });
        }
        expect(typeof step.itemsNext).toBe('string');
        // A plain step has neither counts nor items.
        expect(res.body.steps[0]).not.toHaveProperty('fanout');
        expect(res.body.steps[0]).not.toHaveProperty('items');
      });

      it('costs the same number of queries as a run without items', async () => {
        const counted = countingPool(suite.env.pool);
        const app = suite.appWith({}, counted.pool);
        await request(app).get(`/v1/runs/${runId}`).expect(200);
        const withItems = counted.count();
        const plain = await engine.start('gfo-child', { value: 1 });
        await engine.waitForRun(plain);
        const before = counted.count();
        await request(app).get(`/v1/runs/${plain}`).expect(200);
        expect(withItems).toBe(counted.count() - before);
        expect(withItems).toBeLessThanOrEqual(4);
      });

      it('pages every item exactly once, in index order, at any page size', async () => {
        for (const limit of [1, 7, 30, 500]) {
          const indexes: number[] = [];
          let cursor: string | undefined;
          let pages = 0;
          do {
            const res = await request(suite.app)
              .get(`/v1/runs/${runId}/steps/each/items`)
              .query({ limit, ...(cursor ? { cursor } : {}) })
              .expect(200);
            indexes.push(...res.body.items.map((i: Item) => i.index));
            cursor = res.body.next;
            pages += 1;
          } while (cursor && pages < 100);
          expect(indexes).toEqual([...Array(ITEMS).keys()]);
          expect(pages).toBe(Math.ceil(ITEMS / limit));
        }
        // The default page holds them all; the run's itemsNext goes on after its first 20.
        const all = await request(suite.app).get(`/v1/runs/${runId}/steps/each/items`).expect(200);
        expect(all.body.items).toHaveLength(ITEMS);
        expect(all.body).not.toHaveProperty('next');
        const detail = await request(suite.app).get(`/v1/runs/${runId}`).expect(200);
        const rest = await request(suite.app)
          .get(`/v1/runs/${runId}/steps/each/items`)
          .query({ cursor: detail.body.steps[1].itemsNext })
          .expect(200);
        expect(rest.body.items.map((i: Item) => i.index)).toEqual([...Array(10).keys()].map((i) => i + 20));
        expect(rest.body.items).toEqual(all.body.items.slice(20));
      });

      it('refuses a bad cursor or limit naming it, and answers 404 for a run or step without items', async () => {
        const cases: [string, string, string][] = [
          ['cursor=garbage', 'INVALID_CURSOR', 'cursor'],
          [`cursor=${Buffer.from('{"i":-1}').toString('base64url')}`, 'INVALID_CURSOR', 'cursor'],
          [`cursor=${Buffer.from('{"t":"2024-01-01"}').toString('base64url')}`, 'INVALID_CURSOR', 'cursor'],
          ['limit=0', 'INVALID_QUERY', 'limit'],
          ['limit=501', 'INVALID_QUERY', 'limit'],
          ['limit=many', 'INVALID_QUERY', 'limit'],
        ];
        for (const [query, code, path] of cases) {
          const res = await request(suite.app).get(`/v1/runs/${runId}/steps/each/items?${query}`).expect(400);
          expect(res.body.error).toMatchObject({ code, details: [{ path }] });
        }
        const unknownRun = '00000000-0000-4000-8000-000000000000';
        const missing = await request(suite.app).get(`/v1/runs/${unknownRun}/steps/each/items`).expect(404);
        expect(missing.body.error).toEqual({ code: 'NOT_FOUND', message: `run '${unknownRun}' not found` });
        for (const step of ['first', 'nope']) {
          const res = await request(suite.app).get(`/v1/runs/${runId}/steps/${step}/items`).expect(404);
          expect(res.body.error.code).toBe('NOT_FOUND');
          expect(res.body.error.message).toContain(`'${step}'`);
        }
        await request(suite.app).get('/v1/runs/not-a-uuid/steps/each/items').expect(400);
      });
    });

    it('shows a repeat step’s iterations as its items', async () => {
      const runId = await engine.start('gfo-poll', { key: 'p1' });
      expect((await engine.waitForRun(runId)).status).toBe('succeeded');
      const res = await request(suite.app).get(`/v1/runs/${runId}`).expect(200);
      const step = res.body.steps[0];
      expect(step.fanout).toMatchObject({ mode: 'repeat', total: 3, succeeded: 3, running: 0, pending: 0 });
      expect(step.items.map((i: Item) => [i.index, i.status, i.output])).toEqual([
        [0, 'succeeded', { n: 1, done: false }],
        [1, 'succeeded', { n: 2, done: false }],
        [2, 'succeeded', { n: 3, done: true }],
      ]);
      expect(step).not.toHaveProperty('itemsNext');
      const items = await request(suite.app).get(`/v1/runs/${runId}/steps/poll/items?limit=2`).expect(200);
      expect(items.body.items.map((i: Item) => i.index)).toEqual([0, 1]);
      const rest = await request(suite.app)
        .get(`/v1/runs/${runId}/steps/poll/items`)
        .query({ cursor: items.body.next })
        .expect(200);
      expect(rest.body).toEqual({ items: [step.items[2]] });
    });

    describe('child runs', () => {
      let parentId: string;
      let childIds: string[];

      beforeAll(async () => {
        parentId = await engine.start('gfo-parent', {});
        expect((await engine.waitForRun(parentId)).status).toBe('succeeded');
      });

      it('link parent and children both ways', async () => {
        const parent = (await request(suite.app).get(`/v1/runs/${parentId}`).expect(200)).body;
        const [one, many] = parent.steps;
        expect(one.childRunId).toMatch(UUID);
        expect(one).not.toHaveProperty('fanout');
        expect(many.fanout).toMatchObject({ mode: 'forEach', total: 3, succeeded: 3 });
        expect(many).not.toHaveProperty('childRunId');
        const itemChildren = (many.items as Item[]).map((i) => i.childRunId);
        expect(itemChildren).toEqual([
          expect.stringMatching(UUID),
          expect.stringMatching(UUID),
          expect.stringMatching(UUID),
        ]);
        childIds = [one.childRunId, ...(itemChildren as string[])];
        expect(new Set(childIds).size).toBe(4);
        for (const [i, id] of childIds.entries()) {
          const child = (await request(suite.app).get(`/v1/runs/${id}`).expect(200)).body;
          expect(child).toMatchObject({
            workflow: 'gfo-child',
            status: 'succeeded',
            parentRunId: parentId,
            parentStepId: i === 0 ? 'one' : 'many',
            depth: 1,
          });
          // The child's output is its step's (or item's) output.
          expect(child.output).toEqual(i === 0 ? one.output : many.output[i - 1]);
        }
      });

      it('GET /v1/runs?parentRunId= lists exactly the children, paged, and combines with filters', async () => {
        const all = await request(suite.app).get('/v1/runs').query({ parentRunId: parentId, limit: 100 }).expect(200);
        expect(all.body.runs.map((r: { id: string }) => r.id).sort()).toEqual([...childIds].sort());
        expect(all.body.nextCursor).toBeNull();
        for (const run of all.body.runs) expect(run).toMatchObject({ parentRunId: parentId, depth: 1 });

        const paged: string[] = [];
        let cursor: string | null = null;
        do {
          const res: request.Response = await request(suite.app)
            .get('/v1/runs')
            .query({ parentRunId: parentId, limit: 1, ...(cursor ? { cursor } : {}) })
            .expect(200);
          paged.push(...res.body.runs.map((r: { id: string }) => r.id));
          cursor = res.body.nextCursor;
        } while (cursor && paged.length < 10);
        expect(paged).toEqual(all.body.runs.map((r: { id: string }) => r.id));

        const failed = await request(suite.app).get('/v1/runs').query({ parentRunId: parentId, status: 'failed' });
        expect(failed.body.runs).toEqual([]);
        const byWorkflow = await request(suite.app)
          .get('/v1/runs')
          .query({ parentRunId: parentId, workflow: 'gfo-child', status: 'succeeded', limit: 100 })
          .expect(200);
        expect(byWorkflow.body.runs).toHaveLength(4);
        // A run without children has none; the children have none either.
        const none = await request(suite.app).get('/v1/runs').query({ parentRunId: childIds[0] }).expect(200);
        expect(none.body).toEqual({ runs: [], nextCursor: null });
      });

      it('GET /v1/runs?topLevel=true leaves the children out', async () => {
        const top = await request(suite.app).get('/v1/runs').query({ topLevel: 'true', limit: 100 }).expect(200);
        const ids = top.body.runs.map((r: { id: string }) => r.id);
        expect(ids).toContain(parentId);
        for (const id of childIds) expect(ids).not.toContain(id);
        for (const run of top.body.runs) expect(run).toMatchObject({ parentRunId: null, depth: 0 });
        const topChildren = await request(suite.app)
          .get('/v1/runs')
          .query({ topLevel: 'true', workflow: 'gfo-child', limit: 100 })
          .expect(200);
        // Only the plain gfo-child run the query-count test started, none of the children.
        for (const run of topChildren.body.runs) expect(childIds).not.toContain(run.id);
        const everything = await request(suite.app)
          .get('/v1/runs')
          .query({ topLevel: 'false', limit: 100 })
          .expect(200);
        expect(everything.body.runs.map((r: { id: string }) => r.id)).toEqual(expect.arrayContaining(childIds));
        // Paging a top-level listing: one run a page, the same runs in the same order.
        const paged: string[] = [];
        let cursor: string | null = null;
        do {
          const res: request.Response = await request(suite.app)
            .get('/v1/runs')
            .query({ topLevel: 'true', limit: 2, ...(cursor ? { cursor } : {}) })
            .expect(200);
          paged.push(...res.body.runs.map((r: { id: string }) => r.id));
          cursor = res.body.nextCursor;
        } while (cursor && paged.length < 200);
        expect(paged).toEqual(ids);
      });

      it('refuses a bad parentRunId or topLevel, and both at once', async () => {
        const cases: [Record<string, string>, string][] = [
          [{ parentRunId: 'nope' }, 'parentRunId'],
          [{ topLevel: 'yes' }, 'topLevel'],
          [{ topLevel: 'true', parentRunId: parentId }, 'topLevel'],
        ];
        for (const [query, path] of cases) {
          const res = await request(suite.app).get('/v1/runs').query(query).expect(400);
          expect(res.body.error).toMatchObject({ code: 'INVALID_QUERY', details: [{ path }] });
        }
      });

      it('says so when the other end of a link was deleted (retention deletes runs on their own schedule)', async () => {
        const parent = await engine.start('gfo-parent', {});
        expect((await engine.waitForRun(parent)).status).toBe('succeeded');
        const [one, many] = (await request(suite.app).get(`/v1/runs/${parent}`).expect(200)).body.steps;
        const itemChild = (many.items as Item[])[0].childRunId as string;
        expect(one).not.toHaveProperty('childRunDeleted');
        // A child deleted first: the parent's step and item still name it, and say it is gone.
        await suite.env.pool.query('DELETE FROM runs WHERE id = ANY($1::uuid[])', [[one.childRunId, itemChild]]);
        const after = (await request(suite.app).get(`/v1/runs/${parent}`).expect(200)).body.steps;
        expect(after[0]).toMatchObject({ childRunId: one.childRunId, childRunDeleted: true });
        expect(after[1].items[0]).toMatchObject({ childRunId: itemChild, childRunDeleted: true });
        expect(after[1].items[1]).not.toHaveProperty('childRunDeleted');
        // A parent deleted first: its remaining children say so.
        const survivor = (after[1].items as Item[])[1].childRunId as string;
        expect((await request(suite.app).get(`/v1/runs/${survivor}`).expect(200)).body).not.toHaveProperty(
          'parentRunDeleted',
        );
        await suite.env.pool.query('DELETE FROM runs WHERE id = $1', [parent]);
        const orphan = (await request(suite.app).get(`/v1/runs/${survivor}`).expect(200)).body;
        expect(orphan).toMatchObject({ parentRunId: parent, parentRunDeleted: true });
      });
    });
  });
});
