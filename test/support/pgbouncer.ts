import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import pg from 'pg';
import { DEFAULT_PG_LIMITS } from '@baton/engine';
import { writeConfig } from '../../scripts/dev/pgbouncer-config';
import { freePort, waitFor } from './env';

/**
 * A private PgBouncer (Debian's package, 1.18) in TRANSACTION pooling mode in front of the test
 * PostgreSQL: its own ini and userlist (scripts/dev/pgbouncer-config.js, as the dev runner's) in a temporary folder, a free port, `* =` so every database
 * of the server is reachable, and a small `default_pool_size` so transactions of different clients
 * really share server connections. `stop()` kills the process it started (its PID) and removes the
 * folder.
 *
 * Configured as docs/SCALING.md tells operators to: the startup parameters Baton's pools send
 * (statement_timeout, lock_timeout, idle_in_transaction_session_timeout, options) are listed in
 * `ignore_startup_parameters`, and the pooler's `connect_query` sets the session bounds on each
 * server connection it opens instead.
 */
export interface PgBouncer {
  port: number;
  /** The pooler's URL for `database` on the target server. */
  url(database: string): string;
  /** A query on the admin console (`SHOW POOLS`, `SHOW CONFIG`, …). */
  admin<T extends Record<string, unknown>>(command: string): Promise<T[]>;
  stop(): Promise<void>;
}

const SERVER_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** The pgbouncer binary: on PATH, or where Debian installs it (/usr/sbin, not on every user's PATH). */
export function pgbouncerBinary(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin'];
  for (const dir of dirs) {
    const candidate = path.join(dir, 'pgbouncer');
    if (dir && fs.existsSync(candidate)) return candidate;
  }
  return undefined;
}

export async function startPgBouncer(opts: { poolSize?: number } = {}): Promise<PgBouncer> {
  const binary = pgbouncerBinary();
  if (!binary) throw new Error('pgbouncer is not installed (apt-get install -y pgbouncer)');
  const server = new URL(SERVER_URL);
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-pgbouncer-'));
  const ini = writeConfig({
    dir,
    serverUrl: SERVER_URL,
    port,
    poolSize: opts.poolSize ?? 3,
    maxClientConn: 200,
    allDatabases: true,
    bounds: DEFAULT_PG_LIMITS,
  });
  const args = process.getuid?.() === 0 ? ['-u', 'nobody', ini] : [ini];
  const child: ChildProcess = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-4_000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const credentials = server.username ? `${server.username}${server.password ? `:${server.password}` : ''}@` : '';
  const url = (database: string) => `postgres://${credentials}127.0.0.1:${port}/${encodeURIComponent(database)}`;
  const admin = async <T extends Record<string, unknown>>(command: string): Promise<T[]> => {
    const client = new pg.Client({ connectionString: url('pgbouncer') });
    await client.connect();
    try {
      // The admin console speaks the simple query protocol only.
      return (await client.query<T>(command)).rows;
    } finally {
      await client.end();
    }
  };
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`pgbouncer exited ${child.exitCode}: ${log}`);
        return (await admin('SHOW VERSION')).length ? true : undefined;
      },
      10_000,
      `pgbouncer on port ${port}`,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, url, admin, stop };
}
