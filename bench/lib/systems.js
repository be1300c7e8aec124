'use strict';
/* global fetch, Buffer */
/**
 * The systems under test, each behind the same small interface used by bench/run.js:
 *   setup()            start the system's processes against its own database and Redis prefix
 *   trigger(run)       start one 4-step run ({key, phase, sentAt}) as a client would
 *   finished(phase)    how many runs of the phase have ended (all 4 steps, or failed)
 *   collect(phase)     Map key -> [{step, at}] of the phase's runs (at: when the step's handler ran)
 *   processes()        [{label, pid}] whose CPU and peak RSS count for the system
 *   teardown()         stop the processes, drop the database
 * `harnessCommits` counts the read-only queries the harness itself sent to the system's database
 * while measuring (Baton's completion polling), so that they can be taken out of the commit count.
 */
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { setTimeout: sleep } = require('node:timers/promises');
const infra = require('./infra');
const { parseHops, mergeHops } = require('./hops');

const BENCH = path.resolve(__dirname, '..');
const ROOT = path.resolve(BENCH, '..');
const WORKERS = path.join(BENCH, 'workers');

/** Per-system tuning, as printed in the output and docs/PERFORMANCE.md. */
const TUNING = {
  baton: (c, functionProcesses = 1) =>
    `gateway + coordinator (node flags: ${SERVICE_NODE_FLAGS.join(' ') || 'none'}; env: ${
      Object.entries(SERVICE_ENV)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ') || 'none'
    }; defaults: inbox batches of up to 200 messages, 2 reading loops) + ${functionProcesses} bench-noop function process(es) as their image runs them (bundle, start.js, code cache), each running all 4 steps (BENCH_NOOP_CONCURRENCY ${4 * c}); runs started over HTTP (keep-alive)`,
  'baton-cluster': (c, functionProcesses = 1) =>
    `baton (same processes and settings) on a 3-master Redis Cluster the harness starts (no persistence), REDIS_CLUSTER_NODES, BATON_INBOX_SHARDS ${BENCH_CLUSTER_SHARDS}; ${functionProcesses} function process(es), BENCH_NOOP_CONCURRENCY ${4 * c}`,
  'bullmq-chain': (c) =>
    `one worker process, 4 queues x concurrency ${c}; removeOnComplete; the worker of queue k adds the job of queue k+1`,
  'bullmq-chain-aof': (c) =>
    `bullmq-chain on a private redis-server with appendonly yes, appendfsync everysec (AOF in a temp dir): one worker process, 4 queues x concurrency ${c}`,
  'bullmq-flow': (c) =>
    `one worker process, 4 queues x concurrency ${c}; each run is one FlowProducer tree q4<-q3<-q2<-q1, removeOnComplete`,
  'pg-boss': (c) =>
    `one worker process, 4 queues x 2 work() loops, batchSize 64, pollingIntervalSeconds 0.5 (the minimum), next step inserted per batch with insert(), notifyWorker() wakes the next queue; pool max ${c + 4}`,
  'graphile-worker': (c) =>
    `one worker process, concurrency ${4 * c}, maxPoolSize ${4 * c + 2}, localQueue.size ${4 * c + 1}, completeJobBatchDelay 0, prepared statements; LISTEN/NOTIFY wake-ups`,
  dbos: () =>
    `DBOS Transact 5 (system database in PostgreSQL, defaults: pool 10); one worker process = the application server: the harness POSTs each run over HTTP (keep-alive), the worker starts the workflow in-process (DBOS.startWorkflow, workflowID = run key; 202 once recorded); one workflow of 4 DBOS.runStep steps, each checkpointed before the next; workflows run as they are started (DBOS has no cap on in-process workflows)`,
  'dbos-queue': (c) =>
    `DBOS Transact 5; the harness enqueues each run with DBOSClient.enqueue (workflowID = run key) on the DBOS queue 'bench' (workerConcurrency ${4 * c}, minPollingIntervalMs ${DBOS_POLL_MS}; DBOS's default is 1000), one worker process dequeues and runs the same 4-step workflow`,
  restate: () =>
    'restate-server 1.7 (single node, its defaults: 24 partitions, replicated loglet with replication 1 on its own log-server, RocksDB WAL fsynced) started by the harness in a temp dir on free ports; one service deployment process (SDK 1.14, HTTP/2) registered through the admin API; handler of 4 ctx.run steps, each journaled before the next; runs started through the ingress (POST /bench/run/send, keep-alive)',
};

