'use strict';
/**
 * DBOS Transact 5.x: one workflow of four `DBOS.runStep` steps, each checkpointed in the system
 * database (PostgreSQL) before the next begins. Two ways in, chosen by BENCH_DBOS_MODE:
 *   direct  this process is the application server: the harness POSTs a run to it over HTTP
 *           (keep-alive) and it starts the workflow in-process (`DBOS.startWorkflow`), answering
 *           202 once DBOS has recorded the workflow.
 *   queue   the harness enqueues each run with a `DBOSClient` (a row in the system database) and
 *           this process dequeues it from the DBOS queue `bench`: the distributed form.
 */
const http = require('node:http');
const { DBOS } = require('@dbos-inc/dbos-sdk');
const { serveHarness } = require('./ipc');
const { CONCURRENCY } = require('./settings');

const MODE = process.env.BENCH_DBOS_MODE || 'direct';
/** The queue's dispatch loop polls PostgreSQL; DBOS's default minimum interval is 1 s. */
const POLL_MS = Number(process.env.BENCH_DBOS_POLL_MS || 50);
const WORKER_CONCURRENCY = 4 * CONCURRENCY;
/** The system database pool (DBOS's default: 10). */
const POOL = Number(process.env.BENCH_DBOS_POOL || 10);

let harness;

async function benchWorkflow(run) {
  for (let k = 1; k <= 4; k += 1) {
    await DBOS.runStep(
      async () => {
        harness.note(run.key, k);
      },
      { name: `s${k}` },
    );
  }
}

async function main() {
  let server;
  harness = serveHarness({
    stop: async () => {
      server?.close();
      await DBOS.shutdown();
    },
  });
  DBOS.setConfig({
    name: 'baton-bench',
    systemDatabaseUrl: process.env.DATABASE_URL,
    systemDatabasePoolSize: POOL,
    logLevel: 'warn',
  });
  const workflow = DBOS.registerWorkflow(benchWorkflow, { name: 'bench' });
  await DBOS.launch();
  if (MODE === 'queue') {
    await DBOS.registerQueue('bench', { workerConcurrency: WORKER_CONCURRENCY, minPollingIntervalMs: POLL_MS });
  } else {
    server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        const run = JSON.parse(body);
        DBOS.startWorkflow(workflow, { workflowID: run.key })(run).then(
          () => {
            res.writeHead(202).end();
          },
          (err) => {
            res.writeHead(500).end(String(err.message));
          },
        );
      });
    });
    await new Promise((resolve) => server.listen(Number(process.env.BENCH_PORT), '127.0.0.1', resolve));
  }
  harness.ready();
}

main().catch((err) => {
  process.stderr.write(`dbos worker failed: ${err.stack}\n`);
  process.exit(1);
});
