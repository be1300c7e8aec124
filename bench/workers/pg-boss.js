'use strict';
/**
 * pg-boss 10 chain, tuned as its docs advise for throughput: the shortest polling interval
 * (pollingIntervalSeconds 0.5), fetching in batches (batchSize) with several workers per queue,
 * the next step's jobs inserted in one statement per batch (`insert`), and `notifyWorker` to wake
 * the next queue's workers in this process instead of waiting for their next poll.
 */
const { PgBoss } = loadPgBoss();
const { serveHarness } = require('./ipc');
const { CONCURRENCY } = require('./settings');

const BATCH_SIZE = Number(process.env.BENCH_PGBOSS_BATCH || 64);
const WORKERS_PER_QUEUE = 2;

function loadPgBoss() {
  const mod = require('pg-boss');
  return { PgBoss: mod.PgBoss ?? mod.default ?? mod };
}

async function main() {
  const boss = new PgBoss({
    connectionString: process.env.DATABASE_URL,
    max: CONCURRENCY + 4,
    schedule: false,
    supervise: true,
  });
  boss.on('error', (err) => process.stderr.write(`pg-boss: ${err.message}\n`));
  await boss.start();
  const names = [1, 2, 3, 4].map((k) => `q${k}`);
  for (const name of names) await boss.createQueue(name);
  const harness = serveHarness({ stop: () => boss.stop({ graceful: true, wait: true }) });
  const workerIds = names.map(() => []);
  for (let i = 0; i < names.length; i += 1) {
    for (let w = 0; w < WORKERS_PER_QUEUE; w += 1) {
      const id = await boss.work(names[i], { batchSize: BATCH_SIZE, pollingIntervalSeconds: 0.5 }, async (jobs) => {
        for (const job of jobs) harness.note(job.data.key, i + 1);
        if (i < 3) {
          await boss.insert(jobs.map((job) => ({ name: names[i + 1], data: job.data })));
          for (const next of workerIds[i + 1]) boss.notifyWorker(next);
        }
      });
      workerIds[i].push(id);
    }
  }
  harness.ready();
}

main().catch((err) => {
  process.stderr.write(`pg-boss worker failed: ${err.stack}\n`);
  process.exit(1);
});
