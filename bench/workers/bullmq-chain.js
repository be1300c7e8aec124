'use strict';
/**
 * bullmq-chain: raw BullMQ, four queues; the worker of queue k enqueues the job of queue k+1.
 * No durability beyond Redis: the ceiling for a BullMQ-based engine.
 */
const { Queue, Worker } = require('bullmq');
const { serveHarness } = require('./ipc');
const { redisConnection, CONCURRENCY, PREFIX, JOB_OPTIONS } = require('./settings');

const connection = redisConnection();
const names = [1, 2, 3, 4].map((k) => `q${k}`);
const queues = names.map((name) => new Queue(name, { connection, prefix: PREFIX }));
const harness = serveHarness({
  stop: async () => {
    await Promise.all(workers.map((w) => w.close()));
    await Promise.all(queues.map((q) => q.close()));
  },
});
const workers = names.map(
  (name, i) =>
    new Worker(
      name,
      async (job) => {
        harness.note(job.data.key, i + 1);
        if (i < 3) await queues[i + 1].add('step', job.data, JOB_OPTIONS);
      },
      { connection, prefix: PREFIX, concurrency: CONCURRENCY },
    ),
);
Promise.all(workers.map((w) => w.waitUntilReady())).then(harness.ready);
