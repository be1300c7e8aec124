import type { Express } from 'express';
import request from 'supertest';
import type { TestEnv } from '../support/env';
import { GREET, useGatewaySuite } from '../support/gateway-suite';

/**
 * Workflows: GET and PUT /v1/workflows. The setup (a real PostgreSQL and Redis, no coordinator) is
 * test/support/gateway-suite.ts; this suite has its own database and Redis prefix.
 */

describe('gateway HTTP API: workflows', () => {
  const suite = useGatewaySuite('gateway-workflows');
  let env: TestEnv;
  let app: Express;
  beforeAll(() => {
    ({ env, app } = suite);
  });

  describe('workflows', () => {
    it('GET /v1/workflows lists the latest definitions with their steps', async () => {
      const res = await request(app).get('/v1/workflows').expect(200);
      const greet = res.body.workflows.find((w: { name: string }) => w.name === 'greet');
      expect(greet).toEqual({
        name: 'greet',
        version: 1,
        description: 'Says hello',
        createdAt: expect.any(String),
        steps: [
          { id: 'hello', function: 'say-hello', needs: [] },
          { id: 'bye', function: 'say-bye', needs: ['hello'] },
        ],
        paused: false,
        pausedAt: null,
      });
      expect(res.body.workflows.map((w: { name: string }) => w.name)).toEqual(
        expect.arrayContaining(['invoice', 'greet']),
      );
    });

    it('GET /v1/workflows/:name returns the latest definition and its versions; 404 when unknown', async () => {
      const res = await request(app).get('/v1/workflows/greet').expect(200);
      expect(res.body).toMatchObject({ name: 'greet', version: 1, definition: { name: 'greet', input: GREET.input } });
      expect(res.body.versions).toEqual([{ version: 1, createdAt: expect.any(String) }]);
      const missing = await request(app).get('/v1/workflows/nope').expect(404);
      expect(missing.body.error.code).toBe('NOT_FOUND');
    });

    it('PUT /v1/workflows/:name saves a new version (201) and an identical one is a no-op (200)', async () => {
      const def = { name: 'putflow', steps: [{ id: 'a', function: 'fn-a' }] };
      const created = await request(app).put('/v1/workflows/putflow').send(def).expect(201);
      // fn-a never reported from a worker: saved all the same, with a warning naming the path.
      expect(created.body).toEqual({
        name: 'putflow',
        version: 1,
        warnings: [{ path: 'steps[0].function', message: "no worker of function 'fn-a' has reported yet" }],
      });
      expect(created.headers.location).toBe('/v1/workflows/putflow');
      const same = await request(app).put('/v1/workflows/putflow').send(def).expect(200);
      expect(same.body).toMatchObject({ name: 'putflow', version: 1 });
      const changed = await request(app)
        .put('/v1/workflows/putflow')
        .send({ ...def, steps: [...def.steps, { id: 'b', function: 'fn-b' }] })
        .expect(201);
      await env.pool.query("INSERT INTO known_functions (name) VALUES ('fn-a')");
      expect(changed.body).toMatchObject({ name: 'putflow', version: 2 });
      const again = await request(app)
        .put('/v1/workflows/putflow')
        .send({ ...def, steps: [...def.steps, { id: 'b', function: 'fn-b' }] });
      expect(again.body.warnings).toEqual([
        { path: 'steps[1].function', message: "no worker of function 'fn-b' has reported yet" },
      ]);
      const got = await request(app).get('/v1/workflows/putflow').expect(200);
      expect(got.body.version).toBe(2);
      expect(got.body.versions.map((v: { version: number }) => v.version)).toEqual([2, 1]);
      const v1 = await request(app).get('/v1/workflows/putflow?version=1').expect(200);
      expect(v1.body.definition.steps).toHaveLength(1);
    });

    it('PUT warns about a workflow step naming an undefined workflow, and 400s a bad forEach concurrency', async () => {
      const def = {
        name: 'caller',
        steps: [
          { id: 'a', workflow: 'not-yet-defined' },
          { id: 'b', workflow: 'greet', input: { name: 'x' } },
          { id: 'c', workflow: 'caller' },
        ],
      };
      const res = await request(app).put('/v1/workflows/caller').send(def).expect(201);
      // greet exists and a workflow may call itself (depth-limited): only the undefined one warns.
      expect(res.body.warnings).toEqual([
        { path: 'steps[0].workflow', message: "no workflow named 'not-yet-defined' is defined yet" },
      ]);
      const bad = await request(app)
        .put('/v1/workflows/fanned')
        .send({ name: 'fanned', steps: [{ id: 'a', function: 'fn-a', forEach: '{{ [1] }}', concurrency: 0 }] })
        .expect(400);
      expect(bad.body.error.details).toEqual([expect.objectContaining({ path: 'steps[0].concurrency' })]);
    });

    it('PUT answers 400, not 500, for a body name that is not a string (found by the fuzz test)', async () => {
      const res = await request(app)
        .put('/v1/workflows/fuzzed')
        .send({ name: [{ toString: [true] }], steps: [] })
        .expect(400);
      expect(res.body.error.code).toBe('INVALID_DEFINITION');
      expect(res.body.error.details).toEqual([
        { path: 'name', message: "must equal 'fuzzed', the workflow name in the URL" },
      ]);
    });

    it('PUT accepts YAML', async () => {
      const yaml = [
        'name: yamlflow',
        'steps:',
        '  - id: first',
        '    function: fn-one',
        '  - id: second',
        '    function: fn-two',
        '',
      ].join('\n');
      const res = await request(app)
        .put('/v1/workflows/yamlflow')
        .set('Content-Type', 'application/yaml')
        .send(yaml)
        .expect(201);
      expect(res.body).toMatchObject({ name: 'yamlflow', version: 1 });
      const got = await request(app).get('/v1/workflows/yamlflow').expect(200);
      expect(got.body.definition.steps.map((s: { needs: string[] }) => s.needs)).toEqual([[], ['first']]);
      const broken = await request(app)
        .put('/v1/workflows/yamlflow')
        .set('Content-Type', 'application/yaml')
        .send('name: [unclosed')
        .expect(400);
      expect(broken.body.error.code).toBe('INVALID_DEFINITION');
    });

    it('PUT rejects an invalid definition with a problem per path, and a name that differs from the URL', async () => {
      const res = await request(app)
        .put('/v1/workflows/badflow')
        .send({
          name: 'badflow',
          steps: [
            { id: 'a', function: 'Not_A_Name' },
            { id: 'b', function: 'fn-b', needs: ['ghost'] },
          ],
        })
        .expect(400);
      expect(res.body.error.code).toBe('INVALID_DEFINITION');
      expect(res.body.error.details.map((d: { path: string }) => d.path)).toContain('steps[0].function');
      const semantic = await request(app)
        .put('/v1/workflows/badflow')
        .send({ name: 'badflow', steps: [{ id: 'a', function: 'fn-a', needs: ['ghost'] }] })
        .expect(400);
      expect(semantic.body.error.details).toEqual([{ path: 'steps[0].needs[0]', message: "unknown step 'ghost'" }]);
      const mismatch = await request(app)
        .put('/v1/workflows/badflow')
        .send({ name: 'otherflow', steps: [{ id: 'a', function: 'fn-a' }] })
        .expect(400);
      expect(mismatch.body.error).toMatchObject({ code: 'INVALID_DEFINITION', details: [{ path: 'name' }] });
      await request(app).get('/v1/workflows/otherflow').expect(404);
      await request(app).get('/v1/workflows/badflow').expect(404);
    });
  });
});
