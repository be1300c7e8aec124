import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import {
  commandTimeoutOf,
  coordinatorQueue,
  createLogger,
  createRedis,
  type RedisConnection,
  defineFunction,
  queueContext,
  saveDefinition,
  type CoordinatorClient,
} from '@baton/engine';
import { createApp } from '../../services/gateway/src/app';
import { DEFAULT_REDIS_COMMAND_TIMEOUT_MS, loadGatewayConfig } from '../../services/gateway/src/config';
import { createApiServer } from '../../services/gateway/src/http/security';
import { createGatewayRedis } from '../../services/gateway/src/redis';
import { PrivateRedis } from '../chaos/private-servers';
import { createTestEnv, type TestEnv } from '../support/env';
import { startEngine, type Engine } from '../support/engine';

/**
 * Issue #12, defect 6 (gateway): the gateway's Redis calls had no time limit, so a frozen Redis
 * (SIGSTOP here; a stuck VM, a partition that drops packets) held HTTP requests for ever. The
 * gateway is wired as main.ts wires it (config from the environment, createGatewayRedis, the real
 * HTTP server with the default rate limiter) against a private redis-server the test freezes.
 * A run start still answers 202 (the run is committed; the reconciler or the late inbox entry starts
 * it), reads that need Redis answer 503, and once Redis resumes the run completes.
 */
const hello = defineFunction({
  name: 'bounded-hello',
  input: z.object({ name: z.string() }),
  handler: async ({ name }) => ({ greeting: `hello ${name}` }),
});

describe('BATON_REDIS_COMMAND_TIMEOUT_MS', () => {
  it('defaults to 2 s, is read in ms and refuses what cannot be a timeout', () => {
    expect(loadGatewayConfig({}).redisCommandTimeoutMs).toBe(DEFAULT_REDIS_COMMAND_TIMEOUT_MS);
    expect(DEFAULT_REDIS_COMMAND_TIMEOUT_MS).toBe(2_000);
    expect(loadGatewayConfig({ BATON_REDIS_COMMAND_TIMEOUT_MS: '750' }).redisCommandTimeoutMs).toBe(750);
    expect(() => loadGatewayConfig({ BATON_REDIS_COMMAND_TIMEOUT_MS: '0' })).toThrow(/BATON_REDIS_COMMAND_TIMEOUT_MS/);
    expect(() => loadGatewayConfig({ BATON_REDIS_COMMAND_TIMEOUT_MS: 'soon' })).toThrow(
      /BATON_REDIS_COMMAND_TIMEOUT_MS/,
    );
  });

  it('is the command timeout of the gateway connection', () => {
    const redis = createGatewayRedis({ ...loadGatewayConfig({ BATON_REDIS_COMMAND_TIMEOUT_MS: '1234' }) });
    try {
      expect(commandTimeoutOf(redis)).toBe(1234);
    } finally {
      redis.disconnect();
    }
  });
});

describe('gateway with a frozen Redis', () => {
  let env: TestEnv;
  let server: PrivateRedis;
  let gatewayRedis: RedisConnection;
  let engineRedis: RedisConnection;
  let coordinator: CoordinatorClient;
  let engine: Engine;
  let api: http.Server;
  let base: string;
  let frozen = false;
  const logger = createLogger('gateway-redis-bounds-test', 'silent');
  const warn = jest.spyOn(logger, 'warn');

  const freeze = () => {
    process.kill(server.pid as number, 'SIGSTOP');
    frozen = true;
  };
  const thaw = () => {
    if (frozen && server?.pid) process.kill(server.pid, 'SIGCONT');
    frozen = false;
  };

  beforeAll(async () => {
    env = await createTestEnv('gateway-redis-bounds');
    server = await PrivateRedis.start();
    const config = loadGatewayConfig({
      DATABASE_URL: env.databaseUrl,
      REDIS_URL: server.url,
      BATON_QUEUE_PREFIX: env.config.queuePrefix,
      BATON_REDIS_COMMAND_TIMEOUT_MS: '1000',
      LOG_LEVEL: 'silent',
    });
    gatewayRedis = createGatewayRedis(config);
    gatewayRedis.on('error', () => undefined);
    coordinator = coordinatorQueue(queueContext(config, gatewayRedis));
    coordinator.on('error', () => undefined);
    await coordinator.waitUntilReady();
    api = createApiServer(createApp({ pool: env.pool, redis: gatewayRedis, coordinator, config, logger }));
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;

    // The coordinator, reconciler and function worker on the same private Redis, on connections of
    // their own (no command timeout: they wait for Redis, as in production).
    engineRedis = createRedis({ host: '127.0.0.1', port: server.port, db: 0 }, 'test-engine');
    engineRedis.on('error', () => undefined);
    engine = await startEngine({ ...env, redis: engineRedis, queues: queueContext(env.config, engineRedis) }, [hello]);
    await saveDefinition(env.pool, {
      name: 'bounded',
      input: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] },
      steps: [{ id: 'greet', function: 'bounded-hello', input: { name: '{{ input.name }}' } }],
      output: { greeting: '{{ steps.greet.output.greeting }}' },
    });
  });

  afterAll(async () => {
    thaw();
    await new Promise((resolve) => api?.close(resolve));
    await engine?.close();
    await coordinator?.close();
    gatewayRedis?.disconnect();
    engineRedis?.disconnect();
    await server?.stop();
    await env?.cleanup();
  });

  it('answers a run start with 202, /readyz and Redis reads with 503, and the run completes once Redis resumes', async () => {
    const startRun = async (name: string): Promise<string> => {
      const started = await fetch(`${base}/v1/workflows/bounded/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input: { name } }),
      });
      expect(started.status).toBe(202);
      return ((await started.json()) as { runId: string }).runId;
    };
    let runId: string;
    freeze();
    try {
      // The run is committed with its first step (direct-start.ts); the job's enqueue times out
      // (logged), the request does not wait for Redis.
      runId = await startRun('frozen');
      const { rows } = await env.pool.query('SELECT status FROM runs WHERE id = $1', [runId]);
      expect(rows).toEqual([{ status: 'running' }]);
      expect(warn).toHaveBeenCalledWith(
        expect.objectContaining({ runIds: [runId] }),
        expect.stringContaining('first steps not enqueued'),
      );

      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(503);
      const readyBody = (await ready.json()) as { error: { code: string; message: string; details: unknown } };
      expect(readyBody.error).toMatchObject({ code: 'NOT_READY', details: { database: 'ok' } });
      expect(readyBody.error.message).toMatch(/^not ready: redis unreachable \(.+\)$/);

      const functions = await fetch(`${base}/v1/functions`);
      expect(functions.status).toBe(503);
      const functionsBody = (await functions.json()) as { error: { code: string; message: string } };
      expect(functionsBody.error.code).toBe('REDIS_UNAVAILABLE');
      expect(functionsBody.error.message).toMatch(/function queues.*try again/);

      // Cancel notifies the coordinator through Redis too: it answers (whatever it answers), it does not hang.
      const other = await startRun('cancelled');
      const cancel = await fetch(`${base}/v1/runs/${other}/cancel`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      expect([202, 503]).toContain(cancel.status);
      await cancel.body?.cancel();
    } finally {
      thaw();
    }
    // Redis resumes: the step is taken (its late job, or the reconciler's re-enqueue).
    const run = await engine.waitForRun(runId, ['succeeded'], 30_000);
    expect(run.output).toEqual({ greeting: 'hello frozen' });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
  });
});
