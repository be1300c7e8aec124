import crypto from 'node:crypto';
import {
  appendToInbox,
  createLogger,
  createRedis,
  type RedisConnection,
  deadInboxKey,
  deleteKeysWithPrefix,
  inboxKey,
  INBOX_GROUP,
  redisOptionsFrom,
  type InboxMessage,
} from '@baton/engine';
import { InboxConsumer, type InboxConsumerOptions } from '../../services/coordinator/src/inbox-consumer';
import { waitFor } from '../support/env';

/**
 * The coordinator inbox consumer on real Redis, with a fake `handleBatch` that records what it was
 * given (no database). Each test works under a key prefix of its own, below the suite's prefix.
 */

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const SUITE_PREFIX = `baton-test-inbox-${crypto.randomBytes(4).toString('hex')}`;
const logger = createLogger('test', (process.env.TEST_LOG_LEVEL as string | undefined) ?? 'silent');

type Fields = string[];
type StreamEntry = [string, Fields];

const runStart = (runId: string = crypto.randomUUID()): InboxMessage => ({ type: 'run.start', runId });
const stepSucceeded = (runId: string, n: number): InboxMessage => ({
  type: 'step.succeeded',
  runId,
  stepExecutionId: crypto.randomUUID(),
  attempt: 1,
  workerId: 'w',
  at: new Date().toISOString(),
  output: { n },
});

const idOf = (m: InboxMessage) => (m.type === 'run.start' ? m.runId : m.stepExecutionId);

/** A handleBatch that records every call and applies what `fail` does not reject. */
function recorder(fail: (batch: InboxMessage[]) => boolean = () => false) {
  const calls: { batch: InboxMessage[]; at: number; ok: boolean }[] = [];
  const applied: InboxMessage[] = [];
  const handleBatch = async (batch: InboxMessage[]) => {
    const ok = !fail(batch);
    calls.push({ batch: [...batch], at: Date.now(), ok });
    if (!ok) throw new Error(`refused a batch of ${batch.length}`);
    applied.push(...batch);
  };
  return { calls, applied, handleBatch };
}