/** Inbox shards of `baton-cluster` (BENCH_CLUSTER_SHARDS, default 16). */
const BENCH_CLUSTER_SHARDS = Number(process.env.BENCH_CLUSTER_SHARDS || 16);
/**
 * How Baton's gateway and coordinator start in their image (the Dockerfile's `service` stage, its one
 * owner): the node flags of its CMD and the variables of its ENV lines. BENCH_SERVICE_FLAGS
 * (space-separated; empty for node's defaults) and BENCH_SERVICE_ENV (space-separated NAME=value;
 * empty for none) measure others in place.
 */
const SERVICE_IMAGE = serviceImage();
const SERVICE_NODE_FLAGS =
  process.env.BENCH_SERVICE_FLAGS !== undefined
    ? process.env.BENCH_SERVICE_FLAGS.split(' ').filter(Boolean)
    : SERVICE_IMAGE.flags;
const SERVICE_ENV =
  process.env.BENCH_SERVICE_ENV !== undefined
    ? Object.fromEntries(
        process.env.BENCH_SERVICE_ENV.split(' ')
          .filter(Boolean)
          .map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
      )
    : SERVICE_IMAGE.env;

/** The `service` stage of the Dockerfile: the flags between `node` and `dist/main.js` in its CMD, its ENV. */
function serviceImage() {
  const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  const stage = dockerfile.slice(dockerfile.indexOf(' AS service'));
  const cmd = /^CMD (\[.*\])$/m.exec(stage);
  const argv = cmd ? JSON.parse(cmd[1]) : [];
  if (argv[0] !== 'node' || argv.at(-1) !== 'dist/main.js')
    throw new Error(`Dockerfile: the service stage's CMD is not node [flags] dist/main.js: ${cmd?.[1]}`);
  // `ENV NAME=value` lines (one variable each, no quotes: what the stage uses).
  const env = Object.fromEntries([...stage.matchAll(/^ENV (\w+)=(\S+)$/gm)].map((m) => [m[1], m[2]]));
  return { flags: argv.slice(1, -1), env };
}

/** The minimum polling interval of the DBOS queue's dispatch loop (ms). */
const DBOS_POLL_MS = Number(process.env.BENCH_DBOS_POLL_MS || 50);

/** How each system keeps a step once it has run (docs/PERFORMANCE.md). */
const DURABILITY = {
  baton: 'PostgreSQL (synchronous_commit on), every step',
  'baton-cluster': 'PostgreSQL (synchronous_commit on), every step',
  'bullmq-chain': 'none (Redis without persistence)',
  'bullmq-chain-aof': 'Redis AOF, fsync every second (up to ~1 s lost on a crash)',
  'bullmq-flow': 'none (Redis without persistence)',
  'pg-boss': 'PostgreSQL (synchronous_commit on), every job',
  'graphile-worker': 'PostgreSQL (synchronous_commit on), every job',
  dbos: 'PostgreSQL (synchronous_commit on), every step checkpoint',
  'dbos-queue': 'PostgreSQL (synchronous_commit on), every step checkpoint',
  restate: "Restate's log and journal (RocksDB, its defaults: WAL fsynced), every ctx.run",
};
/** The systems the issue-16 latency target compares Baton with: each run's steps survive a crash. */
const DURABLE = new Set(['baton', 'baton-cluster', 'pg-boss', 'graphile-worker', 'dbos', 'dbos-queue', 'restate']);

const SYSTEMS = Object.keys(TUNING);

function uniqueName(system, id) {
  return `bench_${system.replace(/-/g, '_')}_${id}`;
}

