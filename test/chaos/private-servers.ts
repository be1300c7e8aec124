import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pg from 'pg';

/**
 * Private Redis and PostgreSQL servers for the scenarios that restart or flush a server: the machine's
 * servers (6379, 5432) are shared with every other suite and are never restarted or flushed. Each
 * private server runs on a free port with its files in a temp dir; the scenario kills it by the pid it
 * started and removes the dir.
 */

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${what}: not ready after ${timeoutMs / 1000}s`);
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** A `redis-server` without persistence: a restart comes back empty, like a lost Redis. */
export class PrivateRedis {
  private child?: ChildProcess;
  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  static async start(): Promise<PrivateRedis> {
    const redis = new PrivateRedis(await freePort(), fs.mkdtempSync(path.join(os.tmpdir(), 'baton-chaos-redis-')));
    await redis.up();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async up(): Promise<void> {
    if (this.child) throw new Error('private redis-server already running');
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir],
      { stdio: 'ignore' },
    );
    this.child = child;
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    await until(`private redis-server on ${this.port}`, () => this.ping());
  }

  /** kill -9 of the server (by its pid); everything it held is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    child.kill('SIGKILL');
    await exited(child);
  }

  async flushAll(): Promise<void> {
    await this.withClient((r) => r.flushall());
  }

  async dbSize(): Promise<number> {
    return this.withClient((r) => r.dbsize());
  }

  private async ping(): Promise<boolean> {
    return (await this.withClient((r) => r.ping())) === 'PONG';
  }

  private async withClient<T>(fn: (r: Redis) => Promise<T>): Promise<T> {
    const r = new Redis({ host: '127.0.0.1', port: this.port, lazyConnect: true, maxRetriesPerRequest: 0 });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return await fn(r);
    } finally {
      r.disconnect();
    }
  }

  async stop(): Promise<void> {
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A PostgreSQL cluster of its own (the Debian binaries, /usr/lib/postgresql/<n>/bin): initdb and the
 * postmaster run as the `postgres` OS user when the suite runs as root (PostgreSQL refuses root).
 * Trust authentication on 127.0.0.1 only; the socket lives in the temp dir.
 */
export class PrivatePostgres {
  private child?: ChildProcess;
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly bin: string,
    private readonly user?: { uid: number; gid: number },
    private readonly maxConnections = 200,
  ) {}

  /** The binaries' directory, or undefined when none is installed. */
  static binaries(): string | undefined {
    const base = '/usr/lib/postgresql';
    if (!fs.existsSync(base)) return undefined;
    const versions = fs
      .readdirSync(base)
      .filter((v) => fs.existsSync(path.join(base, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    return versions.length ? path.join(base, versions[0], 'bin') : undefined;
  }

  /** `maxConnections`: the server's max_connections (200 by default; a scenario may want it low). */
  static async start(settings: { maxConnections?: number } = {}): Promise<PrivatePostgres> {
    const bin = PrivatePostgres.binaries();
    if (!bin) throw new Error('no PostgreSQL binaries under /usr/lib/postgresql');
    let user: { uid: number; gid: number } | undefined;
    if (process.getuid?.() === 0) {
      user = {
        uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
        gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
      };
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-chaos-pg-'));
    if (user) fs.chownSync(dir, user.uid, user.gid);
    const server = new PrivatePostgres(await freePort(), dir, bin, user, settings.maxConnections);
    try {
      execFileSync(
        path.join(bin, 'initdb'),
        ['-D', server.dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'],
        { stdio: 'ignore', cwd: dir, ...(user ?? {}) },
      );
      await server.up();
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  get dataDir(): string {
    return path.join(this.dir, 'data');
  }

  /** The maintenance database's URL (the harness creates its database next to it). */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the postmaster (in the foreground of its own child process) and waits until it answers. */
  async up(): Promise<void> {
    if (this.child) throw new Error('private postgres already running');
    const child = spawn(
      path.join(this.bin, 'postgres'),
      [
        '-D',
        this.dataDir,
        '-p',
        String(this.port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        `unix_socket_directories=${this.dir}`,
        '-c',
        `max_connections=${this.maxConnections}`,
        // Durability settings stay at their defaults: with synchronous_commit=off a crash loses commits
        // already acknowledged (a function's invoice), which no application can recover from.
      ],
      { stdio: 'ignore', cwd: this.dir, ...(this.user ?? {}) },
    );
    this.child = child;
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    await until(`private postgres on ${this.port}`, () => this.ping(), 60_000);
  }

  /**
   * Stops the server: `fast` is `pg_ctl stop -m fast` (SIGINT: every session ends, clean shutdown),
   * `immediate` is a crash of the postmaster's children (SIGQUIT: recovery at the next start).
   */
  async down(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    child.kill(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    const done = await Promise.race([exited(child).then(() => true), sleep(30_000, false, { ref: false })]);
    if (!done) {
      child.kill('SIGKILL');
      await exited(child);
    }
  }

  private async ping(): Promise<boolean> {
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 2_000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async stop(): Promise<void> {
    await this.down('fast');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