describe('InboxConsumer (coordinator inbox stream)', () => {
  let redis: RedisConnection;
  let prefix: string;
  let consumers: InboxConsumer[] = [];
  let n = 0;

  const key = () => inboxKey(prefix);
  const deadKey = () => deadInboxKey(prefix);
  const pendingCount = async () => Number(((await redis.xpending(key(), INBOX_GROUP)) as [number])[0]);
  const xlen = () => redis.xlen(key());

  async function startConsumer(
    handleBatch: InboxConsumerOptions['handleBatch'],
    opts: Partial<InboxConsumerOptions> = {},
  ): Promise<InboxConsumer> {
    const consumer = new InboxConsumer({
      redis,
      prefix,
      logger,
      handleBatch,
      loops: 1,
      claimIdleMs: 60_000,
      ...opts,
    });
    consumers.push(consumer);
    await consumer.start();
    return consumer;
  }

  beforeAll(() => {
    redis = createRedis(redisOptionsFrom({ REDIS_URL, REDIS_HOST: '127.0.0.1', REDIS_PORT: 6379 }), 'test-inbox');
  });

  beforeEach(() => {
    n += 1;
    prefix = `${SUITE_PREFIX}:t${n}`;
  });

  afterEach(async () => {
    await Promise.all(consumers.map((c) => c.close()));
    consumers = [];
  });

  afterAll(async () => {
    await deleteKeysWithPrefix(redis, SUITE_PREFIX);
    await redis.quit();
  });

  it('delivers appended messages in order, in batches of batchSize, then acknowledges and deletes them', async () => {
    const runId = crypto.randomUUID();
    const messages = [runStart(runId), ...Array.from({ length: 11 }, (_, i) => stepSucceeded(runId, i))];
    // Appended before any consumer exists: the group reads from the start of the stream.
    await appendToInbox(redis, prefix, messages);
    expect(await redis.xlen(key())).toBe(12);

    const r = recorder();
    await startConsumer(r.handleBatch, { batchSize: 5 });
    await waitFor(async () => (r.applied.length === 12 ? true : undefined), 5_000, '12 messages applied');
    expect(r.calls.map((c) => c.batch.length)).toEqual([5, 5, 2]);
    expect(r.applied).toEqual(messages);
    await waitFor(async () => ((await xlen()) === 0 ? true : undefined), 2_000, 'inbox emptied');
    expect(await pendingCount()).toBe(0);

    // Messages appended while it runs arrive too, still in order, and are acknowledged as well.
    const later = Array.from({ length: 30 }, (_, i) => stepSucceeded(runId, 100 + i));
    for (let i = 0; i < later.length; i += 10) await appendToInbox(redis, prefix, later.slice(i, i + 10));
    await appendToInbox(redis, prefix, [runStart()]);
    await waitFor(async () => (r.applied.length === 43 ? true : undefined), 5_000, 'later messages applied');
    expect(r.applied.slice(12, 42)).toEqual(later);
    for (const c of r.calls) expect(c.batch.length).toBeLessThanOrEqual(5);
    await waitFor(async () => ((await xlen()) === 0 ? true : undefined), 2_000, 'inbox emptied again');
    expect(await pendingCount()).toBe(0);
  });

  it('close() lets a batch being applied finish and acknowledges it on its reading connection', async () => {
    await appendToInbox(redis, prefix, [runStart(), runStart()]);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let applying!: () => void;
    const started = new Promise<void>((resolve) => (applying = resolve));
    const consumer = await startConsumer(async () => {
      applying();
      await released;
    });
    await started;
    // Closing while the batch is applied: the reader must stay connected for its acknowledgement.
    const closed = consumer.close();
    release();
    await closed;
    expect(await pendingCount()).toBe(0);
    expect(await xlen()).toBe(0);
  });

  it('retries a failed batch message by message: the failing one stays pending, the others are acknowledged', async () => {
    const poison = runStart();
    const good = [runStart(), runStart(), runStart()];
    await appendToInbox(redis, prefix, [good[0], poison, good[1], good[2]]);
    const [, poisonId] = ((await redis.xrange(key(), '-', '+')) as StreamEntry[]).map(([id]) => id);

    const r = recorder((batch) => batch.some((m) => idOf(m) === poison.runId));
    await startConsumer(r.handleBatch, { batchSize: 10 });
    await waitFor(async () => (r.calls.length >= 5 ? true : undefined), 5_000, 'the batch and its singles');
    await waitFor(async () => ((await xlen()) === 1 ? true : undefined), 2_000, 'good entries deleted');

    expect(r.calls.map((c) => [c.batch.map(idOf), c.ok])).toEqual([
      [[good[0].runId, poison.runId, good[1].runId, good[2].runId], false],
      [[good[0].runId], true],
      [[poison.runId], false],
      [[good[1].runId], true],
      [[good[2].runId], true],
    ]);
    expect(r.applied).toEqual(good);
    const pending = (await redis.xpending(key(), INBOX_GROUP, '-', '+', 10)) as [string, string, number, number][];
    expect(pending.map(([id, , , deliveries]) => [id, deliveries])).toEqual([[poisonId, 1]]);
    const left = (await redis.xrange(key(), '-', '+')) as StreamEntry[];
    expect(left.map(([id, fields]) => [id, JSON.parse(fields[1])])).toEqual([[poisonId, poison]]);
    expect(await redis.xlen(deadKey())).toBe(0);
  });

  it('claims the entries of a consumer that read them and died, once they are idle for claimIdleMs, and applies them', async () => {
    const messages = [runStart(), runStart(), runStart()];
    await redis.xgroup('CREATE', key(), INBOX_GROUP, '0', 'MKSTREAM');
    await appendToInbox(redis, prefix, messages);
    // The dead coordinator: read all three, never acknowledged.
    const read = (await redis.xreadgroup(
      'GROUP',
      INBOX_GROUP,
      'dead-coordinator',
      'COUNT',
      10,
      'STREAMS',
      key(),
      '>',
    )) as [string, StreamEntry[]][];
    expect(read[0][1]).toHaveLength(3);
    const readAt = Date.now();
    expect(await pendingCount()).toBe(3);

    const r = recorder();
    await startConsumer(r.handleBatch, { claimIdleMs: 300, consumerName: 'survivor' });
    await waitFor(async () => (r.applied.length === 3 ? true : undefined), 5_000, 'claimed entries applied');
    // Not before they were idle long enough.
    expect(r.calls[0].at - readAt).toBeGreaterThanOrEqual(250);
    expect(r.applied).toEqual(messages);
    expect(r.calls).toHaveLength(1);
    await waitFor(async () => ((await xlen()) === 0 ? true : undefined), 2_000, 'claimed entries deleted');
    expect(await pendingCount()).toBe(0);
  });

  it('moves an entry delivered maxDeliveries times to the dead-letter stream and removes it from the inbox', async () => {
    const poison = runStart();
    const fine = runStart();
    await appendToInbox(redis, prefix, [poison, fine]);
    const [poisonId] = ((await redis.xrange(key(), '-', '+')) as StreamEntry[]).map(([id]) => id);

    const r = recorder((batch) => batch.some((m) => idOf(m) === poison.runId));
    await startConsumer(r.handleBatch, { claimIdleMs: 300, maxDeliveries: 3 });
    const dead = await waitFor(
      async () => {
        const entries = (await redis.xrange(deadKey(), '-', '+')) as StreamEntry[];
        return entries.length ? entries : undefined;
      },
      10_000,
      'a dead-lettered entry',
    );
    expect(dead).toHaveLength(1);
    const fields = Object.fromEntries(
      dead[0][1].flatMap((_, i, all) => (i % 2 === 0 ? [[all[i], all[i + 1]]] : [])),
    ) as Record<string, string>;
    expect(fields.id).toBe(poisonId);
    expect(fields.error).toBe('failed 3 deliveries');
    expect(JSON.parse(fields.m)).toEqual(poison);

    await waitFor(async () => ((await xlen()) === 0 ? true : undefined), 2_000, 'inbox emptied');
    expect(await pendingCount()).toBe(0);
    expect(r.applied).toEqual([fine]);

    // Delivered exactly three times: attempts come in bursts (a batch, then one by one) at least
    // claimIdleMs apart.
    const attempts = r.calls.filter((c) => c.batch.some((m) => idOf(m) === poison.runId));
    const deliveries = 1 + attempts.slice(1).filter((c, i) => c.at - attempts[i].at >= 200).length;
    expect(deliveries).toBe(3);
    // No attempt after it was dead-lettered.
    const count = attempts.length;
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(r.calls.filter((c) => c.batch.some((m) => idOf(m) === poison.runId))).toHaveLength(count);
  });

  it('dead-letters malformed entries without holding up the others', async () => {
    const before = runStart();
    const after = runStart();
    await appendToInbox(redis, prefix, [before]);
    const notJson = await redis.xadd(key(), '*', 'm', 'not json');
    const notInbox = await redis.xadd(key(), '*', 'm', JSON.stringify({ type: 'run.cancel', runId: 'x' }));
    const noField = await redis.xadd(key(), '*', 'other', '1');
    await appendToInbox(redis, prefix, [after]);

    const r = recorder();
    await startConsumer(r.handleBatch, { batchSize: 10 });
    await waitFor(async () => (r.applied.length === 2 ? true : undefined), 5_000, 'valid messages applied');
    expect(r.calls.map((c) => c.batch)).toEqual([[before, after]]);

    await waitFor(async () => ((await redis.xlen(deadKey())) === 3 ? true : undefined), 2_000, '3 dead letters');
    const dead = (await redis.xrange(deadKey(), '-', '+')) as StreamEntry[];
    expect(dead.map(([, f]) => f)).toEqual([
      ['id', notJson, 'error', 'not a coordinator message', 'm', 'not json'],
      ['id', notInbox, 'error', 'not a coordinator message', 'm', JSON.stringify({ type: 'run.cancel', runId: 'x' })],
      ['id', noField, 'error', 'not a coordinator message', 'other', '1'],
    ]);
    await waitFor(async () => ((await xlen()) === 0 ? true : undefined), 2_000, 'inbox emptied');
    expect(await pendingCount()).toBe(0);
  });

  it('keeps reading after a dead-letter write fails (the entry stays pending)', async () => {
    const r = recorder();
    await startConsumer(r.handleBatch, { batchSize: 10 });
    const spy = jest.spyOn(redis, 'xrange').mockRejectedValueOnce(new Error('OOM command not allowed'));
    try {
      await redis.xadd(key(), '*', 'm', 'not json');
      await waitFor(async () => (spy.mock.calls.length ? true : undefined), 5_000, 'dead-letter attempt');
    } finally {
      spy.mockRestore();
    }
    const later = runStart();
    await appendToInbox(redis, prefix, [later]);
    await waitFor(async () => (r.applied.length === 1 ? true : undefined), 5_000, 'later message applied');
    expect(r.applied).toEqual([later]);
    // The malformed entry was neither dead-lettered nor acknowledged: it waits for the claim pass.
    expect(await pendingCount()).toBe(1);
  });

  it('recreates its group after the stream key is deleted and keeps delivering', async () => {
    const r = recorder();
    await startConsumer(r.handleBatch);
    const first = runStart();
    await appendToInbox(redis, prefix, [first]);
    await waitFor(async () => (r.applied.length === 1 ? true : undefined), 5_000, 'first message');

    // Only this test's inbox key: the group goes with it.
    expect(await redis.del(key())).toBe(1);
    const second = runStart();
    await appendToInbox(redis, prefix, [second]);
    await waitFor(async () => (r.applied.length === 2 ? true : undefined), 10_000, 'message after the delete');
    expect(r.applied).toEqual([first, second]);
    const groups = (await redis.xinfo('GROUPS', key())) as unknown[][];
    expect(groups.map((g) => g[g.indexOf('name') + 1])).toEqual([INBOX_GROUP]);

    const third = runStart();
    await appendToInbox(redis, prefix, [third]);
    await waitFor(async () => (r.applied.length === 3 ? true : undefined), 5_000, 'third message');
    expect(r.applied).toEqual([first, second, third]);
    await waitFor(async () => ((await xlen()) === 0 ? true : undefined), 2_000, 'inbox emptied');
    expect(await pendingCount()).toBe(0);
  });

  it('with several loops and consumers, applies every message exactly once', async () => {
    const r = recorder();
    await startConsumer(r.handleBatch, { loops: 2, batchSize: 7 });
    await startConsumer(r.handleBatch, { loops: 2, batchSize: 7 });
    const messages = Array.from({ length: 100 }, () => runStart());
    for (let i = 0; i < messages.length; i += 20) await appendToInbox(redis, prefix, messages.slice(i, i + 20));
    await waitFor(async () => (r.applied.length >= 100 ? true : undefined), 5_000, '100 messages');
    await waitFor(async () => ((await xlen()) === 0 ? true : undefined), 2_000, 'inbox emptied');
    expect(r.applied).toHaveLength(100);
    expect(new Set(r.applied.map(idOf))).toEqual(new Set(messages.map(idOf)));
    expect(await pendingCount()).toBe(0);
  });
});
