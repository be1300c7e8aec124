#!/usr/bin/env node
'use strict';
/**
 * `npm run dev`: all of Baton on this machine, each deployable as its own Node process running the
 * entry point its container runs. Uses the PostgreSQL, Redis and SMTP server the environment names,
 * else the local ones, else starts its own (embedded PostgreSQL, redis-server, MailDev); prepares
 * the database; supervises the components; Ctrl-C stops everything it started.
 */
const out = require('./dev/output');
const procs = require('./dev/procs');
const { readSettings, ROOT } = require('./dev/settings');
const { discoverComponents, assertBuilt, componentEnv } = require('./dev/components');
const { resolvePostgres } = require('./dev/postgres');
const { resolveRedis } = require('./dev/redis');
const { startMailCatcher } = require('./dev/mail');
const { prepareDatabase } = require('./dev/database');
const { startPgBouncer } = require('./dev/pgbouncer');
const { createSupervisor } = require('./dev/supervisor');
const { isPortFree, freePorts, canConnect, httpStatus, pollUntil } = require('./dev/ports');

const { log, bold, maskUrl } = out;
const { DevError } = procs;

/** Components get this long to stop after SIGTERM (well under a terminal user's patience). */
const STOP_GRACE_MS = 10_000;
const READY_TIMEOUT_MS = 60_000;

const supervisor = createSupervisor({ log, cwd: ROOT });
/** Stop functions of the servers the runner started, run in reverse order after the components. */
const cleanups = [];
let shutdownStarted;

function onShutdown(stop) {
  if (!stop) return;
  if (shutdownStarted) void stop();
  else cleanups.push(stop);
}

/** Components first (they may still write to PostgreSQL and Redis), then the servers, then exit. */
function shutdown(code, reason) {
  if (shutdownStarted) return shutdownStarted;
  shutdownStarted = (async () => {
    if (reason) log.info(`${reason}: stopping everything`);
    await supervisor.stopAll(STOP_GRACE_MS);
    for (const stop of cleanups.reverse()) {
      await stop().catch((err) => log.warn(`stop failed: ${procs.describeError(err)}`));
    }
    log.info('stopped');
    process.exit(code);
  })();
  return shutdownStarted;
}

function handleSignals() {
  let firstAt = 0;
  const onSignal = (signal) => {
    if (!shutdownStarted) {
      firstAt = Date.now();
      void shutdown(0, signal);
      return;
    }
    // The terminal and npm may each deliver the same Ctrl-C: only a later second one forces.
    if (Date.now() - firstAt < 1_000) return;
    log.warn(`${signal} again: killing everything now`);
    procs.killAll();
    process.exit(1);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, onSignal);
  process.on('uncaughtException', (err) => {
    log.error(`dev runner crashed: ${err.stack ?? err}`);
    void shutdown(1);
  });
}

async function resolveMail(settings) {
  if (settings.smtpUrl) return { smtpUrl: settings.smtpUrl, origin: 'from SMTP_URL' };
  const catcher = await startMailCatcher();
  return { ...catcher, origin: `MailDev, read it at ${catcher.webUrl}` };
}

/** Starts every component with its own environment; returns the metrics port of each non-gateway one. */
async function startComponents(components, settings, common) {
  const others = components.filter((c) => c.kind !== 'gateway');
  const ports = await freePorts(others.length);
  const metricsPorts = new Map(others.map((c, i) => [c.name, ports[i]]));
  for (const c of components) {
    const extra =
      c.kind === 'gateway'
        ? { PORT: String(settings.port) }
        : {
            METRICS_PORT: String(metricsPorts.get(c.name)),
            ...(c.kind === 'coordinator' ? { WORKFLOWS_DIR: settings.workflowsDir } : {}),
          };
    supervisor.start({
      name: c.name,
      color: out.nextComponentColor(),
      script: c.main,
      env: componentEnv(common, extra),
    });
  }
  return metricsPorts;
}

