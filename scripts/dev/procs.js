'use strict';
/** Child-process helpers shared by the supervisor and the infrastructure starters. */
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { setTimeout: sleep } = require('node:timers/promises');

/** A user-facing failure: its message (no stack) is printed before the runner exits 1. */
class DevError extends Error {}

/** Children still running, with the signals that stop each one gracefully and at once. */
const running = new Map();

/**
 * Last-resort cleanup: if the runner dies without its orderly shutdown (an uncaught error, an exit
 * from a library), ask every child it started to stop, so no port stays taken for the next run.
 */
process.on('exit', () => {
  for (const [child, { stop }] of running) {
    try {
      child.kill(stop);
    } catch {
      // already gone
    }
  }
});

function isAlive(child) {
  return child.exitCode === null && child.signalCode === null;
}

/** Remembers `child` until it exits, for the last-resort cleanup above and killAll(). */
function track(child, { stop = 'SIGTERM', force = 'SIGKILL' } = {}) {
  running.set(child, { stop, force });
  child.once('exit', () => running.delete(child));
  return child;
}

/** The forced stop (a second Ctrl-C): every child still running gets its `force` signal. */
function killAll() {
  for (const [child, { force }] of running) child.kill(force);
}

/**
 * Resolves once `child` has exited and its output has been read ('close'), or one second after the
 * exit when something else holds its pipes open.
 */
function waitForExit(child) {
  if (!isAlive(child)) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('close', resolve);
    child.once('exit', () => setTimeout(resolve, 1_000).unref());
  });
}

/** Sends `signal`, waits up to `graceMs`, then SIGKILLs. Resolves when the child is gone. */
async function stopChild(child, { signal = 'SIGTERM', graceMs = 10_000, onKill } = {}) {
  if (!child || !isAlive(child)) return;
  const exited = waitForExit(child);
  child.kill(signal);
  const timer = setTimeout(() => {
    if (!isAlive(child)) return;
    onKill?.();
    child.kill('SIGKILL');
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

/** Calls `onLine` for every line of `stream` (a child's stdout or stderr). */
function forEachLine(stream, onLine) {
  readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', onLine);
}

/** Keeps the last `max` lines, to explain a child that died while starting. */
function lastLines(max = 20) {
  const lines = [];
  return {
    push(line) {
      lines.push(line);
      if (lines.length > max) lines.shift();
    },
    text: () => lines.join('\n'),
  };
}

/** Whether an executable named `command` is on PATH. */
function onPath(command) {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => {
    try {
      fs.accessSync(path.join(dir, command), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * Whether `pid` runs; a zombie (exited, not yet reaped by its new parent) counts as gone. Reads
 * Linux's /proc: elsewhere it says false, and a leftover server makes the new one's start fail instead.
 */
function pidAlive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Infrastructure runs in its own process group (so that Ctrl-C does not stop it before the
 * components); if the runner was killed outright it may still run. Stops the process named in
 * `pidFile` when it is still alive and its command name is `commandName`, so the next run starts clean.
 */
async function stopLeftover(pidFile, commandName, signal, log) {
  let pid;
  try {
    pid = Number.parseInt(fs.readFileSync(pidFile, 'utf8').split('\n')[0], 10);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !pidAlive(pid)) return;
  try {
    // Guard against a recycled pid: only stop the program we started.
    if (!fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim().startsWith(commandName)) return;
  } catch {
    return;
  }
  log.warn(`${commandName} left running by an earlier run (pid ${pid}); stopping it`);
  process.kill(pid, signal);
  for (let waited = 0; pidAlive(pid) && waited < 15_000; waited += 100) await sleep(100);
  if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
}

/** A readable one-line reason of any error (pg's connection errors can be AggregateErrors without message). */
function describeError(err) {
  if (!err) return 'unknown error';
  if (err.message) return err.message;
  if (Array.isArray(err.errors) && err.errors.length) return describeError(err.errors[0]);
  return err.code ?? String(err);
}

function errorCode(err) {
  return err?.code ?? (Array.isArray(err?.errors) ? err.errors[0]?.code : undefined);
}

module.exports = {
  DevError,
  track,
  killAll,
  isAlive,
  waitForExit,
  stopChild,
  forEachLine,
  lastLines,
  onPath,
  stopLeftover,
  describeError,
  errorCode,
};
