'use strict';
/**
 * The worker side of the harness protocol (a forked child with an IPC channel): the worker notes
 * `[key, step, at]` for every step it runs; the harness asks for the number of finished runs
 * (`count`), takes the notes (`dump`) and finally asks it to `stop`.
 */
const { performance } = require('node:perf_hooks');

const now = () => performance.timeOrigin + performance.now();

function serveHarness({ stop }) {
  let records = [];
  let finished = 0;
  const note = (key, step) => {
    records.push([key, step, now()]);
    if (step === 4) finished += 1;
  };
  process.on('message', async (msg) => {
    if (msg.cmd === 'count') process.send({ id: msg.id, value: finished });
    else if (msg.cmd === 'dump') {
      process.send({ id: msg.id, value: records });
      records = [];
      finished = 0;
    } else if (msg.cmd === 'stop') {
      await stop().catch(() => undefined);
      process.send({ id: msg.id, value: true });
      process.exit(0);
    }
  });
  // The harness went away: do not linger.
  process.on('disconnect', () => process.exit(0));
  const ready = () => process.send({ ready: true });
  return { note, ready };
}

module.exports = { serveHarness, now };
