'use strict';
/**
 * BATON_DEV_PGBOUNCER=1: a pgbouncer child in TRANSACTION pooling mode in front of the dev PostgreSQL,
 * configured as docs/SCALING.md tells operators to (startup parameters ignored, session bounds by
 * connect_query). The components connect through it with named statements off; migrations keep the
 * direct URL. Its ini and userlist (written by ./pgbouncer-config.js) live in .dev/pgbouncer.
 */
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { write } = require('./output');
const { writeConfig } = require('./pgbouncer-config');
const { freePorts, pollUntil, canConnect } = require('./ports');
const procs = require('./procs');
const { ROOT } = require('./settings');

const { DevError } = procs;
const DIR = path.join(ROOT, '.dev', 'pgbouncer');

/** The pgbouncer binary: on PATH, or where Debian installs it (/usr/sbin). */
function pgbouncerBinary() {
  if (procs.onPath('pgbouncer')) return 'pgbouncer';
  return ['/usr/sbin/pgbouncer', '/usr/local/sbin/pgbouncer'].find((p) => fs.existsSync(p));
}

/**
 * Starts pgbouncer in front of `serverUrl`. Returns the URL the components use and `stop`.
 * BATON_DEV_PGBOUNCER_POOL_SIZE sets default_pool_size (default 5).
 */
async function startPgBouncer(serverUrl, log, env = process.env) {
  const binary = pgbouncerBinary();
  if (!binary)
    throw new DevError('BATON_DEV_PGBOUNCER is set but pgbouncer is not installed (apt-get install pgbouncer)');
  const poolSize = Number(env.BATON_DEV_PGBOUNCER_POOL_SIZE || 5);
  if (!Number.isInteger(poolSize) || poolSize < 1) {
    throw new DevError(`BATON_DEV_PGBOUNCER_POOL_SIZE=${env.BATON_DEV_PGBOUNCER_POOL_SIZE} is not a pool size`);
  }
  const [port] = await freePorts(1);
  const ini = writeConfig({ dir: DIR, serverUrl, port, poolSize });
  const args = typeof process.getuid === 'function' && process.getuid() === 0 ? ['-u', 'nobody', ini] : [ini];
  const child = procs.track(spawn(binary, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] }));
  const tail = procs.lastLines();
  let ready = false;
  const show = (line) => {
    tail.push(line);
    // Its per-connection LOG lines are noise; warnings and errors are shown once it is up.
    if (ready && !/ LOG /.test(line)) write('pgbouncer', '2', line);
  };
  procs.forEachLine(child.stdout, show);
  procs.forEachLine(child.stderr, show);
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) log.error(`pgbouncer exited (${signal ?? `code ${code}`})`);
  });
  ready = await pollUntil(() => canConnect(port), { timeoutMs: 10_000, abort: () => !procs.isAlive(child) });
  const stop = async () => {
    stopping = true;
    await procs.stopChild(child, { signal: 'SIGINT', graceMs: 5_000 });
  };
  if (!ready) {
    await stop();
    throw new DevError(`pgbouncer did not start on 127.0.0.1:${port}:\n${tail.text()}`);
  }
  const url = new URL(serverUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  log.ok(`pgbouncer ready on 127.0.0.1:${port} (pid ${child.pid}): transaction mode, default_pool_size ${poolSize}`);
  return { url: url.toString(), stop };
}

module.exports = { startPgBouncer, writeConfig };
