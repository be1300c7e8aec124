import os from 'node:os';
import type { Redis } from 'ioredis';
import { deadInboxKey, inboxKey, INBOX_GROUP, isInboxMessage, type InboxMessage, type Logger } from '@baton/shared';

export interface InboxConsumerOptions {
  /** Duplicated for each reading loop (XREADGROUP blocks its connection). */
  redis: Redis;
  prefix: string;
  logger: Logger;
  /**
   * Applies a batch; may call `onCommit` as soon as it has committed, to have the entries
   * acknowledged then rather than when it returns. Throws when the batch could not be applied.
   */
  handleBatch: (messages: InboxMessage[], onCommit: () => Promise<void>) => Promise<void>;
  /** Most entries taken per read, i.e. per transaction. */
  batchSize?: number;
  /** Reading loops, each applying its own batches: one can read while another commits. */
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

/** Batches grow with the backlog up to this; an idle coordinator applies a lone report at once. */
export const INBOX_BATCH_SIZE = 200;
export const INBOX_LOOPS = 2;
export const INBOX_CLAIM_IDLE_MS = 30_000;
export const INBOX_MAX_DELIVERIES = 10;
const BLOCK_MS = 1_000;

/**
 * Reads the coordinator inbox (shared/src/inbox.ts) through the consumer group: each loop reads up to
 * `batchSize` entries, has them applied in one transaction, then acknowledges and deletes them. A
 * batch that fails is retried one message at a time, so one bad message holds up only itself; what
 * still fails stays pending and is delivered again after `claimIdleMs`.
 */
export class InboxConsumer {
  private readonly key: string;
  private readonly consumer: string;
  private readonly readers: Redis[] = [];
  private readonly loops: Promise<void>[] = [];
  private claimTimer?: NodeJS.Timeout;
  private claiming?: Promise<void>;
  private closing = false;

