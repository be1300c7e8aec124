import { validate } from '@readme/openapi-parser';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { Express } from 'express';
import request, { type Response } from 'supertest';
import { z } from 'zod';
import { NonRetryableError } from '@baton/workflow';
import { coordinatorQueue, createLogger, defineFunction, saveDefinition, type CoordinatorClient } from '@baton/engine';
import { NOT_IN_API } from '../../services/gateway/src/api/openapi';
import { createApp } from '../../services/gateway/src/app';
import type { GatewayConfig } from '../../services/gateway/src/config';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, type TestEnv } from '../support/env';

/**
 * `GET /openapi.json`: a valid OpenAPI 3.1 document (checked by @readme/openapi-parser, which runs
 * the official OAS 3.1 JSON Schema plus its own semantic rules), listing exactly the routes the app
 * serves, with the bearer scheme on the paths that need a key, and whose response schemas match
 * what the API really answers (every response below is checked against the document with ajv).
 */

type Doc = {
  openapi: string;
  paths: Record<string, Record<string, any>>;
  components: { schemas: Record<string, unknown>; securitySchemes?: Record<string, any> };
};

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

/**
 * Every `METHOD path` the express app routes, from its router stack. Routers are mounted at `/`
 * with full paths (app.ts); a router mounted under a path (Bull Board) contributes its mount path.
 */
function servedRoutes(app: Express): string[] {
  const found: string[] = [];
  const walk = (stack: any[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        const paths: unknown[] = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
        for (const p of paths) {
          for (const method of Object.keys(layer.route.methods).filter((m) => m !== '_all')) {
            found.push(`${method.toUpperCase()} ${join(prefix, String(p))}`);
          }
        }
      } else if (Array.isArray(layer.handle?.stack)) {
        const mount = typeof layer.rawPath === 'string' ? layer.rawPath : '/';
        walk(layer.handle.stack, join(prefix, mount));
      }
    }
  };
  walk((app as any).router.stack, '');
  return [...new Set(found)].sort();
}

const join = (a: string, b: string): string => `${a}/${b}`.replace(/\/+/g, '/').replace(/(.)\/$/, '$1') || '/';

function documentedRoutes(doc: Doc): string[] {
  return Object.entries(doc.paths)
    .flatMap(([p, item]) =>
      METHODS.filter((m) => item[m]).map((m) => `${m.toUpperCase()} ${p.replace(/\{(\w+)\}/g, ':$1')}`),
    )
    .sort();
}

const greet = defineFunction({
  name: 'oa-greet',
  input: z.object({ name: z.string() }),
  handler: async ({ name }, ctx) => {
    ctx.log.info('greeting', { name });
    if (name === 'nobody') throw new NonRetryableError('NO_ONE', 'nobody to greet');
    return { text: `hello ${name}` };
  },
});

const HELLO = `
name: oa-hello
input: { type: object, required: [name], properties: { name: { type: string } } }
triggers:
  - http: {}
  - event: { name: oa.greet }
  - schedule: { cron: '0 3 * * *', input: { name: nightly } }
steps:
  - { id: greet, function: oa-greet, input: { name: '{{ input.name }}' } }
`;

