'use strict';
/**
 * Keeps each component running as its own Node process: prefixed, rendered output; a restart with
 * backoff when one exits on its own; an orderly stop (SIGTERM, grace period, SIGKILL) on request.
 */
const { spawn } = require('node:child_process');
const { renderLogLine, write } = require('./output');
const procs = require('./procs');

const FIRST_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;
/** A process that stayed up this long was healthy: its next crash restarts after FIRST_DELAY_MS again. */
const HEALTHY_AFTER_MS = 30_000;

function createSupervisor({ log, cwd }) {
  const supervised = [];
  let stopping = false;

  /** Starts `script` under `name` and keeps it running until stopAll(). */
  function start({ name, color, script, env }) {
    if (stopping) return;
    const entry = { name, child: undefined, timer: undefined };
    let delay = FIRST_DELAY_MS;

    const run = () => {
      entry.timer = undefined;
      if (stopping) return;
      const startedAt = Date.now();
      const child = procs.track(spawn(process.execPath, [script], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] }));
      entry.child = child;
      const print = (line) => write(name, color, renderLogLine(line));
      procs.forEachLine(child.stdout, print);
      procs.forEachLine(child.stderr, print);
      child.once('error', (err) => log.error(`${name}: ${err.message}`));
      child.once('exit', (code, signal) => {
        if (stopping) return;
        if (Date.now() - startedAt >= HEALTHY_AFTER_MS) delay = FIRST_DELAY_MS;
        log.warn(`${name} exited (${signal ?? `code ${code}`}); restarting in ${delay / 1000}s`);
        entry.timer = setTimeout(run, delay);
        delay = Math.min(delay * 2, MAX_DELAY_MS);
      });
    };
    supervised.push(entry);
    run();
  }

  /** SIGTERM to every component, SIGKILL to those still running after `graceMs`; resolves when all are gone. */
  async function stopAll(graceMs) {
    stopping = true;
    for (const entry of supervised) clearTimeout(entry.timer);
    await Promise.all(
      supervised.map((entry) =>
        procs.stopChild(entry.child, {
          signal: 'SIGTERM',
          graceMs,
          onKill: () => log.warn(`${entry.name} still running after ${graceMs / 1000}s: killing it`),
        }),
      ),
    );
  }

  /** Whether `name` currently has a running process (it may be waiting for a restart). */
  function isRunning(name) {
    const entry = supervised.find((e) => e.name === name);
    return Boolean(entry?.child && procs.isAlive(entry.child));
  }

  return { start, stopAll, isRunning };
}

module.exports = { createSupervisor };
