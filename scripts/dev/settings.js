'use strict';
/** What the dev runner uses: the repository's layout, the defaults, and the environment's overrides. */
const fs = require('node:fs');
const path = require('node:path');
const { DevError } = require('./procs');

const ROOT = path.resolve(__dirname, '..', '..');
const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/baton';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function portFrom(env, name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new DevError(`${name}=${raw} is not a port number`);
  return port;
}

/**
 * Settings from the environment. Values left unset are decided later (an existing server or one
 * the runner starts). BATON_DEV_PG_PORT / BATON_DEV_REDIS_PORT move the default PostgreSQL and
 * Redis ports the runner probes and starts on (for machines where 5432 / 6379 are taken).
 */
function readSettings(env = process.env) {
  // Checked here once, rather than by every component in a restart loop.
  if (env.LOG_LEVEL && !LOG_LEVELS.includes(env.LOG_LEVEL)) {
    throw new DevError(`LOG_LEVEL=${env.LOG_LEVEL} is not one of ${LOG_LEVELS.join(', ')}`);
  }
  return {
    databaseUrl: env.DATABASE_URL || undefined,
    // Where `npm run setup` and the dev runner migrate: a direct server while DATABASE_URL is a pooler.
    migrationDatabaseUrl: env.BATON_MIGRATION_DATABASE_URL || undefined,
    // A pgbouncer in transaction mode between the components and PostgreSQL (scripts/dev/pgbouncer.js).
    pgbouncer: /^(1|true|yes)$/i.test(env.BATON_DEV_PGBOUNCER ?? ''),
    pgPort: portFrom(env, 'BATON_DEV_PG_PORT', 5432),
    redisGiven: Boolean(env.REDIS_URL || env.REDIS_HOST || env.REDIS_PORT || env.REDIS_CLUSTER_NODES),
    // BATON_DEV_REDIS_CLUSTER=1: the runner starts a local 3-master Redis Cluster (scripts/dev/redis.js).
    redisCluster: ['1', 'true', 'yes'].includes(String(env.BATON_DEV_REDIS_CLUSTER || '').toLowerCase()),
    redisPort: portFrom(env, 'BATON_DEV_REDIS_PORT', 6379),
    smtpUrl: env.SMTP_URL || undefined,
    port: portFrom(env, 'PORT', 3000),
    logLevel: env.LOG_LEVEL || 'info',
    workflowsDir: path.join(ROOT, 'workflows'),
  };
}

/** A built library (`engine`, `workflow`), or a clear instruction when it has not been built. */
function loadBuilt(dir) {
  const dist = path.join(ROOT, dir, 'dist', 'index.js');
  if (!fs.existsSync(dist)) throw new DevError(`${dir}/dist/index.js missing — run npm run build`);
  return require(dist);
}

/** The built engine library (@baton/engine). */
function loadEngine() {
  return loadBuilt('engine');
}

/** The built workflow language (@baton/workflow): its errors, for one. */
function loadWorkflow() {
  return loadBuilt('workflow');
}

/** A dependency of the engine library (pg, ioredis), resolved from there rather than from hoisting luck. */
function requireFromEngine(name) {
  return require(require.resolve(name, { paths: [path.join(ROOT, 'engine')] }));
}

module.exports = { ROOT, DEFAULT_DATABASE_URL, readSettings, loadEngine, loadWorkflow, requireFromEngine };
