import crypto from 'node:crypto';
import type { Express } from 'express';
import request, { type Response } from 'supertest';
import { saveDefinition } from '@baton/engine';
import type { TestEnv } from '../support/env';
import { useGatewaySuite } from '../support/gateway-suite';

/**
 * Reading runs: GET /v1/runs/:id, its logs, and GET /v1/runs. The setup (a real PostgreSQL and
 * Redis, no coordinator) is test/support/gateway-suite.ts; this suite has its own database and
 * Redis prefix.
 */

describe('gateway HTTP API: reading and listing runs', () => {
  const suite = useGatewaySuite('gateway-runs');
  let env: TestEnv;
  let app: Express;
  beforeAll(() => {
    ({ env, app } = suite);
  });

  describe('reading a run', () => {
    let runId: string;
    const exec = {
      fetch: crypto.randomUUID(),
      bill: crypto.randomUUID(),
      voidBill: crypto.randomUUID(),
    };

    beforeAll(async () => {
      const res = await request(app)
        .post('/v1/workflows/greet/runs')
        .send({ input: { name: 'Ada' } })
        .expect(202);
      runId = res.body.runId;
      const policy = JSON.stringify({ attempts: 3 });
      // Inserted out of order: the API orders by created_at.
      await env.pool.query(
        `INSERT INTO step_executions (id, run_id, step_id, kind, function_name, status, output, error, attempt,
                                      max_attempts, retry_policy, created_at, queued_at, started_at, finished_at)
         VALUES
          ($2, $1, 'bye', 'action', 'say-bye', 'failed', NULL, '{"code":"BOOM","message":"no"}', 1, 1, $5,
           '2024-05-01T10:00:05Z', '2024-05-01T10:00:05Z', '2024-05-01T10:00:06Z', '2024-05-01T10:00:07Z'),
          ($3, $1, 'hello', 'action', 'say-hello', 'succeeded', '{"greeting":"hi"}', NULL, 2, 3, $5,
           '2024-05-01T10:00:00.123456Z', '2024-05-01T10:00:00.123456Z', '2024-05-01T10:00:01Z', '2024-05-01T10:00:04Z'),
          ($4, $1, 'hello', 'compensation', 'un-hello', 'queued', NULL, NULL, 0, 3, $5,
           '2024-05-01T10:00:08Z', '2024-05-01T10:00:08Z', NULL, NULL)`,
        [runId, exec.bill, exec.fetch, exec.voidBill, policy],
      );
      await env.pool.query(
        `INSERT INTO step_attempts (step_execution_id, attempt, status, worker_id, error, started_at, finished_at) VALUES
          ($1, 2, 'succeeded', 'w-2', NULL, '2024-05-01T10:00:03Z', '2024-05-01T10:00:04Z'),
          ($1, 1, 'failed', 'w-1', '{"code":"FLAKY","message":"try again"}', '2024-05-01T10:00:01Z', '2024-05-01T10:00:02Z'),
          ($2, 1, 'failed', 'w-1', '{"code":"BOOM","message":"no"}', '2024-05-01T10:00:06Z', '2024-05-01T10:00:07Z')`,
        [exec.fetch, exec.bill],
      );
      await env.pool.query(
        `INSERT INTO run_logs (run_id, step_execution_id, step_id, level, message, data, time) VALUES
          ($1, $2, 'hello', 'info', 'l1', '{"n":1}', '2024-05-01T10:00:01Z'),
          ($1, $2, 'hello', 'debug', 'l2', NULL, '2024-05-01T10:00:02Z'),
          ($1, $2, 'hello', 'warn', 'l3', NULL, '2024-05-01T10:00:03Z'),
          ($1, $3, 'bye', 'error', 'l4', '{"code":"BOOM"}', '2024-05-01T10:00:06Z'),
          ($1, NULL, NULL, 'info', 'l5', NULL, '2024-05-01T10:00:07Z')`,
        [runId, exec.fetch, exec.bill],
      );
    });

    it('GET /v1/runs/:id returns the run with steps, attempts and compensations', async () => {
      const res = await request(app).get(`/v1/runs/${runId}`).expect(200);
      expect(res.body).toEqual({
        id: runId,
        workflow: 'greet',
        workflowVersion: 1,
        status: 'pending',
        input: { name: 'Ada' },
        output: null,
        error: null,
        trigger: { type: 'http', route: '/v1/workflows/:name/runs', requestId: expect.any(String) },
        idempotencyKey: null,
        createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        startedAt: null,
        finishedAt: null,
        parentRunId: null,
        parentStepId: null,
        depth: 0,
        tags: {},
        forkedFrom: null,
        priority: 5,
        steps: [
          {
            id: 'hello',
            executionId: exec.fetch,
            function: 'say-hello',
            status: 'succeeded',
            attempts: 2,
            maxAttempts: 3,
            queuedAt: '2024-05-01T10:00:00.123Z',
            startedAt: '2024-05-01T10:00:01.000Z',
            finishedAt: '2024-05-01T10:00:04.000Z',
            error: null,
            output: { greeting: 'hi' },
            attemptHistory: [
              {
                attempt: 1,
                status: 'failed',
                workerId: 'w-1',
                startedAt: '2024-05-01T10:00:01.000Z',
                finishedAt: '2024-05-01T10:00:02.000Z',
                error: { code: 'FLAKY', message: 'try again' },
              },
              {
                attempt: 2,
                status: 'succeeded',
                workerId: 'w-2',
                startedAt: '2024-05-01T10:00:03.000Z',
                finishedAt: '2024-05-01T10:00:04.000Z',
                error: null,
              },
            ],
          },
          {
            id: 'bye',
            executionId: exec.bill,
            function: 'say-bye',
            status: 'failed',
            attempts: 1,
            maxAttempts: 1,
            queuedAt: '2024-05-01T10:00:05.000Z',
            startedAt: '2024-05-01T10:00:06.000Z',
            finishedAt: '2024-05-01T10:00:07.000Z',
            error: { code: 'BOOM', message: 'no' },
            output: null,
            attemptHistory: [
              {
                attempt: 1,
                status: 'failed',
                workerId: 'w-1',
                startedAt: '2024-05-01T10:00:06.000Z',
                finishedAt: '2024-05-01T10:00:07.000Z',
                error: { code: 'BOOM', message: 'no' },
              },
            ],
          },
        ],
        compensations: [
          {
            id: 'hello',
            executionId: exec.voidBill,
            function: 'un-hello',
            status: 'queued',
            attempts: 0,
            maxAttempts: 3,
            queuedAt: '2024-05-01T10:00:08.000Z',
            startedAt: null,
            finishedAt: null,
            error: null,
            output: null,
            attemptHistory: [],
          },
        ],
      });
    });

    it('GET /v1/runs/:id is 400 for a non-UUID and 404 for an unknown run', async () => {
      const bad = await request(app).get('/v1/runs/not-a-uuid').expect(400);
      expect(bad.body.error.code).toBe('INVALID_ID');
      const unknown = crypto.randomUUID();
      const missing = await request(app).get(`/v1/runs/${unknown}`).expect(404);
      expect(missing.body.error).toEqual({ code: 'NOT_FOUND', message: `run '${unknown}' not found` });
    });

    it('GET /v1/runs/:id/logs pages oldest first', async () => {
      const seen: string[] = [];
      const ids: number[] = [];
      let cursor: string | null | undefined;
      let pages = 0;
      do {
        const res = await request(app)
          .get(`/v1/runs/${runId}/logs`)
          .query({ limit: 2, ...(cursor ? { cursor } : {}) })
          .expect(200);
        pages += 1;
        expect(res.body.logs.length).toBeLessThanOrEqual(2);
        for (const log of res.body.logs) {
          seen.push(log.message);
          ids.push(log.id);
        }
        cursor = res.body.nextCursor;
      } while (cursor);
      expect(pages).toBe(3);
      expect(seen).toEqual(['l1', 'l2', 'l3', 'l4', 'l5']);
      expect([...ids].sort((a, b) => a - b)).toEqual(ids);
      const all = await request(app).get(`/v1/runs/${runId}/logs`).expect(200);
      expect(all.body.nextCursor).toBeNull();
      expect(all.body.logs[0]).toEqual({
        id: ids[0],
        time: '2024-05-01T10:00:01.000Z',
        level: 'info',
        message: 'l1',
        stepId: 'hello',
        data: { n: 1 },
      });
    });

    it('GET /v1/runs/:id/logs filters by step and minimum level', async () => {
      const byStep = await request(app).get(`/v1/runs/${runId}/logs?stepId=bye`).expect(200);
      expect(byStep.body.logs.map((l: { message: string }) => l.message)).toEqual(['l4']);
      const warn = await request(app).get(`/v1/runs/${runId}/logs?level=warn`).expect(200);
      expect(warn.body.logs.map((l: { message: string }) => l.message)).toEqual(['l3', 'l4']);
    });

    it('GET /v1/runs/:id/logs rejects bad parameters and unknown runs', async () => {
      for (const query of [
        'level=loud',
        'limit=0',
        'limit=1001',
        'cursor=%%%',
        `cursor=${Buffer.from('{"after":"x"}').toString('base64url')}`,
      ]) {
        const res = await request(app).get(`/v1/runs/${runId}/logs?${query}`).expect(400);
        expect(res.body.error.code).toMatch(/^INVALID_(QUERY|CURSOR)$/);
      }
      await request(app).get(`/v1/runs/${crypto.randomUUID()}/logs`).expect(404);
      await request(app).get('/v1/runs/123/logs').expect(400);
    });
  });

  describe('listing runs', () => {
    // Microsecond-apart timestamps and a tie: the cursor must keep full precision and break ties by id.
    const stamps = [
      '2024-06-01T10:00:00.000001Z',
      '2024-06-01T10:00:00.000002Z',
      '2024-06-01T10:00:01.5Z',
      '2024-06-01T10:00:01.5Z',
      '2024-06-01T10:00:02Z',
      '2024-06-01T10:00:03.0009Z',
    ];
    const statuses = ['succeeded', 'failed', 'running', 'failed', 'pending', 'compensated'];
    let expectedOrder: string[];
    const otherRunId = crypto.randomUUID();

    beforeAll(async () => {
      await saveDefinition(env.pool, { name: 'listing', steps: [{ id: 'only', function: 'noop' }] });
      // A run of another workflow, newer than all of them, that the workflow filter must leave out.
      await saveDefinition(env.pool, { name: 'listing-other', steps: [{ id: 'only', function: 'noop' }] });
      await env.pool.query(
        `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger, created_at)
         VALUES ($1, 'listing-other', 1, 'failed', '{}', '{"type":"http"}', '2024-06-01T10:00:02.5Z')`,
        [otherRunId],
      );
      const rows = stamps.map((createdAt, i) => ({ id: crypto.randomUUID(), createdAt, status: statuses[i] }));
      for (const row of rows) {
        await env.pool.query(
          `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger, created_at)
           VALUES ($1, 'listing', 1, $2, '{}', '{"type":"http"}', $3)`,
          [row.id, row.status, row.createdAt],
        );
      }
      expectedOrder = [...rows]
        .sort((a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1))
        .map((r) => r.id);
      // Timestamps as strings sort like instants only because they share one format; the tie makes id decide.
      expect(new Set(expectedOrder).size).toBe(6);
    });

    const collect = async (query: Record<string, string | number>): Promise<{ ids: string[]; pages: number }> => {
      const ids: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res: Response = await request(app)
          .get('/v1/runs')
          .query({ ...query, ...(cursor ? { cursor } : {}) })
          .expect(200);
        pages += 1;
        for (const run of res.body.runs) ids.push(run.id);
        cursor = res.body.nextCursor;
      } while (cursor && pages < 20);
      return { ids, pages };
    };

    it('pages newest first with a cursor at every page size', async () => {
      for (const limit of [1, 2, 4, 6, 100]) {
        const { ids, pages } = await collect({ workflow: 'listing', limit });
        expect(ids).toEqual(expectedOrder);
        expect(pages).toBe(Math.max(1, Math.ceil(6 / limit)));
      }
    });

    it('returns summaries without steps and a null cursor at the end', async () => {
      const res = await request(app).get('/v1/runs?workflow=listing&limit=100').expect(200);
      expect(res.body.nextCursor).toBeNull();
      expect(res.body.runs[0]).toEqual({
        id: expectedOrder[0],
        workflow: 'listing',
        workflowVersion: 1,
        status: 'compensated',
        input: {},
        output: null,
        error: null,
        trigger: { type: 'http' },
        idempotencyKey: null,
        createdAt: '2024-06-01T10:00:03.000Z',
        startedAt: null,
        finishedAt: null,
        parentRunId: null,
        parentStepId: null,
        depth: 0,
        tags: {},
        forkedFrom: null,
        priority: 5,
      });
    });

    it('filters by workflow and status', async () => {
      const failed = await collect({ workflow: 'listing', status: 'failed', limit: 1 });
      expect(failed.ids).toHaveLength(2);
      expect(failed.ids).toEqual(expectedOrder.filter((id) => failed.ids.includes(id)));
      const several = await request(app).get('/v1/runs?workflow=listing&status=failed,pending').expect(200);
      expect(several.body.runs.map((r: { status: string }) => r.status).sort()).toEqual([
        'failed',
        'failed',
        'pending',
      ]);
      const other = await request(app).get('/v1/runs?workflow=listing-other&limit=100').expect(200);
      expect(other.body.runs.map((r: { id: string }) => r.id)).toEqual([otherRunId]);
      const none = await request(app).get('/v1/runs?workflow=nothing-here').expect(200);
      expect(none.body).toEqual({ runs: [], nextCursor: null });
      // Without a filter the default page size applies.
      const all = await request(app).get('/v1/runs').expect(200);
      expect(all.body.runs.length).toBeLessThanOrEqual(20);
    });

    it('rejects a bad status, limit or cursor', async () => {
      const cases: [string, string][] = [
        ['status=done', 'INVALID_QUERY'],
        ['status=failed,nope', 'INVALID_QUERY'],
        ['limit=0', 'INVALID_QUERY'],
        ['limit=101', 'INVALID_QUERY'],
        ['limit=ten', 'INVALID_QUERY'],
        ['cursor=garbage', 'INVALID_CURSOR'],
        [`cursor=${Buffer.from('{"t":"yesterday","id":"x"}').toString('base64url')}`, 'INVALID_CURSOR'],
      ];
      for (const [query, code] of cases) {
        const res = await request(app).get(`/v1/runs?${query}`).expect(400);
        expect(res.body.error.code).toBe(code);
        expect(res.body.error.details[0].path).toBe(query.split('=')[0]);
      }
    });
  });
});
