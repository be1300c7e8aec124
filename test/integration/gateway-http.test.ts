import crypto from 'node:crypto';
import type { Express } from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { createPool } from '@baton/engine';
import { loadGatewayConfig } from '../../services/gateway/src/config';
import type { TestEnv } from '../support/env';
import { UUID, useGatewaySuite } from '../support/gateway-suite';

/**
 * Configuration, /healthz and /readyz, API keys, and what every route shares: JSON errors and
 * request metrics. The setup (a real PostgreSQL and Redis, no coordinator) is
 * test/support/gateway-suite.ts; this suite has its own database and Redis prefix.
 */

describe('gateway HTTP API: config, health, auth, errors and metrics', () => {
  const suite = useGatewaySuite('gateway-http');
  let env: TestEnv;
  let app: Express;
  beforeAll(() => {
    ({ env, app } = suite);
  });
  const { appWith, extraPools } = suite;

  describe('config', () => {
    it('applies defaults and splits the API key list', () => {
      const defaults = loadGatewayConfig({});
      expect(defaults).toMatchObject({ port: 3000, apiKeys: [], bodyLimit: '1mb' });
      const custom = loadGatewayConfig({ PORT: '8080', BATON_API_KEYS: ' a , b,,', BATON_BODY_LIMIT: '64kb' });
      expect(custom).toMatchObject({ port: 8080, apiKeys: ['a', 'b'], bodyLimit: '64kb' });
    });

    it('names every bad variable', () => {
      expect(() => loadGatewayConfig({ PORT: 'http', BATON_BODY_LIMIT: 'lots' })).toThrow(
        /PORT="http" is invalid.*BATON_BODY_LIMIT="lots" is invalid/,
      );
    });
  });

  describe('health', () => {
    it('GET /healthz answers ok with a request id', async () => {
      const res = await request(app).get('/healthz').expect(200);
      expect(res.body).toEqual({ status: 'ok' });
      expect(res.headers['x-request-id']).toMatch(UUID);
      const echoed = await request(app).get('/healthz').set('x-request-id', 'trace-123').expect(200);
      expect(echoed.headers['x-request-id']).toBe('trace-123');
    });

    it('GET /readyz is 200 when PostgreSQL and Redis answer', async () => {
      const res = await request(app).get('/readyz').expect(200);
      expect(res.body).toEqual({ status: 'ok', checks: { database: 'ok', redis: 'ok' } });
    });

    it('GET /readyz is 503 naming the database when PostgreSQL is unreachable', async () => {
      const closedPort = createPool('postgres://postgres@127.0.0.1:1/baton');
      const noDatabase = createPool(env.databaseUrl.replace(/\/[^/]+$/, '/baton_no_such_database'));
      extraPools.push(closedPort, noDatabase);
      for (const pool of [closedPort, noDatabase]) {
        const res = await request(appWith({}, pool)).get('/readyz').expect(503);
        expect(res.body.error.code).toBe('NOT_READY');
        expect(res.body.error.message).toMatch(/database/);
        expect(res.body.error.message).not.toMatch(/redis/);
        expect(res.body.error.details.redis).toBe('ok');
        expect(res.body.error.details.database).not.toBe('ok');
      }
    });

    it('GET /readyz is 503 naming Redis when Redis is unreachable', async () => {
      // Reconnects forever like the gateway's own connection; short timers so that disconnect()
      // leaves nothing running past the suite (ioredis waits disconnectTimeout to drop the socket).
      const deadRedis = new Redis({
        host: '127.0.0.1',
        port: 1,
        maxRetriesPerRequest: null,
        retryStrategy: () => 20,
        disconnectTimeout: 20,
      });
      deadRedis.on('error', () => undefined);
      try {
        const res = await request(appWith({}, env.pool, deadRedis))
          .get('/readyz')
          .expect(503);
        expect(res.body.error).toMatchObject({ code: 'NOT_READY', details: { database: 'ok' } });
        expect(res.body.error.message).toMatch(/redis/);
        expect(res.body.error.details.redis).not.toBe('ok');
      } finally {
        deadRedis.disconnect();
      }
    });
  });

  describe('auth', () => {
    let secured: Express;
    beforeAll(() => {
      secured = appWith({ apiKeys: ['key-one', 'key-two'] });
    });

    it('requires a bearer key on /v1 and POST /invoice/start', async () => {
      const none = await request(secured).get('/v1/workflows').expect(401);
      expect(none.body.error.code).toBe('UNAUTHORIZED');
      expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
      const wrong = await request(secured).get('/v1/workflows').set('Authorization', 'Bearer key-three').expect(401);
      expect(wrong.headers['www-authenticate']).toMatch(/invalid_token/);
      await request(secured).get('/v1/workflows').set('Authorization', 'Basic a2V5LW9uZQ==').expect(401);
      await request(secured).get(`/v1/runs/${crypto.randomUUID()}`).expect(401);
      await request(secured).post('/invoice/start').send({ customerId: 'cust-02' }).expect(401);
      // Routing is case-insensitive and ignores a trailing slash; the auth mount must cover the same paths.
      await request(secured).get('/V1/workflows').expect(401);
      await request(secured).get('/v1/workflows/').expect(401);
      await request(secured).post('/Invoice/Start').send({ customerId: 'cust-02' }).expect(401);
      // Unauthenticated requests are refused before their body is read or validated.
      await request(secured)
        .post('/v1/workflows/greet/runs')
        .send('{bad')
        .set('Content-Type', 'application/json')
        .expect(401);
    });

    it('accepts any configured key', async () => {
      await request(secured).get('/v1/workflows').set('Authorization', 'Bearer key-one').expect(200);
      await request(secured).get('/v1/workflows').set('Authorization', 'bearer key-two').expect(200);
      await request(secured)
        .post('/invoice/start')
        .set('Authorization', 'Bearer key-two')
        .send({ customerId: 'cust-02' })
        .expect(202);
    });

    it('leaves health, readiness and metrics open', async () => {
      await request(secured).get('/healthz').expect(200);
      await request(secured).get('/readyz').expect(200);
      await request(secured).get('/metrics').expect(200);
    });
  });

  describe('errors and metrics', () => {
    it('an unknown route is a JSON 404', async () => {
      const res = await request(app).get('/v1/nothing').expect(404);
      expect(res.body).toEqual({ error: { code: 'NOT_FOUND', message: 'no route for GET /v1/nothing' } });
    });

    it('an unexpected failure is a 500 with a generic message', async () => {
      // A statement PostgreSQL refuses as wrong (a bug), not for want of the server: the real error
      // (and its SQL) stays in the log. (An unreachable server is a 503: gateway-database-bounds.test.ts.)
      const broken = createPool(env.databaseUrl, { max: 1 });
      extraPools.push(broken);
      const wrong = Object.assign(Object.create(broken) as typeof broken, {
        query: () => broken.query('SELECT no_such_column FROM workflow_definitions'),
      });
      const res = await request(appWith({}, wrong)).get('/v1/workflows').expect(500);
      expect(res.body).toEqual({ error: { code: 'INTERNAL', message: 'internal server error' } });
    });

    it('GET /metrics exposes request durations labelled by route pattern, never by id', async () => {
      const id = crypto.randomUUID();
      await request(app).get(`/v1/runs/${id}`).expect(404);
      await request(app).post('/v1/workflows/greet/runs').set('Content-Type', 'application/json').send('{').expect(400);
      const res = await request(app).get('/metrics').expect(200);
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
      expect(res.text).toContain('baton_http_request_duration_seconds');
      expect(res.text).toMatch(
        /baton_http_request_duration_seconds_count\{[^}]*route="\/v1\/runs\/:id"[^}]*status="404"/,
      );
      expect(res.text).toMatch(
        /baton_http_request_duration_seconds_count\{[^}]*route="\/v1\/workflows\/:name\/runs"[^}]*status="400"/,
      );
      expect(res.text).toMatch(/route="unmatched"/);
      expect(res.text).not.toContain(id);
    });
  });
});