/** Common part: a database of its own (created here, dropped in teardown) and a Redis prefix. */
class BaseSystem {
  constructor(name, ctx) {
    this.name = name;
    this.ctx = ctx;
    this.database = uniqueName(name, ctx.id);
    this.databaseUrl = infra.withDatabase(ctx.serverUrl, this.database);
    this.prefix = `bench-${ctx.id}-${name}`;
    this.harnessCommits = 0;
    this.procs = [];
    this.tuning = TUNING[name](ctx.concurrency, ctx.functionProcesses);
    this.durability = DURABILITY[name];
    this.durable = DURABLE.has(name);
    /** Redis the system uses (bullmq-chain-aof: its own). */
    this.redisUrl = ctx.redisUrl;
  }

  async createDatabase() {
    await infra.adminQuery(this.ctx.serverUrl, `CREATE DATABASE "${this.database}"`);
    this.databaseCreated = true;
  }

  processes() {
    return this.procs.map((p) => ({ label: p.name, pid: p.child.pid }));
  }

  assertAlive() {
    for (const p of this.procs) {
      if (p.exited) throw new Error(`${p.name} exited unexpectedly:\n${p.tail.join('\n')}`);
    }
  }

  async teardown() {
    for (const p of this.procs) await infra.stopProcess(p);
    if (this.databaseCreated) {
      await infra.adminQuery(this.ctx.serverUrl, `DROP DATABASE IF EXISTS "${this.database}" WITH (FORCE)`);
    }
    if (this.redis) {
      const keys = await this.redis.keys(`${this.prefix}*`);
      for (let i = 0; i < keys.length; i += 500) await this.redis.del(...keys.slice(i, i + 500));
      await this.redis.quit();
    }
  }
}

// ---- Baton -----------------------------------------------------------------------------------

class BatonSystem extends BaseSystem {
  async setup() {
    const engine = require('@baton/engine');
    await this.createDatabase();
    await engine.migrate(this.databaseUrl);
    this.redis = new infra.Redis(this.ctx.redisUrl);
    this.functionProcesses = this.ctx.functionProcesses ?? 1;
    const [port, coordinatorMetrics] = [await infra.freePort(), await infra.freePort()];
    this.coordinatorMetrics = coordinatorMetrics;
    const functionMetrics = [];
    this.functionMetrics = functionMetrics;
    for (let i = 0; i < this.functionProcesses; i += 1) functionMetrics.push(await infra.freePort());
    this.base = `http://127.0.0.1:${port}`;
    const functionImage = await this.functionAsDeployed();
    const common = {
      DATABASE_URL: this.databaseUrl,
      REDIS_URL: this.ctx.redisUrl,
      BATON_QUEUE_PREFIX: this.prefix,
      LOG_LEVEL: 'warn',
      ...this.extraEnv,
    };
    this.procs.push(
      infra.startProcess(
        'baton-gateway',
        path.join(ROOT, 'services/gateway/dist/main.js'),
        {
          ...common,
          ...SERVICE_ENV,
          PORT: String(port),
          // The gateway's per-client rate limit (where the build has one) would throttle the bench client.
          BATON_RATE_LIMIT: '0',
        },
        { nodeFlags: SERVICE_NODE_FLAGS },
      ),
      infra.startProcess(
        'baton-coordinator',
        path.join(ROOT, 'services/coordinator/dist/main.js'),
        {
          ...common,
          ...SERVICE_ENV,
          METRICS_PORT: String(coordinatorMetrics),
          WORKFLOWS_DIR: path.join(BENCH, 'workflows'),
        },
        { nodeFlags: SERVICE_NODE_FLAGS },
      ),
      // `--function-processes N`: N function processes (pods, deployed), each with the same concurrency.
      ...functionMetrics.map((metricsPort, i) =>
        infra.startProcess(
          this.functionProcesses > 1 ? `baton-function-${i + 1}` : 'baton-function',
          functionImage.script,
          { ...common, METRICS_PORT: String(metricsPort), BENCH_NOOP_CONCURRENCY: String(4 * this.ctx.concurrency) },
          { nodeFlags: functionImage.nodeFlags },
        ),
      ),
    );
    const up = async () => {
      this.assertAlive();
      const ready = await fetch(`${this.base}/readyz`).then((r) => r.status === 200);
      if (!ready) return false;
      // The coordinator saves every definition of bench/workflows at start; the fan-out scenario needs its two.
      for (const name of this.workflows ?? ['bench-noop']) {
        if ((await fetch(`${this.base}/v1/workflows/${name}`)).status !== 200) return false;
      }
      if (!(await infra.canConnect(coordinatorMetrics))) return false;
      for (const metricsPort of functionMetrics) if (!(await infra.canConnect(metricsPort))) return false;
      return true;
    };
    // Generous: on a loaded 2-core machine three Node processes and a migration can take a minute.
    await infra.waitUntil(up, 150_000, 'Baton to start (gateway ready, workflow saved, coordinator and function up)');
    this.pool = new infra.pg.Pool({ connectionString: this.databaseUrl, max: 2 });
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
  }

