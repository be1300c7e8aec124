#!/usr/bin/env node
'use strict';
/**
 * `npm run setup`: prepare the database named by BATON_MIGRATION_DATABASE_URL, else DATABASE_URL
 * (default: the local server) —
 * create it when missing, migrate, load the demo data and workflows/ — and nothing else.
 * The same code runs as a step of `npm run dev`.
 */
const { makeLog } = require('./dev/output');
const { DevError } = require('./dev/procs');
const { DEFAULT_DATABASE_URL, readSettings } = require('./dev/settings');
const { prepareDatabase } = require('./dev/database');

const log = makeLog('setup');

async function main() {
  const settings = readSettings();
  await prepareDatabase(settings.migrationDatabaseUrl ?? settings.databaseUrl ?? DEFAULT_DATABASE_URL, {
    workflowsDir: settings.workflowsDir,
    log,
  });
}

main().then(
  () => process.exit(0),
  (err) => {
    log.error(err instanceof DevError ? err.message : (err?.stack ?? String(err)));
    process.exit(1);
  },
);
