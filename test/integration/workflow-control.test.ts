import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { NonRetryableError } from '@baton/workflow';
import { defineFunction, saveDefinition } from '@baton/engine';
import type { Express } from 'express';
import request from 'supertest';
import { z } from 'zod';
import { testApp } from '../support/gateway';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';

/**
 * Workflow control on real Redis and PostgreSQL: DAGs, conditions, versions, timeouts, cancel,
 * retry from failure, compensation across branches, concurrency keys. Runs are driven through the
 * gateway's public API where the feature is an API.
 */

/** A local HTTP server: counts calls per path, and can hang to test aborts. */
interface Probe {
  url: string;
  calls: Record<string, number>;
  aborted: number;
  close(): Promise<void>;
}

async function startProbe(): Promise<Probe> {
  const probe = { calls: {} as Record<string, number>, aborted: 0 };
  const server = http.createServer((req, res) => {
    const path = req.url ?? '/';
    probe.calls[path] = (probe.calls[path] ?? 0) + 1;
    if (path.startsWith('/hang')) {
      // Never answers: only the client's abort ends the request.
      req.socket.on('close', () => (probe.aborted += 1));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ path }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    ...probe,
    get calls() {
      return probe.calls;
    },
    get aborted() {
      return probe.aborted;
    },
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Records start/end of every `work` attempt, for overlap and ordering checks. */
const timeline: { tag: string; kind: string; start: number; end: number }[] = [];
const signalsAborted: string[] = [];
const failing = new Set<string>();
const running: Record<string, number> = {};
let maxRunning: Record<string, number> = {};

const work = defineFunction({
  name: 'work',
  input: z.object({
    tag: z.string(),
    ms: z.number().default(0),
    fail: z.boolean().default(false),
    group: z.string().optional(),
    value: z.unknown().optional(),
  }),
  handler: async (input, ctx) => {
    const start = Date.now();
    if (input.group) {
      running[input.group] = (running[input.group] ?? 0) + 1;
      maxRunning[input.group] = Math.max(maxRunning[input.group] ?? 0, running[input.group]);
    }
    try {
      if (input.ms) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, input.ms);
          ctx.signal.addEventListener('abort', () => {
            clearTimeout(t);
            signalsAborted.push(input.tag);
            resolve();
          });
        });
      }
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (input.fail || failing.has(input.tag)) throw new NonRetryableError('WORK_FAILED', `${input.tag} failed`);
      return { tag: input.tag, value: input.value ?? null };
    } finally {
      if (input.group) running[input.group] -= 1;
      timeline.push({ tag: input.tag, kind: ctx.kind, start, end: Date.now() });
    }
  },
});

const call = defineFunction({
  name: 'call',
  input: z.object({ url: z.string() }),
  handler: async ({ url }, ctx) => {
    const res = await fetch(url, { signal: ctx.signal });
    return { status: res.status, body: await res.json() };
  },
});

const fast = { attempts: 1 };