  /**
   * The function process as a function image runs it (Dockerfile, target `function`): one bundle
   * (the SDK's bundleFunction), started by start.js with the images' node flags and the V8 code cache
   * written by them, so its CPU and RSS are what a deployment pays. BENCH_FUNCTION_AS=source runs
   * bench/workers/baton-noop-function.js itself with node's defaults instead (the bench until
   * 2026-12-04).
   */
  async functionAsDeployed() {
    const source = path.join(WORKERS, 'baton-noop-function.js');
    if (process.env.BENCH_FUNCTION_AS === 'source') return { script: source, nodeFlags: [] };
    const { bundleFunction, IMAGE_NODE_FLAGS, writeCodeCache } = require('@baton/sdk/dist/bundle');
    this.functionDir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-noop-'));
    const bundled = await bundleFunction(ROOT, path.join(this.functionDir, 'main.js'), { entry: source });
    writeCodeCache(bundled.launcher);
    return { script: bundled.launcher, nodeFlags: [...IMAGE_NODE_FLAGS] };
  }

  /**
   * Idle keep-alive sockets are dropped before each phase: the gateway closes a connection idle for
   * 5 s (Node's keepAliveTimeout), and a request sent on it as it closes fails with ECONNRESET,
   * which ended Baton's phases of a run after the wait for a slow phase's completion.
   */
  beforePhase() {
    for (const sockets of Object.values(this.agent.freeSockets)) for (const socket of sockets) socket.destroy();
  }

  async trigger(run) {
    // node:http with a keep-alive agent, not fetch(): undici's fetch cost the harness ~1 ms of CPU per
    // request, CPU that the 2-core machine then could not give to the system under test.
    const status = await postJson(this.agent, `${this.base}/v1/workflows/bench-noop/runs`, { input: run });
    if (status !== 202) throw new Error(`POST /v1/workflows/bench-noop/runs: ${status}`);
  }

  /**
   * `baton_step_hop_seconds` of the coordinator and every function process, added up: run.js takes
   * one before and one after each phase (bench/lib/hops.js).
   */
  async hopSnapshot() {
    const texts = await Promise.all([this.coordinatorMetrics, ...this.functionMetrics].map(scrapeMetrics));
    return mergeHops(texts.map(parseHops));
  }

  /** Group commit at work: the coordinator's batch histograms, read off its /metrics. */
  async extraStats() {
    const coordinator = await scrapeMetrics(this.coordinatorMetrics);
    const fn = await scrapeMetrics(this.functionMetrics[0]);
    const batches = metricValue(coordinator, 'baton_coordinator_batch_messages_count');
    return {
      // Over the whole run (warm-up, bursts and latency phases).
      coordinatorBatches: batches,
      meanBatchMessages: metricValue(coordinator, 'baton_coordinator_batch_messages_sum') / batches,
      meanBatchMs: (1000 * metricValue(coordinator, 'baton_coordinator_batch_duration_seconds_sum')) / batches,
      meanStepQueueWaitMs:
        (1000 * metricValue(fn, 'baton_step_wait_seconds_sum')) / metricValue(fn, 'baton_step_wait_seconds_count'),
    };
  }

