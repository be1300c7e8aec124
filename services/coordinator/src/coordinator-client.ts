import { Queue } from 'bullmq';
import {
  COORDINATOR_JOB_OPTIONS,
  COORDINATOR_QUEUE,
  coordinatorJobId,
  type CoordinatorMessage,
  type QueueContext,
} from '@baton/shared';
import type { Redis } from 'ioredis';

/** A message the coordinator sends itself, with the delay after which it is due. */
export interface DelayedMessage {
  message: Exclude<CoordinatorMessage, { type: 'schedule.fire' }>;
  delayMs: number;
}

/**
 * The coordinator's own queue, as the coordinator's parts use it: the messages it sends itself
 * (built-in step timers, workflow deadlines), each with its dedup job id, and the checks the
 * reconciler makes on them. The one place in the service that holds the queue and its connection:
 * the others ask this client rather than reading `queue.opts.connection`.
 */
export class CoordinatorClient {
  readonly queue: Queue;

  constructor(private readonly queues: QueueContext) {
    this.queue = new Queue(COORDINATOR_QUEUE, { connection: queues.connection, prefix: queues.prefix });
  }

  /** The connection every queue of the coordinator shares (for pipelined reads). */
  get redis(): Redis {
    return this.queues.connection;
  }

  async send({ message, delayMs }: DelayedMessage): Promise<void> {
    await this.queue.add(message.type, message, {
      ...COORDINATOR_JOB_OPTIONS,
      jobId: coordinatorJobId(message),
      delay: Math.max(0, delayMs),
    });
  }

  /** Several messages in one round trip. */
  async sendAll(messages: DelayedMessage[]): Promise<void> {
    if (!messages.length) return;
    await this.queue.addBulk(
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
    const job = await this.queue.getJob(jobId);
    if (job && !['completed', 'failed', 'unknown'].includes(await job.getState())) return true;
    if (job) await this.queue.remove(jobId).catch(() => 0);
    return false;
  }

  /** Which of these messages are delayed jobs still (one pipelined ZSCORE each). */
  async delayed(messages: DelayedMessage['message'][]): Promise<boolean[]> {
    if (!messages.length) return [];
    const pipeline = this.redis.pipeline();
    for (const message of messages) pipeline.zscore(this.queue.keys.delayed, coordinatorJobId(message));
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([err, value]) => {
      if (err) throw err;
      return value !== null;
    });
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
