#!/usr/bin/env node
'use strict';
/**
 * Container entry of the migration step (the chart's pre-install/pre-upgrade Job, compose's `migrate`
 * service): create the database when missing, apply pending migrations, and — only when
 * BATON_SEED_DEMO=true — load the demo customers and orders. Exits 0 when the schema is current.
 * Runs from the coordinator image (`node scripts/migrate.js`) or the repository after a build.
 */
const {
  baseEnv,
  ensureDatabase,
  loadConfigOrExit,
  maskCredentials,
  migrate,
  parseEnv,
  seedDemoData,
} = require('../shared/dist');

async function main() {
  const env = loadConfigOrExit(() => parseEnv(baseEnv));
  const seed = /^(1|true|yes)$/i.test(process.env.BATON_SEED_DEMO ?? '');
  const where = maskCredentials(env.DATABASE_URL);
  const created = await ensureDatabase(env.DATABASE_URL);
  const applied = await migrate(env.DATABASE_URL);
  console.log(
    JSON.stringify({
      msg: 'migrations done',
      database: where,
      created,
      applied,
    }),
  );
  if (seed) {
    await seedDemoData(env.DATABASE_URL);
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
