import os from 'node:os';
import {
  deadInboxKey,
  duplicateRedis,
  epochMs,
  inboxKey,
  INBOX_GROUP,
  isInboxMessage,
  metrics,
  type InboxMessage,
  type Logger,
  type RedisConnection,
} from '@baton/engine';

export interface InboxConsumerOptions {
  /** Duplicated for each reading loop (XREADGROUP blocks its connection). */
  redis: RedisConnection;
  prefix: string;
  /**
   * Inbox shards read: 0..shards-1 (BATON_INBOX_SHARDS, or more while the shards of a larger former
   * count are drained: BATON_INBOX_DRAIN_SHARDS). Absent: 1, the unsharded inbox.
   */
  shards?: number;
  logger: Logger;
  /**
   * Applies a batch; may call `onCommit` as soon as it has committed, to have the entries
   * acknowledged then rather than when it returns. Throws when the batch could not be applied.
   */
  handleBatch: (messages: InboxMessage[], onCommit: () => Promise<void>) => Promise<void>;
  /** Most entries taken per read, i.e. per transaction. */
  batchSize?: number;
  /**
   * Reading loops, each applying its own batches: one can read while another commits. Spread over
   * the shards: each shard has at least one loop (a blocking read stays in one cluster slot), and
   * `loops` in all when there are fewer shards than loops.
   */
  loops?: number;
  /** An entry read but not acknowledged for this long (its coordinator died) is claimed by another. */
  claimIdleMs?: number;
  /** Entries failing this many deliveries go to the dead-letter stream instead of looping forever. */
  maxDeliveries?: number;
  consumerName?: string;
}

interface Entry {
  id: string;
  message?: InboxMessage;
}

/** One inbox stream: its shard number, key and dead-letter key. */
interface Shard {
  index: number;
  key: string;
  deadKey: string;
}

/** Batches grow with the backlog up to this; an idle coordinator applies a lone report at once. */
export const INBOX_BATCH_SIZE = 200;
export const INBOX_LOOPS = 2;
export const INBOX_CLAIM_IDLE_MS = 30_000;
export const INBOX_MAX_DELIVERIES = 10;
const BLOCK_MS = 1_000;

/** The coordinator's hops of a step report's path (baton_step_hop_seconds), bound once. */
const hops = {
  inboxWait: metrics.stepHop.labels('inbox_wait'),
  transaction: metrics.stepHop.labels('transaction'),
};

/**
 * Reads the coordinator inbox (engine/src/inbox.ts) through the consumer group: each loop reads up to
 * `batchSize` entries of its shard, has them applied in one transaction, then acknowledges and
 * deletes them. A batch that fails is retried one message at a time, so one bad message holds up
 * only itself; what still fails stays pending and is delivered again after `claimIdleMs`.
 *
 * Sharded, every replica reads every shard (one consumer group per stream, the same name): a run's
 * messages are in one shard, in order, and each entry goes to one replica; the claim of a dead
 * replica's entries runs per shard.
 */
export class InboxConsumer {
  private readonly shards: Shard[];
  private readonly consumer: string;
  private readonly readers: RedisConnection[] = [];
  /** Readers whose loop is applying a batch: their connection acknowledges it, so close() leaves them be. */
  private readonly applying = new Set<RedisConnection>();
  private readonly loops: Promise<void>[] = [];
  private claimTimer?: NodeJS.Timeout;
  private claiming?: Promise<void>;
  private closing = false;

