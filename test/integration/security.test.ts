import crypto from 'node:crypto';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { coordinatorQueue, createLogger, type CoordinatorClient, type RedisConnection } from '@baton/engine';
import { createApp } from '../../services/gateway/src/app';
import { DEFAULT_RATE_LIMIT, loadGatewayConfig, type GatewayConfig } from '../../services/gateway/src/config';
import { DASHBOARD_CSP } from '../../services/gateway/src/routes/dashboard';
import { API_CSP, BULL_BOARD_CSP, createApiServer } from '../../services/gateway/src/http/security';
import { createTestEnv, type TestEnv } from '../support/env';

/**
 * The gateway's hardening (docs/SECURITY.md): security headers, the Redis-backed rate limit shared
 * by replicas, `trust proxy`, API keys, /metrics on its own port, request timeouts.
 */
describe('gateway security', () => {
  let env: TestEnv;
  let coordinator: CoordinatorClient;
  let config: GatewayConfig;
  const logger = createLogger('security-test', 'silent');
  let suffix = 0;

  const appWith = (overrides: Partial<GatewayConfig> = {}, redis: RedisConnection = env.redis): Express =>
    createApp({ pool: env.pool, redis, coordinator, config: { ...config, ...overrides }, logger });
  /** A key prefix of its own per test, under the suite's (removed by cleanup). */
  const freshPrefix = () => `${env.config.queuePrefix}-t${++suffix}`;

  beforeAll(async () => {
    env = await createTestEnv('security');
    coordinator = coordinatorQueue(env.queues);
    config = { ...env.config, port: 0, apiKeys: [], bodyLimit: '1mb' };
    // Connected before the first limiter is built: while Redis is not ready the limiter lets
    // requests through uncounted (by design), which would make the counts below wrong.
    await env.redis.ping();
  });

  afterAll(async () => {
    await coordinator.close();
    await env.cleanup();
  });

  describe('configuration', () => {
    it('has safe defaults', () => {
      const c = loadGatewayConfig({});
      expect(c).toMatchObject({ rateLimit: DEFAULT_RATE_LIMIT, trustProxy: false, requestTimeoutMs: 30_000 });
      expect(c.gatewayMetricsPort).toBeUndefined();
    });

    it('parses the rate limit, trust proxy, metrics port and request timeout', () => {
      const c = loadGatewayConfig({
        BATON_RATE_LIMIT: '0',
        BATON_TRUST_PROXY: '1',
        BATON_METRICS_PORT: '9464',
        BATON_REQUEST_TIMEOUT_MS: '5000',
      });
      expect(c).toMatchObject({ rateLimit: 0, trustProxy: 1, gatewayMetricsPort: 9464, requestTimeoutMs: 5000 });
      expect(loadGatewayConfig({ BATON_TRUST_PROXY: '10.0.0.0/8, loopback ,fd00::/8' }).trustProxy).toEqual([
        '10.0.0.0/8',
        'loopback',
        'fd00::/8',
      ]);
      expect(loadGatewayConfig({ BATON_TRUST_PROXY: 'false' }).trustProxy).toBe(false);
      // The shared METRICS_PORT (Compose sets it for every component) does not move the gateway's.
      expect(loadGatewayConfig({ METRICS_PORT: '9464' }).gatewayMetricsPort).toBeUndefined();
    });

    it('refuses values that would weaken it, naming the variable', () => {
      expect(() => loadGatewayConfig({ BATON_TRUST_PROXY: 'true' })).toThrow(/BATON_TRUST_PROXY="true" is invalid/);
      expect(() => loadGatewayConfig({ BATON_TRUST_PROXY: 'evil.example' })).toThrow(/BATON_TRUST_PROXY/);
      expect(() => loadGatewayConfig({ BATON_RATE_LIMIT: '-1' })).toThrow(/BATON_RATE_LIMIT/);
      expect(() => loadGatewayConfig({ BATON_RATE_LIMIT: 'many' })).toThrow(/BATON_RATE_LIMIT/);
      expect(() => loadGatewayConfig({ BATON_METRICS_PORT: '70000' })).toThrow(/BATON_METRICS_PORT/);
      expect(() => loadGatewayConfig({ BATON_REQUEST_TIMEOUT_MS: '10' })).toThrow(/BATON_REQUEST_TIMEOUT_MS/);
    });
  });

  describe('security headers', () => {
    it('API answers carry helmet headers and a CSP that loads nothing', async () => {
      const app = appWith();
      for (const path of ['/healthz', '/v1/workflows', '/nope', '/openapi.json']) {
        const res = await request(app).get(path);
        expect(res.headers['content-security-policy']).toBe(API_CSP);
        expect(res.headers['x-content-type-options']).toBe('nosniff');
        expect(res.headers['x-frame-options']).toBe('DENY');
        expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
        expect(res.headers['referrer-policy']).toBe('same-origin');
        expect(res.headers['cross-origin-opener-policy']).toBe('same-origin');
        expect(res.headers['cross-origin-resource-policy']).toBe('same-origin');
        expect(res.headers['x-powered-by']).toBeUndefined();
      }
    });

    it('dashboard pages keep their own CSP, Bull Board gets one it can run under', async () => {
      const app = appWith();
      const page = await request(app).get('/').expect(200);
      expect(page.headers['content-security-policy']).toBe(DASHBOARD_CSP);
      expect(page.headers['x-frame-options']).toBe('DENY');
      const board = await request(app).get('/admin/queues').expect(200);
      expect(board.headers['content-security-policy']).toBe(BULL_BOARD_CSP);
      expect(board.headers['x-content-type-options']).toBe('nosniff');
    });
  });

  describe('rate limit', () => {
    it('is shared by replicas through Redis and answers 429 in the error shape', async () => {
      const prefix = freshPrefix();
      const a = appWith({ rateLimit: 5, queuePrefix: prefix });
      const b = appWith({ rateLimit: 5, queuePrefix: prefix });
      for (const app of [a, b, a, b, a]) await request(app).get('/v1/workflows').expect(200);
      const limited = await request(b).get('/v1/workflows').expect(429);
      expect(limited.body).toEqual({ error: { code: 'RATE_LIMITED', message: expect.stringMatching(/5 per minute/) } });
      expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
      expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
      expect(limited.headers['ratelimit-policy']).toMatch(/^5;w=60/);
      expect(limited.headers['ratelimit']).toMatch(/remaining=0/);
      expect(limited.headers['x-request-id']).toBeDefined();
      // The count lives in Redis under the queue prefix.
      const keys = await env.redis.keys(`${prefix}:ratelimit:*`);
      expect(keys.length).toBe(1);
      // Probes and scrapes are never limited.
      await request(a).get('/healthz').expect(200);
      await request(a).get('/readyz').expect(200);
      await request(a).get('/metrics').expect(200);
    });

    it('counts before auth, so API keys cannot be guessed at speed', async () => {
      const app = appWith({ rateLimit: 3, queuePrefix: freshPrefix(), apiKeys: ['right-key'] });
      for (let i = 0; i < 3; i++) {
        await request(app).get('/v1/workflows').set('Authorization', `Bearer guess-${i}`).expect(401);
      }
      await request(app).get('/v1/workflows').set('Authorization', 'Bearer guess-4').expect(429);
    });

    it('behind one proxy (BATON_TRUST_PROXY=1) each client behind it has its own count', async () => {
      const app = appWith({ rateLimit: 2, queuePrefix: freshPrefix(), trustProxy: 1 });
      const from = (ip: string) => request(app).get('/v1/workflows').set('X-Forwarded-For', ip);
      await from('203.0.113.1').expect(200);
      await from('203.0.113.1').expect(200);
      await from('203.0.113.1').expect(429);
      await from('203.0.113.2').expect(200);
      // A client cannot pick its key by prepending addresses: only the last hop (the ingress's) counts.
      await from('198.51.100.7, 203.0.113.1').expect(429);
    });

    it('without trust proxy a spoofed X-Forwarded-For changes nothing', async () => {
      const app = appWith({ rateLimit: 2, queuePrefix: freshPrefix() });
      await request(app).get('/v1/workflows').set('X-Forwarded-For', '203.0.113.10').expect(200);
      await request(app).get('/v1/workflows').set('X-Forwarded-For', '203.0.113.11').expect(200);
      await request(app).get('/v1/workflows').set('X-Forwarded-For', '203.0.113.12').expect(429);
    });

    it('lets requests through when Redis is unreachable (the limiter must not be the outage)', async () => {
      const down = new Redis({ host: '127.0.0.1', port: 1, lazyConnect: true, maxRetriesPerRequest: 0 });
      down.on('error', () => undefined);
      try {
        const app = appWith({ rateLimit: 1, queuePrefix: freshPrefix() }, down);
        const started = Date.now();
        for (let i = 0; i < 3; i++) await request(app).get('/v1/workflows').expect(200);
        expect(Date.now() - started).toBeLessThan(5_000);
      } finally {
        down.disconnect();
      }
    });

    it('0 turns it off', async () => {
      const app = appWith({ rateLimit: 0, queuePrefix: freshPrefix() });
      for (let i = 0; i < 5; i++) {
        const res = await request(app).get('/v1/workflows').expect(200);
        expect(res.headers['ratelimit']).toBeUndefined();
      }
    });
  });

  describe('API keys', () => {
    it('401 without or with a wrong key on /v1, the dashboard actions and /invoice/start; probes open', async () => {
      const app = appWith({ apiKeys: ['k1', 'k2'] });
      const missing = await request(app).get('/v1/runs').expect(401);
      expect(missing.body.error).toEqual({ code: 'UNAUTHORIZED', message: expect.any(String) });
      expect(missing.headers['www-authenticate']).toMatch(/^Bearer /);
      await request(app).get('/v1/runs').set('Authorization', 'Bearer k3').expect(401);
      await request(app).post('/invoice/start').send({ customerId: 'cust-01' }).expect(401);
      await request(app).post(`/v1/runs/${crypto.randomUUID()}/cancel`).send({}).expect(401);
      await request(app).get('/v1/runs').set('Authorization', 'Bearer k2').expect(200);
      await request(app).get('/healthz').expect(200);
      await request(app).get('/readyz').expect(200);
    });
  });

  describe('read-only keys', () => {
    it('may read (GET) but get 403 on anything that changes state; an unknown key is still 401', async () => {
      const app = appWith({ apiKeys: ['writer'], readOnlyApiKeys: ['reader'] });
      await request(app).get('/v1/workflows').set('Authorization', 'Bearer reader').expect(200);
      const forbidden = await request(app)
        .post('/v1/workflows/invoice/runs')
        .set('Authorization', 'Bearer reader')
        .send({ input: {} })
        .expect(403);
      expect(forbidden.body.error).toEqual({ code: 'FORBIDDEN', message: expect.stringMatching(/read-only/) });
      await request(app)
        .put('/v1/schedules/x.0')
        .set('Authorization', 'Bearer reader')
        .send({ paused: true })
        .expect(403);
      await request(app).post('/invoice/start').set('Authorization', 'Bearer reader').send({}).expect(403);
      await request(app).post('/invoice/start').set('Authorization', 'Bearer nobody').send({}).expect(401);
      // A full key passes the check (the body is then what is wrong).
      await request(app).post('/invoice/start').set('Authorization', 'Bearer writer').send({}).expect(400);
      // Bull Board is read-only: both kinds of key open it.
      const basic = `Basic ${Buffer.from('x:reader').toString('base64')}`;
      await request(app).get('/admin/queues/api/queues').set('Authorization', basic).expect(200);
    });

    it('are parsed from BATON_READONLY_API_KEYS and documented as 403 on writes', async () => {
      expect(loadGatewayConfig({ BATON_READONLY_API_KEYS: ' r1, r2 ,' }).readOnlyApiKeys).toEqual(['r1', 'r2']);
      expect(loadGatewayConfig({}).readOnlyApiKeys).toEqual([]);
      const app = appWith({ apiKeys: [], readOnlyApiKeys: ['reader'] });
      const doc = (await request(app).get('/openapi.json').expect(200)).body as {
        paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
      };
      expect(doc.paths['/v1/workflows/{name}/runs'].post.responses['403']).toBeDefined();
      expect(doc.paths['/v1/runs/{id}'].get.responses['403']).toBeUndefined();
      expect(doc.paths['/v1/runs/{id}'].get.responses['401']).toBeDefined();
      expect(doc.paths['/v1/runs/{id}'].get.responses['429']).toBeDefined();
      expect(doc.paths['/healthz'].get.responses['429']).toBeUndefined();
    });
  });

  describe('/metrics on its own port', () => {
    it('is not served on the API port when BATON_METRICS_PORT is set', async () => {
      await request(appWith({ gatewayMetricsPort: 9464 }))
        .get('/metrics')
        .expect(404);
      const res = await request(appWith()).get('/metrics').expect(200);
      expect(res.text).toMatch(/baton_http_request_duration_seconds/);
    });
  });

  describe('request timeouts', () => {
    it('closes a connection whose headers never finish (slowloris) with 408', async () => {
      const server = createApiServer(appWith(), { requestTimeoutMs: 1_000, checkIntervalMs: 100 });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const { port } = server.address() as AddressInfo;
        const started = Date.now();
        const answer = await new Promise<string>((resolve, reject) => {
          const socket = net.connect(port, '127.0.0.1', () => socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'));
          let data = '';
          socket.on('data', (chunk) => (data += chunk.toString()));
          socket.on('close', () => resolve(data));
          socket.on('error', reject);
        });
        expect(answer).toMatch(/^HTTP\/1\.1 408/);
        expect(Date.now() - started).toBeLessThan(5_000);
      } finally {
        server.close();
      }
    });
  });
});