  async finished(phase) {
    this.harnessCommits += 1;
    // Only runs created since the phase began (runs_newest index): polling must not scan every run
    // of earlier phases, which would take PostgreSQL CPU from the system under test.
    this.phaseStart ??= new Map();
    if (!this.phaseStart.has(phase)) {
      // The first poll comes once every trigger was sent, which takes well under five minutes.
      this.harnessCommits += 1;
      this.phaseStart.set(phase, (await this.pool.query(`SELECT now() - interval '5 minutes' AS t`)).rows[0].t);
    }
    const { rows } = await this.pool.query(
      `SELECT count(*)::int AS n FROM runs
        WHERE created_at >= $2 AND input->>'phase' = $1 AND status NOT IN ('pending', 'running', 'compensating')`,
      [phase, this.phaseStart.get(phase)],
    );
    return rows[0].n;
  }

  async collect(phase) {
    const { rows } = await this.pool.query(
      `SELECT r.input->>'key' AS key, r.status AS run_status, s.step_id, s.status, s.attempt, s.output
         FROM runs r LEFT JOIN step_executions s ON s.run_id = r.id AND s.kind = 'action'
        WHERE r.input->>'phase' = $1`,
      [phase],
    );
    const byKey = new Map();
    for (const row of rows) {
      if (!byKey.has(row.key)) byKey.set(row.key, []);
      if (row.status === 'succeeded' && row.output) {
        byKey.get(row.key).push({ step: row.output.step, at: row.output.at, attempt: row.attempt });
      }
    }
    return byKey;
  }

  async teardown() {
    await this.pool?.end();
    this.agent?.destroy();
    await super.teardown();
    if (this.functionDir) fs.rmSync(this.functionDir, { recursive: true, force: true });
  }
}

// ---- systems with a forked worker process -----------------------------------------------------

class ForkedSystem extends BaseSystem {
  async startWorker(env) {
    const script = path.join(WORKERS, `${this.workerScript ?? this.name}.js`);
    const entry = infra.startProcess(`${this.name}-worker`, script, env, { ipc: true });
    this.procs.push(entry);
    this.worker = entry.child;
    this.pending = new Map();
    this.nextId = 0;
    const ready = new Promise((resolve, reject) => {
      entry.child.on('message', (msg) => {
        if (msg.ready) resolve();
        else if (this.pending.has(msg.id)) {
          this.pending.get(msg.id)(msg.value);
          this.pending.delete(msg.id);
        }
      });
      entry.child.once('exit', () => reject(new Error(`${this.name} worker exited:\n${entry.tail.join('\n')}`)));
    });
    await Promise.race([
      ready,
      sleep(60_000).then(() => {
        throw new Error(`${this.name} worker did not start in 60 s:\n${entry.tail.join('\n')}`);
      }),
    ]);
  }

  request(cmd) {
    this.assertAlive();
    const id = ++this.nextId;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.worker.send({ cmd, id });
    });
  }

  workerEnv() {
    return {
      REDIS_URL: this.redisUrl,
      DATABASE_URL: this.databaseUrl,
      BENCH_PREFIX: this.prefix,
      BENCH_CONCURRENCY: String(this.ctx.concurrency),
    };
  }

  finished() {
    return this.request('count');
  }

  async collect() {
    const records = await this.request('dump');
    const byKey = new Map();
    for (const [key, step, at] of records) {
      if (!byKey.has(key)) byKey.set(key, []);
      byKey.get(key).push({ step, at });
    }
    return byKey;
  }

  async teardown() {
    if (this.worker && this.procs.every((p) => !p.exited)) {
      await Promise.race([this.request('stop'), sleep(10_000)]);
    }
    await this.closeClient?.();
    await super.teardown();
  }
}

function bullmqConnection(redisUrl) {
  const url = new URL(redisUrl);
  return {
    host: url.hostname,
    port: Number(url.port),
    db: Number(url.pathname.slice(1) || 0),
    maxRetriesPerRequest: null,
  };
}

