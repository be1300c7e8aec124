import { Queue } from 'bullmq';
import { appendToInbox, isInboxMessage, type InboxMessage } from './inbox';
import { COORDINATOR_QUEUE } from './keys';
import { coordinatorJobId, type CoordinatorMessage } from './protocol';
import { boundedRedisCall, COORDINATOR_JOB_OPTIONS, type QueueContext, type RedisConnection } from './queues';

/** A message sent to be handled later (a timer, a deadline), after `delayMs`. */
export interface DelayedMessage {
  message: Exclude<CoordinatorMessage, { type: 'schedule.fire' }>;
  delayMs: number;
}

/**
 * The coordinator's transport, the one way to reach it: run starts and step reports through the inbox
 * stream (inbox.ts), everything else as a job on its BullMQ queue `{coordinator}`, each with its dedup
 * job id (`coordinatorJobId`). It is that queue (schedules are its job schedulers, Bull Board shows it)
 * and it keeps the connection and prefix it was made with, so no caller reads them back from
 * `queue.opts`.
 */
export class CoordinatorClient extends Queue {
  /** The connection the queue and the inbox share. */
  readonly redis: RedisConnection;
  /** The key prefix (`BATON_QUEUE_PREFIX`). */
  readonly keyPrefix: string;
  /** Streams of the inbox (BATON_INBOX_SHARDS): a run's messages go to the shard of its id. */
  readonly inboxShards: number;

  constructor(ctx: QueueContext) {
    super(COORDINATOR_QUEUE, { connection: ctx.connection, prefix: ctx.prefix });
    this.redis = ctx.connection;
    this.keyPrefix = ctx.prefix;
    this.inboxShards = ctx.inboxShards ?? 1;
  }

  /**
   * Hands a message to the coordinator. Bounded by the connection's command timeout when it has one
   * (the gateway's, answering a client), which also covers BullMQ waiting for a connection that is not
   * ready; fails as RedisUnavailableError.
   */
  async send(message: CoordinatorMessage): Promise<void> {
    await boundedRedisCall(this.redis, `notifying the coordinator (${message.type})`, async () => {
      if (isInboxMessage(message)) {
        await appendToInbox(this.redis, this.keyPrefix, [message], this.inboxShards);
        return;
      }
      await this.add(message.type, message, { ...COORDINATOR_JOB_OPTIONS, jobId: coordinatorJobId(message) });
    });
  }

  /** Inbox messages in one round trip (a pipeline of XADDs), bounded like `send`. */
  async sendToInbox(messages: InboxMessage[], what: string): Promise<void> {
    await boundedRedisCall(this.redis, what, () =>
      appendToInbox(this.redis, this.keyPrefix, messages, this.inboxShards),
    );
  }

  /** A message due after `delayMs` (the coordinator's own timers and deadlines). */
  async sendDelayed({ message, delayMs }: DelayedMessage): Promise<void> {
    await this.add(message.type, message, {
      ...COORDINATOR_JOB_OPTIONS,
      jobId: coordinatorJobId(message),
      delay: Math.max(0, delayMs),
    });
  }

  /** Several delayed messages in one round trip. */
  async sendAllDelayed(messages: DelayedMessage[]): Promise<void> {
    if (!messages.length) return;
    await this.addBulk(
      messages.map(({ message, delayMs }) => ({
        name: message.type,
        data: message,
        opts: { ...COORDINATOR_JOB_OPTIONS, jobId: coordinatorJobId(message), delay: delayMs },
      })),
    );
  }

  /**
   * Whether a message is still to be handled (waiting, delayed, active). A finished one is removed,
   * so that sending it again is not a no-op.
   */
  async pending(message: DelayedMessage['message']): Promise<boolean> {
    const jobId = coordinatorJobId(message);
    const job = await this.getJob(jobId);
    if (job && !['completed', 'failed', 'unknown'].includes(await job.getState())) return true;
    if (job) await this.remove(jobId).catch(() => 0);
    return false;
  }

  /** Which of these messages are delayed jobs still (one pipelined ZSCORE each). */
  async delayedStill(messages: DelayedMessage['message'][]): Promise<boolean[]> {
    if (!messages.length) return [];
    const pipeline = this.redis.pipeline();
    for (const message of messages) pipeline.zscore(this.keys.delayed, coordinatorJobId(message));
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([err, value]) => {
      if (err) throw err;
      return value !== null;
    });
  }
}

/** The coordinator's client on a connection (see CoordinatorClient). */
export function coordinatorQueue(ctx: QueueContext): CoordinatorClient {
  return new CoordinatorClient(ctx);
}