describe('OpenAPI description', () => {
  let env: TestEnv;
  let coordinator: CoordinatorClient;
  let config: GatewayConfig;
  let app: Express;
  let engine: Engine;
  let doc: Doc;
  let ajv: Ajv2020;
  const logger = createLogger('openapi-test', 'silent');

  const appWith = (overrides: Partial<GatewayConfig> = {}): Express =>
    createApp({ pool: env.pool, redis: env.redis, coordinator, config: { ...config, ...overrides }, logger });

  /** Asserts the response's status is documented for the operation and its JSON body matches the schema. */
  function conforms(res: Response, method: string, path: string): Response {
    const op = doc.paths[path]?.[method];
    if (!op) throw new Error(`${method.toUpperCase()} ${path} is not documented`);
    const spec = op.responses[String(res.status)];
    if (!spec) throw new Error(`${method.toUpperCase()} ${path} answered ${res.status}, not documented`);
    const schema = spec.content?.['application/json']?.schema;
    if (schema && res.headers['content-type']?.startsWith('application/json')) {
      const check = ajv.compile({ $ref: `api${schema.$ref}` });
      if (!check(res.body)) {
        throw new Error(
          `${method.toUpperCase()} ${path} ${res.status} does not match ${schema.$ref}: ` +
            `${ajv.errorsText(check.errors)}\n${JSON.stringify(res.body, null, 1)}`,
        );
      }
    }
    return res;
  }

  beforeAll(async () => {
    env = await createTestEnv('openapi');
    coordinator = coordinatorQueue(env.queues);
    config = { ...env.config, port: 0, apiKeys: [], bodyLimit: '1mb' };
    app = appWith();
    engine = await startEngine(env, [greet]);
    const res = await request(app).get('/openapi.json').expect(200);
    doc = res.body;
    ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    // The document's components, addressable as `api#/components/schemas/<id>` like its own $refs.
    ajv.addSchema({ $id: 'api', components: doc.components }, 'api');
  });

  afterAll(async () => {
    await engine?.close();
    await coordinator?.close();
    await env?.cleanup();
  });

  it('is a valid OpenAPI 3.1 document', async () => {
    expect(doc.openapi).toMatch(/^3\.1\./);
    const result = await validate(structuredClone(doc) as any);
    if (!result.valid) throw new Error(JSON.stringify(result.errors, null, 1));
    expect(result.warnings).toEqual([]);
  });

  it('describes every route the app serves, and no other', () => {
    const served = servedRoutes(app).filter((route) => {
      const path = route.slice(route.indexOf(' ') + 1);
      return !NOT_IN_API.some((x) => x.match.test(path));
    });
    const documented = documentedRoutes(doc);
    const undocumented = served.filter((r) => !documented.includes(r));
    const notServed = documented.filter((r) => !served.includes(r));
    // A route added without an entry in OPERATIONS (services/gateway/src/api/openapi.ts) fails here.
    expect({ undocumented, notServed }).toEqual({ undocumented: [], notServed: [] });
    for (const route of [
      'POST /invoice/start',
      'POST /v1/events/:name',
      'GET /v1/schedules',
      'PUT /v1/schedules/:id',
      'POST /v1/runs/:id/cancel',
      'POST /v1/runs/:id/retry',
      'GET /healthz',
      'GET /readyz',
      'GET /metrics',
      'GET /v1/documents/:id',
      'GET /openapi.json',
    ]) {
      expect(documented).toContain(route);
    }
  });

  it('the route walk sees routes added to the app, so an undocumented one cannot slip through', () => {
    const extra = appWith();
    extra.get('/v1/not-documented', (_req, res) => {
      res.json({});
    });
    expect(servedRoutes(extra)).toContain('GET /v1/not-documented');
    expect(documentedRoutes(doc)).not.toContain('GET /v1/not-documented');
  });

  it('takes its request schemas from the validating zod schemas', () => {
    const cancel = doc.paths['/v1/runs/{id}/cancel'].post;
    expect(cancel.requestBody.content['application/json'].schema).toEqual({
      $ref: '#/components/schemas/CancelRunRequest',
    });
    expect(doc.components.schemas.CancelRunRequest).toMatchObject({
      type: 'object',
      properties: { compensate: { type: 'boolean', default: false } },
      additionalProperties: false,
    });
    const put = doc.paths['/v1/workflows/{name}'].put.requestBody.content;
    expect(Object.keys(put)).toEqual(expect.arrayContaining(['application/json', 'application/yaml']));
    const listRuns = doc.paths['/v1/runs'].get.parameters.map((p: any) => p.name);
    expect(listRuns).toEqual(['workflow', 'status', 'limit', 'cursor', 'parentRunId', 'topLevel', 'tag']);
    const error = doc.paths['/v1/runs/{id}'].get.responses['404'].content['application/json'].schema;
    expect(error).toEqual({ $ref: '#/components/schemas/Error' });
    expect(doc.components.securitySchemes).toBeUndefined();
  });

  it('declares the bearer scheme on the paths that need an API key when keys are set', async () => {
    const keyed = appWith({ apiKeys: ['s3cret'] });
    const keyedDoc: Doc = (await request(keyed).get('/openapi.json').expect(200)).body;
    expect(keyedDoc.components.securitySchemes).toEqual({
      bearerAuth: expect.objectContaining({ type: 'http', scheme: 'bearer' }),
    });
    const result = await validate(structuredClone(keyedDoc) as any);
    expect(result.valid).toBe(true);
    // What the document says is what the app does: secured operations refuse a request without a key.
    for (const [path, item] of Object.entries(keyedDoc.paths)) {
      for (const method of METHODS.filter((m) => item[m])) {
        const secured = (item[method].security ?? []).some((s: object) => 'bearerAuth' in s);
        const url = path.replace(/\{(\w+)\}/g, '00000000-0000-4000-8000-000000000000');
        const res = await request(keyed)[method](url);
        expect({ route: `${method} ${path}`, status: res.status === 401 }).toEqual({
          route: `${method} ${path}`,
          status: secured,
        });
        if (secured) expect(item[method].responses['401']).toBeDefined();
      }
    }
  });

  it('matches what the API answers', async () => {
    const put = await request(app)
      .put('/v1/workflows/oa-hello')
      .set('Content-Type', 'application/yaml')
      .send(HELLO)
      .expect(201);
    conforms(put, 'put', '/v1/workflows/{name}');
    conforms(await request(app).get('/v1/workflows').expect(200), 'get', '/v1/workflows');
    conforms(await request(app).get('/v1/workflows/oa-hello').expect(200), 'get', '/v1/workflows/{name}');

    const started = conforms(
      await request(app)
        .post('/v1/workflows/oa-hello/runs')
        .send({ input: { name: 'Ada' } })
        .expect(202),
      'post',
      '/v1/workflows/{name}/runs',
    );
    const runId: string = started.body.runId;
    await engine.waitForRun(runId);
    const run = conforms(await request(app).get(`/v1/runs/${runId}`).expect(200), 'get', '/v1/runs/{id}');
    expect(run.body.steps[0]).toMatchObject({ id: 'greet', status: 'succeeded', attempts: 1 });
    conforms(await request(app).get('/v1/runs?limit=1').expect(200), 'get', '/v1/runs');
    const logs = conforms(await request(app).get(`/v1/runs/${runId}/logs`).expect(200), 'get', '/v1/runs/{id}/logs');
    expect(logs.body.logs.map((l: { message: string }) => l.message)).toContain('greeting');

    const failed = await request(app)
      .post('/v1/workflows/oa-hello/runs')
      .send({ input: { name: 'nobody' } })
      .expect(202);
    await engine.waitForRun(failed.body.runId);
    conforms(await request(app).get(`/v1/runs/${failed.body.runId}`).expect(200), 'get', '/v1/runs/{id}');
    conforms(
      await request(app).post(`/v1/runs/${failed.body.runId}/cancel`).send({}).expect(409),
      'post',
      '/v1/runs/{id}/cancel',
    );
    conforms(
      await request(app).post(`/v1/runs/${failed.body.runId}/retry`).send({}).expect(202),
      'post',
      '/v1/runs/{id}/retry',
    );
    await engine.waitForRun(failed.body.runId);

    conforms(
      await request(app)
        .post('/v1/events/oa.greet')
        .send({ payload: { name: 'Bob' } })
        .expect(202),
      'post',
      '/v1/events/{name}',
    );
    const schedules = conforms(await request(app).get('/v1/schedules').expect(200), 'get', '/v1/schedules');
    expect(schedules.body.schedules).toHaveLength(1);
    conforms(
      await request(app).put('/v1/schedules/oa-hello.2').send({ paused: true }).expect(200),
      'put',
      '/v1/schedules/{id}',
    );

    conforms(await request(app).get('/v1/functions').expect(200), 'get', '/v1/functions');
    conforms(await request(app).get('/v1/prometheus/targets').expect(200), 'get', '/v1/prometheus/targets');
    conforms(await request(app).get('/healthz').expect(200), 'get', '/healthz');
    conforms(await request(app).get('/readyz').expect(200), 'get', '/readyz');
    conforms(await request(app).get('/metrics').expect(200), 'get', '/metrics');

    // Errors: the documented error shape, under a documented status.
    conforms(await request(app).get('/v1/runs/not-a-uuid').expect(400), 'get', '/v1/runs/{id}');
    conforms(
      await request(app).get('/v1/runs/00000000-0000-4000-8000-000000000000').expect(404),
      'get',
      '/v1/runs/{id}',
    );
    conforms(
      await request(app).get('/v1/documents/00000000-0000-4000-8000-000000000000').expect(404),
      'get',
      '/v1/documents/{id}',
    );
    conforms(
      await request(app).post('/v1/workflows/oa-hello/runs').send({ nope: 1 }).expect(400),
      'post',
      '/v1/workflows/{name}/runs',
    );
    conforms(
      await request(app).post('/invoice/start').send({ customerId: 'cust-01' }).expect(404),
      'post',
      '/invoice/start',
    );
  });

  it('matches what the API answers for forEach items and child runs', async () => {
    await saveDefinition(env.pool, {
      name: 'oa-kid',
      input: { type: 'object', required: ['name'] },
      steps: [{ id: 'greet', function: 'oa-greet', input: { name: '{{ input.name }}' } }],
    });
    await saveDefinition(env.pool, {
      name: 'oa-each',
      steps: [
        {
          id: 'each',
          forEach: '{{ input.names }}',
          concurrency: 2,
          function: 'oa-greet',
          input: { name: '{{ item }}' },
          retry: { attempts: 1 },
        },
        { id: 'kid', workflow: 'oa-kid', input: { name: 'Kid' } },
      ],
    });
    const names = Array.from({ length: 23 }, (_, i) => `n${i}`).concat('nobody');
    const runId: string = (await request(app).post('/v1/workflows/oa-each/runs').send({ input: { names } }).expect(202))
      .body.runId;
    await engine.waitForRun(runId);
    const run = conforms(await request(app).get(`/v1/runs/${runId}`).expect(200), 'get', '/v1/runs/{id}');
    const each = run.body.steps.find((s: { id: string }) => s.id === 'each');
    expect(each.fanout).toMatchObject({ mode: 'forEach', total: names.length, failed: 1 });
    expect(each.items).toHaveLength(20);
    const items = '/v1/runs/{id}/steps/{stepId}/items';
    const page = conforms(
      await request(app).get(`/v1/runs/${runId}/steps/each/items`).query({ cursor: each.itemsNext }).expect(200),
      'get',
      items,
    );
    // The last item failed the step: it carries its error.
    expect(page.body.items.find((i: { index: number }) => i.index === 23)).toMatchObject({
      status: 'failed',
      error: expect.objectContaining({ code: 'NO_ONE' }),
    });
    conforms(await request(app).get(`/v1/runs/${runId}/steps/each/items?limit=1`).expect(200), 'get', items);
    conforms(await request(app).get(`/v1/runs/${runId}/steps/each/items?cursor=x`).expect(400), 'get', items);
    conforms(await request(app).get(`/v1/runs/${runId}/steps/nope/items`).expect(404), 'get', items);

    const parent = await request(app)
      .post('/v1/workflows/oa-each/runs')
      .send({ input: { names: [] } })
      .expect(202);
    await engine.waitForRun(parent.body.runId);
    const detail = conforms(
      await request(app).get(`/v1/runs/${parent.body.runId}`).expect(200),
      'get',
      '/v1/runs/{id}',
    );
    const kid = detail.body.steps.find((s: { id: string }) => s.id === 'kid');
    expect(kid.childRunId).toBeDefined();
    const child = conforms(await request(app).get(`/v1/runs/${kid.childRunId}`).expect(200), 'get', '/v1/runs/{id}');
    expect(child.body).toMatchObject({ parentRunId: parent.body.runId, parentStepId: 'kid', depth: 1 });
    conforms(
      await request(app).get('/v1/runs').query({ parentRunId: parent.body.runId }).expect(200),
      'get',
      '/v1/runs',
    );
    conforms(await request(app).get('/v1/runs').query({ topLevel: 'true' }).expect(200), 'get', '/v1/runs');
  });
});
