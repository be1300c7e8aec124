'use strict';
/**
 * bullmq-flow: the harness adds each run as one FlowProducer tree (q4 ← q3 ← q2 ← q1: a parent runs
 * once its child completed); these workers only note the step.
 */
const { Worker } = require('bullmq');
const { serveHarness } = require('./ipc');
const { redisConnection, CONCURRENCY, PREFIX } = require('./settings');

const connection = redisConnection();
const harness = serveHarness({ stop: () => Promise.all(workers.map((w) => w.close())) });
const workers = [1, 2, 3, 4].map(
  (k) =>
    new Worker(
      `q${k}`,
      async (job) => {
        harness.note(job.data.key, k);
      },
      { connection, prefix: PREFIX, concurrency: CONCURRENCY },
    ),
);
Promise.all(workers.map((w) => w.waitUntilReady())).then(harness.ready);
