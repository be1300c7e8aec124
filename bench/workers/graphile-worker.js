'use strict';
/**
 * graphile-worker 0.17 chain, tuned as its performance docs advise: one worker pool with
 * `concurrency` jobs at once and `maxPoolSize` = concurrency + 2, a local queue of
 * concurrency + 1 jobs fetched (and locked) at once, batched job completion
 * (`completeJobBatchDelay: 0`) and prepared statements (the default); LISTEN/NOTIFY wakes it, so
 * no short poll interval is needed.
 */
const { run } = require('graphile-worker');
const { serveHarness } = require('./ipc');
const { CONCURRENCY } = require('./settings');

const TOTAL = CONCURRENCY * 4;

async function main() {
  harness = serveHarness({ stop: () => runner.stop() });
  const taskList = {};
  for (let k = 1; k <= 4; k += 1) {
    taskList[`s${k}`] = async (payload, helpers) => {
      harness.note(payload.key, k);
      if (k < 4) await helpers.addJob(`s${k + 1}`, payload);
    };
  }
  runner = await run({
    connectionString: process.env.DATABASE_URL,
    concurrency: TOTAL,
    maxPoolSize: TOTAL + 2,
    noHandleSignals: true,
    pollInterval: 2000,
    preparedStatements: true,
    localQueue: { size: TOTAL + 1 },
    completeJobBatchDelay: 0,
    logger: quietLogger(),
    taskList,
  });
  harness.ready();
}

function quietLogger() {
  const { Logger } = require('graphile-worker');
  return new Logger(() => (level, message) => {
    if (level === 'error') process.stderr.write(`graphile-worker: ${message}\n`);
  });
}

let harness;
let runner;
main().catch((err) => {
  process.stderr.write(`graphile-worker failed: ${err.stack}\n`);
  process.exit(1);
});
