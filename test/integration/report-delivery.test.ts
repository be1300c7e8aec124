import { NonRetryableError } from '@baton/workflow';
import {
  createLogger,
  createRedis,
  type RedisConnection,
  defineFunction,
  inboxKey,
  metrics,
  queueContext,
  saveDefinition,
  startFunctionWorker,
  type FunctionDefinition,
  type FunctionWorker,
} from '@baton/engine';
import net from 'node:net';
import { z } from 'zod';
import { PrivateRedis } from '../chaos/private-servers';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';
import { startEngine, TERMINAL, type Engine } from '../support/engine';

/**
 * Issue #12, defect 4: a handler that returned has had its side effect, so a report Redis refuses
 * must not turn into a handler failure (a second call of the handler, or a success recorded as
 * `failed`). The fault is real: on a private redis-server the function runtime signs in as an ACL
 * user allowed its own queue's keys but not the coordinator inbox, so every report XADD is refused
 * (NOPERM) while BullMQ's own commands (lock renewal, completion) go through — as when the inbox's
 * shard fails over in a cluster. The test then grants the inbox key and the reports get through.
 */

const USER = 'fn-runtime';
const PASSWORD = 'report-delivery-test';

let calls = 0;
const countOnce = defineFunction({
  name: 'count-once',
  input: z.object({}).passthrough(),
  handler: async () => {
    calls += 1;
    return { answer: 42 };
  },
});

let failCalls = 0;
const failOnce = defineFunction({
  name: 'fail-once',
  input: z.object({}).passthrough(),
  handler: async (): Promise<never> => {
    failCalls += 1;
    throw new NonRetryableError('CARD_DECLINED', 'the card was declined');
  },
});

let closeCalls = 0;
const countClose = defineFunction({
  name: 'count-close',
  input: z.object({}).passthrough(),
  handler: async () => {
    closeCalls += 1;
    return { closed: true };
  },
});

let multiCalls = 0;
const countMulti = defineFunction({
  name: 'count-multi',
  input: z.object({}).passthrough(),
  handler: async () => {
    multiCalls += 1;
    return { together: true };
  },
});

/** Sum of the `count` fields of the server's ACL log: how many commands it refused. */
/**
 * Every command the server runs, with the client that sent it (MONITOR), on a socket of its own.
 * Not ioredis's monitor(): its connection can take the first monitored line for the answer to a
 * command of its own when MONITOR's OK and that line arrive in one read ("Command queue state
 * error", seen in CI with the engine's polling on the same server).
 */
async function monitorCommands(port: number): Promise<{
  seen: { source: string; command: string; key: string; last: string }[];
  stop: () => void;
}> {
  const socket = net.connect(port, '127.0.0.1');
  const seen: { source: string; command: string; key: string; last: string }[] = [];
  let buffered = '';
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.on('data', (chunk) => {
      buffered += chunk.toString('utf8');
      let end: number;
      // Each line a RESP simple string: +<time> [<db> <client>] "command" "arg" ...
      while ((end = buffered.indexOf('\r\n')) >= 0) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (line === '+OK') resolve();
        const match = /^\+[\d.]+ \[\d+ ([^\]]+)\] (.*)$/.exec(line);
        if (!match) continue;
        const args = [...match[2].matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1].replace(/\\(.)/g, '$1'));
        const [command, key, ...rest] = args;
        seen.push({ source: match[1], command: command.toLowerCase(), key: key ?? '', last: rest.at(-1) ?? '' });
      }
    });
    socket.write('MONITOR\r\n');
  });
  return { seen, stop: () => socket.destroy() };
}

async function refusals(admin: RedisConnection): Promise<number> {
  const entries = (await admin.call('ACL', 'LOG')) as unknown[][];
  let total = 0;
  for (const entry of entries) {
    const index = entry.indexOf('count');
    if (index >= 0) total += Number(entry[index + 1]);
  }
  return total;
}

async function retriesCounted(fn: string): Promise<number> {
  const { values } = await metrics.reportRetries.get();
  return values.filter((v) => v.labels.function === fn).reduce((sum, v) => sum + v.value, 0);
}

