'use strict';
/**
 * BATON_DEV_PGBOUNCER=1: a pgbouncer child in TRANSACTION pooling mode in front of the dev PostgreSQL,
 * configured as docs/SCALING.md tells operators to (startup parameters ignored, session bounds by
 * connect_query). The components connect through it with named statements off; migrations keep the
 * direct URL. Its ini and userlist live in .dev/pgbouncer.
 */
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { write } = require('./output');
const { freePorts, pollUntil, canConnect } = require('./ports');
const procs = require('./procs');
const { ROOT } = require('./settings');

const { DevError } = procs;
const DIR = path.join(ROOT, '.dev', 'pgbouncer');
const BOUNDS =
  'SET statement_timeout = 30000; SET lock_timeout = 10000; SET idle_in_transaction_session_timeout = 30000';

/** The pgbouncer binary: on PATH, or where Debian installs it (/usr/sbin). */
function pgbouncerBinary() {
  if (procs.onPath('pgbouncer')) return 'pgbouncer';
  return ['/usr/sbin/pgbouncer', '/usr/local/sbin/pgbouncer'].find((p) => fs.existsSync(p));
}

/** Writes the ini for `serverUrl` and returns its path. Pure apart from the two files. */
function writeConfig(serverUrl, port, poolSize) {
  const server = new URL(serverUrl);
  const user = decodeURIComponent(server.username || 'postgres');
  const database = decodeURIComponent(server.pathname.replace(/^\//, ''));
  fs.mkdirSync(DIR, { recursive: true });
  const ini = path.join(DIR, 'pgbouncer.ini');
  const userlist = path.join(DIR, 'userlist.txt');
  fs.writeFileSync(
    ini,
    [
      '[databases]',
      `${database} = host=${server.hostname} port=${server.port || 5432} dbname=${database} connect_query='${BOUNDS}'`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${userlist}`,
      `admin_users = ${user}`,
      'pool_mode = transaction',
      `default_pool_size = ${poolSize}`,
      'max_client_conn = 500',
      'ignore_startup_parameters = statement_timeout,lock_timeout,idle_in_transaction_session_timeout,options',
      '',
    ].join('\n'),
  );
  fs.writeFileSync(userlist, `"${user}" "${decodeURIComponent(server.password)}"\n`, { mode: 0o644 });
  // PgBouncer refuses to run as root; as root it drops to `nobody`, who must read both files.
  fs.chmodSync(DIR, 0o755);
  fs.chmodSync(ini, 0o644);
  return ini;
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
  const ini = writeConfig(serverUrl, port, poolSize);
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