  constructor(private readonly opts: InboxConsumerOptions) {
    this.key = inboxKey(opts.prefix);
    this.consumer = opts.consumerName ?? `${os.hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  }

  async start(): Promise<void> {
    await this.ensureGroup();
    for (let i = 0; i < (this.opts.loops ?? INBOX_LOOPS); i += 1) {
      const reader = this.opts.redis.duplicate({ connectionName: 'baton:coordinator:inbox' });
      this.readers.push(reader);
      this.loops.push(this.readLoop(reader));
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
    // A reader blocked in XREADGROUP is interrupted; one applying a batch finishes it first.
    for (const reader of this.readers) reader.disconnect();
    await Promise.all(this.loops);
    await this.claiming;
  }

  private async ensureGroup(): Promise<void> {
    try {
      // From the start of the stream: entries appended before any coordinator existed are not lost.
      await this.opts.redis.xgroup('CREATE', this.key, INBOX_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
  }

  private async readLoop(reader: Redis): Promise<void> {
    while (!this.closing) {
      let entries: Entry[];
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
          this.key,
          '>',
        )) as [string, [string, string[]][]][] | null;
        entries = reply ? reply[0][1].map(([id, fields]) => parseEntry(id, fields)) : [];
      } catch (err) {
        if (this.closing) return;
        // The group is gone with a FLUSHALL or a Redis restart without persistence: make it again.
        if (String((err as Error).message).includes('NOGROUP')) await this.ensureGroup().catch(() => undefined);
        else this.opts.logger.warn({ err }, 'inbox read failed; retrying');
        await sleep(250);
        continue;
      }
      // A failure here (Redis refusing a write) leaves the entries pending: claimed again later.
      if (entries.length) {
        await this.apply(entries).catch((err: unknown) =>
          this.opts.logger.warn({ err }, 'inbox entries not applied; they stay pending'),
        );
      }
    }
  }

  private async apply(entries: Entry[]): Promise<void> {
    const malformed = entries.filter((e) => !e.message);
    if (malformed.length)
      await this.deadLetter(malformed.map((e) => ({ id: e.id, error: 'not a coordinator message' })));
    const valid = entries.filter((e): e is Required<Entry> => Boolean(e.message));
    if (!valid.length) return;
    // A lone message is not retried at once: left pending, it comes back after claimIdleMs.
    const alone = valid.length === 1;
    try {
      await this.applyAndAck(valid);
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
        await this.applyAndAck([entry]);
      } catch (err) {
        // Left pending: delivered again after claimIdleMs, dead-lettered after maxDeliveries.
        this.opts.logger.warn({ err, message: entry.message }, 'inbox message failed; it will be retried');
      }
    }
  }

  /** Acknowledged when `handleBatch` says it committed, or when it returns, whichever comes first. */
  private async applyAndAck(entries: Required<Entry>[]): Promise<void> {
    let acked: Promise<void> | undefined;
    const ack = (): Promise<void> => (acked ??= this.ack(entries.map((e) => e.id)));
    await this.opts.handleBatch(
      entries.map((e) => e.message),
      ack,
    );
    await ack();
  }

  private async ack(ids: string[]): Promise<void> {
    await this.opts.redis
      .multi()
      .xack(this.key, INBOX_GROUP, ...ids)
      .xdel(this.key, ...ids)
      .exec();
  }

  /**
   * Entries whose coordinator died before acknowledging them are taken over; those that failed too
   * often go to the dead-letter stream.
   */
  async claimStale(): Promise<number> {
    const minIdle = this.opts.claimIdleMs ?? INBOX_CLAIM_IDLE_MS;
    const pending = (await this.opts.redis.xpending(this.key, INBOX_GROUP, 'IDLE', minIdle, '-', '+', 100)) as [
      string,
      string,
      number,
      number,
    ][];
    if (!pending.length) return 0;
    const maxDeliveries = this.opts.maxDeliveries ?? INBOX_MAX_DELIVERIES;
    const poisoned = pending.filter(([, , , deliveries]) => deliveries >= maxDeliveries).map(([id]) => id);
    if (poisoned.length) {
      await this.deadLetter(poisoned.map((id) => ({ id, error: `failed ${maxDeliveries} deliveries` })));
    }
    const retry = pending.filter(([, , , deliveries]) => deliveries < maxDeliveries).map(([id]) => id);
    if (!retry.length) return 0;
    const claimed = (await this.opts.redis.xclaim(this.key, INBOX_GROUP, this.consumer, minIdle, ...retry)) as [
      string,
      string[] | null,
    ][];
    // An entry deleted meanwhile comes back without fields: only its pending record was left.
    const entries = claimed.filter(([, fields]) => fields).map(([id, fields]) => parseEntry(id, fields as string[]));
    const gone = claimed.filter(([, fields]) => !fields).map(([id]) => id);
    if (gone.length) await this.opts.redis.xack(this.key, INBOX_GROUP, ...gone);
    if (entries.length) {
      this.opts.logger.warn({ entries: entries.length }, 'inbox entries of a stopped coordinator taken over');
      await this.apply(entries);
    }
    return entries.length;
  }

  private async deadLetter(entries: { id: string; error: string }[]): Promise<void> {
    const ids = entries.map((e) => e.id);
    const stored = (await this.opts.redis.xrange(this.key, ids[0], ids[ids.length - 1])) as [string, string[]][];
    const byId = new Map(stored.map(([id, fields]) => [id, fields]));
    // Written before the entries are acknowledged: if this fails, they stay pending.
    const tx = this.opts.redis.multi();
    for (const { id, error } of entries) {
      const fields = byId.get(id);
      this.opts.logger.error({ id, error, fields }, 'inbox entry dead-lettered');
      tx.xadd(deadInboxKey(this.opts.prefix), 'MAXLEN', '~', 10_000, '*', 'id', id, 'error', error, ...(fields ?? []));
    }
    const results = (await tx
      .xack(this.key, INBOX_GROUP, ...ids)
      .xdel(this.key, ...ids)
      .exec()) ?? [[new Error('dead-letter transaction discarded'), null]];
    // MULTI applies every command even when one fails: an entry whose dead letter was not written
    // must not be acknowledged silently, so say so (it is acknowledged already; the log keeps it).
    const failed = results.find(([err]) => err);
    if (failed) throw failed[0];
  }
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