class BullmqChainSystem extends ForkedSystem {
  async setup() {
    const { Queue } = require('bullmq');
    await this.createDatabase();
    this.redis = new infra.Redis(this.redisUrl);
    await this.startWorker(this.workerEnv());
    this.queue = new Queue('q1', { connection: bullmqConnection(this.redisUrl), prefix: this.prefix });
    this.options = require(path.join(WORKERS, 'settings.js')).JOB_OPTIONS;
    this.closeClient = () => this.queue.close();
  }

  async trigger(run) {
    await this.queue.add('step', run, this.options);
  }
}

/**
 * The same chain on a Redis of its own with an append-only file fsynced every second: the durable
 * neighbour, on Redis, of the non-durable ceiling. Its Redis's calls and CPU are counted for it.
 */
class BullmqChainAofSystem extends BullmqChainSystem {
  async setup() {
    this.workerScript = 'bullmq-chain';
    this.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-aof-'));
    this.aofRedis = await infra.startRedis({ appendonly: true, dir: this.tmpDir });
    this.redisUrl = this.aofRedis.url;
    this.redisPid = this.aofRedis.pid;
    this.statsRedis = new infra.Redis(this.redisUrl);
    await super.setup();
  }

  async teardown() {
    await super.teardown();
    await this.statsRedis?.quit().catch(() => undefined);
    if (this.aofRedis) await infra.stopProcess(this.aofRedis.entry);
    if (this.tmpDir) fs.rmSync(this.tmpDir, { recursive: true, force: true });
  }
}

class BullmqFlowSystem extends ForkedSystem {
  async setup() {
    const { FlowProducer } = require('bullmq');
    await this.createDatabase();
    this.redis = new infra.Redis(this.ctx.redisUrl);
    await this.startWorker(this.workerEnv());
    this.flows = new FlowProducer({ connection: bullmqConnection(this.ctx.redisUrl), prefix: this.prefix });
    this.options = require(path.join(WORKERS, 'settings.js')).JOB_OPTIONS;
    this.closeClient = () => this.flows.close();
  }

  async trigger(run) {
    let node;
    for (let k = 1; k <= 4; k += 1) {
      node = {
        name: `s${k}`,
        queueName: `q${k}`,
        data: run,
        opts: this.options,
        ...(node ? { children: [node] } : {}),
      };
    }
    await this.flows.add(node);
  }
}

class PgBossSystem extends ForkedSystem {
  async setup() {
    const mod = require('pg-boss');
    const PgBoss = mod.PgBoss ?? mod.default ?? mod;
    await this.createDatabase();
    await this.startWorker(this.workerEnv());
    this.boss = new PgBoss({
      connectionString: this.databaseUrl,
      max: 8,
      schedule: false,
      supervise: false,
      migrate: false,
    });
    this.boss.on('error', (err) => process.stderr.write(`pg-boss client: ${err.message}\n`));
    await this.boss.start();
    this.closeClient = () => this.boss.stop({ graceful: false, wait: true });
  }

  async trigger(run) {
    await this.boss.send('q1', run);
  }
}

class GraphileWorkerSystem extends ForkedSystem {
  async setup() {
    const { makeWorkerUtils } = require('graphile-worker');
    await this.createDatabase();
    await this.startWorker(this.workerEnv());
    this.pgPool = new infra.pg.Pool({ connectionString: this.databaseUrl, max: 10 });
    // Dropping the database at the end ends these connections: not an error worth a crash.
    this.pgPool.on('error', () => undefined);
    this.pgPool.on('connect', (client) => client.on('error', () => undefined));
    this.utils = await makeWorkerUtils({ pgPool: this.pgPool });
    this.closeClient = async () => {
      await this.utils.release();
      await this.pgPool.end();
    };
  }

  async trigger(run) {
    await this.utils.addJob('s1', run);
  }
}

// ---- durable-execution engines ---------------------------------------------------------------

