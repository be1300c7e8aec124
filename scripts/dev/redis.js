'use strict';
/**
 * Where Redis comes from: REDIS_CLUSTER_NODES (a Redis Cluster) or REDIS_URL / REDIS_HOST /
 * REDIS_PORT when set; BATON_DEV_REDIS_CLUSTER=1: a 3-master Redis Cluster the runner starts (data in
 * .dev/redis-cluster); else whatever answers PING on the default port; else a redis-server child
 * configured for queues (AOF, noeviction).
 */
const fs = require('node:fs');
const path = require('node:path');
const { spawn, execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { write } = require('./output');
const { portOrFree, freePorts, pollUntil } = require('./ports');
const procs = require('./procs');
const { ROOT, loadEngine, requireFromEngine } = require('./settings');

const { DevError } = procs;
const DATA_DIR = path.join(ROOT, '.dev', 'redis');
const HOW_TO_START =
  'Start one with `docker compose up -d redis postgres` (or `apt-get install redis-server`), or set REDIS_URL=redis://host:6379/0';

/**
 * Resolves the Redis to use. `env` holds the variables the components need (empty when the
 * environment already names the server); `stop` is set when the runner started the server itself.
 */
async function resolveRedis(settings, log) {
  const { redisOptionsFrom } = loadEngine();
  if (process.env.REDIS_CLUSTER_NODES) {
    const options = redisOptionsFrom({
      REDIS_URL: process.env.REDIS_URL || undefined,
      REDIS_HOST: '127.0.0.1',
      REDIS_PORT: 6379,
      REDIS_CLUSTER_NODES: process.env.REDIS_CLUSTER_NODES,
    });
    const state = await clusterState(options.cluster[0], options);
    if (state !== 'ok')
      throw new DevError(
        `the Redis Cluster at ${process.env.REDIS_CLUSTER_NODES} is not ready (${state}).\n${HOW_TO_START}`,
      );
    return {
      url: `cluster ${process.env.REDIS_CLUSTER_NODES}`,
      origin: `from REDIS_CLUSTER_NODES, ${process.env.BATON_INBOX_SHARDS || 1} inbox shard(s)`,
      env: {},
    };
  }
  if (settings.redisCluster) {
    if (!procs.onPath('redis-server') || !procs.onPath('redis-cli'))
      throw new DevError(`BATON_DEV_REDIS_CLUSTER needs redis-server and redis-cli on PATH.\n${HOW_TO_START}`);
    const cluster = await startRedisCluster(log);
    const shards = process.env.BATON_INBOX_SHARDS || '16';
    return {
      url: `cluster ${cluster.nodes}`,
      origin: `3 redis-servers, data in .dev/redis-cluster; ${shards} inbox shards`,
      env: { REDIS_URL: undefined, REDIS_CLUSTER_NODES: cluster.nodes, BATON_INBOX_SHARDS: shards },
      stop: cluster.stop,
    };
  }
  if (settings.redisGiven) {
    const options = redisOptionsFrom({
      REDIS_URL: process.env.REDIS_URL || undefined,
      REDIS_HOST: process.env.REDIS_HOST || '127.0.0.1',
      REDIS_PORT: Number(process.env.REDIS_PORT || 6379),
    });
    const ping = await pingRedis(options);
    if (!ping.ok)
      throw new DevError(`Redis at ${describe(options)} does not answer PING (${ping.reason}).\n${HOW_TO_START}`);
    return {
      url: describe(options),
      origin: process.env.REDIS_URL ? 'from REDIS_URL' : 'from REDIS_HOST/REDIS_PORT',
      env: {},
    };
  }

  const pidFile = path.join(DATA_DIR, 'redis.pid');
  await procs.stopLeftover(pidFile, 'redis-server', 'SIGTERM', log);
  const local = { host: '127.0.0.1', port: settings.redisPort, db: 0 };
  const ping = await pingRedis(local);
  if (ping.ok) return { url: describe(local), origin: 'local server', env: redisEnv(local.port) };

  if (!procs.onPath('redis-server')) {
    throw new DevError(`no Redis answers on 127.0.0.1:${local.port} and redis-server is not on PATH.\n${HOW_TO_START}`);
  }
  let port = local.port;
  if (ping.refused) {
    log.info(`no Redis answers on 127.0.0.1:${port}: starting redis-server (data in .dev/redis)`);
    port = await portOrFree(port);
  } else {
    log.warn(`Redis on 127.0.0.1:${port} cannot be used (${ping.reason}): starting redis-server instead`);
    [port] = await freePorts(1);
  }
  const server = await startRedisServer(port, pidFile, log);
  return {
    url: describe({ ...local, port }),
    origin: 'redis-server, data in .dev/redis',
    env: redisEnv(port),
    stop: server.stop,
  };
}

function redisEnv(port) {
  return { REDIS_URL: undefined, REDIS_HOST: '127.0.0.1', REDIS_PORT: String(port) };
}

function describe({ host, port, db, tls }) {
  return `${tls ? 'rediss' : 'redis'}://${host}:${port}/${db ?? 0}`;
}

/** One connection attempt and a PING; never retries (the runner decides what to do instead). */
async function pingRedis(options) {
  const { Redis } = requireFromEngine('ioredis');
  const client = new Redis({
    ...options,
    lazyConnect: true,
    connectTimeout: 2_000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // connect() rejects with a generic "Connection is closed."; the socket's own error says why.
  let socketError;
  client.on('error', (err) => (socketError = err));
  try {
    await client.connect();
    return { ok: (await client.ping()) === 'PONG' };
  } catch (err) {
    const cause = socketError ?? err;
    return { ok: false, refused: procs.errorCode(cause) === 'ECONNREFUSED', reason: procs.describeError(cause) };
  } finally {
    client.disconnect();
  }
}

/**
 * A redis-server configured as Baton expects in production (AOF on, noeviction), in its own process
 * group so that Ctrl-C reaches the components first and Redis is stopped after them.
 */
async function startRedisServer(port, pidFile, log) {
  fs.mkdirSync(DATA_DIR, { recursive: true });
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', DATA_DIR, '--pidfile', pidFile];
  args.push('--appendonly', 'yes', '--maxmemory-policy', 'noeviction', '--loglevel', 'warning');
  const child = procs.track(spawn('redis-server', args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] }));
  const tail = procs.lastLines();
  let ready = false;
  const show = (line) => {
    tail.push(line);
    // Its start-up banner is noise; shown only when the start fails. Later lines are warnings.
    if (ready) write('redis', '2', line);
  };
  procs.forEachLine(child.stdout, show);
  procs.forEachLine(child.stderr, show);
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) log.error(`redis-server exited (${signal ?? `code ${code}`})`);
  });

  ready = await pollUntil(async () => (await pingRedis({ host: '127.0.0.1', port, db: 0 })).ok, {
    timeoutMs: 15_000,
    abort: () => !procs.isAlive(child),
  });
  const stop = async () => {
    stopping = true;
    // SIGTERM = SHUTDOWN: Redis flushes the AOF and exits.
    await procs.stopChild(child, { signal: 'SIGTERM', graceMs: 10_000 });
  };
  if (!ready) {
    await stop();
    throw new DevError(`redis-server did not start on 127.0.0.1:${port}:\n${tail.text()}\n${HOW_TO_START}`);
  }
  log.ok(`redis-server ready on 127.0.0.1:${port} (pid ${child.pid})`);
  return { stop };
}

