import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  defineFunction,
  listTargets,
  metrics,
  registerTarget,
  registry,
  saveDefinition,
  startMetricsServer,
  TARGET_TTL_MS,
} from '@baton/engine';
import type { Express } from 'express';
import pino from 'pino';
import request from 'supertest';
import { z } from 'zod';
import { exportQueueDepths } from '../../services/coordinator/src/queue-metrics';
import type { AppDeps } from '../../services/gateway/src/app';
import { testApp } from '../support/gateway';
import { createDeploymentReader, loadKubernetesClient } from '../../services/gateway/src/kubernetes';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, freePort, waitFor, type TestEnv } from '../support/env';

const exec = promisify(execFile);
const ROOT = path.join(__dirname, '../..');

const echo = defineFunction({
  name: 'echo',
  input: z.object({ v: z.unknown() }),
  handler: async ({ v }) => ({ v }),
});

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

describe('observability', () => {
  let env: TestEnv;
  let engine: Engine;
  let app: Express;
  const depths = () => exportQueueDepths(env.pool, env.queues);

  const appWith = (deps: Partial<AppDeps> = {}) => testApp(env, engine.coordinatorQueue, { deps });

  beforeAll(async () => {
    env = await createTestEnv('observability');
    engine = await startEngine(env, [echo]);
    app = appWith();
    await saveDefinition(env.pool, {
      name: 'echoes',
      steps: [{ id: 'a', function: 'echo', input: { v: '{{ input.v }}' } }],
    });
  });

  afterAll(async () => {
    await engine?.close();
    await env?.cleanup();
  });

  it('lists live processes for Prometheus HTTP service discovery and drops silent ones', async () => {
    const live = registerTarget(env.redis, env.config.queuePrefix, {
      component: 'function',
      function: 'echo',
      instance: 'host-a:1',
      metricsUrl: 'http://10.1.2.3:9464/metrics',
    });
    await waitFor(async () => ((await listTargets(env.redis, env.config.queuePrefix)).length ? true : undefined));
    // A process that died without deregistering: its last heartbeat is older than the TTL.
    await env.redis.hset(
      `${env.config.queuePrefix}:targets`,
      'host-b:2',
      JSON.stringify({
        component: 'coordinator',
        instance: 'host-b:2',
        metricsUrl: 'http://10.9.9.9:9464/metrics',
        seenAt: Date.now() - TARGET_TTL_MS - 1,
      }),
    );
    const res = await request(app).get('/v1/prometheus/targets').expect(200);
    expect(res.body).toEqual([
      {
        targets: ['10.1.2.3:9464'],
        labels: {
          __metrics_path__: '/metrics',
          __scheme__: 'http',
          component: 'function',
          instance: 'host-a:1',
          function: 'echo',
        },
      },
    ]);
    expect(await env.redis.hexists(`${env.config.queuePrefix}:targets`, 'host-b:2')).toBe(0);
    await live.stop();
    expect((await request(app).get('/v1/prometheus/targets').expect(200)).body).toEqual([]);
  });

  it('reports each function with queue counts and live workers; no replicas outside a cluster', async () => {
    const runId = (
      await request(app)
        .post('/v1/workflows/echoes/runs')
        .send({ input: { v: 1 } })
        .expect(202)
    ).body.runId;
    await engine.waitForRun(runId);
    const res = await request(app).get('/v1/functions').expect(200);
    expect(res.body.kubernetes).toBe(false);
    expect(res.body.functions).toEqual([
      expect.objectContaining({
        name: 'echo',
        queue: '{fn.echo}',
        workers: 1,
        replicas: null,
        lastSeenAt: expect.any(String),
        jobs: expect.objectContaining({ waiting: 0, active: 0, completed: 1 }),
      }),
    ]);
  });

  it('reads Deployment replicas with @kubernetes/client-node (against a local stub of the Kubernetes API list call)', async () => {
    const seen: string[] = [];
    const stub = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          kind: 'DeploymentList',
          apiVersion: 'apps/v1',
          metadata: {},
          items: [
            {
              metadata: { name: 'baton-fn-echo', labels: { 'baton.io/function': 'echo' } },
              spec: { replicas: 3 },
              status: { readyReplicas: 2 },
            },
            { metadata: { name: 'unrelated', labels: {} }, spec: { replicas: 1 }, status: {} },
          ],
        }),
      );
    });
    const port = await listen(stub);
    try {
      const { KubeConfig } = await loadKubernetesClient();
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'stub', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
        users: [{ name: 'stub' }],
        contexts: [{ name: 'stub', cluster: 'stub', user: 'stub' }],
        currentContext: 'stub',
      });
      const withK8s = appWith({ deployments: await createDeploymentReader(kc, 'baton') });
      const res = await request(withK8s).get('/v1/functions').expect(200);
      expect(res.body.kubernetes).toBe(true);
      expect(res.body.functions.find((f: { name: string }) => f.name === 'echo').replicas).toEqual({
        desired: 3,
        ready: 2,
      });
      expect(seen).toEqual(['/apis/apps/v1/namespaces/baton/deployments?labelSelector=baton.io%2Ffunction']);
    } finally {
      stub.closeAllConnections();
      await new Promise((r) => stub.close(r));
    }
  });

  it('lists functions when the Kubernetes API fails, replicas null, and logs the failure', async () => {
    const lines: { level: number; msg: string; err?: { message?: string } }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const failing = appWith({
      logger,
      deployments: { replicasByFunction: () => Promise.reject(new Error('deployments is forbidden')) },
    });
    const res = await request(failing).get('/v1/functions').expect(200);
    expect(res.body.kubernetes).toBe(true);
    expect(res.body.functions.find((f: { name: string }) => f.name === 'echo').replicas).toBeNull();
    expect(lines).toContainEqual(
      expect.objectContaining({
        msg: 'reading Deployment replicas failed; replicas shown as null',
        err: expect.objectContaining({ message: 'deployments is forbidden' }),
      }),
    );
  });

  it("records every hop of a step's path: inbox wait, transaction, enqueue, queue wait, handler start", async () => {
    // Observations per hop, from the histogram's _count series.
    const counts = async (): Promise<Record<string, number>> => {
      const { values } = await metrics.stepHop.get();
      return Object.fromEntries(
        values
          .filter((v) => v.metricName === 'baton_step_hop_seconds_count')
          .map((v) => [String(v.labels.hop), v.value]),
      );
    };
    const hops = ['inbox_wait', 'transaction', 'enqueue', 'queue_wait', 'handler_start'];
    const before = await counts();
    await saveDefinition(env.pool, {
      name: 'echo-twice',
      steps: [
        { id: 'a', function: 'echo', input: { v: '{{ input.v }}' } },
        { id: 'b', function: 'echo', needs: ['a'], input: { v: '{{ steps.a.output.v }}' } },
      ],
    });
    const runId = (
      await request(app)
        .post('/v1/workflows/echo-twice/runs')
        .send({ input: { v: 2 } })
        .expect(202)
    ).body.runId;
    expect(await engine.waitForRun(runId)).toMatchObject({ status: 'succeeded' });
    const after = await counts();
    // Two steps: each job waited for and started, each report read and applied. Only step b's job is
    // added by the coordinator (`enqueue`): the gateway starts the run with step a queued (a direct
    // start). The suite's other runs may add to the counts, never take from them.
    const least: Record<string, number> = {
      inbox_wait: 2,
      transaction: 2,
      enqueue: 1,
      queue_wait: 2,
      handler_start: 2,
    };
    const observed = Object.fromEntries(hops.map((hop) => [hop, (after[hop] ?? 0) - (before[hop] ?? 0) >= least[hop]]));
    expect(observed).toEqual(Object.fromEntries(hops.map((hop) => [hop, true])));
  });

  it('exports baton_* metrics that promtool accepts, queue depths counted by the coordinator', async () => {
    const gauge = depths();
    try {
      const text = await registry.metrics();
      for (const name of [
        'baton_runs_total',
        'baton_steps_total',
        'baton_step_duration_seconds_bucket',
        'baton_step_wait_seconds_bucket',
        'baton_queue_jobs',
        'baton_run_duration_seconds_bucket',
      ]) {
        expect(text).toContain(name);
      }
      expect(text).toMatch(/baton_queue_jobs\{queue="\{fn\.echo\}",state="waiting"(,component="[^"]*")?\} 0/);
      // The coordinator inbox stream, counted the same way (empty once the runs are done).
      expect(text).toMatch(/baton_queue_jobs\{queue="\{coordinator\}:inbox",state="waiting"(,component="[^"]*")?\} 0/);
      expect(text).toMatch(/baton_queue_jobs\{queue="\{coordinator\}:inbox",state="failed"(,component="[^"]*")?\} 0/);
      expect(text).toMatch(/baton_steps_total\{function="echo",status="succeeded"[^}]*\} [1-9]/);
      // Only baton's own metrics: prom-client's defaults are not ours to lint.
      const ours = text
        .split('\n')
        .filter((l) => /^(# (HELP|TYPE) )?baton_/.test(l))
        .join('\n');
      const file = path.join(os.tmpdir(), `baton-metrics-${process.pid}.txt`);
      fs.writeFileSync(file, `${ours}\n`);
      const check = await exec('sh', ['-c', `promtool check metrics < ${file}`]).then(
        (r) => ({ code: 0, out: r.stdout + r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
      );
      expect(check).toEqual({ code: 0, out: '' });
    } finally {
      await gauge.close();
    }
  });

  it('a real Prometheus finds the components through /v1/prometheus/targets and scrapes baton_steps_total', async () => {
    const gatewayServer = http.createServer(app);
    const gatewayPort = await listen(gatewayServer);
    const metricsServer = await startMetricsServer(0, '127.0.0.1');
    const target = registerTarget(env.redis, env.config.queuePrefix, {
      component: 'function',
      function: 'echo',
      instance: `test:${process.pid}`,
      metricsUrl: `http://127.0.0.1:${metricsServer.port}/metrics`,
    });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-prom-'));
    fs.writeFileSync(
      path.join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        'scrape_configs:',
        '  - job_name: baton',
        '    http_sd_configs:',
        `      - url: http://127.0.0.1:${gatewayPort}/v1/prometheus/targets`,
        '        refresh_interval: 1s',
        '',
      ].join('\n'),
    );
    const promPort = await freePort();
    const prom = spawn(
      'prometheus',
      [
        `--config.file=${path.join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${path.join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ],
      { stdio: 'ignore' },
    );
    try {
      const runId = (
        await request(app)
          .post('/v1/workflows/echoes/runs')
          .send({ input: { v: 2 } })
          .expect(202)
      ).body.runId;
      await engine.waitForRun(runId);
      const value = await waitFor(
        async () => {
          const res = await fetch(
            `http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent('sum(baton_steps_total{function="echo",status="succeeded"})')}`,
          );
          const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
          const v = body.data.result[0]?.value[1];
          return v !== undefined && Number(v) >= 1 ? Number(v) : undefined;
        },
        30_000,
        'Prometheus to scrape baton_steps_total',
      );
      expect(value).toBeGreaterThanOrEqual(1);
    } finally {
      prom.kill('SIGTERM');
      await target.stop();
      await metricsServer.close();
      gatewayServer.closeAllConnections();
      await new Promise((r) => gatewayServer.close(r));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 45_000);

  it('never writes secrets to logs (canary values through real processes)', async () => {
    const canary = 'CANARY-s3cr3t-4f9a';
    const run = (entry: string, extraEnv: Record<string, string>, action: () => Promise<void>) =>
      new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, [path.join(ROOT, entry)], {
          env: {
            ...process.env,
            DATABASE_URL: env.databaseUrl,
            REDIS_URL: 'redis://127.0.0.1:6379/0',
            BATON_QUEUE_PREFIX: env.config.queuePrefix,
            LOG_LEVEL: 'debug',
            ...extraEnv,
          },
        });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (out += d));
        const started = waitFor(
          async () => (/listening|started/.test(out) ? true : undefined),
          15_000,
          `${entry} to start: ${out}`,
        );
        started
          .then(action)
          .then(() => {
            child.kill('SIGTERM');
            child.on('exit', () => resolve(out));
          })
          .catch((err) => {
            child.kill('SIGKILL');
            reject(err);
          });
      });
    const gatewayPort = await freePort();
    const gatewayLogs = await run(
      'services/gateway/dist/main.js',
      { PORT: String(gatewayPort), BATON_API_KEYS: canary },
      async () => {
        await fetch(`http://127.0.0.1:${gatewayPort}/v1/workflows`, { headers: { authorization: `Bearer ${canary}` } });
        await fetch(`http://127.0.0.1:${gatewayPort}/v1/workflows`, {
          headers: { authorization: `Bearer wrong-${canary}` },
        });
        await fetch(`http://127.0.0.1:${gatewayPort}/v1/nope?token=x`, {
          headers: { authorization: `Bearer ${canary}` },
        });
      },
    );
    expect(gatewayLogs).toMatch(/gateway listening/);
    expect(gatewayLogs).not.toContain(canary);

    const mailLogs = await run(
      'functions/send-email/dist/main.js',
      { SMTP_URL: `smtp://invoices:${canary}@127.0.0.1:2525`, METRICS_PORT: '0' },
      async () => undefined,
    );
    expect(mailLogs).toMatch(/SMTP transport configured/);
    expect(mailLogs).not.toContain(canary);

    const badConfig = await exec(process.execPath, [path.join(ROOT, 'services/coordinator/dist/main.js')], {
      env: { ...process.env, DATABASE_URL: `postgres://u:${canary}@db:notaport/x` },
    }).catch((e: { stderr: string }) => e.stderr);
    expect(badConfig).toMatch(/DATABASE_URL/);
    expect(badConfig).not.toContain(canary);
  }, 45_000);
});
