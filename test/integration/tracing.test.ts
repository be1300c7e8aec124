import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { defineFunction, saveDefinition, startTracing, type TracingHandle } from '@baton/engine';
import request from 'supertest';
import { z } from 'zod';
import { testApp } from '../support/gateway';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, type TestEnv } from '../support/env';

/**
 * With OTEL_EXPORTER_OTLP_ENDPOINT set, one trace per run spans gateway → coordinator → every
 * function attempt. A local OTLP/HTTP receiver collects what the SDK exports.
 */
interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
}

const step = defineFunction({
  name: 'traced-step',
  input: z.object({ n: z.number() }),
  handler: async ({ n }) => ({ n: n + 1 }),
});

describe('tracing', () => {
  let env: TestEnv;
  let engine: Engine;
  let tracing: TracingHandle | undefined;
  const spans: ReceivedSpan[] = [];
  const receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const parsed = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: ReceivedSpan[] }[] }[] };
      for (const rs of parsed.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });

  beforeAll(async () => {
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    tracing = await startTracing('baton-test', {
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_SERVICE_NAME: 'baton-test',
    });
    env = await createTestEnv('tracing');
    engine = await startEngine(env, [step]);
    await saveDefinition(env.pool, {
      name: 'two-steps',
      steps: [
        { id: 'first', function: 'traced-step', input: { n: 1 } },
        { id: 'second', function: 'traced-step', input: { n: '{{ steps.first.output.n }}' } },
      ],
    });
  });

  afterAll(async () => {
    await engine?.close();
    await tracing?.shutdown();
    await env?.cleanup();
    await new Promise((r) => receiver.close(r));
  });

  it('is off without an endpoint', async () => {
    expect(await startTracing('x', {})).toBeUndefined();
  });

  it('exports one trace per run: the gateway root, coordinator spans and both step attempts', async () => {
    const app = testApp(env, engine.coordinatorQueue);
    const runId = (await request(app).post('/v1/workflows/two-steps/runs').send({}).expect(202)).body.runId;
    expect((await engine.waitForRun(runId)).status).toBe('succeeded');
    const stored = await env.pool.query("SELECT metadata->'trace'->>'traceparent' AS tp FROM runs WHERE id = $1", [
      runId,
    ]);
    const traceId = /^00-([0-9a-f]{32})-/.exec(stored.rows[0].tp)?.[1];
    expect(traceId).toBeDefined();

    await tracing?.shutdown(); // flushes the batch
    tracing = undefined;
    const ours = spans.filter((s) => s.traceId === traceId);
    const names = ours.map((s) => s.name);
    expect(names.filter((n) => n === 'baton.run.create')).toHaveLength(1);
    expect(names.filter((n) => n === 'baton.step traced-step')).toHaveLength(2);
    // The gateway started the run with its first step (direct-start.ts): no coordinator span for the
    // start, step 1's attempt is a child of the root, and the coordinator's spans begin at its report.
    expect(names).not.toContain('baton.coordinator run.start');
    expect(names).toContain('baton.coordinator step.succeeded');
    const root = ours.find((s) => s.name === 'baton.run.create');
    expect(ours.filter((s) => s.name === 'baton.step traced-step' && s.parentSpanId === root?.spanId)).toHaveLength(1);
    // Every span but the root has its parent in the same trace.
    const ids = new Set(ours.map((s) => s.spanId));
    for (const s of ours.filter((x) => x.name !== 'baton.run.create')) expect(ids.has(s.parentSpanId ?? '')).toBe(true);
  });
});
