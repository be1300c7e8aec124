'use strict';
/**
 * Restate: the service deployment (SDK 1.14) the harness registers with the restate-server it
 * started. One handler, `bench/run`, runs four `ctx.run` steps; each step's result is journaled
 * by the server (its log) before the handler goes on to the next. The harness invokes it through
 * the server's ingress (`POST /bench/run/send`), never directly.
 */
const http2 = require('node:http2');
const restate = require('@restatedev/restate-sdk');
const { serveHarness } = require('./ipc');

const harness = serveHarness({
  stop: async () => {
    server.close();
  },
});

const bench = restate.service({
  name: 'bench',
  handlers: {
    run: async (ctx, run) => {
      for (let k = 1; k <= 4; k += 1) {
        await ctx.run(`s${k}`, () => {
          harness.note(run.key, k);
        });
      }
    },
  },
});

// HTTP/2 with bidirectional streaming, as restate.serve() sets it up, but
// bound to the loopback interface only.
const server = http2.createServer(restate.createEndpointHandler({ services: [bench] }));
server.on('error', (err) => {
  process.stderr.write(`restate worker failed: ${err.stack}\n`);
  process.exit(1);
});
server.listen(Number(process.env.BENCH_PORT), '127.0.0.1', () => harness.ready());