/** DBOS Transact, the workflow started in the application's process, which the harness calls over HTTP. */
class DbosSystem extends ForkedSystem {
  async setup() {
    await this.createDatabase();
    const port = await infra.freePort();
    this.base = `http://127.0.0.1:${port}`;
    await this.startWorker({
      ...this.workerEnv(),
      BENCH_DBOS_MODE: 'direct',
      BENCH_DBOS_POLL_MS: String(DBOS_POLL_MS),
      BENCH_PORT: String(port),
    });
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
    this.closeClient = async () => this.agent.destroy();
  }

  async trigger(run) {
    const status = await postJson(this.agent, `${this.base}/runs`, run);
    if (status !== 202) throw new Error(`POST /runs to the DBOS application: ${status}`);
  }
}

/** DBOS Transact, each workflow enqueued by a DBOSClient and dequeued by the worker process. */
class DbosQueueSystem extends ForkedSystem {
  async setup() {
    this.workerScript = 'dbos';
    const { DBOSClient } = require('@dbos-inc/dbos-sdk');
    await this.createDatabase();
    await this.startWorker({
      ...this.workerEnv(),
      BENCH_DBOS_MODE: 'queue',
      BENCH_DBOS_POLL_MS: String(DBOS_POLL_MS),
    });
    this.client = await DBOSClient.create({ systemDatabaseUrl: this.databaseUrl });
    this.closeClient = () => this.client.destroy();
  }

  async trigger(run) {
    await this.client.enqueue({ queueName: 'bench', workflowName: 'bench', workflowID: run.key }, run);
  }
}

/** The restate-server binary of the installed @restatedev/restate-server (its platform package). */
function restateServerBinary() {
  const pkg = `@restatedev/restate-server-${os.platform()}-${os.arch()}`;
  try {
    return require.resolve(`${pkg}/bin/restate-server`);
  } catch {
    throw new Error(`${pkg} is not installed (npm ships restate-server for linux/darwin x64/arm64 only)`);
  }
}

/**
 * Restate: restate-server (single node, its defaults) in a temp dir on free ports, the service
 * deployment in a worker process, registered through the admin API; runs started through the
 * ingress with the same keep-alive client as Baton's.
 */
class RestateSystem extends ForkedSystem {
  constructor(name, ctx) {
    super(name, ctx);
    // No PostgreSQL: Restate keeps its log and journal itself.
    this.database = undefined;
  }

