import { spawn, execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, waitFor } from './env';

const run = promisify(execFile);

/**
 * A Redis Cluster of its own for a test: `masters` redis-server processes with `--cluster-enabled
 * yes` on free ports, files in a temp dir, joined by `redis-cli --cluster create` (no replicas),
 * ready once every node says `cluster_state:ok`. `stop()` kills the pids it started and removes the
 * dir. Nothing else is touched: the machine's Redis (6379) stays as it is.
 */
export class TestRedisCluster {
  private constructor(
    readonly ports: number[],
    private readonly dir: string,
    private readonly children: ChildProcess[],
  ) {}

  static async start(masters = 3): Promise<TestRedisCluster> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-redis-cluster-'));
    const ports: number[] = [];
    // Cluster nodes talk on port + 10000 too: both must be free.
    while (ports.length < masters) {
      const port = await freePort();
      if (port + 10_000 <= 65_535 && !ports.includes(port)) ports.push(port);
    }
    const children = ports.map((port) =>
      spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          path.join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          '5000',
          '--save',
          '',
          '--appendonly',
          'no',
          '--daemonize',
          'no',
          '--dir',
          dir,
        ],
        { stdio: 'ignore' },
      ),
    );
    const cluster = new TestRedisCluster(ports, dir, children);
    try {
      for (const port of ports) {
        await waitFor(
          () => cluster.node(port, (r) => r.ping()).then((pong) => (pong === 'PONG' ? true : undefined)),
          15_000,
          `redis-server on ${port}`,
        );
      }
      await run('redis-cli', [
        '--cluster',
        'create',
        ...ports.map((p) => `127.0.0.1:${p}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ]);
      for (const port of ports) {
        await waitFor(
          async () =>
            (await cluster.node(port, (r) => r.cluster('INFO'))).includes('cluster_state:ok') ? true : undefined,
          30_000,
          `cluster_state:ok on ${port}`,
        );
      }
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** REDIS_CLUSTER_NODES for this cluster. */
  get nodes(): string {
    return this.ports.map((p) => `127.0.0.1:${p}`).join(',');
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid).filter((pid): pid is number => pid !== undefined);
  }

  /** Runs `fn` on a plain connection to one node. */
  async node<T>(port: number, fn: (redis: Redis) => Promise<T>): Promise<T> {
    const redis = new Redis({
      host: '127.0.0.1',
      port,
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      retryStrategy: () => null,
    });
    try {
      await redis.connect();
      return await fn(redis);
    } finally {
      redis.disconnect();
    }
  }

  /** The port of the master serving `slot`. */
  async portOfSlot(slot: number): Promise<number> {
    const slots = await this.node(this.ports[0], (r) => r.cluster('SLOTS'));
    const owner = slots.find(([from, to]) => slot >= from && slot <= to);
    if (!owner?.[2]) throw new Error(`no node serves slot ${slot}`);
    return owner[2][1];
  }

  /** A Redis wipe: FLUSHALL on every master. */
  async flushAll(): Promise<void> {
    for (const port of this.ports) await this.node(port, (r) => r.flushall());
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGKILL');
          }),
      ),
    );
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