  constructor(private readonly opts: InboxConsumerOptions) {
    this.shards = Array.from({ length: Math.max(1, opts.shards ?? 1) }, (_, index) => ({
      index,
      key: inboxKey(opts.prefix, index),
      deadKey: deadInboxKey(opts.prefix, index),
    }));
    this.consumer = opts.consumerName ?? `${os.hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  }

  /** Reading loops in all: at least one per shard. */
  get readerCount(): number {
    return Math.max(this.opts.loops ?? INBOX_LOOPS, this.shards.length);
  }

  async start(): Promise<void> {
    for (const shard of this.shards) await this.ensureGroup(shard);
    for (let i = 0; i < this.readerCount; i += 1) {
      const shard = this.shards[i % this.shards.length];
      const reader = duplicateRedis(this.opts.redis, 'baton:coordinator:inbox');
      this.readers.push(reader);
      this.loops.push(this.readLoop(reader, shard));
    }
    const claimEvery = Math.max(100, Math.floor((this.opts.claimIdleMs ?? INBOX_CLAIM_IDLE_MS) / 2));
    const tick = (): void => {
      this.claiming = this.claimStale()
        .then(() => undefined)
        .catch((err: unknown) => this.opts.logger.warn({ err }, 'inbox claim pass failed'))
        .finally(() => {
          if (!this.closing) this.claimTimer = setTimeout(tick, claimEvery);
        });
    };
    this.claimTimer = setTimeout(tick, claimEvery);
  }

  /** Stops reading; a batch being applied is finished (committed and acknowledged) first. */
  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.claimTimer);
    // A reader blocked in XREADGROUP is interrupted; one applying a batch finishes it first (its
    // acknowledgement goes out on that reader's connection) and its loop then disconnects it.
    for (const reader of this.readers) if (!this.applying.has(reader)) reader.disconnect();
    await Promise.all(this.loops);
    await this.claiming;
  }

  private async ensureGroup(shard: Shard): Promise<void> {
    try {
      // From the start of the stream: entries appended before any coordinator existed are not lost.
      await this.opts.redis.xgroup('CREATE', shard.key, INBOX_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
  }

  private async readLoop(reader: RedisConnection, shard: Shard): Promise<void> {
    try {
      await this.readUntilClosed(reader, shard);
    } finally {
      reader.disconnect();
    }
  }

  private async readUntilClosed(reader: RedisConnection, shard: Shard): Promise<void> {
    while (!this.closing) {
      let entries: Entry[];
      let readAt: number;
      try {
        const reply = (await reader.xreadgroup(
          'GROUP',
          INBOX_GROUP,
          this.consumer,
          'COUNT',
          this.opts.batchSize ?? INBOX_BATCH_SIZE,
          'BLOCK',
          BLOCK_MS,
          'STREAMS',
          shard.key,
          '>',
        )) as [string, [string, string[]][]][] | null;
        readAt = epochMs();
        entries = reply ? reply[0][1].map(([id, fields]) => parseEntry(id, fields)) : [];
      } catch (err) {
        if (this.closing) return;
        // The group is gone with a FLUSHALL or a Redis restart without persistence: make it again.
        if (String((err as Error).message).includes('NOGROUP')) await this.ensureGroup(shard).catch(() => undefined);
        else this.opts.logger.warn({ err }, 'inbox read failed; retrying');
        await sleep(250);
        continue;
      }
      // A failure here (Redis refusing a write) leaves the entries pending: claimed again later.
      if (entries.length) {
        this.applying.add(reader);
        await this.apply(shard, entries, readAt, reader)
          .catch((err: unknown) => this.opts.logger.warn({ err }, 'inbox entries not applied; they stay pending'))
          .finally(() => this.applying.delete(reader));
      }
    }
  }

  /**
   * `readAt`: when the entries were read (epochMs), where their hops begin. `acker`: the connection
   * the acknowledgements go out on (a reading loop's own, idle while its batch is applied).
   */
  private async apply(shard: Shard, entries: Entry[], readAt: number, acker?: RedisConnection): Promise<void> {
    const malformed = entries.filter((e) => !e.message);
    if (malformed.length)
      await this.deadLetter(
        shard,
        malformed.map((e) => ({ id: e.id, error: 'not a coordinator message' })),
      );
    const valid = entries.filter((e): e is Required<Entry> => Boolean(e.message));
    if (!valid.length) return;
    // A lone message is not retried at once: left pending, it comes back after claimIdleMs.
    const alone = valid.length === 1;
    observeInboxWait(valid, readAt);
    try {
      await this.applyAndAck(shard, valid, readAt, acker);
      return;
    } catch (err) {
      this.opts.logger.warn(
        { err, messages: valid.length, ...(alone ? { message: valid[0].message } : {}) },
        alone ? 'inbox message failed; it will be retried' : 'inbox batch failed; applying its messages one by one',
      );
    }
    if (alone) return;
    for (const entry of valid) {
      try {
        await this.applyAndAck(shard, [entry], readAt, acker);
      } catch (err) {
        // Left pending: delivered again after claimIdleMs, dead-lettered after maxDeliveries.
        this.opts.logger.warn({ err, message: entry.message }, 'inbox message failed; it will be retried');
      }
    }
  }

  /** Acknowledged when `handleBatch` says it committed, or when it returns, whichever comes first. */
  private async applyAndAck(
    shard: Shard,
    entries: Required<Entry>[],
    readAt: number,
    acker?: RedisConnection,
  ): Promise<void> {
    let acked: Promise<void> | undefined;
    const ack = (): Promise<void> => {
      // Called at commit (or, at the latest, once the batch is applied): the transaction hop ends.
      if (!acked) observeTransaction(entries, readAt);
      return (acked ??= this.ack(
        shard,
        entries.map((e) => e.id),
        acker,
      ));
    };
    await this.opts.handleBatch(
      entries.map((e) => e.message),
      ack,
    );
    await ack();
  }

  /**
   * On a reading loop's connection when there is one: BullMQ defines its scripts on the shared
   * connection (its queues use it), and an ioredis MULTI there copies every one of them onto the
   * transaction object first — a tenth of the coordinator's CPU per step before this.
   */
  private async ack(shard: Shard, ids: string[], acker: RedisConnection = this.opts.redis): Promise<void> {
    await acker
      .multi()
      .xack(shard.key, INBOX_GROUP, ...ids)
      .xdel(shard.key, ...ids)
      .exec();
  }

  /**
   * Entries whose coordinator died before acknowledging them are taken over; those that failed too
   * often go to the dead-letter stream.
   */
  async claimStale(): Promise<number> {
    let claimed = 0;
    for (const shard of this.shards) claimed += await this.claimStaleOf(shard);
    return claimed;
  }

  private async claimStaleOf(shard: Shard): Promise<number> {
    const minIdle = this.opts.claimIdleMs ?? INBOX_CLAIM_IDLE_MS;
    const pending = (await this.opts.redis.xpending(shard.key, INBOX_GROUP, 'IDLE', minIdle, '-', '+', 100)) as [
      string,
      string,
      number,
      number,
    ][];
    if (!pending.length) return 0;
    const maxDeliveries = this.opts.maxDeliveries ?? INBOX_MAX_DELIVERIES;
    const poisoned = pending.filter(([, , , deliveries]) => deliveries >= maxDeliveries).map(([id]) => id);
    if (poisoned.length) {
      await this.deadLetter(
        shard,
        poisoned.map((id) => ({ id, error: `failed ${maxDeliveries} deliveries` })),
      );
    }
    const retry = pending.filter(([, , , deliveries]) => deliveries < maxDeliveries).map(([id]) => id);
    if (!retry.length) return 0;
    const claimed = (await this.opts.redis.xclaim(shard.key, INBOX_GROUP, this.consumer, minIdle, ...retry)) as [
      string,
      string[] | null,
    ][];
    // An entry deleted meanwhile comes back without fields: only its pending record was left.
    const readAt = epochMs();
    const entries = claimed.filter(([, fields]) => fields).map(([id, fields]) => parseEntry(id, fields as string[]));
    const gone = claimed.filter(([, fields]) => !fields).map(([id]) => id);
    if (gone.length) await this.opts.redis.xack(shard.key, INBOX_GROUP, ...gone);
    if (entries.length) {
      this.opts.logger.warn(
        { entries: entries.length, shard: shard.index },
        'inbox entries of a stopped coordinator taken over',
      );
      await this.apply(shard, entries, readAt);
    }
    return entries.length;
  }

  private async deadLetter(shard: Shard, entries: { id: string; error: string }[]): Promise<void> {
    const ids = entries.map((e) => e.id);
    const stored = (await this.opts.redis.xrange(shard.key, ids[0], ids[ids.length - 1])) as [string, string[]][];
    const byId = new Map(stored.map(([id, fields]) => [id, fields]));
    // Written before the entries are acknowledged: if this fails, they stay pending.
    const tx = this.opts.redis.multi();
    for (const { id, error } of entries) {
      const fields = byId.get(id);
      this.opts.logger.error({ id, error, fields }, 'inbox entry dead-lettered');
      // The shard's own dead letters: in its slot, so this MULTI stays in one.
      tx.xadd(shard.deadKey, 'MAXLEN', '~', 10_000, '*', 'id', id, 'error', error, ...(fields ?? []));
    }
    const results = (await tx
      .xack(shard.key, INBOX_GROUP, ...ids)
      .xdel(shard.key, ...ids)
      .exec()) ?? [[new Error('dead-letter transaction discarded'), null]];
    // MULTI applies every command even when one fails: an entry whose dead letter was not written
    // must not be acknowledged silently, so say so (it is acknowledged already; the log keeps it).
    const failed = results.find(([err]) => err);
    if (failed) throw failed[0];
  }
}

/**
 * A step report's wait in the inbox: sent by its function (`sentAt`, the function's clock: across
 * hosts the clocks' offset is in it, clamped at 0) → read here. Reports of a runtime without
 * `sentAt`, and run starts, are not measured.
 */
function observeInboxWait(entries: Required<Entry>[], readAt: number): void {
  for (const { message } of entries) {
    if (message.type !== 'run.start' && typeof message.sentAt === 'number' && Number.isFinite(message.sentAt))
      hops.inboxWait.observe(Math.max(0, readAt - message.sentAt) / 1000);
  }
}

/** Read → committed, once per step report of the batch: each waited for the whole transaction. */
function observeTransaction(entries: Required<Entry>[], readAt: number): void {
  const seconds = Math.max(0, epochMs() - readAt) / 1000;
  for (const { message } of entries) if (message.type !== 'run.start') hops.transaction.observe(seconds);
}

function parseEntry(id: string, fields: string[]): Entry {
  const index = fields.indexOf('m');
  try {
    const message = JSON.parse(fields[index + 1]) as unknown;
    if (index >= 0 && message && typeof message === 'object' && isInboxMessage(message as InboxMessage)) {
      return { id, message: message as InboxMessage };
    }
  } catch {
    // Falls through: malformed.
  }
  return { id };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