  async setup() {
    const binary = restateServerBinary();
    this.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-restate-'));
    const [ingress, admin, node, service] = [
      await infra.freePort(),
      await infra.freePort(),
      await infra.freePort(),
      await infra.freePort(),
    ];
    this.ingress = `http://127.0.0.1:${ingress}`;
    this.admin = `http://127.0.0.1:${admin}`;
    const server = infra.track(
      spawn(binary, ['--base-dir', path.join(this.tmpDir, 'data'), '--node-name', 'bench', '--no-logo'], {
        cwd: this.tmpDir,
        env: {
          ...process.env,
          RESTATE_INGRESS__BIND_ADDRESS: `127.0.0.1:${ingress}`,
          RESTATE_ADMIN__BIND_ADDRESS: `127.0.0.1:${admin}`,
          RESTATE_BIND_ADDRESS: `127.0.0.1:${node}`,
          RESTATE_ADVERTISED_ADDRESS: `http://127.0.0.1:${node}/`,
          RESTATE_LISTEN_MODE: 'tcp',
          RESTATE_DISABLE_TELEMETRY: 'true',
          RESTATE_LOG_FILTER: 'warn',
          RESTATE_LOG_DISABLE_ANSI_CODES: 'true',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
      'restate-server',
    );
    this.procs.push(server);
    const serverUp = async () => {
      if (server.exited) throw infra.fatal(`restate-server exited:\n${server.tail.join('\n')}`);
      const [a, i] = await Promise.all([
        fetch(`${this.admin}/health`).then((r) => r.status),
        fetch(`${this.ingress}/restate/health`).then((r) => r.status),
      ]);
      return a === 200 && i === 200;
    };
    await infra.waitUntil(serverUp, 60_000, 'restate-server (admin and ingress healthy)');
    await this.startWorker({ ...this.workerEnv(), BENCH_PORT: String(service) });
    const res = await fetch(`${this.admin}/deployments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ uri: `http://127.0.0.1:${service}` }),
    });
    if (res.status >= 300) throw new Error(`registering the deployment: ${res.status} ${await res.text()}`);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
    // Registered is not yet invocable everywhere: wait until one run goes through.
    const probe = { key: `probe-${this.ctx.id}`, phase: 'probe', sentAt: 0 };
    await infra.waitUntil(
      async () => {
        if (!this.probed) this.probed = (await postJson(this.agent, `${this.ingress}/bench/run/send`, probe)) === 202;
        return this.probed && (await this.request('count')) >= 1;
      },
      30_000,
      'the bench service to answer through the ingress',
    );
    await this.request('dump');
    this.closeClient = async () => this.agent.destroy();
  }

  async trigger(run) {
    const status = await postJson(this.agent, `${this.ingress}/bench/run/send`, run);
    if (status !== 202) throw new Error(`POST /bench/run/send: ${status}`);
  }

  async teardown() {
    await super.teardown();
    if (this.tmpDir) fs.rmSync(this.tmpDir, { recursive: true, force: true });
  }
}

/**
 * Baton on a 3-master Redis Cluster of its own with a sharded inbox (`--topology cluster` runs it
 * next to `baton` on one Redis). Redis calls are counted over the three masters, Redis CPU is theirs.
 */
class BatonClusterSystem extends BatonSystem {
  async setup() {
    this.cluster = await infra.startRedisCluster(3);
    this.extraEnv = { REDIS_CLUSTER_NODES: this.cluster.nodes, BATON_INBOX_SHARDS: String(BENCH_CLUSTER_SHARDS) };
    // INFO commandstats summed over the masters (the harness reads it as one server's).
    const clients = this.cluster.clients;
    this.statsRedis = {
      info: async (section) => {
        const sums = new Map();
        for (const info of await Promise.all(clients.map((c) => c.info(section)))) {
          for (const line of info.split('\n')) {
            const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
            if (m) sums.set(m[1], (sums.get(m[1]) ?? 0) + Number(m[2]));
          }
        }
        return [...sums].map(([name, calls]) => `cmdstat_${name}:calls=${calls}`).join('\n');
      },
    };
    this.clusterPids = this.cluster.pids;
    await super.setup();
  }

  processes() {
    // The masters' CPU counts for the system (the single Redis's is reported apart as redisCpu).
    return [...super.processes(), ...this.clusterPids.map((pid, i) => ({ label: `redis-master-${i + 1}`, pid }))];
  }

  async teardown() {
    // Its keys go with the cluster: the base class's key cleanup is for the shared Redis.
    this.redis?.disconnect();
    this.redis = undefined;
    await super.teardown();
    await this.cluster?.stop();
  }
}

const CLASSES = {
  baton: BatonSystem,
  'baton-cluster': BatonClusterSystem,
  'bullmq-chain': BullmqChainSystem,
  'bullmq-chain-aof': BullmqChainAofSystem,
  'bullmq-flow': BullmqFlowSystem,
  'pg-boss': PgBossSystem,
  'graphile-worker': GraphileWorkerSystem,
  dbos: DbosSystem,
  'dbos-queue': DbosQueueSystem,
  restate: RestateSystem,
};

function createSystem(name, ctx) {
  const Class = CLASSES[name];
  if (!Class) throw new Error(`unknown system '${name}' (known: ${SYSTEMS.join(', ')})`);
  return new Class(name, ctx);
}

/** A process's Prometheus text, off its /metrics. */
function scrapeMetrics(port) {
  return new Promise((resolve, reject) => {
    http
      .get(`http://127.0.0.1:${port}/metrics`, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

/** The value of a metric without labels (or of its first labelled series) in Prometheus text; NaN if absent. */
const metricValue = (text, name) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);

module.exports = { SYSTEMS, createSystem, postJson, scrapeMetrics, metricValue };

/** POSTs JSON, drains the answer, resolves with the status code. */
function postJson(agent, url, body) {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': payload.length } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
