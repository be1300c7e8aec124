#!/usr/bin/env node
'use strict';
/**
 * Container entry of the migration step (the chart's pre-install/pre-upgrade Job, compose's `migrate`
 * service): create the database when missing, apply pending migrations, and — only when
 * BATON_SEED_DEMO=true — load the demo customers and orders. Exits 0 when the schema is current.
 * Runs from the coordinator image (`node scripts/migrate.js`) or the repository after a build.
 * Connects to BATON_MIGRATION_DATABASE_URL when set (a direct connection while DATABASE_URL names a
 * transaction-mode pooler: postgrator holds a session advisory lock), else to DATABASE_URL.
 */
const {
  baseEnv,
  ensureDatabase,
  loadConfigOrExit,
  maskCredentials,
  migrate,
  migrationDatabaseUrl,
  parseEnv,
  seedDemoData,
} = require('../engine/dist');

async function main() {
  const env = loadConfigOrExit(() => parseEnv(baseEnv));
  const seed = /^(1|true|yes)$/i.test(process.env.BATON_SEED_DEMO ?? '');
  const url = migrationDatabaseUrl(env);
  const where = maskCredentials(url);
  const created = await ensureDatabase(url);
  const applied = await migrate(url);
  console.log(
    JSON.stringify({
      msg: 'migrations done',
      database: where,
      created,
      applied,
    }),
  );
  if (seed) {
    await seedDemoData(url);
    console.log(JSON.stringify({ msg: 'demo data loaded', database: where }));
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    // One line, never the URL: pg errors can quote the connection string.
    process.stderr.write(`migrate failed: ${maskCredentials(String(err?.message ?? err))}\n`);
    process.exit(1);
  },
);