/**
 * Up = the gateway answers /readyz with 200 and every other process serves its metrics port.
 * Returns the names of those still not up after READY_TIMEOUT_MS.
 */
async function waitUntilUp(components, settings, metricsPorts) {
  const pending = new Set(components.map((c) => c.name));
  const isUp = (c) =>
    c.kind === 'gateway'
      ? httpStatus(`http://127.0.0.1:${settings.port}/readyz`).then((status) => status === 200)
      : canConnect(metricsPorts.get(c.name));
  await pollUntil(
    async () => {
      for (const c of components) {
        if (pending.has(c.name) && supervisor.isRunning(c.name) && (await isUp(c))) pending.delete(c.name);
      }
      return pending.size === 0;
    },
    { timeoutMs: READY_TIMEOUT_MS, intervalMs: 500, abort: () => Boolean(shutdownStarted) },
  );
  return [...pending];
}

function printNextSteps(settings, mail) {
  const base = `localhost:${settings.port}`;
  log.plain('');
  log.plain(bold('Try it:'));
  log.plain(`  curl -X POST ${base}/invoice/start -H 'Content-Type: application/json' -d '{"customerId":"cust-01"}'`);
  log.plain(`  status:    curl ${base}/v1/runs/<runId>   (the statusUrl in the answer)`);
  log.plain(mail.webUrl ? bold(`  mail:      ${mail.webUrl}`) : `  mail:      sent to ${maskUrl(mail.smtpUrl)}`);
  log.plain('  stop:      Ctrl-C');
}

async function main() {
  handleSignals();
  const settings = readSettings();
  const components = discoverComponents();
  out.setPrefixWidth(components.map((c) => c.name));
  assertBuilt(components);
  if (!(await isPortFree(settings.port))) {
    throw new DevError(`port ${settings.port} is in use — stop what listens there or set PORT`);
  }
  log.info(`${bold('Baton dev')}: ${components.map((c) => c.name).join(', ')}`);

  const postgres = await resolvePostgres(settings, log);
  onShutdown(postgres.stop);
  log.ok(`postgres: ${maskUrl(postgres.url)} (${postgres.origin})`);
  const redis = await resolveRedis(settings, log);
  onShutdown(redis.stop);
  log.ok(`redis:    ${redis.url} (${redis.origin})`);
  const mail = await resolveMail(settings);
  onShutdown(mail.stop);
  log.ok(`smtp:     ${maskUrl(mail.smtpUrl)} (${mail.origin})`);
  if (mail.webUrl) log.ok(bold(`mail: ${mail.webUrl}`));

  await prepareDatabase(settings.migrationDatabaseUrl ?? postgres.url, { workflowsDir: settings.workflowsDir, log });
  if (shutdownStarted) return;

  // BATON_DEV_PGBOUNCER=1: the components go through a transaction-mode pgbouncer (migrations did not).
  let databaseUrl = postgres.url;
  if (settings.pgbouncer) {
    const pooler = await startPgBouncer(postgres.url, log);
    onShutdown(pooler.stop);
    databaseUrl = pooler.url;
  }
  const common = {
    DATABASE_URL: databaseUrl,
    ...(settings.pgbouncer ? { BATON_PG_NAMED_STATEMENTS: 'false' } : {}),
    ...redis.env,
    SMTP_URL: mail.smtpUrl,
    LOG_LEVEL: settings.logLevel,
  };
  const metricsPorts = await startComponents(components, settings, common);
  log.info(`gateway on http://localhost:${settings.port}, log level ${settings.logLevel}`);
  const notUp = await waitUntilUp(components, settings, metricsPorts);
  if (shutdownStarted) return;
  if (notUp.length) log.warn(`not up after ${READY_TIMEOUT_MS / 1000}s: ${notUp.join(', ')} (see their lines above)`);
  else log.ok(`all ${components.length} components are up`);
  printNextSteps(settings, mail);
}

main().catch((err) => {
  log.error(err instanceof DevError ? err.message : (err?.stack ?? String(err)));
  void shutdown(1);
});
