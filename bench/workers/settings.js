'use strict';
/** Settings every bench worker reads from its environment (set by bench/run.js). */
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY || 8);
const PREFIX = process.env.BENCH_PREFIX || 'bench';
/** Like a queue left to itself: finished jobs are dropped at once (Baton keeps its own for 24 h). */
const JOB_OPTIONS = { removeOnComplete: true, removeOnFail: 1000 };

function redisConnection() {
  const url = new URL(process.env.REDIS_URL || 'redis://127.0.0.1:6379/0');
  return {
    host: url.hostname,
    port: Number(url.port || 6379),
    db: Number(url.pathname.slice(1) || 0),
    maxRetriesPerRequest: null,
  };
}

module.exports = { CONCURRENCY, PREFIX, JOB_OPTIONS, redisConnection };