/** `cluster_state` of the node (ok, fail), or why it could not be read. */
async function clusterState(node, options) {
  const { Redis } = requireFromEngine('ioredis');
  const client = new Redis({
    host: node.host,
    port: node.port,
    username: options.username,
    password: options.password,
    tls: options.tls,
    lazyConnect: true,
    connectTimeout: 2_000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const info = await client.cluster('INFO');
    return /cluster_state:(\w+)/.exec(info)?.[1] ?? 'no cluster_state';
  } catch (err) {
    return procs.describeError(err);
  } finally {
    client.disconnect();
  }
}

/**
 * A local Redis Cluster for `npm run dev` (BATON_DEV_REDIS_CLUSTER=1): three masters with
 * `--cluster-enabled yes` on free ports (each needs port + 10000 for the cluster bus), joined with
 * `redis-cli --cluster create`. Started fresh each time (the cluster's node files are per run).
 */
async function startRedisCluster(log) {
  const dir = path.join(ROOT, '.dev', 'redis-cluster');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const ports = (await freePorts(12)).filter((p) => p + 10_000 <= 65_535).slice(0, 3);
  const children = ports.map((port) =>
    procs.track(
      spawn(
        'redis-server',
        [
          ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dir],
          ...['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`],
          ...['--appendonly', 'yes', '--maxmemory-policy', 'noeviction', '--loglevel', 'warning'],
        ],
        { detached: true, stdio: 'ignore' },
      ),
    ),
  );
  const stop = async () => {
    await Promise.all(children.map((child) => procs.stopChild(child, { signal: 'SIGTERM', graceMs: 10_000 })));
  };
  try {
    for (const port of ports) {
      const up = await pollUntil(async () => (await pingRedis({ host: '127.0.0.1', port, db: 0 })).ok, {
        timeoutMs: 15_000,
      });
      if (!up) throw new DevError(`redis-server (cluster node) did not start on 127.0.0.1:${port}`);
    }
    const nodes = ports.map((p) => `127.0.0.1:${p}`);
    await promisify(execFile)('redis-cli', [
      '--cluster',
      'create',
      ...nodes,
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    for (const port of ports) {
      const ok = await pollUntil(async () => (await clusterState({ host: '127.0.0.1', port }, {})) === 'ok', {
        timeoutMs: 30_000,
      });
      if (!ok) throw new DevError(`the Redis Cluster did not reach cluster_state:ok (node ${port})`);
    }
    log.ok(`Redis Cluster ready: ${nodes.join(', ')} (pids ${children.map((c) => c.pid).join(', ')})`);
    return { nodes: nodes.join(','), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

module.exports = { resolveRedis };
