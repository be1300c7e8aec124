'use strict';
/** TCP port helpers: pick free ports, probe listeners, poll until something is ready. */
const net = require('node:net');
const http = require('node:http');
const { setTimeout: sleep } = require('node:timers/promises');

/** Whether `port` can be bound on `host` (all addresses when `host` is omitted). */
function isPortFree(port, host) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** `count` distinct ports the OS reports free (all held open together, so they differ). */
async function freePorts(count) {
  const servers = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, resolve);
      });
      servers.push(server);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

/** `preferred` when it is free, else any free port. */
async function portOrFree(preferred, host = '127.0.0.1') {
  return (await isPortFree(preferred, host)) ? preferred : (await freePorts(1))[0];
}

/** Whether something accepts TCP connections on host:port. */
function canConnect(port, host = '127.0.0.1', timeoutMs = 1_000) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The status code of GET `url`, or undefined when nothing answers. */
function httpStatus(url, timeoutMs = 2_000) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(undefined));
  });
}

/**
 * Polls `check` until it returns true; false after `timeoutMs` or as soon as `abort()` says so
 * (a child died, a shutdown began).
 */
async function pollUntil(check, { timeoutMs, intervalMs = 250, abort = () => false }) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (abort()) return false;
    if (await check()) return true;
    await sleep(intervalMs);
  }
  return false;
}

module.exports = { isPortFree, freePorts, portOrFree, canConnect, httpStatus, pollUntil };
