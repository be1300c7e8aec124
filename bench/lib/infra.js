'use strict';
/**
 * What the benchmark runs on: a Redis of its own (so INFO commandstats counts only the benchmark,
 * not the test suites sharing the machine's Redis), one fresh PostgreSQL database per system, and
 * the child processes it starts — all removed again by `cleanup()`.
 */
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn, fork, execFileSync } = require('node:child_process');
const { setTimeout: sleep } = require('node:timers/promises');
const pg = require('pg');
const { Redis } = require('ioredis');

const children = new Set();

async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Polls `check` until it is true; an error from it is a "not yet", unless it is `fatal()`. */
async function waitUntil(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await check().catch((err) => {
      if (err.fatal) throw err;
      return false;
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** An error that ends a `waitUntil` at once (a process it waits for has exited, say). */
function fatal(message) {
  return Object.assign(new Error(message), { fatal: true });
}

/** A child process of the harness; its output is kept (last lines) for error messages. */
function track(child, name) {
  const tail = [];
  const keep = (chunk) => {
    for (const line of String(chunk).split('\n')) if (line) tail.push(`[${name}] ${line}`);
    while (tail.length > 40) tail.shift();
    if (process.env.BENCH_VERBOSE) process.stderr.write(`[${name}] ${chunk}`);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const entry = { child, name, tail, exited: false };
  child.once('exit', () => {
    entry.exited = true;
    children.delete(entry);
  });
  children.add(entry);
  return entry;
}

function startProcess(name, script, env, { ipc = false, nodeFlags = [] } = {}) {
  const childEnv = { ...process.env, ...env };
  delete childEnv.NODE_OPTIONS;
  // BENCH_CPU_PROF=<dir>: every system process writes a V8 CPU profile there when it exits.
  const execArgv = [
    ...nodeFlags,
    ...(process.env.BENCH_CPU_PROF
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`, `--cpu-prof-name=${name}.cpuprofile`]
      : []),
  ];
  const child = ipc
    ? fork(script, [], { env: childEnv, execArgv, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
    : spawn(process.execPath, [...execArgv, script], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  return track(child, name);
}

/** Stops the children this harness started: SIGTERM, then SIGKILL after `graceMs`. */
async function stopProcess(entry, graceMs = 8000) {
  if (entry.exited) return;
  const exited = new Promise((resolve) => entry.child.once('exit', resolve));
  entry.child.kill('SIGTERM');
  const timer = setTimeout(() => entry.child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

async function stopAllProcesses() {
  await Promise.all([...children].map((entry) => stopProcess(entry)));
}

/**
 * redis-server on a free port. Without options: no persistence (the same for every Redis-based
 * system). `{ appendonly: true, dir }`: an append-only file in `dir`, fsynced every second.
 */
async function startRedis({ appendonly = false, dir } = {}) {
  const port = await freePort();
  const persistence = appendonly
    ? ['--appendonly', 'yes', '--appendfsync', 'everysec', '--dir', dir]
    : ['--appendonly', 'no'];
  const entry = track(
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence], {
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
    appendonly ? 'redis-aof' : 'redis',
  );
  await waitUntil(
    async () => {
      if (entry.exited) throw fatal(`redis-server exited:\n${entry.tail.join('\n')}`);
      return canConnect(port);
    },
    10_000,
    'redis-server',
  );
  return { url: `redis://127.0.0.1:${port}/0`, pid: entry.child.pid, entry };
}

/**
 * A Redis Cluster of `masters` redis-servers (no persistence, like startRedis) on free ports, joined
 * with `redis-cli --cluster create`; resolves once every node reports cluster_state:ok.
 */
async function startRedisCluster(masters = 3) {
  const ports = [];
  while (ports.length < masters) {
    const port = await freePort();
    // The cluster bus listens on port + 10000.
    if (port + 10_000 <= 65_535 && !ports.includes(port)) ports.push(port);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-cluster-'));
  const entries = ports.map((port) =>
    track(
      spawn(
        'redis-server',
        [
          ...['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
          ...['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`],
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      ),
      `redis-cluster-${port}`,
    ),
  );
  for (const [i, port] of ports.entries()) {
    await waitUntil(
      async () => {
        if (entries[i].exited) throw fatal(`redis-server (cluster) exited:\n${entries[i].tail.join('\n')}`);
        return canConnect(port);
      },
      10_000,
      'redis-server (cluster node)',
    );
  }
  execFileSync(
    'redis-cli',
    ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'],
    {
      stdio: 'ignore',
    },
  );
  const nodes = ports.map((port) => new Redis({ host: '127.0.0.1', port }));
  await waitUntil(
    async () =>
      (await Promise.all(nodes.map((n) => n.cluster('INFO')))).every((info) => info.includes('cluster_state:ok')),
    30_000,
    'cluster_state:ok',
  );
  return {
    nodes: ports.map((p) => `127.0.0.1:${p}`).join(','),
    pids: entries.map((e) => e.child.pid),
    clients: nodes,
    async stop() {
      for (const n of nodes) n.disconnect();
      for (const entry of entries) await stopProcess(entry);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function commandStats(redis) {
  const info = await redis.info('commandstats');
  const stats = {};
  for (const line of info.split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (m) stats[m[1]] = Number(m[2]);
  }
  return stats;
}

function withDatabase(url, database) {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function adminQuery(serverUrl, sql) {
  const client = new pg.Client({ connectionString: withDatabase(serverUrl, 'postgres') });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc; 0 once it is gone. */
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Peak resident set size of a process so far (VmHWM), in MB. */
function peakRssMb(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmHWM:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

module.exports = {
  Redis,
  pg,
  freePort,
  canConnect,
  waitUntil,
  fatal,
  startProcess,
  track,
  stopProcess,
  stopAllProcesses,
  startRedis,
  startRedisCluster,
  commandStats,
  withDatabase,
  adminQuery,
  cpuSeconds,
  peakRssMb,
};
