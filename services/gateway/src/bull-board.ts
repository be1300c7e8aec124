import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Queue } from 'bullmq';
import type { Express, RequestHandler } from 'express';
import { COORDINATOR_QUEUE, functionQueueName, knownFunctions, type Pool } from '@baton/engine';
import type { AppDeps } from './deps';
import { requireApiKey } from './http/auth';
import { ApiError } from './http/errors';

/**
 * Bull Board at /admin/queues: queue-level inspection of `{coordinator}` and every `{fn.<name>}`
 * queue (counts, jobs, their data and errors, workers). Read-only: runs are controlled through the
 * API (retry, cancel), whose coordinator keeps the run state consistent; a job retried or removed
 * behind its back would not be.
 */
export const BULL_BOARD_PATH = '/admin/queues';

/** How often the list of function queues is refreshed, at most (on the board's own requests). */
const REFRESH_INTERVAL_MS = 5_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Every function that has a queue, whether or not a worker runs yet (work waiting for a missing
 * worker is exactly what one wants to see): `knownFunctions`, the one list (workflow/store.ts).
 */
export async function queuedFunctionNames(pool: Pick<Pool, 'query'>): Promise<string[]> {
  return (await knownFunctions(pool)).map((f) => f.name);
}

/**
 * The API-key check of /v1 for a page people open in a browser, which cannot add a bearer header:
 * HTTP Basic credentials (any user name, the API key as password) are accepted as that bearer token,
 * and a 401 challenges for Basic so the browser asks. A bearer header works as on /v1.
 */
export function requireAdminKey(apiKeys: readonly string[]): RequestHandler {
  const bearer = requireApiKey(apiKeys);
  return (req, res, next) => {
    const basic = /^Basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*$/i.exec(req.headers.authorization ?? '');
    if (basic) {
      const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      req.headers.authorization = `Bearer ${colon >= 0 ? decoded.slice(colon + 1) : ''}`;
    }
    try {
      bearer(req, res, next);
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) throw err;
      throw new ApiError(401, err.code, `${err.message}; in a browser, sign in with any user name and the key`, {
        headers: { 'WWW-Authenticate': 'Basic realm="baton admin", charset="UTF-8"' },
      });
    }
  };
}

/**
 * The board's express handler (mount it at BULL_BOARD_PATH). Function queues are discovered from
 * PostgreSQL when the board is used, at most every REFRESH_INTERVAL_MS; a failed lookup keeps the
 * queues already shown.
 */
export function bullBoardHandler(deps: AppDeps): RequestHandler {
  const { pool, redis, config, logger } = deps;
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);

  const adapterOptions = {
    readOnlyMode: true,
    allowRetries: false,
    // A step job's data names its run: link it to the dashboard's run page.
    externalJobUrl: (job: { data?: unknown }) => {
      const runId = (job.data as { runId?: unknown } | undefined)?.runId;
      return typeof runId === 'string' && UUID.test(runId)
        ? { href: `/runs/${runId}`, displayText: 'Open the run' }
        : { href: '/' };
    },
  };
  const board = createBullBoard({
    queues: [new BullMQAdapter(deps.coordinator, { ...adapterOptions, description: 'coordinator messages' })],
    serverAdapter,
    options: {
      uiConfig: {
        boardTitle: 'Baton queues',
        miscLinks: [{ text: 'Dashboard', url: '/' }],
        hideDocsLink: true,
        sortQueues: false,
      },
    },
  });

  const queues = new Map<string, Queue>();
  let refreshedAt = 0;
  let refreshing: Promise<void> | undefined;

  const refresh = async (): Promise<void> => {
    const names = await queuedFunctionNames(pool);
    for (const name of names) {
      const queueName = functionQueueName(name);
      if (queues.has(queueName) || queueName === COORDINATOR_QUEUE) continue;
      // The gateway's own connection: a Queue only issues plain commands on it, never blocking ones.
      const queue = new Queue(queueName, { connection: redis, prefix: config.queuePrefix });
      queue.on('error', (err) => logger.warn({ err: err.message, queue: queueName }, 'queue error'));
      queues.set(queueName, queue);
      board.addQueue(new BullMQAdapter(queue, { ...adapterOptions, description: `function ${name}` }));
    }
  };

  const router = serverAdapter.getRouter() as Express;
  router.disable('x-powered-by');
  return async (req, res, next) => {
    if (Date.now() - refreshedAt >= REFRESH_INTERVAL_MS) {
      refreshing ??= refresh()
        .catch((err: unknown) => {
          logger.warn({ err }, 'cannot list function queues for the queue board');
        })
        .finally(() => {
          // A failed lookup is tried again after the interval too, not on every request.
          refreshedAt = Date.now();
          refreshing = undefined;
        });
      await refreshing;
    }
    router(req, res, next);
  };
}
