'use strict';
/**
 * The one writer of a pgbouncer configuration, for the dev runner (scripts/dev/pgbouncer.js) and the
 * tests' private pooler (test/support/pgbouncer.ts): TRANSACTION pooling mode, configured as
 * docs/SCALING.md tells operators to (the startup parameters Baton's pools send are ignored, the
 * session bounds are set by `connect_query` on each server connection). No dependencies beyond node.
 */
const fs = require('node:fs');
const path = require('node:path');

/** Baton's session bounds (DEFAULT_PG_LIMITS: statement 30 s, lock 10 s, idle in transaction 30 s). */
const DEFAULT_BOUNDS = { statementTimeoutMs: 30_000, lockTimeoutMs: 10_000, idleInTransactionTimeoutMs: 30_000 };

/**
 * Writes `pgbouncer.ini` and `userlist.txt` into `dir` (created if missing) and returns the ini's
 * path. `serverUrl` names the server, its user and, unless `allDatabases` (`* =`: every database of
 * the server), the one database served.
 *
 * @param {{ dir: string, serverUrl: string, port: number, poolSize: number, maxClientConn?: number,
 *   allDatabases?: boolean, bounds?: { statementTimeoutMs: number, lockTimeoutMs: number,
 *   idleInTransactionTimeoutMs: number } }} opts
 * @returns {string}
 */
function writeConfig({ dir, serverUrl, port, poolSize, maxClientConn = 500, allDatabases = false, bounds }) {
  const b = bounds ?? DEFAULT_BOUNDS;
  const server = new URL(serverUrl);
  const user = decodeURIComponent(server.username || 'postgres');
  const database = decodeURIComponent(server.pathname.replace(/^\//, ''));
  const connectQuery = [
    `SET statement_timeout = ${b.statementTimeoutMs}`,
    `SET lock_timeout = ${b.lockTimeoutMs}`,
    `SET idle_in_transaction_session_timeout = ${b.idleInTransactionTimeoutMs}`,
  ].join('; ');
  const target = `host=${server.hostname} port=${server.port || 5432}`;
  fs.mkdirSync(dir, { recursive: true });
  const ini = path.join(dir, 'pgbouncer.ini');
  const userlist = path.join(dir, 'userlist.txt');
  fs.writeFileSync(
    ini,
    [
      '[databases]',
      allDatabases
        ? `* = ${target} connect_query='${connectQuery}'`
        : `${database} = ${target} dbname=${database} connect_query='${connectQuery}'`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${userlist}`,
      `admin_users = ${user}`,
      'pool_mode = transaction',
      `default_pool_size = ${poolSize}`,
      `max_client_conn = ${maxClientConn}`,
      'ignore_startup_parameters = statement_timeout,lock_timeout,idle_in_transaction_session_timeout,options',
      '',
    ].join('\n'),
  );
  fs.writeFileSync(userlist, `"${user}" "${decodeURIComponent(server.password)}"\n`);
  // PgBouncer refuses to run as root; as root it drops to `nobody`, who must read both files.
  fs.chmodSync(dir, 0o755);
  for (const f of [ini, userlist]) fs.chmodSync(f, 0o644);
  return ini;
}

module.exports = { writeConfig, DEFAULT_BOUNDS };