describe('workflow control', () => {
  let env: TestEnv;
  let engine: Engine;
  let app: Express;
  let probe: Probe;

  const save = (def: Record<string, unknown>) => saveDefinition(env.pool, def);
  const startRun = async (workflow: string, input: unknown = {}) => {
    const res = await request(app).post(`/v1/workflows/${workflow}/runs`).send({ input }).expect(202);
    return res.body.runId as string;
  };
  const getRun = async (id: string) => (await request(app).get(`/v1/runs/${id}`).expect(200)).body;
  const finished = async (id: string, timeoutMs = 20_000) => {
    await engine.waitForRun(id, undefined, timeoutMs);
    return getRun(id);
  };

  beforeAll(async () => {
    env = await createTestEnv('control');
    probe = await startProbe();
    engine = await startEngine(env, [work, call]);
    app = testApp(env, engine.coordinatorQueue);
  });

  afterAll(async () => {
    await engine?.close();
    await probe?.close();
    await env?.cleanup();
  });

  beforeEach(() => {
    timeline.length = 0;
    signalsAborted.length = 0;
    failing.clear();
    maxRunning = {};
  });

  it('runs a diamond DAG: branches in parallel, the join sees both outputs', async () => {
    await save({
      name: 'diamond',
      steps: [
        { id: 'a', function: 'work', input: { tag: 'a', value: '{{ input.x }}' } },
        {
          id: 'b',
          function: 'work',
          needs: ['a'],
          input: { tag: 'b', ms: 300, value: '{{ steps.a.output.value * 2 }}' },
        },
        {
          id: 'c',
          function: 'work',
          needs: ['a'],
          input: { tag: 'c', ms: 300, value: '{{ steps.a.output.value * 3 }}' },
        },
        {
          id: 'd',
          function: 'work',
          needs: ['b', 'c'],
          input: { tag: 'd', value: '{{ steps.b.output.value + steps.c.output.value }}' },
        },
      ],
      output: '{{ steps.d.output.value }}',
    });
    const run = await finished(await startRun('diamond', { x: 5 }));
    expect(run.status).toBe('succeeded');
    expect(run.output).toBe(25);
    const b = timeline.find((t) => t.tag === 'b')!;
    const c = timeline.find((t) => t.tag === 'c')!;
    expect(b.start).toBeLessThan(c.end);
    expect(c.start).toBeLessThan(b.end);
    const d = timeline.find((t) => t.tag === 'd')!;
    expect(d.start).toBeGreaterThanOrEqual(Math.max(b.end, c.end));
  });

  it('skips a branch whose condition is false, and what needs only it, and still joins', async () => {
    await save({
      name: 'branchy',
      steps: [
        { id: 'start', function: 'work', input: { tag: 'start' } },
        { id: 'big', function: 'work', needs: ['start'], if: 'input.amount > 100', input: { tag: 'big' } },
        { id: 'afterBig', function: 'work', needs: ['big'], input: { tag: 'afterBig' } },
        { id: 'small', function: 'work', needs: ['start'], if: 'input.amount <= 100', input: { tag: 'small' } },
        { id: 'end', function: 'work', needs: ['afterBig', 'small'], input: { tag: 'end' } },
      ],
    });
    const run = await finished(await startRun('branchy', { amount: 7 }));
    expect(run.status).toBe('succeeded');
    const statuses = Object.fromEntries(run.steps.map((s: { id: string; status: string }) => [s.id, s.status]));
    expect(statuses).toEqual({
      start: 'succeeded',
      big: 'skipped',
      afterBig: 'skipped',
      small: 'succeeded',
      end: 'succeeded',
    });
    expect(timeline.map((t) => t.tag).sort()).toEqual(['end', 'small', 'start']);
  });

  it('keeps an in-flight run on its version when the definition changes', async () => {
    await save({ name: 'versioned', steps: [{ id: 'one', function: 'work', input: { tag: 'v1', ms: 400 } }] });
    const oldRun = await startRun('versioned');
    await waitFor(async () => ((await getRun(oldRun)).steps[0]?.status === 'running' ? true : undefined));
    const put = await request(app)
      .put('/v1/workflows/versioned')
      .send({ name: 'versioned', steps: [{ id: 'two', function: 'work', input: { tag: 'v2' } }] })
      .expect(201);
    expect(put.body.version).toBe(2);
    const newRun = await startRun('versioned');
    const [a, b] = await Promise.all([finished(oldRun), finished(newRun)]);
    expect([a.workflowVersion, a.status, a.steps.map((s: { id: string }) => s.id)]).toEqual([1, 'succeeded', ['one']]);
    expect([b.workflowVersion, b.status, b.steps.map((s: { id: string }) => s.id)]).toEqual([2, 'succeeded', ['two']]);
  });

  it('aborts a step at its timeoutMs: the HTTP request to a local server is really cut, per attempt', async () => {
    await save({
      name: 'slow-call',
      steps: [
        {
          id: 'fetch',
          function: 'call',
          input: { url: `${probe.url}/hang` },
          timeoutMs: 300,
          retry: { attempts: 2, backoff: { delayMs: 10, jitter: 0 } },
        },
      ],
    });
    const abortedBefore = probe.aborted;
    const run = await finished(await startRun('slow-call'));
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({ stepId: 'fetch', code: 'STEP_TIMEOUT', attempt: 2 });
    expect(run.steps[0].attemptHistory.map((a: { error: { code: string } }) => a.error.code)).toEqual([
      'STEP_TIMEOUT',
      'STEP_TIMEOUT',
    ]);
    await waitFor(async () => (probe.aborted - abortedBefore >= 2 ? true : undefined), 5_000, 'server to see 2 aborts');
  });

  it('cancels a run while a step runs: its signal fires and the run ends cancelled', async () => {
    await save({
      name: 'long',
      steps: [
        { id: 'first', function: 'work', input: { tag: 'long-1', ms: 20_000 } },
        { id: 'second', function: 'work', input: { tag: 'long-2' } },
      ],
    });
    const runId = await startRun('long');
    await waitFor(async () => ((await getRun(runId)).steps[0]?.status === 'running' ? true : undefined));
    const t0 = Date.now();
    const res = await request(app).post(`/v1/runs/${runId}/cancel`).send({}).expect(202);
    expect(res.body.statusUrl).toBe(`/v1/runs/${runId}`);
    const run = await finished(runId, 5_000);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(run.status).toBe('cancelled');
    expect(run.error).toMatchObject({ code: 'CANCELLED' });
    expect(run.steps.map((s: { id: string; status: string }) => [s.id, s.status])).toEqual([['first', 'cancelled']]);
    await waitFor(async () => (signalsAborted.includes('long-1') ? true : undefined), 5_000, 'the handler signal');
    await request(app).post(`/v1/runs/${runId}/cancel`).send({}).expect(409);
  });

  it('retries a failed run from the failed step without re-running succeeded ones, keeping history', async () => {
    await save({
      name: 'resumable',
      steps: [
        { id: 'fetch', function: 'call', input: { url: `${probe.url}/resumable/{{ input.n }}` } },
        {
          id: 'use',
          function: 'work',
          retry: fast,
          input: { tag: 'use', value: '{{ steps.fetch.output.body.path }}' },
        },
      ],
    });
    failing.add('use');
    const runId = await startRun('resumable', { n: 1 });
    const failed = await finished(runId);
    expect(failed.status).toBe('failed');
    expect(probe.calls['/resumable/1']).toBe(1);

    failing.clear();
    await request(app).post(`/v1/runs/${runId}/retry`).send({}).expect(202);
    await waitFor(async () => ((await getRun(runId)).status === 'succeeded' ? true : undefined), 10_000, 'retried run');
    const run = await getRun(runId);
    expect(probe.calls['/resumable/1']).toBe(1);
    expect(run.output).toEqual({
      fetch: { status: 200, body: { path: '/resumable/1' } },
      use: { tag: 'use', value: '/resumable/1' },
    });
    // Both executions of `use` stay visible; the earlier one failed.
    const uses = run.steps.filter((s: { id: string }) => s.id === 'use');
    expect(uses.map((s: { status: string }) => s.status)).toEqual(['failed', 'succeeded']);
    await request(app).post(`/v1/runs/${runId}/retry`).send({}).expect(409);
  });

  it('retries with an input override for the failed step', async () => {
    await save({
      name: 'override',
      steps: [{ id: 'only', function: 'work', retry: fast, input: { tag: 'o', fail: true } }],
    });
    const runId = await startRun('override');
    expect((await finished(runId)).status).toBe('failed');
    await request(app).post(`/v1/runs/${runId}/retry`).send({ stepId: 'nope' }).expect(400);
    await request(app)
      .post(`/v1/runs/${runId}/retry`)
      .send({ input: { tag: 'o', fail: false, value: 'fixed' } })
      .expect(202);
    await waitFor(async () => ((await getRun(runId)).status === 'succeeded' ? true : undefined), 10_000, 'retried run');
    expect((await getRun(runId)).output).toEqual({ only: { tag: 'o', value: 'fixed' } });
  });

  it('compensates across parallel branches in reverse completion order', async () => {
    const undo = (tag: string) => ({ function: 'work', input: { tag: `undo-${tag}` } });
    await save({
      name: 'branch-saga',
      onStepFailure: 'waitForAll',
      steps: [
        { id: 'a', function: 'work', input: { tag: 'a' }, compensate: undo('a') },
        { id: 'quick', function: 'work', needs: ['a'], input: { tag: 'quick', ms: 50 }, compensate: undo('quick') },
        { id: 'slow', function: 'work', needs: ['a'], input: { tag: 'slow', ms: 400 }, compensate: undo('slow') },
        { id: 'boom', function: 'work', needs: ['a'], retry: fast, input: { tag: 'boom', ms: 150, fail: true } },
      ],
    });
    const run = await finished(await startRun('branch-saga'));
    expect(run.status).toBe('compensated');
    expect(run.error).toMatchObject({ stepId: 'boom', code: 'WORK_FAILED' });
    const undos = timeline.filter((t) => t.kind === 'compensation').map((t) => t.tag);
    expect(undos).toEqual(['undo-slow', 'undo-quick', 'undo-a']);
    expect(run.compensations.map((c: { id: string; status: string }) => [c.id, c.status])).toEqual([
      ['slow', 'succeeded'],
      ['quick', 'succeeded'],
      ['a', 'succeeded'],
    ]);
  });

  it('fails fast: a failing branch cancels its running sibling', async () => {
    await save({
      name: 'fail-fast',
      steps: [
        { id: 'long', function: 'work', needs: [], input: { tag: 'ff-long', ms: 20_000 } },
        { id: 'bad', function: 'work', needs: [], retry: fast, input: { tag: 'ff-bad', ms: 100, fail: true } },
      ],
    });
    const t0 = Date.now();
    const run = await finished(await startRun('fail-fast'), 5_000);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(run.status).toBe('failed');
    const statuses = Object.fromEntries(run.steps.map((s: { id: string; status: string }) => [s.id, s.status]));
    expect(statuses).toEqual({ long: 'cancelled', bad: 'failed' });
    await waitFor(async () => (signalsAborted.includes('ff-long') ? true : undefined), 5_000, 'the sibling signal');
  });

  it('times out a whole run: running steps cancelled, completed ones compensated', async () => {
    await save({
      name: 'deadline',
      timeoutMs: 600,
      steps: [
        {
          id: 'quick',
          function: 'work',
          input: { tag: 'dl-quick' },
          compensate: { function: 'work', input: { tag: 'dl-undo' } },
        },
        { id: 'slow', function: 'work', input: { tag: 'dl-slow', ms: 20_000 } },
      ],
    });
    const run = await finished(await startRun('deadline'), 10_000);
    expect(run.status).toBe('compensated');
    expect(run.error).toMatchObject({ code: 'WORKFLOW_TIMEOUT' });
    expect(run.steps.map((s: { id: string; status: string }) => [s.id, s.status])).toEqual([
      ['quick', 'compensated'],
      ['slow', 'cancelled'],
    ]);
    expect(timeline.some((t) => t.tag === 'dl-undo')).toBe(true);
  });

  it('limits running runs per concurrency key; the rest wait in order and none is dropped', async () => {
    await save({
      name: 'per-customer',
      concurrency: { limit: 1, key: 'input.customerId' },
      steps: [
        {
          id: 'bill',
          function: 'work',
          input: { tag: '{{ input.customerId }}-{{ input.n }}', ms: 150, group: '{{ input.customerId }}' },
        },
      ],
    });
    const ids: string[] = [];
    for (let n = 1; n <= 4; n++) ids.push(await startRun('per-customer', { customerId: 'cust-a', n }));
    ids.push(await startRun('per-customer', { customerId: 'cust-b', n: 1 }));
    const runs = await Promise.all(ids.map((id) => finished(id, 20_000)));
    expect(runs.map((r) => r.status)).toEqual(Array(5).fill('succeeded'));
    expect(maxRunning['cust-a']).toBe(1);
    const aOrder = timeline
      .filter((t) => t.tag.startsWith('cust-a'))
      .sort((x, y) => x.start - y.start)
      .map((t) => t.tag);
    expect(aOrder).toEqual(['cust-a-1', 'cust-a-2', 'cust-a-3', 'cust-a-4']);
    // The other key was not held up behind cust-a's queue.
    const b = timeline.find((t) => t.tag === 'cust-b-1')!;
    const a4 = timeline.find((t) => t.tag === 'cust-a-4')!;
    expect(b.end).toBeLessThan(a4.start);
  });
});
