import type http from 'node:http';
import { Queue } from 'bullmq';
import { ErrorCode } from '@baton/workflow';
import { functionQueueName, type Logger, type QueueContext, type RedisConnection } from '@baton/engine';

/**
 * A function queue's backlog, the metric KEDA scales each function's Deployment on
 * (a `metrics-api` trigger on GET /backlog?function=<name>, see docs/SCALING.md).
 */
export interface Backlog {
  function: string;
  waiting: number;
  prioritized: number;
  active: number;
  /** Every delayed job: retries waiting out their backoff, due or not. */
  delayed: number;
  /** Delayed jobs whose time has come; only a running worker promotes them to waiting. */
  dueDelayed: number;
  paused: boolean;
  backlog: number;
}

/** Names the runtime can have queues for; anything else is a client error, not a new Queue object. */
const FUNCTION_NAME = /^[a-z0-9][a-z0-9._-]{0,99}$/i;

/** BullMQ scores a delayed job `timestamp * 0x1000 + sequence` (getDelayedScore.lua). */
const DELAY_SCORE_FACTOR = 0x1000;

/**
 * The scaling formula. Delayed jobs count in full, because no worker means nobody promotes a due
 * retry: a function never scales to zero with a retry outstanding. A paused queue hands out no work,
 * so only its running attempts count — they keep their pods until they finish (0 when idle).
 */
export function backlogOf(
  counts: Omit<Backlog, 'function' | 'backlog' | 'paused' | 'dueDelayed'>,
  paused: boolean,
): number {
  if (paused) return counts.active;
  return counts.waiting + counts.prioritized + counts.active + counts.delayed;
}

export function isValidFunctionName(name: string): boolean {
  return FUNCTION_NAME.test(name);
}

/** Reads the counts of one function queue: a handful of O(1) Redis calls. */
export async function readBacklog(
  queue: Queue,
  redis: RedisConnection,
  functionName: string,
  now = Date.now(),
): Promise<Backlog> {
  const [counts, paused, dueDelayed] = await Promise.all([
    queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed'),
    queue.isPaused(),
    redis.zcount(queue.keys.delayed, '-inf', (now + 1) * DELAY_SCORE_FACTOR - 1),
  ]);
  const c = {
    waiting: counts.waiting ?? 0,
    prioritized: counts.prioritized ?? 0,
    active: counts.active ?? 0,
    delayed: counts.delayed ?? 0,
  };
  return { function: functionName, ...c, dueDelayed, paused, backlog: backlogOf(c, paused) };
}

/**
 * Keeps one Queue object per function (they share the coordinator's Redis connection) so a KEDA
 * poll costs no connection set-up; bounded so arbitrary names cannot grow it without limit.
 */
export class BacklogReader {
  private readonly queues = new Map<string, Queue>();

  constructor(
    private readonly ctx: QueueContext,
    private readonly redis: RedisConnection,
    private readonly maxQueues = 500,
  ) {}

  async read(functionName: string): Promise<Backlog> {
    if (!isValidFunctionName(functionName)) throw new RangeError(`invalid function name '${functionName}'`);
    let queue = this.queues.get(functionName);
    const cached = queue !== undefined;
    if (!queue) {
      queue = new Queue(functionQueueName(functionName), { connection: this.ctx.connection, prefix: this.ctx.prefix });
      // Connection errors reach the caller through the failed read; the event would only add noise.
      queue.on('error', () => undefined);
    }
    try {
      return await readBacklog(queue, this.redis, functionName);
    } finally {
      if (!cached) {
        if (this.queues.size < this.maxQueues) this.queues.set(functionName, queue);
        else await queue.close();
      }
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
  }
}

/** GET /backlog?function=<name> for startMetricsServer's routes. */
export function backlogRoute(
  reader: Pick<BacklogReader, 'read'>,
  logger: Logger,
  timeoutMs = 3_000,
): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(405, { error: { code: ErrorCode.METHOD_NOT_ALLOWED, message: 'use GET' } });
      return;
    }
    const name = new URL(req.url ?? '/', 'http://localhost').searchParams.get('function') ?? '';
    if (!isValidFunctionName(name)) {
      json(400, { error: { code: ErrorCode.BAD_REQUEST, message: 'query parameter function=<name> is required' } });
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    // The shared Redis connection queues commands while Redis is away; answer KEDA before it gives up.
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer from Redis within ${timeoutMs} ms`)), timeoutMs);
    });
    Promise.race([reader.read(name), timeout])
      .finally(() => clearTimeout(timer))
      .then(
        (backlog) => json(200, backlog),
        (err: unknown) => {
          // KEDA then keeps the current replicas (or its fallback) instead of scaling on a guess.
          logger.warn({ err: (err as Error).message, function: name }, 'backlog read failed');
          json(503, { error: { code: ErrorCode.UNAVAILABLE, message: 'queue counts unavailable' } });
        },
      );
  };
}