describe('report delivery (function runtime)', () => {
  let env: TestEnv;
  let server: PrivateRedis;
  let admin: RedisConnection;
  let engine: Engine;
  let prefix: string;
  const workers: FunctionWorker[] = [];
  const connections: RedisConnection[] = [];
  const logger = createLogger('report-delivery-test', (process.env.TEST_LOG_LEVEL as 'info') ?? 'silent');

  /** Lets the runtime's user use its own queue's keys (and pub/sub), not the inbox. */
  const denyInbox = () =>
    admin.call('ACL', 'SETUSER', USER, 'on', `>${PASSWORD}`, 'resetkeys', `~${prefix}:{fn.*`, '&*', '+@all');
  const allowInbox = () => admin.call('ACL', 'SETUSER', USER, `~${inboxKey(prefix)}`);

  /** A function worker signed in as the restricted user, with the engine's short lock timings. */
  const startWorker = (
    fn: FunctionDefinition<any, any>,
    opts: { reportCloseGraceMs?: number } = {},
  ): FunctionWorker => {
    const connection = createRedis(
      { host: '127.0.0.1', port: server.port, db: 0, username: USER, password: PASSWORD },
      USER,
    );
    connection.on('error', () => undefined);
    connections.push(connection);
    const worker = startFunctionWorker(fn, {
      queues: queueContext(env.config, connection),
      logger,
      concurrency: 2,
      stalledIntervalMs: 1_000,
      lockDurationMs: 2_000,
      ...opts,
    });
    workers.push(worker);
    return worker;
  };

  beforeAll(async () => {
    env = await createTestEnv('report-delivery');
    prefix = env.config.queuePrefix;
    server = await PrivateRedis.start();
    admin = createRedis({ host: '127.0.0.1', port: server.port, db: 0 }, 'test-admin');
    // The coordinator, reconciler and run starts use the private server with full rights.
    engine = await startEngine({ ...env, redis: admin, queues: queueContext(env.config, admin) }, []);
    await saveDefinition(env.pool, { name: 'deliver-once', steps: [{ id: 'only', function: 'count-once' }] });
    await saveDefinition(env.pool, { name: 'fail-delivered', steps: [{ id: 'only', function: 'fail-once' }] });
    await saveDefinition(env.pool, { name: 'deliver-on-close', steps: [{ id: 'only', function: 'count-close' }] });
    await saveDefinition(env.pool, {
      name: 'deliver-with-completion',
      steps: [{ id: 'only', function: 'count-multi' }],
    });
  });

  afterAll(async () => {
    await engine?.close();
    await Promise.all(workers.map((w) => w.close().catch(() => undefined)));
    for (const connection of connections) connection.disconnect();
    admin?.disconnect();
    await server?.stop();
    await env?.cleanup();
  });

  it('a success whose report Redis refuses is delivered later: the handler ran once and the step succeeded', async () => {
    await denyInbox();
    await admin.call('ACL', 'LOG', 'RESET');
    startWorker(countOnce);
    const runId = await engine.start('deliver-once', {});

    // The handler returned and its report was refused a few times (NOPERM on the inbox key)…
    await waitFor(async () => ((await refusals(admin)) >= 3 ? true : undefined), 20_000, 'three refused reports');
    // …then the inbox accepts again (the failover is over).
    await allowInbox();

    const run = await engine.waitForRun(runId, TERMINAL);
    expect(calls).toBe(1);
    expect(run.status).toBe('succeeded');
    const { rows } = await env.pool.query(`SELECT status, attempt, output FROM step_executions WHERE run_id = $1`, [
      runId,
    ]);
    expect(rows).toEqual([{ status: 'succeeded', attempt: 1, output: { answer: 42 } }]);
    expect(await retriesCounted('count-once')).toBeGreaterThanOrEqual(3);
  });

  it('a failure whose report Redis refuses is delivered later, not turned into another attempt', async () => {
    await denyInbox();
    await admin.call('ACL', 'LOG', 'RESET');
    startWorker(failOnce);
    const runId = await engine.start('fail-delivered', {});
    await waitFor(async () => ((await refusals(admin)) >= 3 ? true : undefined), 20_000, 'three refused reports');
    await allowInbox();

    const run = await engine.waitForRun(runId, TERMINAL);
    expect(failCalls).toBe(1);
    expect(run.status).toBe('failed');
    const { rows } = await env.pool.query(`SELECT status, attempt, error FROM step_executions WHERE run_id = $1`, [
      runId,
    ]);
    expect(rows).toEqual([{ status: 'failed', attempt: 1, error: expect.objectContaining({ code: 'CARD_DECLINED' }) }]);
    expect(await retriesCounted('fail-once')).toBeGreaterThanOrEqual(3);
  });

  it('a worker closed while its report is refused completes the job; the reconciler replays the output', async () => {
    await denyInbox();
    await admin.call('ACL', 'LOG', 'RESET');
    const worker = startWorker(countClose, { reportCloseGraceMs: 300 });
    const runId = await engine.start('deliver-on-close', {});
    await waitFor(async () => ((await refusals(admin)) >= 2 ? true : undefined), 20_000, 'two refused reports');

    // SIGTERM: the report is retried for the grace period, then the job completes with the output,
    // which is what the reconciler replays; close() returns rather than waiting for Redis.
    await worker.close();
    const run = await engine.waitForRun(runId, TERMINAL);
    expect(closeCalls).toBe(1);
    expect(run.status).toBe('succeeded');
    const { rows } = await env.pool.query(`SELECT status, output FROM step_executions WHERE run_id = $1`, [runId]);
    expect(rows).toEqual([{ status: 'succeeded', output: { closed: true } }]);
  });

  it("a success's report and its job's completion reach Redis in one MULTI", async () => {
    await denyInbox();
    await allowInbox();
    const monitor = await monitorCommands(server.port);
    const { seen } = monitor;
    try {
      startWorker(countMulti);
      const runId = await engine.start('deliver-with-completion', {});
      const run = await engine.waitForRun(runId, TERMINAL);
      expect(run.status).toBe('succeeded');
      expect(multiCalls).toBe(1);

      // The step's report (the inbox also holds the run's start, written by the engine). The run
      // succeeded after it was applied, so it ran; its line is read once the monitor has it, and
      // so is the EXEC that follows it.
      const isReport = (c: (typeof seen)[number]) =>
        c.command === 'xadd' && c.key === inboxKey(prefix) && c.last.includes('"type":"step.succeeded"');
      const report = await waitFor(
        async () => {
          const found = seen.find(isReport);
          return found &&
            seen.some((c) => c.source === found.source && c.command === 'exec' && seen.indexOf(c) > seen.indexOf(found))
            ? found
            : undefined;
        },
        10_000,
        'the report and its EXEC on the monitor',
      );
      // The worker connection's commands around its report: MULTI, the report, the completion script, EXEC.
      const own = seen.filter((c) => c.source === report.source);
      const at = own.indexOf(report);
      // (EVAL the first time the connection runs the script, EVALSHA after.)
      const around = own.slice(at - 1, at + 3).map((c) => (c.command === 'evalsha' ? 'eval' : c.command));
      expect(around).toEqual(['multi', 'xadd', 'eval', 'exec']);
    } finally {
      monitor.stop();
    }
  });
});
